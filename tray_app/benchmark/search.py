"""Finding the best configuration: coordinate descent (the default) or the exhaustive grid (to check it).

Both take a measuring function ``Point → Measurement`` and know nothing of runners, so their claims are
tested with deterministic fake surfaces (``tests/test_bench_search.py``).

Coordinate descent
------------------
From the start point (the memory plan), visit the dimensions in order, most important first. Along an
ordered dimension, step to the next value up (then down) and keep going while the result is clearly
better (:func:`~tray_app.benchmark.objective.better`, threshold above the measured noise); an unstable
result stops that direction (more GPU layers after an out-of-memory only crash harder). Along an
unordered one, try every value and keep the best. After a move, the other dimensions are visited again
at the new point (except after a move along a prompt-only dimension — batch size, prompt threads —
which cannot change the generation speed the others were chosen for); the search stops when every
dimension in a row brought nothing. Every point is measured at most once (a cache), so re-visiting a
dimension costs only its new neighbours.

At the end the winner is measured again (``control``), and so are today's settings when they lost:
that guards against a lucky first measurement, shows a drift (heat, other programs) between the
beginning and the end of the run, and lets before and after be compared in the same conditions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.objective import Thresholds, better, select_best
from tray_app.benchmark.paired import Comparison
from tray_app.benchmark.space import Dimension, Point, SearchSpace, iter_neighbours

MAX_TRIALS = 200


class BenchmarkCancelled(Exception):
    """The user cancelled: the runner was stopped, nothing was changed."""


@dataclass(frozen=True)
class Trial:
    """One measured configuration. ``number`` counts from 1 in measuring order."""

    number: int
    point: Point
    measurement: Measurement
    control: bool = False  # the winner measured again at the end
    started_at: float = 0.0  # time.monotonic()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "point": self.point.to_dict(),
            "control": self.control,
            "measurement": self.measurement.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(
            int(data["number"]),
            Point.from_dict(dict(data["point"])),
            Measurement.from_dict(dict(data["measurement"])),
            bool(data.get("control", False)),
        )


@dataclass
class SearchOutcome:
    """What a search found. ``best`` is None when no configuration was stable."""

    strategy: str  # "coordinate" or "grid"
    start: Point
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    best_measurement: Measurement | None = None  # the winner's runs pooled with its control
    start_measurement: Measurement | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    drift: float | None = None  # control vs first measurement of the winner (relative)
    control_failed: bool = False  # the winner crashed when measured again: the next best was kept
    wall_s: float = 0.0
    # The racing search (:mod:`tray_app.benchmark.racing_search`) only: the final interleaved check of
    # the winner against today's settings (generation speed, then first word), and why it was kept.
    final_check: Comparison | None = None
    prompt_check: Comparison | None = None
    kept_because: str = ""  # "faster", "sooner", "more_on_gpu", "start_failed"; "" when today's settings stay
    budget: int = 0  # measurements the search allowed itself

    @property
    def measured(self) -> int:
        return len(self.trials)


StepCallback = Callable[[int, int, Point, bool], None]  # (step, estimated total, point, control) before measuring
TrialCallback = Callable[[Trial, int], None]  # (trial, estimated total) after measuring
Measure = Callable[[Point], Measurement]


class _Recorder:
    """Measures each point once, tells the callbacks, honours the cancel event."""

    def __init__(
        self,
        measure: Measure,
        cancel: threading.Event | None,
        on_step: StepCallback | None,
        on_trial: TrialCallback | None,
        max_trials: int,
    ) -> None:
        self.measure = measure
        self.cancel = cancel
        self.on_step = on_step
        self.on_trial = on_trial
        self.max_trials = max_trials
        self.trials: list[Trial] = []
        self.cache: dict[Point, Trial] = {}
        self.estimate: Callable[[], int] = lambda: len(self.trials) + 1

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise BenchmarkCancelled()

    def get(self, point: Point, *, control: bool = False) -> Trial:
        if not control and point in self.cache:
            return self.cache[point]
        self.check_cancel()
        number = len(self.trials) + 1
        if self.on_step is not None:
            self.on_step(number, max(number, self.estimate()), point, control)
        started = time.monotonic()
        measurement = self.measure(point)
        self.check_cancel()  # a measurement interrupted by the cancel is not a result
        trial = Trial(number, point, measurement, control, started)
        self.trials.append(trial)
        if not control:
            self.cache[point] = trial
        if self.on_trial is not None:
            self.on_trial(trial, max(number, self.estimate()))
        return trial

    @property
    def full(self) -> bool:
        return len(self.trials) >= self.max_trials

    def thresholds(self) -> Thresholds:
        return Thresholds.from_noise(t.measurement for t in self.trials)

    def failed_at_or_below(self, name: str, value: Any) -> bool:
        return any(not t.measurement.stable and t.point.get(name) <= value for t in self.trials)

    def fastest_gen(self) -> float | None:
        speeds = [t.measurement.gen_tps for t in self.trials if t.measurement.stable and t.measurement.gen_tps]
        return max(speeds) if speeds else None


def coordinate_search(
    space: SearchSpace,
    measure: Measure,
    *,
    cancel: threading.Event | None = None,
    on_step: StepCallback | None = None,
    on_trial: TrialCallback | None = None,
    control: bool = True,
    max_trials: int = MAX_TRIALS,
) -> SearchOutcome:
    """Coordinate descent from ``space.start`` (see the module docstring). Raises BenchmarkCancelled."""
    started = time.monotonic()
    rec = _Recorder(measure, cancel, on_step, on_trial, max_trials)
    start = space.canonical(space.start)
    state: dict[str, Trial] = {}
    dims = space.dims
    quiet = 0  # dimensions visited in a row without a move
    position = 0
    first_estimate = estimate_trials(space, control=control)

    def remaining() -> int:
        if "best" not in state:
            return first_estimate
        current = state["best"].point
        upcoming = [dims[(position + k) % len(dims)] for k in range(max(0, len(dims) - quiet))]
        controls = (2 if current != start else 1) if control else 0
        return len(rec.trials) + sum(_pending(space, rec, current, d) for d in upcoming) + controls

    rec.estimate = remaining
    state["best"] = rec.get(start)
    while quiet < len(dims) and not rec.full:
        dim = dims[position % len(dims)]
        moved = _line_search(space, rec, state, dim)
        quiet = 1 if moved and not dim.prompt_only else quiet + 1
        position += 1
    outcome = SearchOutcome("coordinate", start, rec.trials, start_measurement=rec.cache[start].measurement)
    _finish(outcome, rec, state["best"] if state["best"].measurement.stable else None, control)
    outcome.wall_s = time.monotonic() - started
    return outcome


def _line_search(space: SearchSpace, rec: _Recorder, state: dict[str, Trial], dim: Dimension) -> bool:
    moved = False
    if not dim.ordered:
        for candidate in list(iter_neighbours(space, state["best"].point, dim)):
            if rec.full:
                break
            trial = rec.get(candidate)
            if _better(rec, trial, state["best"], dim):
                state["best"], moved = trial, True
        return moved
    for direction in (1, -1):
        index = dim.index(state["best"].point.get(dim.name)) + direction
        while 0 <= index < len(dim.values) and not rec.full:
            candidate = space.canonical(state["best"].point.with_value(dim.name, dim.values[index]))
            if not space.valid(candidate) or candidate == state["best"].point:
                index += direction
                continue
            if direction > 0 and dim.memory_bound and rec.failed_at_or_below(dim.name, dim.values[index]):
                break  # did not fit before: more of it will not fit now
            trial = rec.get(candidate)
            if not _better(rec, trial, state["best"], dim):
                break
            state["best"], moved = trial, True
            index += direction
        if moved:
            break
    return moved


def _better(rec: _Recorder, trial: Trial, best: Trial, dim: Dimension) -> bool:
    return better(
        trial.measurement,
        best.measurement,
        rec.thresholds(),
        fastest_gen=rec.fastest_gen(),
        prompt_only=dim.prompt_only,
    )


def _pending(space: SearchSpace, rec: _Recorder, point: Point, dim: Dimension) -> int:
    """Unmeasured points a visit of ``dim`` at ``point`` would at least measure (ordered: ≤ 2)."""
    if not dim.ordered:
        return sum(1 for p in iter_neighbours(space, point, dim) if p not in rec.cache)
    count = 0
    index = dim.index(point.get(dim.name))
    for direction in (1, -1):
        j = index + direction
        while 0 <= j < len(dim.values):
            candidate = space.canonical(point.with_value(dim.name, dim.values[j]))
            if space.valid(candidate) and candidate != point:
                count += candidate not in rec.cache
                break
            j += direction
    return count


def grid_search(
    space: SearchSpace,
    measure: Measure,
    *,
    cancel: threading.Event | None = None,
    on_step: StepCallback | None = None,
    on_trial: TrialCallback | None = None,
    control: bool = True,
) -> SearchOutcome:
    """Measure every valid point of the space (start first), then pick the best. Raises BenchmarkCancelled."""
    started = time.monotonic()
    points = space.grid()
    rec = _Recorder(measure, cancel, on_step, on_trial, max_trials=len(points) + 1)
    rec.estimate = lambda: len(points) + 2 * int(control)
    for point in points:
        rec.get(point)
    start = points[0]
    outcome = SearchOutcome("grid", start, rec.trials, start_measurement=rec.cache[start].measurement)
    index = select_best([t.measurement for t in rec.trials], rec.thresholds())
    _finish(outcome, rec, rec.trials[index] if index is not None else None, control)
    outcome.wall_s = time.monotonic() - started
    return outcome


def _finish(outcome: SearchOutcome, rec: _Recorder, best: Trial | None, control: bool) -> None:
    outcome.best = best
    outcome.thresholds = rec.thresholds()
    if best is None:
        return
    outcome.best_measurement = best.measurement
    if not control:
        return
    again = rec.get(best.point, control=True)
    first, second = best.measurement, again.measurement
    outcome.thresholds = rec.thresholds()
    if not (second.stable and first.gen_tps and second.gen_tps):
        # The winner crashed when measured again: it is not stable. Fall back on the best of the others.
        outcome.control_failed = True
        others = [t for t in rec.trials if t.point != best.point and not t.control]
        index = select_best([t.measurement for t in others], outcome.thresholds)
        outcome.best = others[index] if index is not None else None
        outcome.best_measurement = outcome.best.measurement if outcome.best is not None else None
        return
    outcome.drift = (second.gen_tps - first.gen_tps) / first.gen_tps
    outcome.best_measurement = first.pooled_with(second)
    start = rec.cache.get(outcome.start)
    if best.point != outcome.start and start is not None and start.measurement.stable:
        # Today's settings measured again too, right after: before and after then share conditions.
        start_again = rec.get(outcome.start, control=True)
        if start_again.measurement.stable:
            outcome.start_measurement = start.measurement.pooled_with(start_again.measurement)
        outcome.thresholds = rec.thresholds()


def estimate_trials(space: SearchSpace, strategy: str = "coordinate", *, control: bool = True) -> int:
    """Configurations a search is expected to measure before it starts (the grid: exactly)."""
    if strategy == "grid":
        return len(space.grid()) + 2 * int(control)
    rec = _Recorder(lambda p: Measurement(stable=False), None, None, None, MAX_TRIALS)
    start = space.canonical(space.start)
    rec.cache[start] = Trial(1, start, Measurement(stable=False))
    return 1 + sum(_pending(space, rec, start, d) for d in space.dims) + int(control)
