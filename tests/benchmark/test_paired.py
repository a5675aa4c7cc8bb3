"""Paired, interleaved comparisons: the arithmetic, on made-up series (no runner, no randomness)."""

from __future__ import annotations

import math
import statistics

import pytest

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.paired import (
    MIN_PAIRS,
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
    within_prior_from_requests,
    within_runner_difference,
    within_runner_sigma,
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


def test_one_measurement_of_either_side_gives_no_verdict_however_far_apart():
    a = Series.of([(1, math.log(100.0))])
    b = Series.of([(2, math.log(180.0))])
    single = compare(a, b, sigma=0.02)
    assert single is not None and single.low > 0.5 and single.pairs == 1 < MIN_PAIRS
    assert single.verdict == "unsure"  # one lucky runner process against an unlucky one: no proof
    twice = compare(a, Series.of([(2, math.log(180.0)), (3, math.log(180.0))]), sigma=0.02)
    assert twice is not None and twice.pairs == 1 and twice.verdict == "unsure"  # A still measured once
    both = compare(Series.of([(1, math.log(100.0)), (4, math.log(100.0))]),
                   Series.of([(2, math.log(180.0)), (3, math.log(180.0))]), sigma=0.02)
    assert both is not None and both.pairs == 2 and both.verdict == "better"
    # Measured once each by one runner process: its luck cancels, the requests' noise alone is left.
    a1, b1 = in_runners(100.0, (1, 7, 1.0)), in_runners(180.0, (2, 7, 1.0))
    inside = compare(a1, b1, sigma=0.3, within=0.02)
    assert inside is not None and inside.one_runner and inside.pairs == 1 and inside.verdict == "better"


def test_the_speed_compared_is_the_mean_of_the_requests_logs_not_their_median():
    m = Measurement(stable=True, gen_samples=(10.0, 20.0, 40.0))
    assert m.gen_tps == pytest.approx(20.0)  # what the reports show
    assert log_gen(m) == pytest.approx(math.log(20.0))  # geometric mean, here equal to the median
    skewed = Measurement(stable=True, gen_samples=(10.0, 10.0, 80.0))
    assert skewed.gen_tps == pytest.approx(10.0)
    assert log_gen(skewed) == pytest.approx(math.log(20.0))  # (log 10 + log 10 + log 80) / 3 = log ∛8000


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
    inside = Comparison(0.12, 0.02, 0.23, 1, 0.03, one_runner=True)  # one measurement each, one process
    assert Comparison.from_dict(inside.to_dict()) == inside and inside.verdict == "better"
    older = {k: v for k, v in inside.to_dict().items() if k != "one_runner"}  # saved before it existed
    assert Comparison.from_dict(older).verdict == "unsure"


def in_runners(level: float, *measured: tuple[int, int, float]) -> Series:
    """log speeds at ``level``: (time, runner process, that process's own luck as a factor)."""
    ordered = sorted(measured)
    return Series(tuple(t for t, _, _ in ordered), tuple(math.log(level * f) for _, _, f in ordered),
                  tuple(r for _, r, _ in ordered))


def lucky_runner_between() -> tuple[Series, Series]:
    return (in_runners(100.0, (1, 1, 0.90), (3, 2, 1.30), (5, 3, 1.0)),
            in_runners(105.0, (2, 1, 0.90), (4, 3, 1.0)))


def test_what_one_runner_measured_of_both_is_free_of_that_runners_luck():
    # B is truly 5 % faster. Runner 1 measured A then B and was slow (−10 %) for both; runner 2 measured
    # A alone and was lucky (+30 %); runner 3 measured B then A, as fast as it should be.
    a, b = lucky_runner_between()
    mixed = interleaved_difference(a, b)
    assert mixed is not None and math.exp(mixed.value) < 1.0  # runner 1's luck makes B look slower
    shared = within_runner_difference(a, b)
    assert shared is not None and math.exp(shared.value) == pytest.approx(1.05)
    assert within_runner_difference(a, in_runners(105.0, (6, 4, 1.0))) is None  # no runner measured both


def test_compare_takes_the_shared_runners_only_when_they_are_more_precise():
    a, b = lucky_runner_between()
    across = compare(a, b, sigma=0.12)
    assert across is not None and across.gain < 0 and across.sigma == 0.12
    inside = compare(a, b, sigma=0.12, within=0.02)
    assert inside is not None and inside.gain == pytest.approx(0.05) and inside.verdict == "better"
    assert inside.sigma == 0.02
    # Inside one runner no quieter than across runners: the estimate from every measurement stands.
    assert compare(a, b, sigma=0.12, within=0.5) == across


def test_noise_inside_a_runner_counts_only_repeats_made_by_one_runner():
    # A measured twice by each of two runners: steady inside each, 40 % apart from one runner to the other.
    a = in_runners(100.0, (1, 1, 1.0), (2, 1, 1.0), (3, 2, 1.4), (4, 2, 1.4))
    assert within_runner_sigma([a], prior=0.05) < 0.05
    assert noise_sigma([a], prior=0.05) > 0.1  # across runners the jump counts


def test_noise_between_runners_leaves_out_repeats_made_by_one_runner():
    # Steady inside each runner, 40 % apart from one to the next: measured twice by each, the repeats
    # inside a runner would halve the noise seen between two runners.
    a = in_runners(100.0, (1, 1, 1.0), (2, 1, 1.0), (3, 2, 1.4), (4, 2, 1.4), (5, 3, 1.0), (6, 3, 1.0))
    mixed = noise_sigma([a], prior=0.05, prior_weight=0.5)
    across = noise_sigma([a], prior=0.05, prior_weight=0.5, across_runners=True)
    jump = math.log(1.4) / math.sqrt(2)  # σ of one measurement from a jump of log 1.4 between two
    assert across == pytest.approx(math.sqrt((0.5 * 0.05**2 + 2 * jump**2) / 2.5))
    assert mixed < 0.75 * across
    unknown = Series.of((t, v) for t, v in zip(a.times, a.values))  # runners not known: every repeat counts
    assert noise_sigma([unknown], prior=0.05, prior_weight=0.5, across_runners=True) == pytest.approx(mixed)


def test_the_prior_inside_a_runner_is_the_requests_spread_over_their_number():
    shaky = Measurement(stable=True, gen_samples=(90.0, 110.0, 100.0))
    spread = statistics.stdev(math.log(x) for x in shaky.gen_samples)
    prior = within_prior_from_requests([shaky, shaky])
    assert prior == pytest.approx(spread / math.sqrt(3))
    assert prior < prior_from_requests([shaky])  # less than between two runners
    assert within_prior_from_requests([Measurement(stable=True, gen_samples=(50.0,))]) is None


def test_series_remember_which_runner_measured_what():
    first = Measurement(stable=True, gen_samples=(50.0,), runner=1)
    second = Measurement(stable=True, gen_samples=(55.0,), runner=2)
    s = series_of([(2, second), (1, first)])
    assert s.runners == (1, 2) and s.runner_ids() == {1, 2}
    assert s.in_runner(2).values == (pytest.approx(math.log(55.0)),)
