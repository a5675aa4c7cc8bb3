"""Screenshots of the gauges window at rest, at « attention », at « critique », with an overflow and
without a GPU, from the recorded timelines (for a person to look at; not a test).

    DISPLAY=:55 .venv/bin/python benchmarks/gauges_screenshots.py [--out /tmp/shots]

Each state is reached by running the real monitor fast over a recording up to a chosen second, then
showing the window and grabbing the screen with ImageMagick's ``import`` (the window frame included
when a window manager runs; otherwise ``QWidget.grab()`` is used as well).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "data"

# name → (recording, runner pid or None, seconds to replay)
STATES = {
    "gauges-rest": (DATA / "rtx4050_laptop_avatar.json", 5151, 120),
    "gauges-warning": (DATA / "rtx4050_laptop_avatar.json", 5151, 170),
    "gauges-critical": (DATA / "rtx4050_laptop_avatar.json", 5151, 200),
    "gauges-overflow": (DATA / "rtx4050_overflow.json", None, 75),
    "gauges-no-gpu": (None, None, 90),
}


def no_gpu_recording(seconds: int) -> dict:
    import random

    rng = random.Random(1)
    gib = 1024**3
    samples = [
        {"t": float(t), "devices": [],
         "cpu_percent": round(rng.uniform(30, 70) if 20 < t < 60 else rng.uniform(5, 15), 1),
         "ram_total": 16 * gib, "ram_used": int(9.5 * gib) + rng.randint(0, 300) * 1024**2,
         "host": {"runner_pid": 5151 if t > 10 else None, "model_loaded": t > 10,
                  "tokens_per_s": round(rng.uniform(7, 9), 1) if t > 20 else None, "baseline_tokens_per_s": 8.0}}
        for t in range(seconds + 1)
    ]
    return {"format": "desktop-mate-nvml-recording", "version": 1, "devices": [], "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/shots"))
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    from tray_app.monitoring import Monitor, ReplayMachine
    from tray_app.ui.gauges_window import GaugesWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    for name, (recording, pid, seconds) in STATES.items():
        if args.only and args.only not in name:
            continue
        source = ReplayMachine(recording if recording else no_gpu_recording(seconds), runner_pid=pid, start_at=0)
        monitor = Monitor(source)
        tick = None
        for _ in range(seconds + 1):
            tick = monitor.tick() or tick
        window = GaugesWindow(monitor.history)
        window.move(0, 0)
        window.show()
        window.show_tick(tick)
        for _ in range(20):
            app.processEvents()
        path = args.out / f"{name}.png"
        window.grab().save(str(path))
        if shutil.which("import") and app.platformName() != "offscreen":
            subprocess.run(["import", "-window", "root", str(args.out / f"{name}-screen.png")], check=False)
        print(path)
        window.close()
        window.deleteLater()
        app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
