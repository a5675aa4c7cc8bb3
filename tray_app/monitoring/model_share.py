"""The model runner's share of GPU memory, reported by the driver or estimated.

Linux and Windows TCC drivers report the memory of each process (``GpuReading.process_used_bytes``).
Windows WDDM — every consumer laptop — does not (the value is None). There the share is estimated from
the VRAM measured around the load:

    share = (VRAM used now) − (VRAM used just before the runner started)

taking the largest value seen from the runner's start until ``settle_s`` seconds after the host says the
model is loaded (weights, KV cache and compute buffers are all allocated during loading), then kept
fixed: VRAM that appears later is most likely another program (a video, a game). Known error: a program
that starts or stops *during* loading shifts the estimate; it is clamped to [0, VRAM used]. When the
monitor starts while a model is already loaded it has no "before" figure and gives None until the next
load. When the runner is replaced without a tick in between (restart), the "before" figure becomes the
other programs' share at the last tick.
"""

from __future__ import annotations

from tray_app.hardware.gpu import GpuReading
from tray_app.monitoring.host_metrics import HostMetrics

DEFAULT_SETTLE_S = 15.0


class ModelShareEstimator:
    def __init__(self, settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.settle_s = settle_s
        self._baseline: int | None = None  # VRAM used before the runner started
        self._pid: int | None = None
        self._loaded_at: float | None = None
        self._share: int | None = None
        self._last_used: int | None = None

    def update(self, gpu: GpuReading | None, host: HostMetrics | None, at: float) -> tuple[int | None, bool]:
        """(runner's VRAM in bytes or None, True when estimated) for this tick."""
        if gpu is None or gpu.memory_used is None:  # no GPU, or its memory unknown: nothing to go by
            self._reset()
            return None, False
        used = gpu.memory_used
        pid = host.runner_pid if host else None
        try:
            if pid is None:
                self._pid, self._share, self._loaded_at = None, None, None
                self._baseline = used
                return None, False
            if pid != self._pid:
                if self._share is not None and self._last_used is not None:
                    self._baseline = max(0, self._last_used - self._share)
                self._pid, self._share, self._loaded_at = pid, None, None
            reported = gpu.process_used_bytes(pid)
            if reported is not None:
                self._share = reported
                return reported, False
            return self._estimate(used, bool(host and host.model_loaded), at), self._share is not None
        finally:
            self._last_used = used

    def _estimate(self, used: int, loaded: bool, at: float) -> int | None:
        if self._baseline is None:
            return None
        if loaded and self._loaded_at is None:
            self._loaded_at = at
        settling = self._loaded_at is None or at - self._loaded_at <= self.settle_s
        if settling:
            self._share = max(self._share or 0, used - self._baseline)
        if self._share is None:
            return None
        return max(0, min(self._share, used))

    def _reset(self) -> None:
        self._baseline = self._pid = self._loaded_at = self._share = self._last_used = None
