"""Peaks of memory and signs of slowdown while one configuration runs, sampled on a small thread.

* RAM: RSS of the runner's whole process tree (psutil), every 100 ms.
* VRAM: what NVML says the runner's processes use; where the driver does not say per process (Windows
  WDDM), the growth of the card's used memory since just before the runner started.
* While requests run (:meth:`measuring`): the CPU used by *other* programs (whole machine minus the
  runner and the measuring process itself), the CPU frequency where the OS reports it, and NVML's
  clocks-event (throttle) bits.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from tray_app.hardware.gpu import GpuReading, NvmlReader, runner_vram

log = logging.getLogger(__name__)

GPU_IDLE_BIT = 0x1
RAM_PERIOD_S = 0.1
GPU_PERIOD_S = 0.25


class ResourceSampler:
    """Samples the process tree given by ``pids()`` until :meth:`stop`. Cheap; tolerant of vanished pids.

    ``used_before``: the card's used memory before the runner started, when the runner is already running
    (a runner kept from an earlier measurement); otherwise it is read at :meth:`start`.
    """

    def __init__(
        self, pids: Callable[[], list[int]], nvml: NvmlReader | None = None, *, used_before: int | None = None
    ) -> None:
        self._pids = pids
        self._given_baseline = used_before
        self._nvml = nvml if nvml is not None and nvml.available else None
        self._stop = threading.Event()
        self._measuring = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._procs: dict[int, psutil.Process] = {}
        self._baseline_used: int | None = None
        self.peak_ram: int | None = None
        self.peak_vram: int | None = None
        self.peak_vram_device: int | None = None
        self.gpu_throttle = 0
        self._other_cpu: list[float] = []
        self._mhz: list[float] = []
        self._gpu_total: int | None = None
        self._cpu = MachineCpuMeter()
        self._me = psutil.Process()

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> None:
        gpu = self._read_gpu()
        if gpu is not None:
            self._baseline_used, self._gpu_total = gpu.memory_used, gpu.memory_total
            if self._given_baseline is not None:
                self._baseline_used = self._given_baseline
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Within this block, CPU contention, frequency and GPU throttling are recorded."""
        self._cpu.reset()
        for proc in [*self._procs.values(), self._me]:
            _quiet(proc.cpu_percent)
        self._measuring.set()
        try:
            yield
        finally:
            self._measuring.clear()

    # -- results ----------------------------------------------------------------------------------
    @property
    def other_cpu_percent(self) -> float | None:
        return statistics.median(self._other_cpu) if self._other_cpu else None

    @property
    def cpu_mhz(self) -> float | None:
        return statistics.median(self._mhz) if self._mhz else None

    @property
    def gpu_total(self) -> int | None:
        return self._gpu_total

    @property
    def used_before(self) -> int | None:
        """The card's used memory before the runner started (None without a GPU reading)."""
        return self._baseline_used

    # -- sampling ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_gpu = next_cpu = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self._sample_ram()
                if self._nvml is not None and now >= next_gpu:
                    next_gpu = now + GPU_PERIOD_S
                    self._sample_gpu()
                if self._measuring.is_set() and now >= next_cpu:
                    next_cpu = now + 0.5
                    self._sample_cpu()
            except Exception:  # sampling must never break a measurement
                log.debug("benchmark sampling failed", exc_info=True)
            self._stop.wait(RAM_PERIOD_S)

    def _processes(self) -> list[psutil.Process]:
        alive = set(self._pids())
        for pid in alive - self._procs.keys():
            try:
                self._procs[pid] = psutil.Process(pid)
            except psutil.Error:
                pass
        for pid in self._procs.keys() - alive:
            del self._procs[pid]
        return list(self._procs.values())

    def _sample_ram(self) -> None:
        total = 0
        for proc in self._processes():
            info = _quiet(proc.memory_info)
            total += info.rss if info is not None else 0
        if total:
            self.peak_ram = max(self.peak_ram or 0, total)

    def _sample_cpu(self) -> None:
        whole = self._cpu.percent()  # 0-100, whole machine, since the last call
        # The runner and this process (the client reading the answers): the rest is other programs.
        ours = sum(_quiet(p.cpu_percent) or 0.0 for p in [*self._processes(), self._me])  # 0-100 per CPU
        self._other_cpu.append(max(0.0, whole - ours / (psutil.cpu_count() or 1)))
        freq = _quiet(psutil.cpu_freq)
        if freq is not None and freq.current:
            self._mhz.append(float(freq.current))

    def _read_gpu(self) -> GpuReading | None:
        if self._nvml is None:
            return None
        readings = self._nvml.read()
        return readings[0] if readings else None

    def _sample_gpu(self) -> None:
        gpu = self._read_gpu()
        if gpu is None:
            return
        used, _how = runner_vram(gpu, set(self._procs), used_before=self._baseline_used)
        self.peak_vram = max(self.peak_vram or 0, used or 0)
        if gpu.memory_used is not None:  # None: the driver does not say
            self.peak_vram_device = max(self.peak_vram_device or 0, gpu.memory_used)
        if self._measuring.is_set() and gpu.throttle_reasons:
            self.gpu_throttle |= gpu.throttle_reasons & ~GPU_IDLE_BIT


class MachineCpuMeter:
    """Whole-machine CPU use between two calls, from ``psutil.cpu_times()`` deltas.

    Not ``psutil.cpu_percent(interval=None)``: that keeps one module-wide "last call", and the tray's
    monitor calls it every second from its own thread; sharing it would spoil both figures.
    """

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    def reset(self) -> None:
        self._last = psutil.cpu_times()

    def percent(self) -> float:
        now = psutil.cpu_times()
        before, self._last = self._last, now
        total = sum(now) - sum(before)
        idle = (now.idle - before.idle) + (getattr(now, "iowait", 0.0) - getattr(before, "iowait", 0.0))
        return max(0.0, min(100.0, 100.0 * (total - idle) / total)) if total > 0 else 0.0


def _quiet(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (psutil.Error, OSError, NotImplementedError):
        return None
