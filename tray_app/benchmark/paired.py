"""Comparing two configurations on a noisy machine: interleaved measurements, a noise estimate, a verdict.

On a laptop that renders an avatar, runs a browser and heats up, the same configuration measures 10-45 %
apart from one minute to the next (seen on our 2-core test machine). One measurement of each candidate
cannot tell a 5 % gain from luck, and measuring A for a while and then B for a while mixes the
difference with the drift (heat, another program starting). So two candidates are compared from
*interleaved* measurements (A B A B…), on the logarithm of the speed (a ratio becomes a difference):

* every measurement of B is set against A *at the same moment*, A interpolated linearly between its
  measurements just before and just after (and the other way round), so a slow drift cancels out;
* the noise of one measurement (σ, log scale) is estimated from the configurations measured more than
  once, with successive differences (a slow drift does not inflate them), pooled with a prior — between
  two runner processes from measurements by two processes only (``across_runners``);
* two configurations measured in turn by *one* runner process (only the thread counts differ: the
  measurer changes them in place) are compared from that process alone when it gives the narrower
  interval, with the noise between two measurements of one process: the process's own luck cancels;
* the difference comes with its standard error, from the exact weights of each measurement in the
  estimate; a verdict (``better`` / ``worse``) is given only when the interval (± :data:`Z` standard
  errors) excludes no change, and ``tie`` when it shows the two within :data:`TIE_MARGIN` of each other;
  never from a single measurement of either side (:data:`MIN_PAIRS`): a search makes dozens of
  comparisons, and one runner process 25 % luckier than another is then bound to happen.

Everything here is pure arithmetic on measurement histories: the search
(:mod:`tray_app.benchmark.racing_search`) decides what to measure next.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tray_app.benchmark.measurement import Measurement

Z = 2.0  # standard errors for a verdict (about 97.5 % one-sided under normal noise)
MIN_PAIRS = 2  # no verdict from one measurement of either side: one lucky runner process is no proof
TIE_MARGIN = 0.03  # two configurations shown within ±3 % of each other are a tie
PRIOR_SIGMA = 0.10  # log-speed noise of one measurement assumed before any repeat (between two processes)
PRIOR_WEIGHT = 2.0  # how many degrees of freedom the prior counts for
PRIOR_FLOOR = 0.04  # the prior from the requests' spread is never below this
SIGMA_FLOOR = 0.02  # two runner processes of the same configuration never agree better than this
SIGMA_CEILING = 0.60


def log_gen(m: Measurement) -> float | None:
    """The mean of log(generated tokens/s) over a stable measurement's requests, None otherwise.

    The mean, not the median the reports show: of three requests, the median throws away a third of
    what they tell (its variance is π/2 times the mean's), and one request slowed by another program
    moves the successive differences too, so :func:`noise_sigma` widens with it."""
    g = [x for x in m.gen_samples if x > 0]
    return statistics.fmean(math.log(x) for x in g) if m.stable and g else None


def log_prompt_speed(m: Measurement) -> float | None:
    """log(1 / time to first token): higher is better, like a speed. None when not measured."""
    t = m.ttft_s
    return -math.log(t) if m.stable and t and t > 0 else None


@dataclass(frozen=True)
class Series:
    """The measurements of one configuration: when (the measurement's order number), the log value, and
    which runner process measured it (None: unknown)."""

    times: tuple[float, ...]
    values: tuple[float, ...]
    runners: tuple[int | None, ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]]) -> Series:
        ordered = sorted(pairs)
        return cls(tuple(t for t, _ in ordered), tuple(v for _, v in ordered))

    def __len__(self) -> int:
        return len(self.values)

    def runner_ids(self) -> set[int]:
        return {r for r in self.runners if r is not None}  # (runners: empty when unknown)

    def in_runner(self, runner: int) -> Series:
        """Only the measurements made by ``runner``."""
        kept = [i for i, r in enumerate(self.runners) if r == runner]
        return Series(tuple(self.times[i] for i in kept), tuple(self.values[i] for i in kept), (runner,) * len(kept))

    def weights_at(self, t: float) -> list[tuple[int, float]]:
        """The series at time ``t`` as (index, weight) pairs: linear between neighbours, flat outside."""
        times = self.times
        if t <= times[0]:
            return [(0, 1.0)]
        if t >= times[-1]:
            return [(len(times) - 1, 1.0)]
        for j in range(len(times) - 1):
            t0, t1 = times[j], times[j + 1]
            if t0 <= t <= t1:
                if t1 == t0:
                    return [(j, 1.0)]
                w = (t - t0) / (t1 - t0)
                return [(j, 1.0 - w), (j + 1, w)]
        return [(len(times) - 1, 1.0)]  # unreachable: times are sorted


@dataclass(frozen=True)
class Difference:
    """``b − a`` on the log scale, and the factor k with Var = σ² · k (exact for independent noise)."""

    value: float
    variance_factor: float
    pairs: int


def interleaved_difference(a: Series, b: Series) -> Difference | None:
    """Mean of (b − a interpolated at b's time) and of (b interpolated − a) at a's times, averaged.

    Each half uses the measurements that have one of the other configuration before and after them
    (interpolation, exact under a linear drift), or all of them when none has (the nearest then
    stands for the other). Written as one weighted sum of every measurement, so its variance factor is
    the sum of the squared weights. None when one side has no measurement.
    """
    if not len(a) or not len(b):
        return None
    coef = {"a": [0.0] * len(a), "b": [0.0] * len(b)}

    def half(mine: Series, name: str, other: Series, other_name: str, sign: float) -> None:
        inside = [i for i, t in enumerate(mine.times) if other.times[0] <= t <= other.times[-1]]
        used = inside or list(range(len(mine)))
        for i in used:
            coef[name][i] += sign * 0.5 / len(used)
            for j, w in other.weights_at(mine.times[i]):
                coef[other_name][j] -= sign * 0.5 * w / len(used)

    half(b, "b", a, "a", 1.0)  # each b against a at that moment
    half(a, "a", b, "b", -1.0)  # each a against b at that moment
    value = sum(c * v for c, v in zip(coef["a"], a.values)) + sum(c * v for c, v in zip(coef["b"], b.values))
    factor = sum(c * c for c in coef["a"]) + sum(c * c for c in coef["b"])
    return Difference(value, factor, min(len(a), len(b)))


def within_runner_difference(a: Series, b: Series) -> Difference | None:
    """``b − a`` from the runner processes that measured both, and only from them: each process's
    interleaved difference, weighted by its precision. What one process shows is free of the luck of
    the process itself (where its memory landed, what else ran then). None when no process measured both.
    """
    parts = [
        d for r in sorted(a.runner_ids() & b.runner_ids())
        if (d := interleaved_difference(a.in_runner(r), b.in_runner(r))) is not None
    ]
    if not parts:
        return None
    weights = [1.0 / d.variance_factor for d in parts]
    total = sum(weights)
    value = sum(w * d.value for w, d in zip(weights, parts)) / total
    return Difference(value, 1.0 / total, sum(d.pairs for d in parts))


def noise_sigma(
    series: Iterable[Series],
    *,
    prior: float = PRIOR_SIGMA,
    prior_weight: float = PRIOR_WEIGHT,
    across_runners: bool = False,
) -> float:
    """σ of one measurement (log scale), from configurations measured more than once, pooled with a prior.

    Successive differences (mean squared successive difference / 2): a slow drift between two
    measurements of the same configuration barely adds to them, a sudden change does.
    ``across_runners``: only two successive measurements made by different runner processes count (or
    by unknown ones): two of one process share its luck, and tell the noise inside a process only.
    """
    squares, dof = 0.0, 0.0
    for s in series:
        values = s.values
        runners = s.runners or (None,) * len(values)
        for i in range(len(values) - 1):
            if across_runners and runners[i] is not None and runners[i] == runners[i + 1]:
                continue
            squares += (values[i + 1] - values[i]) ** 2 / 2
            dof += 1
    variance = (prior_weight * prior**2 + squares) / (prior_weight + dof)
    return min(SIGMA_CEILING, max(SIGMA_FLOOR, math.sqrt(variance)))


def prior_from_requests(measurements: Iterable[Measurement]) -> float:
    """A first guess of σ before any repeat, from the spread of the requests inside each runner.

    Two processes of the same configuration differ more than two requests of one process (they add
    the process's own luck: where its memory landed, what else ran), taken here as √2 times more
    (*assumption*, corrected as soon as configurations are measured again); never below
    :data:`PRIOR_FLOOR`. Without any spread to go on: :data:`PRIOR_SIGMA`.
    """
    spreads = []
    for m in measurements:
        g = [x for x in m.gen_samples if x > 0]
        if m.stable and len(g) >= 2:
            spreads.append(statistics.stdev(math.log(x) for x in g))
    return max(PRIOR_FLOOR, math.sqrt(2) * statistics.median(spreads)) if spreads else PRIOR_SIGMA


def within_runner_sigma(series: Iterable[Series], *, prior: float) -> float:
    """σ of one measurement against another *in the same runner process*: successive differences of the
    configurations measured more than once by one process, pooled with ``prior``."""
    groups = [s.in_runner(r) for s in series for r in sorted(s.runner_ids())]
    return noise_sigma(groups, prior=prior)


def within_prior_from_requests(measurements: Iterable[Measurement]) -> float | None:
    """A first guess of :func:`within_runner_sigma`: the spread of the requests inside each measurement,
    pooled, divided by √(requests) (:func:`log_gen` is their mean). None without a measurement of two
    requests or more."""
    variances, counts = [], []
    for m in measurements:
        g = [x for x in m.gen_samples if x > 0]
        if m.stable and len(g) >= 2:
            variances.append(statistics.variance(math.log(x) for x in g))
            counts.append(len(g))
    if not variances:
        return None
    pooled = statistics.fmean(variances)  # unbiased, where the median of a few spreads is not
    return max(SIGMA_FLOOR, math.sqrt(pooled / statistics.median(counts)))


@dataclass(frozen=True)
class Comparison:
    """How much faster ``b`` is than ``a``: the estimate and its interval (relative, 0.12 = 12 % faster)."""

    gain: float
    low: float
    high: float
    pairs: int  # measurements of the less measured of the two
    sigma: float  # the noise of one measurement it was computed with (log scale)
    one_runner: bool = False  # computed from what runner processes measured of both (their luck cancels)

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` beyond the noise, ``tie`` (shown within the margin), else ``unsure``."""
        if self.pairs < MIN_PAIRS and not self.one_runner:
            return "unsure"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        if self.low > -TIE_MARGIN and self.high < TIE_MARGIN:
            return "tie"
        return "unsure"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float | int | str | bool]:
        return {"gain": self.gain, "low": self.low, "high": self.high, "pairs": self.pairs,
                "sigma": self.sigma, "one_runner": self.one_runner, "verdict": self.verdict}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls(float(data["gain"]), float(data["low"]), float(data["high"]), int(data["pairs"]),
                   float(data["sigma"]), bool(data.get("one_runner", False)))


def compare(a: Series, b: Series, sigma: float, *, z: float = Z, within: float | None = None) -> Comparison | None:
    """``b`` against ``a`` (see the module docstring); None when either was never measured.

    ``within``: σ of one measurement against another of the same runner process. When given, and the
    processes that measured both give the narrower interval, the estimate comes from them alone.
    """
    d = interleaved_difference(a, b)
    if d is None:
        return None
    se = sigma * math.sqrt(d.variance_factor)
    one_runner = False
    if within is not None:
        shared = within_runner_difference(a, b)
        if shared is not None and within * math.sqrt(shared.variance_factor) < se:
            d, sigma, one_runner = shared, within, True
            se = sigma * math.sqrt(d.variance_factor)
    return Comparison(
        gain=math.exp(d.value) - 1,
        low=math.exp(d.value - z * se) - 1,
        high=math.exp(d.value + z * se) - 1,
        pairs=d.pairs,
        sigma=sigma,
        one_runner=one_runner,
    )


def series_of(
    trials: Sequence[tuple[float, Measurement]], value: Callable[[Measurement], float | None] = log_gen
) -> Series:
    """The :class:`Series` of (time, measurement) pairs, unstable measurements left out."""
    points = sorted((t, v, m.runner) for t, m in trials if (v := value(m)) is not None)
    return Series(tuple(t for t, _, _ in points), tuple(v for _, v, _ in points), tuple(r for _, _, r in points))
