"""The search « Optimiser » runs: coordinate moves, each decided by interleaved comparisons (racing).

Like :func:`~tray_app.benchmark.search.coordinate_search` it takes a measuring function ``Point →
Measurement`` and nothing else (the same code runs on real runners and on the simulated machines of
``benchmarks/optimiser_sim.py``), starts from today's settings and visits the dimensions in order. What
differs is how a move is decided on a noisy machine (:mod:`tray_app.benchmark.paired`):

* **Racing.** The candidates of a dimension (the neighbours of an ordered one, every other value of an
  unordered one) are measured once each. Those shown better or worse than the incumbent beyond the
  noise are decided at once; only the ones *within* the noise are measured again, together with the
  incumbent, in alternating order (A B C, then C B A…), up to :data:`MAX_ROUNDS` rounds, while the
  budget allows. A winner is declared only beyond the noise; otherwise the incumbent stays.
* **GPU layers, finely, where memory runs out.** More of the model on the card never makes generation
  slower (until the card spills into system memory, which the measurer rejects as unsafe), so the layer
  count is not raced on speed: the search looks for the most layers that work, one layer at a time,
  starting from the plan (galloping up or down, then bisecting). Settings that change the memory
  taken (KV cache type, batch size: ``changes_memory``) are each judged at *their own* highest layer
  count — a q8_0 cache that lets two more layers on the card competes with those two layers. A
  configuration with more layers wins unless it measured slower beyond the noise.
* **At the edge of the card** the avatar's own use moves: a memory setting over the limit in more than
  :data:`EDGE_RATE` of its measurements is too full (so is any configuration whose runner takes as much);
  seen over it once among many safe measurements, it still fits. When the incumbent turns out too full,
  the search steps down one layer *keeping the settings chosen since* (unless an earlier choice keeps
  more on the card).
* **Prompt-only settings** (batch size, prompt threads) are raced on the time to first token, and may
  not make generation slower beyond the noise; only the most promising value gets a second round.
* **Thread counts inside one runner.** The measurer keeps its runner when the next configuration differs
  only in thread counts (:func:`~tray_app.benchmark.space.same_runner`), so a race on the threads
  alternates A B A B in one process. Its comparisons then come from that process alone when that is
  more precise (:func:`~tray_app.benchmark.paired.within_runner_difference`): the luck of each process
  (where its memory landed, what else ran) no longer hides a 5-10 % difference.
* **One lucky process proves nothing.** Two configurations measured by different runner processes are
  judged only once each was measured twice (:data:`~tray_app.benchmark.paired.MIN_PAIRS`): among the
  dozens of comparisons of a search, one process 25 % luckier than another is bound to happen. The
  noise between two processes is estimated from repeats made by two processes, never below the noise
  inside one.
* **A value far behind is not measured again**: one whose whole interval is more than
  :data:`FAR_BEHIND` slower, with the same memory settings, is not raced again when another setting
  has changed.
* **A crash is believed only twice**: a configuration that stopped once for no memory reason is measured
  again before being ruled out (the « occasional crash » is not always the configuration's fault) —
  except one stopped for being far slower than the fastest measured (``slow``: a verdict on its speed).
* **The final check**: the winner and today's settings are measured alternately (at least one more of
  each, up to :data:`FINAL_ROUNDS` rounds, until the verdict is clear), and the estimate of the gain,
  with its interval, comes from every measurement of both, paired in time. With no measurable gain,
  today's settings are kept — except when the winner puts more of the model on the graphics card and
  did not measure slower (the gain is real, only too small to show here), which is said as such.

The whole run spends at most :func:`measurement_budget` measurements: a third of the coarse grid of the
same space, never fewer than :data:`MIN_BUDGET` nor more than :data:`MAX_BUDGET`; repeats only use what
the first measurement of every remaining candidate and the final check leave (a race on generation may
also use what the prompt-only settings would have taken: they come last, with what is left). Given a time
limit (``seconds``), the measurements left are also what fits in it at the median duration of those made.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.objective import MIN_GAIN, MIN_TTFT_GAIN, VRAM_GAIN, Thresholds
from tray_app.benchmark.paired import (
    TIE_MARGIN,
    Comparison,
    Series,
    compare,
    log_gen,
    log_prompt_speed,
    noise_sigma,
    prior_from_requests,
    series_of,
    within_prior_from_requests,
    within_runner_sigma,
)
from tray_app.benchmark.search import BenchmarkCancelled, SearchOutcome, StepCallback, Trial, TrialCallback
from tray_app.benchmark.space import Dimension, Point, SearchSpace

Measure = Callable[[Point], Measurement]
Value = Callable[[Measurement], "float | None"]

RACING = "racing"
DETERMINISTIC_FAILURES = frozenset({"out_of_memory", "unsafe", "refused"})  # the same settings fail again
# Not measured again after one failure: those, and « slow » (stopped for being far slower than the fastest
# measured: a verdict on its speed, not an accident, and measuring it again costs the longest).
NOT_RETRIED = DETERMINISTIC_FAILURES | {"slow"}
EDGE_RATE = 0.15  # a configuration over the memory limit in more than this share of its measurements is too full
BUDGET_FRACTION = 1 / 3
MIN_BUDGET = 8
MAX_BUDGET = 50
FAR_BEHIND = 0.1  # a value shown slower by more than this (its whole interval) is not measured again elsewhere
MAX_ROUNDS = 8  # rounds of a race on generation speed (the first measures each candidate once)
FUTILE_AFTER = 3  # rounds after which a candidate not ahead of the incumbent is dropped
MAX_PROMPT_ROUNDS = 2  # on the first word: prompt settings matter less than generation
FINAL_ROUNDS = 3
FINAL_RESERVE = 4  # two rounds of the final check (one on the smallest budgets)

KEPT_FASTER = "faster"
KEPT_SOONER = "sooner"
KEPT_MORE_ON_GPU = "more_on_gpu"
KEPT_START_FAILED = "start_failed"
KEPT_LIGHTER = "lighter"


def measurement_budget(space: SearchSpace) -> int:
    """How many measurements the racing search allows itself on ``space`` (see the module docstring)."""
    return max(MIN_BUDGET, min(MAX_BUDGET, round(len(space.grid()) * BUDGET_FRACTION)))


class _Lab:
    """Measures points (every call a new runner), keeps every measurement in order, tells the callbacks."""

    def __init__(
        self,
        measure: Measure,
        budget: int,
        cancel: threading.Event | None,
        on_step: StepCallback | None,
        on_trial: TrialCallback | None,
        memory_dims: tuple[str, ...] = (),
        seconds: float | None = None,
    ) -> None:
        self.measure = measure
        self.seconds = seconds  # the time the measurements may take in all (None: no limit)
        # The settings that decide the graphics memory taken (layers, KV cache, batch): a configuration
        # that filled the card fills it with any threads or pinning. One seen both safe and too full is
        # at the edge (the avatar's own use moves it over): too full when that happened in more than
        # EDGE_RATE of its measurements — once in a few is what the user would meet.
        self.memory_dims = memory_dims
        self.out_of_memory: set[tuple[object, ...]] = set()
        self.edge_counts: dict[tuple[object, ...], list[int]] = {}  # memory key → [too full, measured]
        self.unsafe_vram: dict[tuple[object, ...], int] = {}  # memory key → least runner memory seen too full
        self.layers_top: int | None = None  # "everything on the card", the last layer step
        self.budget = budget
        self.cancel = cancel
        self.on_step = on_step
        self.on_trial = on_trial
        self.trials: list[Trial] = []
        self.history: dict[Point, list[Trial]] = {}
        self.estimate: Callable[[], int] = lambda: budget

    @property
    def left(self) -> int:
        """Measurements still allowed: by the budget, and by the time limit at the median duration so far."""
        left = self.budget - len(self.trials)
        walls = [t.measurement.wall_s for t in self.trials if t.measurement.wall_s > 0]
        if self.seconds is None or not walls:
            return left
        return min(left, max(0, int((self.seconds - sum(walls)) / statistics.median(walls))))

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise BenchmarkCancelled()

    def _one(self, point: Point) -> Trial:
        self._check_cancel()
        number = len(self.trials) + 1
        again = point in self.history
        total = max(number, self.estimate())
        if self.on_step is not None:
            self.on_step(number, total, point, again)
        started = time.monotonic()
        measurement = self.measure(point)
        self._check_cancel()  # a measurement interrupted by the cancel is not a result
        trial = Trial(number, point, measurement, again, started)
        self.trials.append(trial)
        self.history.setdefault(point, []).append(trial)
        key = self.memory_key(point)
        if measurement.failure_kind == "out_of_memory":
            self.out_of_memory.add(key)
        elif measurement.stable or measurement.failure_kind == "unsafe":
            counts = self.edge_counts.setdefault(key, [0, 0])
            counts[1] += 1
            if measurement.failure_kind == "unsafe":
                counts[0] += 1
                if measurement.peak_vram:
                    self.unsafe_vram[key] = min(self.unsafe_vram.get(key, measurement.peak_vram),
                                                measurement.peak_vram)
        if self.on_trial is not None:
            self.on_trial(trial, max(number, self.estimate()))
        return trial

    def run(self, point: Point) -> Trial:
        """Measure ``point`` once more; a first crash that memory does not explain is measured again."""
        trial = self._one(point)
        m = trial.measurement
        if not m.stable and m.failure_kind not in NOT_RETRIED and self.left > 0:
            failures = sum(1 for t in self.history[point] if not t.measurement.stable)
            if failures == 1:
                trial = self._one(point)
        return trial

    def _edge_failed(self, key: tuple[object, ...]) -> bool:
        unsafe, measured = self.edge_counts.get(key, (0, 0))
        return unsafe > 0 and unsafe > EDGE_RATE * measured

    @property
    def memory_failed(self) -> set[tuple[object, ...]]:
        """The memory keys found too full: out of memory, or over the limit too often."""
        return self.out_of_memory | {k for k in self.edge_counts if self._edge_failed(k)}

    @property
    def unsafe_floor(self) -> int | None:
        """The least graphics memory a runner took in a configuration found too full: any configuration
        whose runner took as much is too full as well, whatever its settings."""
        floors = [v for k, v in self.unsafe_vram.items() if self._edge_failed(k)]
        return min(floors) if floors else None

    def memory_key(self, point: Point) -> tuple[object, ...]:
        return tuple(point.get(name) for name in self.memory_dims)

    def too_full(self, point: Point) -> bool:
        """Known too full: its memory settings failed, or the same with fewer GPU layers did (the last
        step, everything on the card, excepted: llama.cpp then drops a buffer and may need less)."""
        if not self.memory_dims:
            return False
        key = self.memory_key(point)
        if key in self.memory_failed:
            return True
        layers_name = self.memory_dims[0]
        layers = point.get(layers_name)
        if self.layers_top is not None and layers >= self.layers_top:
            return False
        rest = key[1:]
        return any(k[1:] == rest and k[0] <= layers for k in self.memory_failed)

    def status(self, point: Point) -> bool | None:
        """True: works; False: failed for memory reasons, or stopped twice; None: never measured."""
        if self.too_full(point):
            return False
        measured = [t.measurement for t in self.history.get(point, ())]
        if not measured:
            return None
        failed = [m.failure_kind for m in measured if not m.stable and m.failure_kind in DETERMINISTIC_FAILURES]
        if failed and (not self.memory_dims or any(kind != "unsafe" for kind in failed)):
            return False  # (failed only by going over the memory limit: too_full() above has decided)
        floor = self.unsafe_floor
        if floor is not None and any(m.peak_vram and m.peak_vram >= floor for m in measured):
            return False
        failures = sum(1 for m in measured if not m.stable)
        return failures < 2 and failures < len(measured)

    def series(self, point: Point, value: Value = log_gen, *, after: int = 0) -> Series:
        """The measurements of ``point`` (those numbered above ``after`` only) as a :class:`Series`."""
        trials = [(t.number, t.measurement) for t in self.history.get(point, ()) if t.number > after]
        return series_of(trials, value)

    def sigma(self, value: Value = log_gen) -> float:
        """σ of one measurement against one made by another runner process.

        Generation: from repeats made by two different processes only, and never below the noise inside
        one process (a process adds its own luck to that noise; a jump seen inside one counts). The
        first word, with no noise inside a process to go on: from every repeat.
        """
        stable = [t.measurement for t in self.trials if t.measurement.stable]
        series = [self.series(p, value) for p in self.history]
        if value is not log_gen:
            return noise_sigma(series, prior=prior_from_requests([]))
        between = noise_sigma(series, prior=prior_from_requests(stable), across_runners=True)
        within = self.within_sigma(value)
        return between if within is None else max(between, within)

    def within_sigma(self, value: Value = log_gen) -> float | None:
        """The noise between two measurements of one runner process (generation speed only: the prompt is
        read once per measurement in the quick workload, which leaves no spread to start from)."""
        if value is not log_gen:
            return None
        prior = within_prior_from_requests(t.measurement for t in self.trials if t.measurement.stable)
        if prior is None:
            return None
        return within_runner_sigma((self.series(p, value) for p in self.history), prior=prior)

    def compare(self, a: Point, b: Point, value: Value = log_gen, *, b_after: int = 0) -> Comparison | None:
        """``b`` against ``a`` from every measurement of both (of ``b``: after ``b_after``), paired in time —
        or from the runner processes that measured both, when that is more precise."""
        return compare(self.series(a, value), self.series(b, value, after=b_after), self.sigma(value),
                       within=self.within_sigma(value))

    def memory_used(self, point: Point) -> int | None:
        """Graphics memory of the runner when it used the card, else its RAM (the largest seen)."""
        stable = [t.measurement for t in self.history.get(point, ()) if t.measurement.stable]
        vram = [m.peak_vram for m in stable if m.peak_vram]
        if vram:
            return max(vram)
        ram = [m.peak_ram for m in stable if m.peak_ram]
        return max(ram) if ram else None

    def lighter(self, a: Point, b: Point) -> bool:
        """``a`` takes clearly less memory than ``b`` (the objective's last criterion)."""
        ma, mb = self.memory_used(a), self.memory_used(b)
        return bool(ma and mb and ma < mb * (1 - VRAM_GAIN))

    def pooled(self, point: Point) -> Measurement | None:
        stable = [t.measurement for t in self.history.get(point, ()) if t.measurement.stable]
        if not stable:
            return None
        pooled = stable[0]
        for m in stable[1:]:
            pooled = pooled.pooled_with(m)
        return pooled


class _Search:
    def __init__(self, space: SearchSpace, lab: _Lab) -> None:
        self.space = space
        self.lab = lab
        self.memory_dim = next((d for d in space.dims if d.memory_bound), None)
        self.judged: set[tuple[Point, Point]] = set()  # (incumbent, candidate) pairs already raced
        self.leads: dict[str, tuple[Point, object, float]] = {}  # dimension → (incumbent, value, gain)
        self.path: list[Point] = []  # every incumbent in turn, today's settings (or their rescue) first
        self.chosen_at: dict[Point, int] = {}  # measurements made when it last became the incumbent
        self.first_pass_left: list[Dimension] = list(space.dims)
        self.final_reserve = max(2, min(FINAL_RESERVE, lab.budget // 8))

    def choose(self, point: Point) -> None:
        """``point`` is the incumbent from now on; its measurements so far helped choose it."""
        self.path.append(point)
        self.chosen_at[point] = len(self.lab.trials)

    # -- helpers ------------------------------------------------------------------------------------
    def layers(self, point: Point) -> int:
        if self.memory_dim is None:
            return 0
        return int(point.get(self.memory_dim.name, 0))

    def prefer(self, a: Point, b: Point) -> bool:
        """``a`` puts more of the model on the graphics card than ``b``."""
        return self.memory_dim is not None and self.layers(a) > self.layers(b)

    def prior(self, a: Point, b: Point) -> bool:
        """``a`` has a dimension's preferred value where ``b`` has not, and the same layer count."""
        if self.layers(a) != self.layers(b):
            return False
        return any(
            d.preferred is not None and a.get(d.name) == d.preferred and b.get(d.name) != d.preferred
            for d in self.space.dims
        )

    def reserve(self, current: Dimension | None = None) -> int:
        """Measurements to keep: the final check, and one per candidate of the dimensions not yet visited
        (of those that change the generation: a race on it may use what the prompt-only ones would take)."""
        pending = 0
        for dim in self.first_pass_left:
            if dim is current or (dim.prompt_only and current is not None and not current.prompt_only):
                continue
            pending += max(1, len(dim.values) - 1) if not dim.ordered else 2
        return self.final_reserve + pending

    def ensure(self, point: Point, reserve: int) -> bool | None:
        """The status of ``point``, measured first when never measured and the budget allows."""
        status = self.lab.status(point)
        if status is None and self.lab.left > reserve:
            self.lab.run(point)
            status = self.lab.status(point)
        return status

    # -- GPU layers: the most that work -----------------------------------------------------------
    def edge(self, point: Point, reserve: int, *, down: bool = True) -> Point | None:
        """``point`` with the most GPU layers that work, its other settings kept (None: none works).

        ``down=False``: only at ``point``'s layer count or above (None if it does not work there) — a
        setting that needs fewer layers than the incumbent's cannot win on generation speed.
        """
        dim = self.memory_dim
        if dim is None:
            return point if self.ensure(point, reserve) else None
        steps = dim.steps
        current = point.get(dim.name)
        if current in steps:
            index = steps.index(current)
        else:
            index = min(range(len(steps)), key=lambda i: abs(steps[i] - current))
        last = len(steps) - 1

        def at(i: int) -> Point:
            return self.space.canonical(point.with_value(dim.name, steps[i]))

        def works(i: int) -> bool | None:
            return self.ensure(at(i), reserve)

        first = works(index)
        if first is None or (not first and not down):
            return None
        lo: int | None = index if first else None
        hi: int | None = None if first else index
        step = 1
        while lo is None:  # gallop down to something that works
            assert hi is not None
            if hi == 0:
                return None
            j = max(0, hi - step)
            ok = works(j)
            if ok is None:
                return None
            lo, hi = (j, hi) if ok else (None, j)
            step *= 2
        while hi is None and lo < last:  # gallop up until something fails
            j = min(last, lo + step)
            ok = works(j)
            if ok is None:
                return at(lo)
            lo, hi = (j, None) if ok else (lo, j)
            step *= 2
        while hi is not None and hi - lo > 1:  # bisect
            mid = (lo + hi) // 2
            ok = works(mid)
            if ok is None:
                break
            lo, hi = (mid, hi) if ok else (lo, mid)
        # "Everything" (with the output layer) may fit where one layer less does not: llama.cpp then no
        # longer copies a CPU layer into the compute buffer for prompts. Try it when it is that close.
        if last - 2 <= lo < last and self.lab.status(at(last)) is None and works(last):
            lo = last
        return at(lo)

    # -- racing -----------------------------------------------------------------------------------
    def judge(self, incumbent: Point, candidate: Point, value: Value) -> str:
        """``win``, ``lose`` or ``unsure`` for ``candidate`` against ``incumbent``."""
        if not self.lab.status(candidate):
            return "lose"
        gen = self.lab.compare(incumbent, candidate, log_gen)
        if gen is None:
            return "lose"
        if self.prefer(candidate, incumbent) or self.prior(candidate, incumbent):
            return "lose" if gen.verdict == "worse" else "win"
        if self.prefer(incumbent, candidate) or self.prior(incumbent, candidate):
            return "win" if gen.verdict == "better" else "lose"
        if gen.verdict == "worse":
            return "lose"
        if value is log_gen:
            verdict = gen.verdict
        else:
            prompt = self.lab.compare(incumbent, candidate, value)
            if prompt is None:
                return "lose"
            verdict = prompt.verdict
        if verdict == "better":
            return "win"
        if verdict == "worse":
            return "lose"
        # Not shown different: the lighter one wins (generation, first word, then memory), provided its
        # generation did not measure lower than the tie margin; the same verdict again otherwise.
        if self.lab.lighter(candidate, incumbent):
            prompt = self.lab.compare(incumbent, candidate, log_prompt_speed)
            if prompt is not None and prompt.verdict == "worse":
                return "lose"
            return "win" if gen.gain >= -TIE_MARGIN else "unsure"
        return "lose" if verdict == "tie" else "unsure"

    def race(self, incumbent: Point, candidates: list[Point], value: Value, dim: Dimension) -> Point:
        """The winner of ``candidates`` against ``incumbent``; ``incumbent`` when none is shown better."""
        fresh = [c for c in dict.fromkeys(candidates) if c != incumbent and (incumbent, c) not in self.judged]
        fresh = [c for c in fresh if not self.lost_by_far(incumbent, c, dim, value)]
        reserve = self.reserve(dim)
        for c in fresh:
            if self.lab.left > reserve:
                self.ensure(c, reserve)
        alive = [c for c in fresh if self.lab.status(c)]
        rounds = 1
        while True:
            if not self.lab.status(incumbent):
                break
            verdicts = {c: self.judge(incumbent, c, value) for c in alive}
            winners = [c for c, v in verdicts.items() if v == "win"]
            if winners:
                for c in fresh:
                    self.judged.add((incumbent, c))
                return max(winners, key=lambda c: (self.layers(c), self._gain(incumbent, c, value)))
            unsure = [c for c, v in verdicts.items() if v == "unsure"]
            if rounds >= FUTILE_AFTER:  # futility: measured again and still not ahead, it will not win in time
                unsure = [c for c in unsure if self._gain(incumbent, c, value) > 0]
            if dim.prompt_only and unsure:  # the first word matters less: only the most promising again
                unsure = [max(unsure, key=lambda c: self._gain(incumbent, c, value))]
            needed = len(unsure) + 1
            limit = MAX_PROMPT_ROUNDS if dim.prompt_only else MAX_ROUNDS
            if not unsure or rounds >= limit or self.lab.left - reserve < needed:
                self._keep_leads(incumbent, unsure, value, dim)
                break
            order = [incumbent, *unsure]
            if rounds % 2 == 1:
                order.reverse()  # A B C, then C B A: a drift during the round weighs on nobody
            for p in order:
                self.lab.run(p)
            alive = [c for c in unsure if self.lab.status(c)]
            rounds += 1
        for c in fresh:
            self.judged.add((incumbent, c))
        if not self.lab.status(incumbent):  # failed when measured again (the card filled up?)
            working = [c for c in fresh if self.lab.status(c)]
            if working:
                return max(working, key=lambda c: (self.layers(c), self._mean(c, value)))
        return incumbent

    def lost_by_far(self, incumbent: Point, candidate: Point, dim: Dimension, value: Value) -> bool:
        """``candidate``'s value of ``dim`` already lost to the incumbent's by more than :data:`FAR_BEHIND`,
        beyond the noise, with the same memory settings and others different: a gap that large is not
        undone by another setting, so it is not measured again."""
        if dim.memory_bound or dim.changes_memory:
            return False
        mine, theirs = incumbent.get(dim.name), candidate.get(dim.name)
        key = self.lab.memory_key(candidate)
        for p in list(self.lab.history):
            if p.get(dim.name) != theirs or self.lab.memory_key(p) != key or not self.lab.status(p):
                continue
            q = self.space.canonical(p.with_value(dim.name, mine))
            if q == p or q not in self.lab.history or not self.lab.status(q):
                continue
            comparison = self.lab.compare(q, p, value)
            if comparison is not None and comparison.verdict == "worse" and comparison.high < -FAR_BEHIND:
                return True
        return False

    def _keep_leads(self, incumbent: Point, unsure: list[Point], value: Value, dim: Dimension) -> None:
        """Remember the most promising undecided candidate of ``dim`` for a joint move (see ``pattern``)."""
        if dim.prompt_only or not unsure:
            return
        best = max(unsure, key=lambda c: self._gain(incumbent, c, value))
        gain = self._gain(incumbent, best, value)
        if gain > TIE_MARGIN:
            self.leads[dim.name] = (incumbent, best.get(dim.name), gain)

    def pattern(self, incumbent: Point) -> Point:
        """A joint move along every dimension whose best candidate looked ahead without being shown so.

        Two changes of 7 % each are lost in 15 % noise one at a time; together (+15 %) they can be seen.
        """
        leads = {name: v for name, (inc, v, _) in self.leads.items() if inc == incumbent}
        self.leads.clear()
        if len(leads) < 2:
            return incumbent
        joint = incumbent
        for name, v in leads.items():
            joint = joint.with_value(name, v)
        joint = self.space.canonical(joint)
        if joint == incumbent or not self.space.valid(joint):
            return incumbent
        if any(d.changes_memory for d in self.space.dims if d.name in leads) and self.memory_dim is not None:
            joint = self.edge(joint, self.final_reserve) or joint
        gen_dim = next(d for d in self.space.dims if d.name in leads)
        return self.race(incumbent, [joint], log_gen, gen_dim)

    def _gain(self, a: Point, b: Point, value: Value) -> float:
        comparison = self.lab.compare(a, b, value)
        return comparison.gain if comparison is not None else -math.inf

    def _mean(self, point: Point, value: Value) -> float:
        values = self.lab.series(point, value).values
        return sum(values) / len(values) if values else -math.inf

    # -- one dimension ------------------------------------------------------------------------------
    def visit(self, incumbent: Point, dim: Dimension) -> Point:
        value = log_prompt_speed if dim.prompt_only else log_gen
        if dim.memory_bound:
            reserve = self.reserve(dim)
            top = self.edge(incumbent, reserve)
            if top is None or top == incumbent:
                return incumbent if self.lab.status(incumbent) else (top or incumbent)
            if not self.lab.status(incumbent):
                return top
            return top if self.judge(incumbent, top, log_gen) == "win" else incumbent
        if dim.ordered:
            return self._climb(incumbent, dim, value)
        return self.race(incumbent, self._candidates(incumbent, dim), value, dim)

    def _candidates(self, point: Point, dim: Dimension) -> list[Point]:
        current = point.get(dim.name)
        out: list[Point] = []
        for v in dim.values:
            if v == current:
                continue
            c = self.space.canonical(point.with_value(dim.name, v))
            if not self.space.valid(c) or c == point:
                continue
            if dim.changes_memory and self.memory_dim is not None:
                found = self.edge(c, self.reserve(dim), down=False)
                if found is None:
                    continue  # does not fit where today's choice fits: fewer layers, slower
                c = found
            out.append(c)
        return out

    def _neighbour(self, point: Point, dim: Dimension, direction: int) -> Point | None:
        values = dim.values
        current = point.get(dim.name)
        if current not in values:
            return None
        j = values.index(current) + direction
        while 0 <= j < len(values):
            c = self.space.canonical(point.with_value(dim.name, values[j]))
            if self.space.valid(c) and c != point:
                if dim.changes_memory and self.memory_dim is not None:
                    return self.edge(c, self.reserve(dim), down=False)
                return c
            j += direction
        return None

    def _climb(self, incumbent: Point, dim: Dimension, value: Value) -> Point:
        neighbours = [n for n in (self._neighbour(incumbent, dim, d) for d in (1, -1)) if n is not None]
        winner = self.race(incumbent, neighbours, value, dim)
        if winner == incumbent:
            return incumbent
        direction = 1 if dim.values.index(winner.get(dim.name)) > dim.values.index(incumbent.get(dim.name)) else -1
        while True:
            nxt = self._neighbour(winner, dim, direction)
            if nxt is None:
                return winner
            challenger = self.race(winner, [nxt], value, dim)
            if challenger == winner:
                return winner
            winner = challenger

    def step_down(self, point: Point) -> Point | None:
        """``point`` turned out not to work (too full when measured again): the latest earlier choice of
        the search that still works, or ``point`` with fewer GPU layers if that keeps as much on the card."""
        earlier = next((p for p in reversed(self.path) if p != point and self.lab.status(p)), None)
        lower: Point | None = None
        if self.memory_dim is not None:
            steps = self.memory_dim.steps
            current = point.get(self.memory_dim.name)
            below = [v for v in steps if v < current]
            if below:
                probe = self.space.canonical(point.with_value(self.memory_dim.name, below[-1]))
                lower = self.edge(probe, 0)
                if lower is not None and not self.lab.status(lower):
                    lower = None
        # The same settings one layer lower keep every decision made since: preferred unless an
        # earlier choice puts more of the model on the card.
        if earlier is None or (lower is not None and self.layers(lower) >= self.layers(earlier)):
            return lower
        return earlier

    # -- when today's settings do not work -------------------------------------------------------
    def rescue(self, start: Point) -> Point | None:
        """A working point near ``start``: fewer GPU layers first, then other values of each setting."""
        if self.memory_dim is not None:
            found = self.edge(start, self.final_reserve)
            if found is not None and self.lab.status(found):
                return found
        for dim in self.space.dims:
            for c in self._candidates(start, dim) if not dim.memory_bound else []:
                if self.ensure(c, 0):
                    return c
        return None


def racing_search(
    space: SearchSpace,
    measure: Measure,
    *,
    cancel: threading.Event | None = None,
    on_step: StepCallback | None = None,
    on_trial: TrialCallback | None = None,
    budget: int | None = None,
    final_check: bool = True,
    seconds: float | None = None,
) -> SearchOutcome:
    """Search ``space`` from its start (see the module docstring). Raises BenchmarkCancelled.

    ``seconds``: a time limit (« Mesure rapide » keeps the duration it announced). No new comparison
    starts once the measurements made (their ``wall_s``) and what the final check keeps would pass it;
    the final check still measures each side once more.
    """
    started = time.monotonic()
    budget = budget if budget is not None else measurement_budget(space)
    memory_dims = tuple(d.name for d in space.dims if d.memory_bound or d.changes_memory)
    memory_dim = next((d for d in space.dims if d.memory_bound), None)
    if memory_dim is None:
        memory_dims = ()
    else:  # the layer count first: too_full() relies on it
        memory_dims = (memory_dim.name, *(n for n in memory_dims if n != memory_dim.name))
    lab = _Lab(measure, budget, cancel, on_step, on_trial, memory_dims, seconds)
    if memory_dim is not None:
        lab.layers_top = max(memory_dim.steps)
    search = _Search(space, lab)
    lab.estimate = lambda: min(budget, len(lab.trials) + min(search.reserve(), max(lab.left, search.final_reserve)))
    start = space.canonical(space.start)
    lab.run(start)
    incumbent: Point | None = start if lab.status(start) else search.rescue(start)
    if incumbent is not None:
        search.choose(incumbent)
        dims = visiting_order(space)
        quiet = 0
        position = 0
        while lab.left > search.final_reserve:
            if quiet >= len(dims):
                joint = search.pattern(incumbent)
                if joint == incumbent or not lab.status(joint):
                    break
                incumbent, quiet = joint, 0
                search.choose(incumbent)
            dim = dims[position % len(dims)]
            position += 1
            moved_to = search.visit(incumbent, dim)
            if dim in search.first_pass_left:
                search.first_pass_left.remove(dim)
            if moved_to != incumbent and lab.status(moved_to):
                incumbent = moved_to
                search.choose(incumbent)
                quiet = 1 if not dim.prompt_only else quiet + 1
            else:
                quiet += 1
            if not lab.status(incumbent):  # seen too full when measured again: step back
                incumbent = search.step_down(incumbent)
                if incumbent is None:
                    break
                search.choose(incumbent)
                quiet = 1
    outcome = SearchOutcome(RACING, start, lab.trials, budget=budget)
    _finish(outcome, search, start, incumbent, final_check)
    outcome.wall_s = time.monotonic() - started
    return outcome


def visiting_order(space: SearchSpace) -> tuple[Dimension, ...]:
    """Memory first (the layer count, then what moves it: cheap, nearly noise-free decisions that fix
    the share of the model on the card), then the other generation settings, prompt-only ones last."""
    memory = any(d.memory_bound for d in space.dims)

    def rank(d: Dimension) -> int:
        if d.memory_bound:
            return 0
        if memory and d.changes_memory:
            return 1
        return 3 if d.prompt_only else 2

    return tuple(sorted(space.dims, key=rank))


def _finish(outcome: SearchOutcome, search: _Search, start: Point, best: Point | None, final_check: bool) -> None:
    lab = search.lab
    start_works = bool(lab.status(start))
    if best is not None and best != start and start_works and final_check:
        for round_number in range(FINAL_ROUNDS):
            if lab.left < 2 and round_number > 0:
                break
            order = [start, best] if round_number % 2 == 0 else [best, start]
            for p in order:
                lab.run(p)
            if not lab.status(best) or not lab.status(start):
                break
            check = lab.compare(start, best, b_after=search.chosen_at.get(best, 0))
            # Stop on a clear answer; a « slower » that would undo the search is checked once more.
            verdict = check.verdict if check is not None else "unsure"
            if verdict in ("better", "tie") or (verdict == "worse" and round_number):
                break
        if not lab.status(best):
            outcome.control_failed = True
            lower = search.step_down(best)
            if lower is not None and lower != start and lab.status(lower) and lab.left >= 2:
                for p in (lower, start):
                    lab.run(p)
            best = lower if lower is not None and lab.status(lower) else (start if lab.status(start) else None)
    start_works = bool(lab.status(start))
    if best is not None and best != start and start_works:
        # The winner's measurements from before it won are flattered by the luck that made it win:
        # only the later ones (and all of today's settings) go into the verdict and the headline.
        since = search.chosen_at.get(best, 0)
        gen = lab.compare(start, best, log_gen, b_after=since)
        prompt = lab.compare(start, best, log_prompt_speed, b_after=since)
        outcome.final_check, outcome.prompt_check = gen, prompt
        if gen is not None and gen.verdict == "better":
            outcome.kept_because = KEPT_FASTER
        elif gen is not None and gen.verdict == "worse":
            best = start
        elif search.prefer(best, start):
            outcome.kept_because = KEPT_MORE_ON_GPU
        elif prompt is not None and prompt.verdict == "better":
            outcome.kept_because = KEPT_SOONER
        elif (lab.lighter(best, start) and gen is not None and gen.gain >= -TIE_MARGIN
              and (prompt is None or prompt.verdict != "worse")):
            outcome.kept_because = KEPT_LIGHTER
        else:
            best = start  # no measurable gain: today's settings stay
    elif best is not None and best != start:
        outcome.kept_because = KEPT_START_FAILED
    if best is not None and lab.status(best):
        outcome.best = lab.history[best][-1] if lab.history[best][-1].measurement.stable else next(
            t for t in reversed(lab.history[best]) if t.measurement.stable
        )
        outcome.best_measurement = lab.pooled(best)
    outcome.start_measurement = lab.pooled(start) or lab.history[start][0].measurement
    outcome.drift = _drift(lab, start, best)
    gen_sigma, ttft_sigma = lab.sigma(log_gen), lab.sigma(log_prompt_speed)
    outcome.thresholds = Thresholds(
        gen=max(MIN_GAIN, math.exp(gen_sigma) - 1), ttft=max(MIN_TTFT_GAIN, math.exp(ttft_sigma) - 1)
    )


def _drift(lab: _Lab, start: Point, best: Point | None) -> float | None:
    """Relative change between the first and the last measurement of today's settings (else the winner)."""
    for point in (start, best):
        if point is None:
            continue
        speeds = [t.measurement.gen_tps for t in lab.history.get(point, ()) if t.measurement.stable]
        first, last = (speeds[0], speeds[-1]) if len(speeds) >= 2 else (None, None)
        if first and last is not None:
            return last / first - 1
    return None


def estimate_racing_trials(space: SearchSpace) -> int:
    """Measurements the racing search is expected to spend before it starts (within its budget)."""
    expected = 1 + FINAL_RESERVE // 2
    memory = any(d.memory_bound for d in space.dims)
    for dim in space.dims:
        if dim.memory_bound:
            expected += 3
        else:
            candidates = 2 if dim.ordered else max(1, len(dim.values) - 1)
            expected += candidates * (2 if dim.changes_memory and memory else 1)
    return min(measurement_budget(space), expected + expected // 3)

