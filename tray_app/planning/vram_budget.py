"""How much of the graphics card the model may take: free memory (NVML) minus a margin for the avatar and
the other programs, minus what the driver adds around llama.cpp's buffers.

The budget is ours, not the backend's: free memory comes from NVML, which counts every process (Vulkan's
own figure on NVIDIA's Windows drivers does not). The **margin** is sized from what the other programs
really used on this card and how much it moved (the monitor's history, :class:`OtherVramUse`):

    margin = max(floor, (their peak − their use now) + growth allowance)

with a floor of 256 MiB (the desktop opening a window, a new browser tab) and a growth allowance of
10 % of their peak, at least 128 MiB (the avatar changing scene or outfit). Without enough history (the
monitor has not run for two minutes yet: the first plan after start-up) the cautious rule of old applies,
``max(512 MiB, 5 % of the card)``. llama.cpp's own ``--fit`` keeps 1 GiB whatever runs beside it; the
avatar alone takes about 0,9 Go of a 6 Go laptop card, so knowing beats guessing in both directions.

The **overhead** is this card's calibration (:mod:`tray_app.hardware.gpu_calibration`), else the
backend's usual figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tray_app.format_fr import MIB, duration_fr, size_fr
from tray_app.hardware.gpu_calibration import Calibration
from tray_app.monitoring.history import OtherVramUse
from tray_app.planning.vram_estimate import safety_margin

MARGIN_FLOOR = 256 * MIB
GROWTH_MIN = 128 * MIB
GROWTH_FRACTION = 0.10
MIN_HISTORY_S = 120.0  # less history than this: the cautious default margin

MARGIN_HISTORY = "history"  # sized from what the other programs used
MARGIN_DEFAULT = "default"  # not enough history: max(512 MiB, 5 % of the card)
MARGIN_GIVEN = "given"  # set by the caller (tests, benchmarks)


@dataclass(frozen=True)
class VramBudget:
    """The margin and the driver overhead a plan reserves, and why (bytes)."""

    margin: int
    margin_source: str  # MARGIN_HISTORY, MARGIN_DEFAULT, MARGIN_GIVEN
    overhead: int
    overhead_source: str  # "calibration" (measured on this card), "default" (the backend's usual figure)
    others: OtherVramUse | None = None
    calibration: Calibration | None = None

    def available(self, free: int) -> int:
        """What llama.cpp's device buffers may take out of ``free`` bytes."""
        return free - self.margin - self.overhead

    def margin_why_fr(self) -> str:
        """Why this margin, in plain words (empty when there is nothing to say)."""
        o = self.others
        if self.margin_source == MARGIN_HISTORY and o is not None:
            moved = o.peak - o.now
            window = duration_fr(o.seconds)
            if moved >= 64 * MIB:
                return (f"depuis {window}, vos autres programmes ont utilisé jusqu'à {size_fr(moved)} de plus "
                        "qu'en ce moment : la marge en tient compte")
            return f"vos autres programmes n'ont presque pas bougé depuis {window}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        o = self.others
        c = self.calibration
        return {
            "margin": self.margin,
            "margin_source": self.margin_source,
            "overhead": self.overhead,
            "overhead_source": self.overhead_source,
            "others": None if o is None else {
                "now": o.now, "peak": o.peak, "low": o.low, "seconds": round(o.seconds, 1), "samples": o.samples,
            },
            "calibration": None if c is None else {
                "key": c.key, "overhead": c.overhead, "loads": c.loads, "overflows": c.overflows,
            },
        }


def default_margin(free_vram: int, total_vram: int | None) -> int:
    """Without history: max(512 MiB, 5 % of the card)."""
    return safety_margin(free_vram, total_vram)


def margin_from_history(others: OtherVramUse | None, free_vram: int, total_vram: int | None) -> tuple[int, str]:
    """(margin, source) for the other programs' recent use; the default without enough history."""
    if others is None or others.seconds < MIN_HISTORY_S:
        return default_margin(free_vram, total_vram), MARGIN_DEFAULT
    growth = max(GROWTH_MIN, int(others.peak * GROWTH_FRACTION))
    return max(MARGIN_FLOOR, others.peak - others.now + growth), MARGIN_HISTORY


def make_budget(
    *,
    free_vram: int,
    total_vram: int | None,
    overhead: int,
    calibration: Calibration | None = None,
    others: OtherVramUse | None = None,
    margin: int | None = None,
) -> VramBudget:
    """The budget of a plan. ``margin`` given: used as it is (tests, benchmarks, llama.cpp comparisons)."""
    if margin is not None:
        size, source = margin, MARGIN_GIVEN
    else:
        size, source = margin_from_history(others, free_vram, total_vram)
    return VramBudget(
        margin=size,
        margin_source=source,
        overhead=overhead,
        overhead_source="calibration" if calibration is not None else "default",
        others=others,
        calibration=calibration,
    )
