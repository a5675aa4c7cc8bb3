"""Start-up of the tray program: one copy only, the icon (or a window), the settings notice.

Kept light: nothing heavy (llama_cpp, pyqtgraph) is imported here; those wait until they are needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from tray_app import APP_DISPLAY_NAME, APP_NAME, __version__
from tray_app.paths import app_paths
from tray_app.settings import Settings

log = logging.getLogger(__name__)
READY_FILE_ENV = "DESKTOP_MATE_READY_FILE"  # start-up benchmark: written once the icon is shown
_STARTED = time.perf_counter()


def display_available() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    return bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    )


def apply_log_level(settings: Settings, *, force_debug: bool = False) -> None:
    verbose = force_debug or settings.values.verbose_log
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)


def run_tray(args: argparse.Namespace) -> int:
    if not display_available():
        print(
            "Aucun écran n'est disponible, l'icône ne peut pas s'afficher. Pour utiliser le modèle sans "
            "icône, lancez : desktop-mate-tray serve",
            file=sys.stderr,
        )
        return 2
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from tray_app.ui.icons import app_icon
    from tray_app.ui.program import TrayProgram
    from tray_app.ui.single_instance import SingleInstance

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_DISPLAY_NAME)
    app.setApplicationVersion(__version__)
    app.setQuitOnLastWindowClosed(False)
    app.setWindowIcon(app_icon())

    instance = SingleInstance()
    if instance.ask_running_copy_to_show():
        print("Desktop-Mate est déjà lancé : sa fenêtre ou son menu vient d'être affiché.")
        return 0
    instance.listen()

    paths = app_paths()
    paths.ensure()
    settings = Settings.load(paths.settings_file)
    apply_log_level(settings, force_debug=args.verbose)
    use_tray = QSystemTrayIcon.isSystemTrayAvailable()
    if not use_tray:
        log.info("no system tray on this desktop: showing the fallback window")
    program = TrayProgram(settings, paths, use_tray=use_tray)
    controller = program.tray
    instance.show_requested.connect(controller.bring_to_front)
    controller.quit_requested.connect(app.quit)
    controller.settings_changed.connect(lambda: apply_log_level(settings, force_debug=args.verbose))
    if controller.window is not None:
        controller.window.closed.connect(app.quit)
    program.start()
    # Only for the Windows check under wine (installer/check_under_wine.sh): what the tray shows.
    from tray_app.ui.ui_report import start_ui_report

    ui_report = start_ui_report(program.host.status_line)  # noqa: F841 (kept alive until the end)
    log.info("Desktop-Mate %s started in %.0f ms (tray=%s)", __version__,
             (time.perf_counter() - _STARTED) * 1000, use_tray)
    ready = os.environ.get(READY_FILE_ENV)
    if ready:
        Path(ready).write_text(f"{time.time():.6f}\n", encoding="utf-8")
    if settings.notice:
        controller.notify(settings.notice, warning=True)
    code = app.exec()
    program.stop()
    instance.close()
    return int(code)
