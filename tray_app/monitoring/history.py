"""A bounded, compact history of samples for the plots: one hour at 1 Hz in about 150 KB.

Each plotted figure is a column in a fixed ring of ``array.array`` (float64 for the time, float32 for
the rest): 3600 samples × 9 columns take 144 KiB, against ~2.9 MiB for a ``deque`` of 3600 frozen
samples with their nested GPU readings (measured by ``benchmarks/monitor_memory.py``). Missing values
are NaN, which pyqtgraph draws as gaps. The arrays support the buffer protocol, so the window turns them
into numpy arrays without copying (``numpy.frombuffer``); this module itself imports no numpy.

Thread-safe: the monitor thread appends while the UI thread reads a window.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from dataclasses import dataclass

from tray_app.format_fr import MIB
from tray_app.monitoring.sample import MonitorSample

DEFAULT_CAPACITY = 3600  # one hour at 1 Hz
NAN = float("nan")
OTHER_VRAM_WINDOW_S = 1800.0  # what the memory plan looks back on


@dataclass(frozen=True)
class OtherVramUse:
    """What everything but the model (the avatar, the desktop, a browser…) used on the graphics card over
    a recent window, in bytes: now, at most and at least. The memory plan sizes its margin from it."""

    now: int
    peak: int
    low: int
    seconds: float  # the time the samples cover
    samples: int

# name → array typecode
COLUMNS: dict[str, str] = {
    "at": "d",  # time.time()
    "vram_used_mib": "f",
    "model_vram_mib": "f",
    "gpu_util": "f",  # %
    "temperature_c": "f",
    "power_w": "f",
    "cpu_percent": "f",
    "ram_percent": "f",
    "tokens_per_s": "f",
}


def _values(s: MonitorSample) -> tuple[float, ...]:
    gpu = s.gpu

    def num(v: float | int | None) -> float:
        return NAN if v is None else float(v)

    return (
        s.at,
        num(gpu.memory_used / MIB if gpu and gpu.memory_used is not None else None),
        num(s.model_vram / MIB if s.model_vram is not None else None),
        num(gpu.utilization_percent if gpu else None),
        num(gpu.temperature_c if gpu else None),
        num(gpu.power_w if gpu else None),
        s.cpu_percent,
        s.ram_fraction * 100,
        num(s.tokens_per_second),
    )


class SampleHistory:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._columns = {name: array(code, [NAN]) * capacity for name, code in COLUMNS.items()}
        self._rows = tuple(self._columns.values())
        self._head = 0  # next slot to write
        self._count = 0
        self._lock = threading.Lock()

    def append(self, sample: MonitorSample) -> None:
        values = _values(sample)
        with self._lock:
            for column, value in zip(self._rows, values):
                column[self._head] = value
            self._head = (self._head + 1) % self.capacity
            self._count = min(self._count + 1, self.capacity)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def clear(self) -> None:
        with self._lock:
            self._head = self._count = 0

    def window(self, seconds: float | None = None) -> dict[str, array]:
        """Chronological copies of every column, limited to the last ``seconds`` before the newest sample."""
        with self._lock:
            columns = {name: self._ordered(col) for name, col in self._columns.items()}
        if seconds is not None and len(columns["at"]):
            start = bisect.bisect_left(columns["at"], columns["at"][-1] - seconds)
            if start:
                columns = {name: col[start:] for name, col in columns.items()}
        return columns

    def _ordered(self, column: array) -> array:
        if self._count < self.capacity:
            return column[: self._count]
        return column[self._head :] + column[: self._head]

    def other_vram(self, seconds: float = OTHER_VRAM_WINDOW_S) -> OtherVramUse | None:
        """The other programs' graphics memory over the last ``seconds`` (the card's use minus the model's),
        or None with fewer than two GPU samples."""
        cols = self.window(seconds)
        others = [
            (at, used - (0.0 if math.isnan(model) else model))
            for at, used, model in zip(cols["at"], cols["vram_used_mib"], cols["model_vram_mib"])
            if not math.isnan(used)
        ]
        if len(others) < 2:
            return None
        values = [max(0.0, v) for _, v in others]
        return OtherVramUse(
            now=round(values[-1] * MIB),
            peak=round(max(values) * MIB),
            low=round(min(values) * MIB),
            seconds=others[-1][0] - others[0][0],
            samples=len(others),
        )

    def nbytes(self) -> int:
        """Memory held by the columns (not counting the few small Python objects around them)."""
        return sum(col.itemsize * len(col) for col in self._rows)
