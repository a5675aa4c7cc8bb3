"""One frozen monitoring sample per tick: the GPU, CPU, RAM and the model host, as every gauge reads them."""

from __future__ import annotations

from dataclasses import dataclass

from tray_app.hardware.gpu import GpuReading
from tray_app.monitoring.host_metrics import HostMetrics
from tray_app.monitoring.throttle_fr import throttle_reasons_fr


@dataclass(frozen=True, slots=True)
class MonitorSample:
    """The machine at one tick.

    ``gpu`` is the first NVIDIA GPU (None without one; ``gpu_unavailable_reason`` then says why in French).
    ``model_vram`` is the runner's share of the GPU memory: reported by the driver where it can
    (``model_vram_estimated`` False), estimated otherwise (Windows WDDM; see
    :mod:`tray_app.monitoring.model_share`), None when no model is loaded or it cannot be known.
    """

    at: float  # time.time(); in a replay, the recording's timeline
    gpu: GpuReading | None
    gpu_unavailable_reason: str
    cpu_percent: float  # whole machine, 0-100
    ram_total: int  # bytes
    ram_used: int
    host: HostMetrics | None
    model_vram: int | None = None
    model_vram_estimated: bool = False

    # -- GPU memory --------------------------------------------------------------------------------
    @property
    def vram_used(self) -> int | None:
        return self.gpu.memory_used if self.gpu else None

    @property
    def vram_total(self) -> int | None:
        return self.gpu.memory_total if self.gpu else None

    @property
    def vram_fraction(self) -> float | None:
        return self.gpu.used_fraction if self.gpu else None  # None too when the driver does not say

    @property
    def other_vram(self) -> int | None:
        """VRAM used by everything but the model (avatar, desktop, browser…)."""
        if self.gpu is None or self.gpu.memory_used is None:
            return None
        return max(0, self.gpu.memory_used - (self.model_vram or 0))

    @property
    def throttle_fr(self) -> tuple[str, ...]:
        """Why the GPU runs below full speed, in French (empty when it does not, or unknown)."""
        return throttle_reasons_fr(self.gpu.throttle_reasons if self.gpu else None)

    # -- the rest ----------------------------------------------------------------------------------
    @property
    def ram_fraction(self) -> float:
        return self.ram_used / self.ram_total if self.ram_total else 0.0

    @property
    def tokens_per_second(self) -> float | None:
        return self.host.tokens_per_second if self.host else None

    @property
    def model_loaded(self) -> bool:
        return bool(self.host and self.host.model_loaded)
