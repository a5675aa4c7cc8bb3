"""The search's claims on deterministic fake surfaces: no runner, milliseconds per test."""

from __future__ import annotations

import hashlib
import threading

import pytest

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.objective import Thresholds, better, select_best
from tray_app.benchmark.search import (
    BenchmarkCancelled,
    coordinate_search,
    estimate_trials,
    grid_search,
)
from tray_app.benchmark.space import Dimension, Point, SearchSpace

CRASH = "crash"


def jitter(point: Point, rep: int, amplitude: float) -> float:
    """A deterministic pseudo-noise in [-amplitude, +amplitude] for a point and repetition."""
    digest = hashlib.sha256(f"{point}/{rep}".encode()).digest()
    return (digest[0] / 255 * 2 - 1) * amplitude


class FakeSurface:
    """Generation speed = product of per-dimension factors; TTFT from batch and prompt threads."""

    def __init__(self, *, noise: float = 0.01, crash_layers: int | None = 10, reps: int = 3) -> None:
        self.noise = noise
        self.crash_layers = crash_layers
        self.reps = reps
        self.calls: list[Point] = []

    def true_gen(self, p: Point) -> float:
        threads = {1: 10, 2: 18, 3: 25, 4: 30, 5: 33, 6: 31, 7: 26, 8: 20}[p.get("threads")]
        layers = 1 + p.get("gpu_layers", 0) * 0.25
        attention = {"f16": 1.0, "f16_fa": 1.08, "q8_0_fa": 1.02}[p.get("attention", "f16")]
        return threads * layers * attention

    def true_ttft(self, p: Point) -> float:
        batch = {128: 2.0, 256: 1.5, 512: 1.2, 1024: 1.2}[p.get("batch", 512)]
        return batch * (0.6 if p.get("threads_batch") else 1.0)

    def __call__(self, p: Point) -> Measurement:
        self.calls.append(p)
        if self.crash_layers is not None and p.get("gpu_layers") == self.crash_layers:
            return Measurement.failed("out_of_memory", "Le modèle n'a pas tenu en mémoire avec ces réglages.")
        gen = tuple(self.true_gen(p) * (1 + jitter(p, r, self.noise)) for r in range(self.reps))
        ttft = tuple(self.true_ttft(p) * (1 + jitter(p, r + 50, self.noise)) for r in range(self.reps))
        return Measurement(stable=True, gen_samples=gen, ttft_samples=ttft, wall_s=1.0)


def fake_space(start: dict | None = None) -> SearchSpace:
    values = {"gpu_layers": 4, "threads": 2, "attention": "f16", "threads_batch": 0, "batch": 512}
    values.update(start or {})
    dims = (
        Dimension("gpu_layers", (0, 2, 4, 6, 8, 10)),
        Dimension("threads", (1, 2, 3, 4, 5, 6, 7, 8)),
        Dimension("attention", ("f16", "f16_fa", "q8_0_fa"), ordered=False),
        Dimension("threads_batch", (0, 8), ordered=False),
        Dimension("batch", (128, 256, 512, 1024)),
    )
    start_point = Point(tuple((d.name, values[d.name]) for d in dims))
    return SearchSpace(dims, start_point)


def grid_best(space: SearchSpace, surface: FakeSurface) -> float:
    return max(surface.true_gen(p) for p in space.grid() if p.get("gpu_layers") != surface.crash_layers)


# -- coordinate descent -----------------------------------------------------------------------------------
def test_search_finds_the_peak_in_the_middle_with_a_fraction_of_the_grid():
    space, surface = fake_space(), FakeSurface()
    outcome = coordinate_search(space, surface)
    best = outcome.best.point
    assert best.get("threads") == 5  # the peak is inside the range, not at an end
    assert best.get("gpu_layers") == 8  # 10 crashes: the most layers that work
    assert best.get("attention") == "f16_fa"
    assert surface.true_gen(best) >= 0.97 * grid_best(space, surface)
    searched = len({t.point for t in outcome.trials})
    assert searched <= 0.35 * len(space.grid())


def test_a_crashing_configuration_is_unstable_and_the_search_goes_on():
    space, surface = fake_space(), FakeSurface()
    outcome = coordinate_search(space, surface)
    crashed = [t for t in outcome.trials if t.point.get("gpu_layers") == 10]
    assert crashed and not crashed[0].measurement.stable
    assert crashed[0].measurement.failure_fr.startswith("Le modèle n'a pas tenu")
    assert outcome.trials[-1].number > crashed[0].number  # measured on after the crash
    assert outcome.best.point.get("gpu_layers") != 10


