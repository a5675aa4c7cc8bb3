"""Start-up and footprint of the tray program (a benchmark that prints figures, not a test).

Prints: launch → tray icon shown (median of N launches), idle RSS, idle CPU % of one core over 30 s,
and the cost of one CPU+GPU hardware snapshot (real NVML, and the recorded RTX 4050 through the same
NVML code path). Under Linux without a screen it starts Xvfb, and ``trayer`` as the tray host when
installed, so that a real tray icon is shown.

    .venv/bin/python benchmarks/startup_footprint.py [--runs 5] [--idle-seconds 30] [--json]

Targets (issue 2): tray ≤ 1.5 s, idle RSS ≤ 120 MB, idle CPU ≤ 1 % of one core, snapshot ≤ 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def start_display() -> list[subprocess.Popen]:
    """Xvfb (+ trayer) when there is no screen; returns the processes to stop afterwards."""
    if os.environ.get("DISPLAY") or not shutil.which("Xvfb"):
        return []
    display = ":97"
    procs = [subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    os.environ["DISPLAY"] = display
    time.sleep(1.0)
    if shutil.which("trayer"):
        procs.append(subprocess.Popen(["trayer", "--edge", "bottom", "--align", "right"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
    return procs


def launch(home: Path, ready: Path) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, DESKTOP_MATE_HOME=str(home), DESKTOP_MATE_READY_FILE=str(ready))
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "tray_app"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the tray did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.005)
    return proc, float(ready.read_text()) - started


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def snapshot_cost(n: int = 2000) -> dict[str, float]:
    from tray_app.hardware.gpu import NvmlReader
    from tray_app.hardware.nvml_replay import ReplayNvml
    from tray_app.hardware.snapshot import HardwareProbe

    recording = REPO / "tests" / "data" / "rtx4050_laptop_avatar.json"
    result = {}
    for label, reader in (
        ("nvml_real", NvmlReader()),
        ("nvml_recorded_rtx4050", NvmlReader(replay := ReplayNvml.from_file(recording, loop=True),
                                              on_read=replay.step)),
    ):
        probe = HardwareProbe(reader)
        probe.snapshot()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            probe.snapshot()
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        result[f"{label}_median_ms"] = statistics.median(times)
        result[f"{label}_p99_ms"] = times[int(n * 0.99)]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    helpers = start_display()
    figures: dict[str, float | str] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            launches = []
            for i in range(args.runs):
                proc, seconds = launch(Path(tmp) / f"home{i}", Path(tmp) / f"ready{i}")
                launches.append(seconds)
                if i < args.runs - 1:
                    stop(proc)
            figures["launch_to_tray_median_s"] = statistics.median(launches)
            figures["launch_to_tray_max_s"] = max(launches)
            p = psutil.Process(proc.pid)
            time.sleep(3)  # let start-up settle
            cpu0 = p.cpu_times()
            t0 = time.monotonic()
            time.sleep(args.idle_seconds)
            cpu1 = p.cpu_times()
            elapsed = time.monotonic() - t0
            figures["idle_cpu_percent_of_one_core"] = (
                (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed * 100
            )
            mem = p.memory_full_info()
            figures["idle_rss_mb"] = mem.rss / 1e6
            figures["idle_uss_mb"] = mem.uss / 1e6
            stop(proc)
        figures.update(snapshot_cost())
        figures["tray_host"] = "trayer" if len(helpers) > 1 else ("existing display" if not helpers else "none")
    finally:
        for h in helpers:
            h.terminate()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"launch → tray shown : median {figures['launch_to_tray_median_s']:.3f} s, "
              f"max {figures['launch_to_tray_max_s']:.3f} s over {args.runs} launches (target ≤ 1.5 s)")
        print(f"idle RSS            : {figures['idle_rss_mb']:.1f} MB (USS {figures['idle_uss_mb']:.1f} MB)"
              " (target ≤ 120 MB)")
        print(f"idle CPU            : {figures['idle_cpu_percent_of_one_core']:.2f} % of one core over "
              f"{args.idle_seconds:.0f} s (target ≤ 1 %)")
        print(f"snapshot, real NVML : median {figures['nvml_real_median_ms']:.3f} ms, "
              f"p99 {figures['nvml_real_p99_ms']:.3f} ms (target ≤ 5 ms)")
        print(f"snapshot, RTX 4050 recording via the NVML path: median "
              f"{figures['nvml_recorded_rtx4050_median_ms']:.3f} ms, "
              f"p99 {figures['nvml_recorded_rtx4050_p99_ms']:.3f} ms")
        print(f"tray host           : {figures['tray_host']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
