"""CPU cost of the 1 Hz monitor, alone and with the gauges window open (prints figures).

    .venv/bin/python benchmarks/monitor_cpu.py [--seconds 60] [--modes monitor,window-10min,window-1h]

Each mode runs in its own process for ``--seconds`` after a 5 s warm-up: the real ``MonitorService``
(its own thread, 1 Hz, psutil for CPU/RAM, NVML through the recorded RTX 4050 via
``DESKTOP_MATE_NVML_REPLAY`` since this machine has no NVIDIA GPU), and for the window modes the gauges
window shown, redrawn each second, with one hour of history already filled (the worst case for the
plots). Prints the process's CPU time as a % of one core, and the X server's when it draws (under Xvfb;
``QT_QPA_PLATFORM=offscreen`` draws in-process). Target (issue 4): ≤ 1 % of one core for monitoring,
a few % with the window open.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RECORDING = REPO / "tests" / "data" / "rtx4050_laptop_avatar.json"
WARM_UP_S = 5.0


def run_mode(mode: str, seconds: float) -> None:
    """In the child process: run one mode and print 'cpu_percent rss_mb ticks'."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from tray_app.monitoring import HostMetrics, LiveMachine, Monitor, ReplayMachine
    from tray_app.ui.monitor_worker import MonitorService

    app = QApplication(sys.argv[:1])
    monitor = Monitor(LiveMachine(), host_metrics=lambda: HostMetrics(5151, 24.0, 26.0, True))
    filler = ReplayMachine(RECORDING, loop=True, runner_pid=5151, start_at=time.time() - 3600)
    fill = Monitor(filler)
    for _ in range(3600):
        monitor.history.append(fill.tick().sample)
    service = MonitorService(monitor)
    window = None
    if mode.startswith("window"):
        from tray_app.ui.gauges_window import GaugesWindow

        window = GaugesWindow(monitor.history)
        window.set_window(3600 if mode.endswith("1h") else 600)
        service.tick_ready.connect(window.show_tick)
        window.show()
    ticks = [0]
    service.tick_ready.connect(lambda _: ticks.__setitem__(0, ticks[0] + 1))
    process = psutil.Process()
    marks: dict[str, object] = {}

    def begin() -> None:
        marks["cpu"], marks["t"], marks["ticks"] = process.cpu_times(), time.monotonic(), ticks[0]

    def end() -> None:
        cpu, elapsed = process.cpu_times(), time.monotonic() - marks["t"]
        used = (cpu.user + cpu.system) - (marks["cpu"].user + marks["cpu"].system)
        print(f"{100 * used / elapsed:.2f} {process.memory_info().rss / 2**20:.1f} {ticks[0] - marks['ticks']}")
        service.stop()
        app.quit()

    QTimer.singleShot(int(WARM_UP_S * 1000), begin)
    QTimer.singleShot(int((WARM_UP_S + seconds) * 1000), end)
    service.start()
    app.exec()


def start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen" or not shutil.which("Xvfb"):
        return None
    display = ":96"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"] = display
    time.sleep(1.0)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--modes", default="monitor,window-10min,window-1h")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        run_mode(args.child, args.seconds)
        return 0
    xvfb = start_xvfb()
    env = dict(os.environ, DESKTOP_MATE_NVML_REPLAY=str(RECORDING))
    platform = os.environ.get("QT_QPA_PLATFORM") or ("xcb on " + os.environ.get("DISPLAY", "?"))
    print(f"{os.cpu_count()} CPUs, Qt platform {platform}, {args.seconds:g} s per mode after {WARM_UP_S:g} s warm-up")
    try:
        for mode in args.modes.split(","):
            x_before = psutil.Process(xvfb.pid).cpu_times() if xvfb else None
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--seconds", str(args.seconds)],
                                 env=env, capture_output=True, text=True, timeout=args.seconds + 120)
            fields = out.stdout.split()
            if out.returncode or len(fields) != 3:
                print(f"  {mode}: failed\n{out.stderr[-2000:]}")
                continue
            cpu, rss, ticks = fields
            line = f"  {mode:13s} process CPU {float(cpu):5.2f} % of one core   RSS {rss} MB   {ticks} ticks"
            if xvfb and x_before:
                x_after = psutil.Process(xvfb.pid).cpu_times()
                x_used = (x_after.user + x_after.system) - (x_before.user + x_before.system)
                line += f"   (Xvfb drawing: {100 * x_used / (args.seconds + WARM_UP_S):.2f} %)"
            print(line, flush=True)
    finally:
        if xvfb:
            xvfb.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