def test_each_point_is_measured_once_then_the_winner_once_more():
    space, surface = fake_space(), FakeSurface()
    outcome = coordinate_search(space, surface)
    assert len(surface.calls) == len(set(surface.calls)) + 2
    winner_again, start_again = outcome.trials[-2], outcome.trials[-1]
    assert winner_again.control and winner_again.point == outcome.best.point
    assert start_again.control and start_again.point == space.start  # before/after in the same conditions
    assert len(outcome.start_measurement.gen_samples) == 2 * surface.reps
    assert outcome.drift is not None and abs(outcome.drift) < 0.05
    assert len(outcome.best_measurement.gen_samples) == 2 * surface.reps  # pooled with the control


class SpreadSurface(FakeSurface):
    """Exact medians, with a chosen spread around them: the search's decisions are deterministic."""

    def __init__(self, spread: float) -> None:
        super().__init__(crash_layers=None)
        self.spread = spread

    def __call__(self, p: Point) -> Measurement:
        self.calls.append(p)
        g, s = self.true_gen(p), self.spread
        return Measurement(stable=True, gen_samples=(g * (1 - s), g, g * (1 + s)), ttft_samples=(1.0,) * 3)


def test_a_gain_within_the_noise_does_not_move_the_search():
    # threads 4 → 5 is +10 %. With ±10 % noise (spread 20 %) the threshold is 15 %: the search stays.
    space = SearchSpace((Dimension("threads", (1, 2, 3, 4, 5, 6, 7, 8)),), Point.of(threads=4))
    outcome = coordinate_search(space, SpreadSurface(0.10), control=False)
    assert outcome.thresholds.gen == pytest.approx(0.15)
    assert outcome.best.point.get("threads") == 4
    # With ±0,5 % noise the threshold is the 5 % floor: +10 % is a clear gain, the search climbs to 5.
    outcome = coordinate_search(space, SpreadSurface(0.005), control=False)
    assert outcome.thresholds.gen == pytest.approx(0.05)
    assert outcome.best.point.get("threads") == 5


def test_a_tie_on_generation_is_broken_by_the_time_to_first_token():
    space, surface = fake_space(), FakeSurface()
    outcome = coordinate_search(space, surface)
    assert outcome.best.point.get("threads_batch") == 8  # same generation speed, 40 % faster prompt
    assert outcome.best.point.get("batch") in (512, 1024)


def test_cancel_stops_before_the_next_configuration():
    space, surface = fake_space(), FakeSurface()
    cancel = threading.Event()

    def on_trial(trial, total):
        if trial.number == 2:
            cancel.set()

    with pytest.raises(BenchmarkCancelled):
        coordinate_search(space, surface, cancel=cancel, on_trial=on_trial)
    assert len(surface.calls) == 2


def test_an_unstable_start_still_finds_a_working_configuration():
    space = fake_space({"gpu_layers": 10})
    outcome = coordinate_search(space, FakeSurface())
    assert not outcome.start_measurement.stable
    assert outcome.best is not None and outcome.best.measurement.stable


def test_nothing_stable_gives_no_best():
    space = fake_space()
    outcome = coordinate_search(space, lambda p: Measurement.failed("crashed", "Arrêt brutal."), max_trials=30)
    assert outcome.best is None and outcome.best_measurement is None


def test_a_winner_that_crashes_on_the_control_run_is_replaced():
    space, surface = fake_space(), FakeSurface()
    seen: set[Point] = set()
    winner = coordinate_search(space, FakeSurface(), control=False).best.point

    def flaky(p: Point) -> Measurement:
        if p == winner and p in seen:
            return Measurement.failed("crashed", "Le moteur du modèle s'est arrêté brutalement.")
        seen.add(p)
        return surface(p)

    outcome = coordinate_search(space, flaky)
    assert outcome.control_failed
    assert outcome.best is not None and outcome.best.point != winner


def test_progress_estimate_is_never_below_the_current_step():
    space, surface = fake_space(), FakeSurface()
    steps: list[tuple[int, int]] = []
    coordinate_search(space, surface, on_step=lambda n, total, p, control: steps.append((n, total)))
    assert all(total >= n for n, total in steps)
    first_estimate = estimate_trials(space)
    assert 5 <= first_estimate <= len(steps) + 5


