"""The model runner's share of GPU memory, reported by the driver or estimated, for the gauges.

The rule is :func:`tray_app.hardware.gpu.runner_vram`, the one « Optimiser » and the GPU check use too:
what the driver reports for the runner's processes (Linux, Windows TCC), else the processes that appeared
since the runner started, else — Windows WDDM, every consumer laptop — an estimate from the VRAM measured
around the load:

    share = (VRAM used now) − (VRAM used just before the runner started)

For that estimate this keeps the largest value seen from the runner's start until ``settle_s`` seconds after
the host says the model is loaded (weights, KV cache and compute buffers are all allocated during loading), then kept
fixed: VRAM that appears later is most likely another program (a video, a game). Known error: a program
that starts or stops *during* loading shifts the estimate; it is clamped to [0, VRAM used]. When the
monitor starts while a model is already loaded it has no "before" figure and gives None until the next
load. When the runner is replaced without a tick in between (restart), the "before" figure becomes the
other programs' share at the last tick.
"""

from __future__ import annotations

from tray_app.hardware.gpu import GpuReading, runner_vram
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
            pids = (host.runner_pids if host else ()) or (pid,)
            # Not "new processes": here a program the user starts meanwhile would count as the model.
            share, how = runner_vram(gpu, pids, used_before=self._baseline)
            if how == "pid":
                self._share = share
                return share, False
            return self._estimate(share, used, bool(host and host.model_loaded), at), self._share is not None
        finally:
            self._last_used = used

    def _estimate(self, delta: int | None, used: int, loaded: bool, at: float) -> int | None:
        """``delta``: the card's use now minus before the runner started (None: no "before" figure)."""
        if delta is None:
            return None
        if loaded and self._loaded_at is None:
            self._loaded_at = at
        settling = self._loaded_at is None or at - self._loaded_at <= self.settle_s
        if settling:
            self._share = max(self._share or 0, delta)
        if self._share is None:
            return None
        return max(0, min(self._share, used))

    def _reset(self) -> None:
        self._baseline = self._pid = self._loaded_at = self._share = self._last_used = None
