"""Memory of the monitor over hours of samples, replayed fast from a recording (prints figures).

    .venv/bin/python benchmarks/monitor_memory.py [--hours 2]

Runs the real monitor (NVML replay code, model-share estimator, alert engine, history) on the looping
RTX 4050 recording, one tick per recorded second but without waiting, and prints the Python heap
(tracemalloc) and the RSS after warm-up, after one hour and at the end. Target (issue 4): growth over
one hour ≤ 5 MB. Also prints what one hour of history costs in the compact ring against a deque of the
frozen samples themselves.
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import sys
import time
import tracemalloc
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tray_app.monitoring import HostMetrics, Monitor, ReplayMachine
from tray_app.monitoring.history import SampleHistory

RECORDING = REPO / "tests" / "data" / "rtx4050_laptop_avatar.json"
MB = 1024 * 1024


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the protection's log line would repeat at each loop
    process = psutil.Process()
    tracemalloc.start()
    source = ReplayMachine(RECORDING, loop=True, runner_pid=5151, start_at=0)
    speed = [25.0]

    def host() -> HostMetrics:  # a host that reports a speed each tick (tokens/s goes into the history)
        speed[0] = 20.0 + (speed[0] + 1.3) % 8
        return HostMetrics(5151, speed[0], 26.0, True)

    before = heap()
    monitor = Monitor(source, host_metrics=host)
    print(f"monitor created: Python heap +{(heap() - before) / MB:.2f} MB (history preallocated for 1 h)")
    ticks = int(args.hours * 3600)
    figures = {}
    started = time.perf_counter()
    notes = 0
    for i in range(1, ticks + 1):
        tick = monitor.tick()
        notes += len(tick.notifications)
        if i in (300, 3600, ticks):
            figures[i] = (heap(), process.memory_info().rss)
    elapsed = time.perf_counter() - started
    warm_heap, warm_rss = figures[300]
    print(f"{ticks} ticks ({args.hours:g} h at 1 Hz) in {elapsed:.1f} s "
          f"({elapsed / ticks * 1e6:.0f} µs per tick, alert engine and history included)")
    for i, (h, rss) in figures.items():
        print(f"  after {i:5d} ticks: Python heap {h / MB:6.2f} MB (+{(h - warm_heap) / MB:5.2f} since 300)   "
              f"RSS {rss / MB:6.1f} MB (+{(rss - warm_rss) / MB:5.2f})")
    print(f"  notifications over the run: {notes} (the loop repeats the 4-minute timeline)")
    one_hour_growth = (figures[3600][0] - warm_heap) / MB
    print(f"growth between 5 min and 1 h: {one_hour_growth:.2f} MB (target ≤ 5 MB): "
          f"{'OK' if one_hour_growth <= 5 else 'TOO MUCH'}")

    # one hour of history, two ways
    base = heap()
    ring = SampleHistory(3600)
    for _ in range(3600):
        ring.append(monitor.tick().sample)
    ring_cost = heap() - base
    del ring
    base = heap()
    kept: collections.deque = collections.deque(maxlen=3600)
    for _ in range(3600):
        kept.append(monitor.tick().sample)
    deque_cost = heap() - base
    print(f"one hour of history: compact ring of arrays {ring_cost / 1024:.0f} KiB; "
          f"deque of the 3600 frozen samples {deque_cost / 1024:.0f} KiB")
    return 0 if one_hour_growth <= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
