"""Uses the installed tray under wine the way a person would, and checks what appears on the screen.

Run by check_under_wine.sh (Linux's python3, standard library only) once the program is installed in
the wine prefix, on a wine virtual desktop with a taskbar and a notification area, on Xvfb:

    python3 installer/wine_tray_check.py --shortcut LNK --python-exe PYTHON.EXE --app-dir DIR
        --config-dir DIR --data-dir DIR --shots DIR

How it looks and acts, so that a missing icon, menu, window or notification fails the check:
* it acts only with real input on the X display (``xdotool``: clicks, keys); the tray is started by
  its Start-menu shortcut (``wine start``), the second copy too;
* the screen itself: ``xwd`` screenshots, kept as PNG (the CI artefacts a person looks at); the
  icon is found by the pixels it changes in the notification area, and the icon's menu is clicked there;
* Win32, from another process (``wine_ui_probe.py`` run by the installed python.exe): visible windows,
  their titles, their owner process, and the notification balloon's text;
* what only Qt knows, the text and place of each menu entry and button (Qt draws them itself), comes
  from the tray's UI report (``tray_app/ui/ui_report.py``, on only when DESKTOP_MATE_UI_REPORT is set):
  the accessible names Qt gives screen readers. A menu or window in the report must also be on the
  screen for Win32 (same place, same owner), or the check fails;
* the model: an OpenAI request from Linux to 127.0.0.1 (outside the wine prefix), the port read from
  the tray's menu; the status the tray shows must follow (« Prêt », « Occupé », « En veille »);
* processes: Linux's /proc, every process of this wine prefix (tray, runner).

The walk: the icon appears (first start, with the « Optimiser » offer answered « Plus tard »); its menu;
« Jauges de la mémoire graphique… »; « Paramètres… » (a box ticked, « Enregistrer », the file in
%APPDATA%); a notification (« Copier l'adresse de l'API »); a second launch; the model through the
gateway (« En veille » → « Prêt » → « Occupé » → « Décharger le modèle » → « En veille »); the tray
killed from outside (its runner must end by itself); a new start (its icon time is the one the
target applies to as well); « Quitter »; where the user's files are.

Prints one line per check (OK / ÉCHEC) and the time of each step; exit status 0 when all passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xwd_to_png import Image, read_xwd

HERE = Path(__file__).resolve().parent
EXPECTED_MENU = (  # entries a person must find in the icon's menu, in French
    "Desktop-Mate : ",
    "Modèle : ",
    "Choisir un modèle",
    "API : http://127.0.0.1:",
    "Copier l'adresse de l'API",
    "Optimiser…",
    "Jauges de la mémoire graphique…",
    "Enregistrer 5 minutes de mesures",
    "Notifications",
    "Paramètres…",
    "Ouvrir le dossier des journaux",
    "À propos",
    "Quitter",
)
MIN_COLOURS = 40  # a drawn window with text has hundreds of colours (anti-aliasing); a blank one, a few
TRAY_AREA = 160  # pixels at the right end of wine's taskbar where the notification icons are
ENGLISH_WORDS = re.compile(r"\b(Settings|Quit|Exit|Open|About|Cancel|Save|Loading|Ready|Busy|Idle|Error)\b")
ICON_TARGET_S = 5.0  # the target: the icon at most 5 s after the Start-menu shortcut, under wine


def windows_path(path: Path) -> str:
    """A Linux path as wine's Z: drive shows it."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.failures = 0
        self.shots = Path(args.shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self.report = Path(args.report)
        self.prefix = os.environ["WINEPREFIX"]
        self.baseline: Image | None = None
        self.icon: tuple[int, int] | None = None
        self.taskbar = [0, 0, 0, 0]  # x, y, width, height of wine's taskbar (Shell_TrayWnd)
        self.tray_pid: int | None = None  # the tray's Windows process id (Win32 and the UI report agree)
        self.api_base = ""  # http://127.0.0.1:PORT/v1, as the menu shows it
        self._starts_seen = 0
        self.timings: list[tuple[str, float]] = []

    # -- reporting ---------------------------------------------------------------------------------
    def ok(self, what: str, passed: bool, detail: str = "") -> bool:
        mark = "\033[32mOK\033[0m  " if passed else "\033[31mÉCHEC\033[0m"
        print(f"  {mark} {what}{' — ' + detail if detail else ''}", flush=True)
        if not passed:
            self.failures += 1
        return passed

    def icon_target(self, shown: float) -> None:
        """The icon's delay against the 5 s target: a failure only with ``--icon-limit`` (a measurement on a
        machine known to be quiet). Otherwise said, not judged: on a shared machine the delay measures the
        other programs as much as this one, and a check must not fail on how busy its machine is."""
        limit = self.args.icon_limit
        if limit is not None:
            self.ok(f"icône affichée en {limit:.0f} s au plus", shown <= limit, f"{shown:.1f} s")
        else:
            verdict = "atteint" if shown <= ICON_TARGET_S else "dépassé (machine chargée ?)"
            print(f"  \033[36mINFO\033[0m  objectif de {ICON_TARGET_S:.0f} s pour l'icône : {verdict}", flush=True)

    def timing(self, what: str, seconds: float) -> None:
        self.timings.append((what, seconds))
        print(f"  \033[36mTEMPS\033[0m {what:<52} {seconds:6.1f} s", flush=True)

    # -- the screen --------------------------------------------------------------------------------
    def screen(self) -> Image:
        """The whole X screen. xwd reads the root window in two X requests; a window mapped or unmapped
        in between (a menu opening) makes the second one fail with BadMatch, so a failed read is tried
        again, and only a screen that cannot be read three times in a row stops the check."""
        for attempt in range(3):
            done = subprocess.run(["xwd", "-root", "-silent"], capture_output=True, timeout=30)
            if done.returncode == 0:
                return read_xwd(done.stdout)
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            why = lines[0] if lines else f"code {done.returncode}"
            print(f"  (capture d'écran manquée, essai {attempt + 1} : {why})", flush=True)
            time.sleep(0.3)
        raise RuntimeError("xwd ne peut pas lire l'écran X")

    def shot(self, name: str, crop: list[int] | None = None, image: Image | None = None) -> Path:
        image = image or self.screen()
        if crop:
            x, y, w, h = crop
            image = image.crop(x - 8, y - 8, w + 16, h + 16)
        path = self.shots / f"{name}.png"
        path.write_bytes(image.png())
        print(f"         capture : {path}", flush=True)
        return path

    def tray_area(self, image: Image) -> Image:
        """The right end of the taskbar, where wine draws the notification icons."""
        x, y, w, h = self.taskbar
        return image.crop(x + w - TRAY_AREA, y, TRAY_AREA, h)

    def find_icon(self) -> tuple[int, int] | None:
        """Centre of the pixels that changed in the notification area since the baseline."""
        assert self.baseline is not None
        now, before = self.tray_area(self.screen()), self.tray_area(self.baseline)
        xs, ys = [], []
        for y in range(now.height):
            for x in range(now.width):
                if now.pixel(x, y) != before.pixel(x, y):
                    xs.append(x)
                    ys.append(y)
        if len(xs) < 20 or max(xs) - min(xs) > 40:  # a few pixels are not an icon, nor is a whole bar
            return None
        x, y, w, _h = self.taskbar
        return x + w - TRAY_AREA + (min(xs) + max(xs)) // 2, y + (min(ys) + max(ys)) // 2

    # -- input -------------------------------------------------------------------------------------
    def click(self, x: int, y: int, button: int = 1) -> None:
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "sleep", "0.2", "click", str(button)],
                       check=True, timeout=30)

    def key(self, *keys: str) -> None:
        subprocess.run(["xdotool", "key", "--clearmodifiers", *keys], check=True, timeout=30)

    def click_rect(self, rect: list[int]) -> None:
        x, y, w, h = rect
        self.click(x + w // 2, y + h // 2)

    # -- what Win32 and the tray say ---------------------------------------------------------------
    def probe(self) -> dict[str, Any]:
        out = self.report.with_name("win32-probe.json")
        out.unlink(missing_ok=True)
        try:
            subprocess.run(["wine", self.args.python_exe, self.args.probe, windows_path(out)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60, check=False)
            return json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"         sonde Win32 sans réponse : {exc}", flush=True)
            return {"windows": [], "tray_icons": []}

    def ui(self) -> dict[str, Any]:
        try:
            return json.loads(self.report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def wait(self, what: Callable[[], Any], timeout: float, step: float = 0.25) -> Any:
        end = time.monotonic() + timeout
        while True:
            value = what()
            if value or time.monotonic() > end:
                return value
            time.sleep(step)

    def ui_window(self, kind: str | None = None, title: str | None = None) -> dict[str, Any] | None:
        for w in self.ui().get("windows", []):
            if (kind is None or w["kind"] == kind) and (title is None or title in w["title"]):
                return w
        return None

    def on_screen(self, window: dict[str, Any], probe: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The Win32 window of the tray's process at the place the report gives (within a few pixels)."""
        probe = probe or self.probe()
        for w in probe.get("windows", []):
            if w["pid"] != self.tray_pid:
                continue
            if all(abs(a - b) <= 12 for a, b in zip(w["rect"], window["rect"])):
                return w
        return None

    def element(self, window: dict[str, Any], name: str, role: str | None = None) -> dict[str, Any] | None:
        for e in window["elements"]:
            if e["name"].replace("\u00a0", " ").startswith(name) and (role is None or e["role"] == role):
                return e
        return None

    def balloon(self, contains: str, timeout: float = 12) -> str:
        """The text of the notification balloon wine's taskbar shows, read with WM_GETTEXT."""
        def find() -> str:
            for w in self.probe().get("windows", []):
                text = w.get("text", "").replace("\u00a0", " ")
                if w["class"] == "tooltips_class32" and contains in text:
                    return text
            return ""
        return self.wait(find, timeout, step=0.5)

    # -- processes (Linux's view of this wine prefix) ----------------------------------------------
    def python_processes(self) -> list[str]:
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                env = (proc / "environ").read_bytes().split(b"\0")
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                continue
            # A Windows process shows its Windows command line ("C:\\...\\pythonw.exe -m tray_app").
            if f"WINEPREFIX={self.prefix}".encode() in env and re.match(r"[A-Za-z]:\\.*?python(w)?\.exe", cmd, re.I):
                found.append(f"{proc.name}: {cmd}")
        return found

    def launch(self) -> subprocess.Popen:
        """Starts the Start-menu shortcut, as a double click on it does."""
        command = ["wine", "start", "/unix", self.args.shortcut]
        if self.args.launch:  # development: a copy that is not installed
            command = ["wine", *self.args.launch.split("|")]
        return subprocess.Popen(command, cwd=self.args.cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- the menu ----------------------------------------------------------------------------------
    def open_menu(self, name: str | None = None) -> dict[str, Any] | None:
        assert self.icon is not None
        if self.ui_window(kind="menu") is None:
            self.click(*self.icon, button=3)
        menu = self.wait(lambda: self.ui_window(kind="menu"), 8)
        if menu is not None:
            # The pointer leaves the icon (its tooltip would cover the menu) for the menu's first line,
            # the status, which cannot be chosen.
            x, y, w, _h = menu["rect"]
            subprocess.run(["xdotool", "mousemove", str(x + w // 2), str(y + 12)], check=False, timeout=30)
        if menu is not None and name:
            self.painted(menu["rect"])
            self.shot(name, crop=menu["rect"])
        return menu

    def choose(self, entry: str, *, closes_menu: bool = True) -> bool:
        menu = self.open_menu()
        item = self.element(menu, entry, "MenuItem") if menu else None
        if item is None:
            return self.ok(f"entrée « {entry} » dans le menu", False)
        self.click_rect(item["rect"])
        if not closes_menu:  # « Quitter »: the program ends, its report stays as it last was
            return True
        # The report is written by the tray's UI thread: while an entry's action runs (the gauges
        # load pyqtgraph), it waits too.
        closed = bool(self.wait(lambda: self.ui_window(kind="menu") is None, 30))
        return self.ok(f"clic sur « {entry} » : le menu se ferme", closed)

    def own_start_time(self) -> None:
        """The tray's own figure (its log: « started in N ms », from its first import to the icon shown)."""
        log = Path(self.args.data_dir) / "Logs" / "desktop-mate-tray.log"

        def last() -> str:
            try:
                lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                         if "started in" in ln]
            except OSError:
                return ""
            return lines[-1] if len(lines) > self._starts_seen else ""
        line = self.wait(last, 10)
        if line:
            self._starts_seen += 1
            print(f"         journal du programme : {line.split(': ', 1)[-1]}", flush=True)

    def status(self) -> str:
        return self.ui().get("status", "")

    # -- the steps ---------------------------------------------------------------------------------
    def start(self) -> bool:
        print("5.1 L'icône près de l'horloge (raccourci du menu Démarrer)", flush=True)
        taskbar = self.wait(lambda: self.probe().get("taskbar"), 30, step=1)
        if not self.ok("bureau wine avec barre des tâches et zone de notification", bool(taskbar)):
            return False
        self.taskbar = taskbar["rect"]
        self.baseline = self.screen()
        t0 = time.monotonic()
        self.launch()
        self.icon = self.wait(self.find_icon, 60, step=0.2)
        shown = time.monotonic() - t0
        if not self.ok("l'icône apparaît dans la zone de notification", self.icon is not None):
            self.shot("01-pas-d-icone")
            return False
        self.timing("icône affichée après le premier lancement", shown)
        self.own_start_time()
        self.icon_target(shown)
        first = self.wait(self.ui, 20)
        self.tray_pid = first.get("pid")
        self.ok("le programme décrit son écran (rapport UI)", bool(first), f"pid Windows {self.tray_pid}")
        self.shot("01-icone-et-premier-lancement")
        return True

    def first_start_offer(self) -> None:
        box = self.wait(lambda: self.ui_window(title="Desktop-Mate", kind="QMessageBox"), 15)
        if not self.ok("premier lancement : proposition « Optimiser »", box is not None):
            return
        win = self.on_screen(box)
        self.ok("… fenêtre visible pour Windows", win is not None, win and f"« {win['title']} »" or "")
        later = self.element(box, "Plus tard")
        optimise = self.element(box, "Optimiser")
        self.ok("… boutons « Optimiser… » et « Plus tard »", later is not None and optimise is not None)
        if later:
            self.click_rect(later["rect"])
            self.ok("… « Plus tard » la ferme", bool(self.wait(lambda: self.ui_window(kind="QMessageBox") is None, 5)))

    def menu(self) -> None:
        print("5.2 Le menu de l'icône", flush=True)
        t0 = time.monotonic()
        menu = self.open_menu("02-menu")
        if not self.ok("clic droit sur l'icône : le menu s'ouvre", menu is not None):
            self.shot("02-pas-de-menu")
            return
        self.timing("ouverture du menu", time.monotonic() - t0)
        win = self.on_screen(menu)
        self.ok("… menu visible pour Windows, à la place que Qt donne", win is not None)
        self.ok("… menu dessiné à l'écran", self.painted(menu["rect"]))
        names = [e["name"].replace("\u00a0", " ") for e in menu["elements"] if e["role"] == "MenuItem"]
        print("         entrées : " + " | ".join(names), flush=True)
        missing = [m for m in EXPECTED_MENU if not any(n.startswith(m) for n in names)]
        self.ok("… entrées en français attendues", not missing, "manquent : " + ", ".join(missing) if missing else "")
        english = [n for n in names if ENGLISH_WORDS.search(n)]
        self.ok("… aucune entrée en anglais", not english, ", ".join(english))
        self.key("Escape")
        self.ok("… Échap le ferme", bool(self.wait(lambda: self.ui_window(kind="menu") is None, 5)))

    def window_from_menu(self, entry: str, title: str, shot: str) -> dict[str, Any] | None:
        t0 = time.monotonic()
        if not self.choose(entry):
            return None
        win = self.wait(lambda: self.ui_window(title=title), 30)
        if not self.ok(f"« {entry} » ouvre la fenêtre « {title} »", win is not None):
            self.shot(shot + "-absente")
            return None
        self.timing(f"fenêtre « {title} »", time.monotonic() - t0)
        win = self.ui_window(title=title) or win
        seen = self.on_screen(win)
        self.ok("… visible pour Windows, titre lu par Win32", seen is not None and title in seen["title"],
                seen and f"« {seen['title']} »" or "")
        self.ok("… dessinée à l'écran (pas un rectangle uni)", self.painted(win["rect"]))
        self.shot(shot, crop=win["rect"])
        return win

    def painted(self, rect: list[int], timeout: float = 15) -> bool:
        """A window just shown may still be a black or white rectangle: wait until it has been drawn."""
        x, y, w, h = rect
        return bool(self.wait(lambda: self.screen().crop(x, y, w, h).colours() > MIN_COLOURS, timeout, step=0.5))

    def close_window(self, win: dict[str, Any], title: str) -> None:
        """Click the close button at the right end of its title bar (drawn by wine, not Qt)."""
        x, y, w, _h = win["rect"]
        self.click(x + w - 10, y + 12)
        self.ok(f"… la case de fermeture ferme « {title} »",
                bool(self.wait(lambda: self.ui_window(title=title) is None, 10)))

    def gauges(self) -> None:
        print("5.3 Les jauges", flush=True)
        win = self.window_from_menu("Jauges de la mémoire graphique…", "Jauges", "03-jauges")
        if win:
            texts = " ".join(e["name"] for e in win["elements"])
            self.ok("… les jauges parlent de la mémoire, en français", "mémoire" in texts.lower(), texts[:120])
            self.close_window(win, "Jauges")

    def settings(self) -> None:
        print("5.4 Paramètres", flush=True)
        win = self.window_from_menu("Paramètres…", "Paramètres", "04-parametres")
        if not win:
            return
        tab = self.element(win, "Dépannage", "PageTab")
        if not self.ok("… onglet « Dépannage »", tab is not None):
            return
        self.click_rect(tab["rect"])
        box = self.wait(lambda: self.element(self.ui_window(title="Paramètres") or {"elements": []},
                                             "Journal détaillé", "CheckBox"), 5)
        if not self.ok("… case « Journal détaillé »", box is not None):
            return
        before = box["checked"]
        self.click_rect(box["rect"])
        after = self.wait(lambda: (e := self.element(self.ui_window(title="Paramètres") or {"elements": []},
                                                     "Journal détaillé", "CheckBox")) and e["checked"] != before, 5)
        self.ok("… la case change d'état au clic", bool(after))
        win = self.ui_window(title="Paramètres") or win
        self.shot("05-parametres-depannage", crop=win["rect"])
        save = self.element(win, "Enregistrer", "PushButton") or self.element(win, "Enregistrer")
        if not self.ok("… bouton « Enregistrer »", save is not None):
            return
        self.click_rect(save["rect"])
        self.ok("… « Enregistrer » ferme la fenêtre",
                bool(self.wait(lambda: self.ui_window(title="Paramètres") is None, 5)))
        settings = Path(self.args.config_dir) / "settings.json"

        def saved() -> bool:
            try:
                data = json.loads(settings.read_text(encoding="utf-8"))
                return data.get("settings", {}).get("verbose_log") is (not before)
            except (OSError, ValueError):
                return False
        self.ok("… réglage enregistré dans %APPDATA%\\DesktopMate\\DesktopMateTray\\settings.json",
                bool(self.wait(saved, 5)))

    def notification(self) -> None:
        print("5.5 Une notification", flush=True)
        t0 = time.monotonic()
        if not self.choose("Copier l'adresse de l'API"):
            return
        text = self.balloon("Adresse copiée")
        self.ok("notification « Adresse copiée : … » affichée par la zone de notification", bool(text), text)
        if text:
            self.timing("notification affichée", time.monotonic() - t0)
            x, y, w, _h = self.taskbar
            self.shot("06-notification", crop=[x + w - 420, y - 180, 420, 200])

    def second_copy(self) -> None:
        print("5.6 Deuxième lancement", flush=True)
        t0 = time.monotonic()
        before = set(self.python_processes())
        self.launch()
        # The second copy appears, asks the first one to show itself, and ends.
        extra = lambda: [p for p in self.python_processes() if p not in before]  # noqa: E731 - polled below
        self.wait(extra, 10, step=0.1)
        gone = self.wait(lambda: not extra(), 30, step=0.25)
        self.ok("la deuxième copie se termine d'elle-même", bool(gone), f"{time.monotonic() - t0:.1f} s")
        menu = self.wait(lambda: self.ui_window(kind="menu"), 10)
        self.ok("… la première copie montre son menu", menu is not None)
        text = self.balloon("déjà ouvert")
        self.ok("… et dit « Desktop-Mate est déjà ouvert »", bool(text), text)
        self.shot("07-deuxieme-lancement")
        self.key("Escape")
        self.wait(lambda: self.ui_window(kind="menu") is None, 5)

    def model(self) -> None:
        print("5.7 Le modèle par l'API (requête depuis Linux, hors du préfixe wine)", flush=True)
        menu = self.open_menu()
        api = next((e["name"] for e in (menu or {}).get("elements", []) if e["name"].startswith("API : ")), "")
        self.key("Escape")
        self.wait(lambda: self.ui_window(kind="menu") is None, 5)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", api)
        if not self.ok("adresse de l'API lue dans le menu", m is not None, api):
            return
        base = self.api_base = m.group(0)
        self.ok("état avant la première question : « En veille »", self.status().startswith("En veille"), self.status())
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(base + "/models", timeout=30) as r:
                models = json.load(r)
            first = models["data"][0].get("id", "") if models.get("data") else ""
            self.ok("GET /v1/models", bool(models.get("data")), first)
        except (OSError, ValueError) as exc:
            self.ok("GET /v1/models", False, str(exc))
        answer = self.chat(base, "Dis bonjour.", 16)
        self.ok("POST /v1/chat/completions : le modèle se charge et répond", bool(answer), repr(answer[:60]))
        self.timing("première réponse (chargement compris)", time.monotonic() - t0)
        ready = self.wait(lambda: self.status().startswith("Prêt"), 10)
        self.ok("l'état suit : « Prêt »", bool(ready), self.status())
        runner = [p for p in self.python_processes() if "runner" in p]
        self.ok("… le moteur tourne dans son propre processus", bool(runner), runner[0] if runner else "")
        consoles = [w for w in self.probe().get("windows", []) if w["class"] == "ConsoleWindowClass"
                    or "python" in w["title"].lower()]
        self.ok("… sans fenêtre de console (CREATE_NO_WINDOW)", not consoles,
                ", ".join(w["title"] or w["class"] for w in consoles))
        seen: set[str] = set()
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.add(self.status())
                time.sleep(0.1)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        answer = self.chat(base, "Raconte une histoire sur un chat.", 160, stream=True)
        stop.set()
        watcher.join()
        self.ok("réponse en flux (stream)", bool(answer), f"{len(answer)} caractères")
        self.ok("l'état suit : « Occupé » pendant la réponse", any(s.startswith("Occupé") for s in seen),
                ", ".join(sorted(seen)))
        menu = self.open_menu("08-menu-pret")
        header = self.element(menu, "Desktop-Mate : ") if menu else None
        self.ok("le menu montre « Desktop-Mate : Prêt »", bool(header and "Prêt" in header["name"]),
                header["name"] if header else "")
        self.key("Escape")
        self.wait(lambda: self.ui_window(kind="menu") is None, 5)
        if self.choose("Décharger le modèle"):
            idle = self.wait(lambda: self.status().startswith("En veille"), 30)
            self.ok("« Décharger le modèle » : l'état suit, « En veille »", bool(idle), self.status())
            gone = self.wait(lambda: not [p for p in self.python_processes() if "runner" in p], 30)
            self.ok("… et le processus du moteur est fini", bool(gone))

    def chat(self, base: str, text: str, max_tokens: int, stream: bool = False) -> str:
        body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": text}],
                           "max_tokens": max_tokens, "stream": stream}).encode()
        req = urllib.request.Request(base + "/chat/completions", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.args.answer_timeout) as r:
                if not stream:
                    return json.load(r)["choices"][0]["message"]["content"] or ""
                parts = []
                for line in r:
                    line = line.strip()
                    if line.startswith(b"data:") and line != b"data: [DONE]":
                        delta = json.loads(line[5:])["choices"][0].get("delta", {})
                        parts.append(delta.get("content") or "")
                return "".join(parts)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            print(f"         requête en échec : {exc}", flush=True)
            return ""

    def killed(self) -> None:
        """The tray ended from outside (Task Manager's « Fin de tâche ») while the model is loaded: the
        runner notices its parent's pipe is gone (runner_entry.py, PeekNamedPipe) and ends by itself."""
        print("5.8 L'icône tuée de l'extérieur (Gestionnaire des tâches) pendant que le modèle est chargé", flush=True)
        base = self.api_base
        if not base or not self.chat(base, "Bonjour.", 4):
            self.ok("modèle chargé avant de tuer l'icône", False)
            return
        runner = [p for p in self.python_processes() if "runner" in p]
        self.ok("modèle chargé, moteur en marche", bool(runner))
        subprocess.run(["wine", "taskkill", "/F", "/PID", str(self.tray_pid)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        t0 = time.monotonic()
        left = self.wait(lambda: not self.python_processes(), 20, step=0.25)
        self.ok("le moteur s'arrête de lui-même quand l'icône disparaît (surveillance du parent)", bool(left),
                "; ".join(self.python_processes()))
        self.timing("icône tuée → moteur arrêté", time.monotonic() - t0)
        # wine's taskbar forgets the icon of a dead window when the pointer passes over it
        subprocess.run(["xdotool", "mousemove", str(self.icon[0]), str(self.icon[1]), "sleep", "0.5",
                        "mousemove", "640", "400"], check=False, timeout=30)
        gone = self.wait(lambda: self.find_icon() is None, 10, step=0.5)
        self.ok("… et son icône quitte la zone de notification", bool(gone))

    def restart(self) -> bool:
        """A second start, as after a reboot: the program's files are compiled (.pyc) by now."""
        print("5.9 Nouveau démarrage", flush=True)
        self.report.unlink(missing_ok=True)
        t0 = time.monotonic()
        self.launch()
        self.icon = self.wait(self.find_icon, 60, step=0.2)
        shown = time.monotonic() - t0
        if not self.ok("l'icône revient", self.icon is not None):
            return False
        self.timing("icône affichée (démarrage suivant)", shown)
        self.own_start_time()
        self.icon_target(shown)
        report = self.wait(self.ui, 20)
        self.tray_pid = report.get("pid")
        self.ok("pas de nouvelle proposition « Optimiser » (déjà faite)", self.ui_window(kind="QMessageBox") is None)
        return True

    def quit(self) -> None:
        print("5.10 « Quitter »", flush=True)
        t0 = time.monotonic()
        self.choose("Quitter", closes_menu=False)
        left = self.wait(lambda: not self.python_processes(), 30, step=0.25)
        self.timing("« Quitter » → plus aucun processus", time.monotonic() - t0)
        self.ok("« Quitter » : aucun processus du programme ne reste (icône, moteur)", bool(left),
                "; ".join(self.python_processes()))
        gone = self.wait(lambda: self.find_icon() is None, 10, step=0.5)
        self.ok("… l'icône a disparu de la zone de notification", bool(gone))
        self.shot("09-apres-quitter")

    def files(self) -> None:
        print("5.11 Où sont les fichiers de l'utilisateur", flush=True)
        config, data = Path(self.args.config_dir), Path(self.args.data_dir)
        self.ok("réglages dans %APPDATA%\\DesktopMate\\DesktopMateTray", (config / "settings.json").is_file())
        log = data / "Logs" / "desktop-mate-tray.log"
        self.ok("journaux dans %LOCALAPPDATA%\\DesktopMate\\DesktopMateTray\\Logs", log.is_file())
        self.ok("journal du moteur à côté", (data / "Logs" / "runner.log").is_file())
        if log.is_file():
            text = log.read_text(encoding="utf-8", errors="replace")
            errors = [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]
            self.ok("le journal ne contient aucune erreur", not errors, " | ".join(errors[:3])[:300])

    def run(self) -> int:
        t0 = time.monotonic()
        if self.start():
            self.first_start_offer()
            self.menu()
            self.gauges()
            self.settings()
            self.notification()
            self.second_copy()
            self.model()
            self.killed()
            if self.restart():
                self.quit()
        else:
            subprocess.run(["wineserver", "-k"], check=False)
        self.files()
        self.timing("icône : tout le parcours", time.monotonic() - t0)
        return 1 if self.failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shortcut", required=True, help="raccourci .lnk du menu Démarrer (chemin Linux)")
    p.add_argument("--python-exe", required=True, help="python.exe installé (chemin Windows), pour la sonde Win32")
    p.add_argument("--probe", required=True, help="wine_ui_probe.py (chemin Windows)")
    p.add_argument("--report", required=True, help="fichier du rapport UI (chemin Linux)")
    p.add_argument("--config-dir", required=True, help="%%APPDATA%%\\DesktopMate\\DesktopMateTray (chemin Linux)")
    p.add_argument("--data-dir", required=True, help="%%LOCALAPPDATA%%\\DesktopMate\\DesktopMateTray (chemin Linux)")
    p.add_argument("--shots", required=True, help="dossier des captures PNG")
    p.add_argument("--icon-limit", type=float, default=None,
                   help="secondes permises avant l'icône (sans elle, le temps est dit, comparé à l'objectif)")
    p.add_argument("--answer-timeout", type=float, default=180.0)
    p.add_argument("--launch", help=argparse.SUPPRESS)  # development: "PROGRAM|ARG|ARG" instead of the shortcut
    p.add_argument("--cwd", help=argparse.SUPPRESS)
    return Check(p.parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
