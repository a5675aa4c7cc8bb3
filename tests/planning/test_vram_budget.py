"""The budget: a margin sized from what the other programs used, with a floor, and the driver's overhead."""

from __future__ import annotations

from tray_app.format_fr import MIB
from tray_app.hardware.gpu_calibration import Calibration
from tray_app.monitoring.history import OtherVramUse
from tray_app.planning.vram_budget import (
    MARGIN_DEFAULT,
    MARGIN_FLOOR,
    MARGIN_GIVEN,
    MARGIN_HISTORY,
    make_budget,
    margin_from_history,
)

GIB = 1024 * MIB


def use(now_mib: int, peak_mib: int, low_mib: int, seconds: float = 1800.0) -> OtherVramUse:
    return OtherVramUse(now_mib * MIB, peak_mib * MIB, low_mib * MIB, seconds, int(seconds))


def test_a_stable_avatar_gets_the_floor_not_the_old_512_mib():
    margin, source = margin_from_history(use(1350, 1360, 1340), 4 * GIB, 6 * GIB)
    assert (margin, source) == (MARGIN_FLOOR, MARGIN_HISTORY) and MARGIN_FLOOR < 512 * MIB


def test_programs_that_grew_before_are_expected_to_grow_again():
    # the avatar changed scene half an hour ago: 700 MiB more than now, plus 10 % of its peak
    margin, source = margin_from_history(use(1300, 2000, 1300), 4 * GIB, 6 * GIB)
    assert source == MARGIN_HISTORY and margin == 700 * MIB + 200 * MIB


def test_without_enough_history_the_cautious_default():
    assert margin_from_history(None, 4 * GIB, 6 * GIB) == (512 * MIB, MARGIN_DEFAULT)
    assert margin_from_history(use(1000, 3000, 900, seconds=30), 20 * GIB, 24 * GIB) == (
        int(24 * GIB * 0.05), MARGIN_DEFAULT)


def test_the_budget_says_why_in_plain_french():
    grew = make_budget(free_vram=4 * GIB, total_vram=6 * GIB, overhead=300 * MIB, others=use(1300, 2000, 1300))
    assert grew.available(4 * GIB) == 4 * GIB - 900 * MIB - 300 * MIB
    assert grew.margin_why_fr() == (
        "depuis 30 minutes, vos autres programmes ont utilisé jusqu'à 700 Mo de plus qu'en ce moment : la marge "
        "en tient compte")
    assert "n'ont presque pas bougé depuis 30 minutes" in make_budget(
        free_vram=4 * GIB, total_vram=6 * GIB, overhead=0, others=use(1300, 1310, 1290)).margin_why_fr()
    given = make_budget(free_vram=4 * GIB, total_vram=None, overhead=0, margin=GIB, others=use(0, 5000, 0))
    assert (given.margin, given.margin_source, given.margin_why_fr()) == (GIB, MARGIN_GIVEN, "")


def test_overhead_source_is_the_calibration_when_there_is_one():
    entry = Calibration("RTX|566.36|vulkan", 180 * MIB, 3, 0, 170 * MIB, 1.0)
    budget = make_budget(free_vram=4 * GIB, total_vram=6 * GIB, overhead=entry.overhead, calibration=entry)
    assert budget.overhead_source == "calibration"
    assert budget.to_dict()["calibration"] == {"key": "RTX|566.36|vulkan", "overhead": 180 * MIB, "loads": 3,
                                               "overflows": 0}
