"""Paired, interleaved comparisons: the arithmetic, on made-up series (no runner, no randomness)."""

from __future__ import annotations

import math

import pytest

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.paired import (
    PRIOR_FLOOR,
    PRIOR_SIGMA,
    Comparison,
    Series,
    compare,
    interleaved_difference,
    log_gen,
    log_prompt_speed,
    noise_sigma,
    prior_from_requests,
    series_of,
)


def drifting(times: list[int], level: float, drift_per_step: float = -0.03) -> Series:
    """log speeds of a configuration whose true speed is ``level``, on a machine slowing 3 % per step."""
    return Series.of((t, math.log(level) + drift_per_step * t) for t in times)


def test_interleaving_cancels_a_drift_that_measuring_one_after_the_other_does_not():
    # B is truly 10 % faster; the machine heats up and loses 3 % per measurement.
    a = drifting([1, 3, 5, 7], 100.0)
    b = drifting([2, 4, 6, 8], 110.0)
    d = interleaved_difference(a, b)
    assert d is not None and math.exp(d.value) == pytest.approx(1.10, abs=1e-9)
    # The same measurements taken A A A A then B B B B: B is blamed for the heat.
    a_first, b_after = drifting([1, 2, 3, 4], 100.0), drifting([5, 6, 7, 8], 110.0)
    naive = sum(b_after.values) / 4 - sum(a_first.values) / 4
    assert math.exp(naive) < 0.98  # B would even look slower
    paired = interleaved_difference(a_first, b_after)
    assert paired is not None and paired.value > naive  # interpolation at the edges helps, less


def test_variance_factor_is_the_sum_of_the_squared_weights():
    one_each = interleaved_difference(Series.of([(1, 0.0)]), Series.of([(2, 0.0)]))
    assert one_each is not None and one_each.variance_factor == pytest.approx(2.0)  # Var(b − a) = 2σ²
    many = interleaved_difference(Series.of((t, 0.0) for t in (1, 3, 5, 7)), Series.of((t, 0.0) for t in (2, 4, 6, 8)))
    assert many is not None and many.variance_factor < 1.0 and many.pairs == 4


def test_compare_gives_an_interval_and_a_verdict_only_beyond_the_noise():
    a = Series.of((t, math.log(100.0)) for t in (1, 3, 5))
    b = Series.of((t, math.log(120.0)) for t in (2, 4, 6))
    quiet = compare(a, b, sigma=0.02)
    assert quiet is not None and quiet.gain == pytest.approx(0.20)
    assert quiet.low > 0 and quiet.verdict == "better"
    noisy = compare(a, b, sigma=0.30)  # the same figures on a machine whose measurements wander by 30 %
    assert noisy is not None and noisy.low < 0 < noisy.high and noisy.verdict == "unsure"
    assert compare(b, a, sigma=0.02).verdict == "worse"
    same = compare(a, Series.of((t, math.log(100.5)) for t in (2, 4, 6)), sigma=0.005)
    assert same is not None and same.verdict == "tie"
    assert compare(Series.of([]), b, sigma=0.1) is None


def test_noise_is_estimated_from_repeats_and_a_slow_drift_barely_counts():
    assert noise_sigma([]) == pytest.approx(PRIOR_SIGMA)
    # One configuration measured 8 times, alternating ±10 % around its speed: σ ≈ 0.1 or more.
    wobbly = Series.of((t, math.log(100) + (0.1 if t % 2 else -0.1)) for t in range(8))
    assert noise_sigma([wobbly], prior_weight=0.5) > 0.12
    # The same count of measurements on a machine slowly losing 1 % a step: hardly any noise seen.
    slow = Series.of((t, math.log(100) - 0.01 * t) for t in range(8))
    assert noise_sigma([slow], prior=0.05, prior_weight=0.5) < 0.03


def test_the_prior_comes_from_the_requests_spread_and_has_a_floor():
    steady = Measurement(stable=True, gen_samples=(100.0, 100.1, 99.9))
    assert prior_from_requests([steady]) == pytest.approx(PRIOR_FLOOR)
    shaky = Measurement(stable=True, gen_samples=(80.0, 100.0, 120.0))
    assert prior_from_requests([shaky]) > 0.25  # √2 × the spread of the requests
    assert prior_from_requests([Measurement.failed("crashed", "x")]) == pytest.approx(PRIOR_SIGMA)


def test_series_leave_out_what_did_not_work_and_read_the_first_word_as_a_speed():
    ok = Measurement(stable=True, gen_samples=(50.0,), ttft_samples=(0.5,))
    failed = Measurement.failed("out_of_memory", "x")
    s = series_of([(1, ok), (2, failed)])
    assert s.times == (1,) and s.values == (pytest.approx(math.log(50.0)),)
    assert log_prompt_speed(ok) == pytest.approx(-math.log(0.5)) and log_gen(failed) is None


def test_comparison_round_trips_through_json():
    c = Comparison(0.12, 0.02, 0.23, 3, 0.08)
    assert Comparison.from_dict(c.to_dict()) == c and c.to_dict()["verdict"] == "better"
