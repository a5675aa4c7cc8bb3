"""Screenshots of « Télécharger un modèle… » under a real X server, for a person to look at.

    Xvfb :58 -screen 0 1280x800x24 &
    DISPLAY=:58 .venv/bin/python benchmarks/download_dialog_screenshots.py [--out /tmp/shots]

The catalogue is served by a loopback hub (``benchmarks/loopback_catalogue.py``: real-shape GGUF files,
written once into ``--shapes``), for the reference laptop (RTX 4050 Laptop 6 GB with Windows and the
avatar using 1,35 GB of it, 8 cores, 16 GB of RAM). Captures: ``download-1-list.png`` (badges and the
advice), ``download-2-progress.png`` (a download under way, slowed down), ``download-3-paused.png``,
``download-4-done.png`` (a small real model downloaded and verified: « Utiliser ce modèle », « Optimiser »),
``download-5-offline.png`` (the hub unreachable).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/shots")
    parser.add_argument("--shapes", default="/tmp/dm-catalogue-shapes")
    args = parser.parse_args()
    os.environ.setdefault("DESKTOP_MATE_HOME", tempfile.mkdtemp(prefix="dm-shots-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    from PySide6.QtWidgets import QApplication

    from benchmarks.loopback_catalogue import host_catalogue
    from benchmarks.loopback_hub import LoopbackHub
    from tray_app.format_fr import GIB
    from tray_app.hardware.cpu import CpuInfo
    from tray_app.models.catalogue import catalogue
    from tray_app.models.synthetic_gguf import LlamaShape, write_random_llama
    from tray_app.paths import app_paths
    from tray_app.planning.fit import Machine
    from tray_app.planning.memory_plan import assumed_free_vram
    from tray_app.settings import Settings
    from tray_app.ui.download_dialog import DownloadDialog

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = Path(args.shapes)
    shapes.mkdir(parents=True, exist_ok=True)
    hub = LoopbackHub()
    started = time.perf_counter()
    host_catalogue(hub, shapes)
    print(f"catalogue shapes ready in {time.perf_counter() - started:.1f} s")
    os.environ["HF_ENDPOINT"] = hub.start()
    laptop_cpu = CpuInfo("Intel Core i7-13620H (portable de référence)", 6, 12, 6, 0, tuple(range(12)),
                         16 * GIB, "reference")
    laptop = Machine(assumed_free_vram(6 * GIB), 6 * GIB, True, laptop_cpu)
    app = QApplication(sys.argv[:1])
    settings = Settings.load(app_paths().settings_file)

    def pump(seconds: float, until: object = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            if callable(until) and until():
                return
            time.sleep(0.02)

    def shot(widget: object, name: str) -> None:
        pump(0.3)
        widget.grab().save(str(out / name))
        print(out / name)

    dialog = DownloadDialog(settings, app_paths(), lambda: laptop)
    dialog.resize(900, 620)
    dialog.show()
    pump(120, until=lambda: dialog.take_advice.isEnabled())
    dialog._select_recommended()
    shot(dialog, "download-1-list.png")

    # A download under way: the recommended file, slowed down, then paused and cancelled.
    hub.delay_s = 0.01
    dialog.start_download()
    pump(6)
    shot(dialog, "download-2-progress.png")
    dialog.pause_or_resume()
    pump(10, until=lambda: dialog.pause_button.text() == "Reprendre")
    shot(dialog, "download-3-paused.png")
    dialog.cancel_download()
    pump(1)
    hub.delay_s = 0.0

    # A small real model served under the smallest catalogue file's name, downloaded to the end.
    smallest = min(catalogue(), key=lambda e: e.size)
    real = write_random_llama(Path(tempfile.mkdtemp()) / smallest.file,
                              LlamaShape(n_layers=2, n_embd=256, n_ff=1024, n_head=4, n_head_kv=2))
    hub.add(smallest.repo, smallest.file, real)
    dialog.tree.setCurrentItem(dialog.items[smallest.key])
    dialog.start_download()
    pump(60, until=lambda: dialog.use_button.isVisible())
    shot(dialog, "download-4-done.png")
    dialog.close()

    # The hub unreachable (no cache yet in a new home): the list says so.
    hub.close()
    os.environ["DESKTOP_MATE_HOME"] = tempfile.mkdtemp(prefix="dm-shots-offline-")
    offline = DownloadDialog(Settings.load(app_paths().settings_file), app_paths(), lambda: laptop)
    offline.resize(900, 620)
    offline.show()
    pump(60, until=lambda: "injoignable" in offline.advice.text())
    shot(offline, "download-5-offline.png")
    offline.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