# -- grid ---------------------------------------------------------------------------------------------------
def test_grid_measures_every_point_and_agrees_with_the_search():
    space, surface = fake_space(), FakeSurface()
    grid = grid_search(space, surface)
    assert len(grid.trials) == len(space.grid()) + 2 == estimate_trials(space, "grid")  # 2 controls
    assert grid.trials[0].point == space.start
    search = coordinate_search(space, FakeSurface())
    assert surface.true_gen(search.best.point) >= 0.97 * surface.true_gen(grid.best.point)


# -- objective ----------------------------------------------------------------------------------------------
def m(gen: float, ttft: float = 1.0, vram: int | None = None) -> Measurement:
    return Measurement(stable=True, gen_samples=(gen,), ttft_samples=(ttft,), peak_vram=vram)


def test_objective_generation_first_then_ttft_then_vram():
    t = Thresholds(gen=0.05, ttft=0.05)
    assert better(m(110), m(100), t)
    assert not better(m(104, 0.5), m(100), t, fastest_gen=120)  # a tie may not drift below the fastest
    assert better(m(98, 0.5), m(100, 1.0), t)
    assert not better(m(96, 0.5), m(100, 1.0), t)  # a tie-break may cost at most half the noise (2,5 %)
    assert not better(m(98, 1.0), m(100, 1.0), t)
    assert better(m(100, 1.0, vram=800), m(100, 1.0, vram=1000), t)
    assert not better(Measurement.failed("crashed", "x"), m(1), t)
    assert better(m(1), Measurement.failed("crashed", "x"), t)


def test_select_best_prefers_the_shortest_ttft_among_the_fastest():
    t = Thresholds(gen=0.05, ttft=0.05)
    ms = [m(100, 1.0), m(102, 0.6), m(80, 0.1), Measurement.failed("crashed", "x")]
    assert select_best(ms, t) == 1
    assert select_best([Measurement.failed("crashed", "x")], t) is None


def test_noise_threshold_follows_the_measured_spread():
    quiet = [Measurement(stable=True, gen_samples=(100, 101, 100.5))] * 3
    noisy = [Measurement(stable=True, gen_samples=(100, 110, 92))] * 3
    assert Thresholds.from_noise(quiet).gen == pytest.approx(0.05)  # the floor: process-to-process noise
    assert Thresholds.from_noise(noisy).gen == pytest.approx(0.15)
    assert 0.05 < Thresholds.from_noise([Measurement(stable=True, gen_samples=(100, 108))]).gen < 0.09


def test_a_prompt_only_move_does_not_reopen_the_generation_dimensions():
    plain = fake_space()
    marked = SearchSpace(
        tuple(
            Dimension(d.name, d.values, d.ordered, prompt_only=d.name in ("threads_batch", "batch"))
            for d in plain.dims
        ),
        plain.start,
    )
    a, b = coordinate_search(plain, FakeSurface()), coordinate_search(marked, FakeSurface())
    assert b.best.point == a.best.point
    assert len(b.trials) <= len(a.trials)


def test_a_prompt_only_setting_is_judged_on_the_first_token_not_on_generation_noise():
    t = Thresholds(gen=0.05, ttft=0.05)
    faster_by_chance = m(110, ttft=1.3)  # generation cannot depend on the batch size: this is noise
    assert better(faster_by_chance, m(100, ttft=1.0), t)
    assert not better(faster_by_chance, m(100, ttft=1.0), t, prompt_only=True)
    assert better(m(99, ttft=0.7), m(100, ttft=1.0), t, prompt_only=True)
    assert not better(m(90, ttft=0.5), m(100, ttft=1.0), t, prompt_only=True)  # generation got slower


def test_limits_for_hopeless_and_far_too_slow_configurations():
    from tray_app.benchmark.optimizer import _half_of_fastest, _request_limit
    from tray_app.benchmark.progress import ProgressTracker
    from tray_app.benchmark.search import Trial
    from tray_app.benchmark.workload import QUICK

    tracker = ProgressTracker(None, seconds_per_trial_guess=5.0)
    assert _request_limit(tracker, QUICK) is None and _half_of_fastest(tracker) is None
    tracker.on_trial(Trial(1, Point.of(threads=1), m(96.0, ttft=10.2)), 3)  # fast, but its prompt was slowed
    tracker.on_trial(Trial(2, Point.of(threads=2), m(90.0, ttft=0.8)), 3)
    tracker.on_trial(Trial(3, Point.of(threads=3), Measurement.failed("crashed", "x")), 3)
    assert _half_of_fastest(tracker) == pytest.approx(48.0)
    assert _request_limit(tracker, QUICK) == pytest.approx(15.0)  # 4 × (0,8 s + 48 / 96) = 5,2 s → the 15 s floor
