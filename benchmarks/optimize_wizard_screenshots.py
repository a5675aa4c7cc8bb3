"""Screenshots of the « Optimiser » wizard's pages under a real X server (Xvfb), for a person to look at.

    Xvfb :57 -screen 0 1280x800x24 &
    DISPLAY=:57 .venv/bin/python benchmarks/optimize_wizard_screenshots.py [--out /tmp/shots] [--real demo]

Without ``--real`` the wizard runs on the canned RTX 4050 laptop figures of ``benchmarks/fake_optimizer.py``
(pages 1-4 plus the details table and the no-GPU machine page); with ``--real MODEL`` it measures for
real (quick search) and captures the same pages. Each page is captured with ImageMagick's ``import``
of the wizard's window: ``wizard-1-intro.png``, ``wizard-2-machine.png``, ``wizard-3-progress.png``,
``wizard-4-result.png``, ``wizard-5-details.png``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/shots")
    parser.add_argument("--real", metavar="MODEL", help="measure for real (a .gguf path or « demo »)")
    args = parser.parse_args()
    os.environ.setdefault("DESKTOP_MATE_HOME", tempfile.mkdtemp(prefix="dm-shots-"))
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    from PySide6.QtWidgets import QApplication, QWizard

    from tray_app.paths import app_paths
    from tray_app.settings import Settings
    from tray_app.ui.optimize_wizard import PROGRESS, RESULT, OptimizeWizard

    app = QApplication(sys.argv[:1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings.load(app_paths().settings_file)
    if args.real:
        from tray_app.benchmark.optimizer import Optimizer
        from tray_app.host.hosting import choose_model

        model = choose_model(args.real, settings)
        factory = lambda: Optimizer(model, settings)  # noqa: E731 - a one-line factory reads best beside its twin
        prefix = "wizard-real"
    else:
        from benchmarks.fake_optimizer import FakeEngine

        model = Path(app_paths().data_dir) / "Mistral-7B-Instruct-v0.3.Q4_K_M.gguf"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"GGUF" + bytes(64))
        factory = lambda: FakeEngine(model, pause_s=0.35)  # noqa: E731 - a one-line factory reads best beside its twin
        prefix = "wizard"

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def shot(widget, name: str) -> Path:
        pump(0.4)
        path = out / f"{prefix}-{name}.png"
        subprocess.run(["import", "-window", str(int(widget.winId())), str(path)], check=True)
        print(path)
        return path

    wizard = OptimizeWizard(settings, app_paths(), engine_factory=factory)
    wizard.move(40, 40)
    wizard.show()
    pump(1.5)
    shot(wizard, "1-intro")
    wizard.next()
    shot(wizard, "2-machine")
    wizard.next()
    deadline = time.monotonic() + 600
    while wizard.currentId() == PROGRESS and time.monotonic() < deadline:
        pump(0.2)
        if len(wizard.progress_page.last.text()) and wizard.progress_page.bar.value() >= 450:
            break
    shot(wizard, "3-progress")
    while wizard.currentId() != RESULT and time.monotonic() < deadline:
        pump(0.2)
    shot(wizard, "4-result")
    wizard.result_page.toggle.click()
    shot(wizard, "5-details")
    wizard.button(QWizard.WizardButton.CancelButton).click()
    pump(0.3)
    if not args.real:
        from benchmarks.fake_optimizer import FakeEngine

        cpu_only = OptimizeWizard(settings, app_paths(), engine_factory=lambda: FakeEngine(model, gpu=False))
        cpu_only.move(40, 40)
        cpu_only.show()
        pump(1.0)
        cpu_only.next()
        shot(cpu_only, "2-machine-sans-gpu")
        cpu_only.reject()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
