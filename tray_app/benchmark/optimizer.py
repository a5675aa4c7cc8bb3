"""The engine behind « Optimiser » and ``bench``: detect, search, measure, and say what was found.

:class:`Optimizer` is what the wizard's worker thread and the CLI call; anything with the same three
methods (:class:`OptimizationEngine`) can stand in for it (the wizard's tests use a fake one).

Typical use, off the UI thread::

    engine = Optimizer(model_path, settings)
    summary = engine.detect()                      # page 2 of the wizard
    result = engine.run(quick=True, on_progress=print, cancel=threading.Event())
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from tray_app.benchmark.engine import BenchmarkError, RunnerMeasurer
from tray_app.benchmark.machine import MachineSummary, detect_machine
from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.paired import Comparison, compare, noise_sigma, prior_from_requests, series_of
from tray_app.benchmark.progress import ProgressCallback, ProgressTracker
from tray_app.benchmark.racing_search import KEPT_START_FAILED, RACING, estimate_racing_trials, racing_search
from tray_app.benchmark.report_fr import headline_kind, notes_fr
from tray_app.benchmark.result import OptimizationResult, words_per_token
from tray_app.benchmark.search import SearchOutcome, coordinate_search, estimate_trials, grid_search
from tray_app.benchmark.space import Point, SearchSpace, affinity_for, build_space, config_for
from tray_app.benchmark.workload import NORMAL, QUICK, Workload
from tray_app.hardware.gpu import NvmlReader
from tray_app.paths import app_paths

log = logging.getLogger(__name__)

COORDINATE = "coordinate"  # the previous search: one measurement per configuration (kept to compare)
GRID = "grid"
DEFAULT_STRATEGY = RACING
BENCH_RUNNER_LOG = "bench-runner.log"


class OptimizationEngine(Protocol):
    """What the wizard needs from an engine (the real one is :class:`Optimizer`)."""

    def detect(self) -> MachineSummary: ...

    def estimate_seconds(self, *, quick: bool) -> float: ...

    def run(
        self, *, quick: bool, on_progress: ProgressCallback | None, cancel: threading.Event
    ) -> OptimizationResult: ...


HOPELESS_FRACTION = 0.5
QUICK_TIME_MARGIN = 1.2  # « Mesure rapide » takes at most this much more than the duration it announced
KEPT_FR = (
    "Le meilleur essai, mesuré de nouveau en alternance avec vos réglages actuels, n'était pas "
    "nettement plus rapide : vos réglages actuels sont gardés."
)


def _half_of_fastest(tracker: ProgressTracker) -> float | None:
    """Half the fastest generation measured so far: a configuration below it is not measured further."""
    speeds = [t.measurement.gen_tps for t in tracker.trials if t.measurement.stable and t.measurement.gen_tps]
    return max(speeds) * HOPELESS_FRACTION if speeds else None


MIN_REQUEST_LIMIT_S = 15.0
REQUEST_LIMIT_FACTOR = 4.0


def _request_limit(tracker: ProgressTracker, workload: Workload) -> float | None:
    """Time one request may take: 4 × a request of the fastest configuration so far, at least 15 s."""
    stable = [t.measurement for t in tracker.trials if t.measurement.stable and t.measurement.gen_tps]
    if not stable:
        return None
    # The shortest first token and the fastest generation seen (not one configuration's: on a busy
    # machine one of them may be far off, and the limit must stay tight).
    first_token = min(m.ttft_s for m in stable if m.ttft_s is not None) if any(m.ttft_s for m in stable) else 0.0
    request_s = first_token + workload.max_tokens / max(m.gen_tps or 1.0 for m in stable)
    return max(MIN_REQUEST_LIMIT_S, REQUEST_LIMIT_FACTOR * request_s)


class Optimizer:
    """Detects the machine once, then runs searches (coordinate descent, or the grid for ``bench``)."""

    def __init__(
        self,
        model_path: Path,
        settings: Any,
        *,
        nvml: NvmlReader | None = None,
        log_file: Path | None = None,
        load_timeout_s: float = 300.0,
        workloads: tuple[Workload, Workload] = (QUICK, NORMAL),
    ) -> None:
        self.model_path = Path(model_path)
        self.settings = settings
        self._nvml = nvml
        self.log_file = log_file or app_paths().log_dir / BENCH_RUNNER_LOG
        self.load_timeout_s = load_timeout_s
        self.workloads = workloads
        self._summary: MachineSummary | None = None

    def detect(self) -> MachineSummary:
        """The machine, the model and today's configuration (cached). Raises ``ModelChoiceError``."""
        if self._summary is None:
            self._summary = detect_machine(self.model_path, self.settings, nvml=self._nvml)
        return self._summary

    def space(self) -> SearchSpace:
        s = self.detect()
        return build_space(
            s.base_config, s.cpu, n_layers=s.n_layers, gpu_usable=s.gpu_usable, quantized_kv_ok=s.quantized_kv_ok
        )

    def workload(self, quick: bool) -> Workload:
        return self.workloads[0] if quick else self.workloads[1]

    # -- estimates --------------------------------------------------------------------------------
    def seconds_per_trial_guess(self, quick: bool) -> float:
        """A-priori duration of one configuration, from the model's size and where it runs."""
        s = self.detect()
        w = self.workload(quick)
        size = max(1, s.model_size)
        threads = max(1, s.base_config.n_threads)
        if s.gpu_usable:  # generation reads every weight once per token: memory bandwidth / size
            gen, prompt = 150e9 / size, 4500e9 / size
        else:  # about 8 GB/s per thread, up to a laptop's 40 GB/s (SmolLM2 on one EPYC core: 85 tok/s)
            gen = min(8e9 * threads, 40e9) / size
            prompt = gen * (1 + 1.2 * threads)
        start_stop = 2.0 + size / 1.0e9  # process start, model load, stop
        prompt_tokens = 320
        readings = 1 if w.prompt_once else w.repetitions
        return start_stop + 0.5 + readings * prompt_tokens / prompt + w.repetitions * w.max_tokens / gen

    def estimate_seconds(self, *, quick: bool, strategy: str = DEFAULT_STRATEGY) -> float:
        space = self.space()
        trials = estimate_racing_trials(space) if strategy == RACING else estimate_trials(space, strategy)
        return trials * self.seconds_per_trial_guess(quick)

    def time_limit_s(self, *, quick: bool, strategy: str = DEFAULT_STRATEGY) -> float | None:
        """« Mesure rapide » keeps (within :data:`QUICK_TIME_MARGIN`) the duration it announced: on a
        machine slower than expected it compares fewer settings. The precise run and the grid: no limit."""
        if not quick or strategy != RACING:
            return None
        return QUICK_TIME_MARGIN * self.estimate_seconds(quick=True, strategy=RACING)

    # -- running ----------------------------------------------------------------------------------
    def run(
        self,
        *,
        quick: bool,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        strategy: str = DEFAULT_STRATEGY,
    ) -> OptimizationResult:
        """Search and measure. Raises BenchmarkCancelled (runner stopped) or BenchmarkError (French)."""
        cancel = cancel or threading.Event()
        summary = self.detect()
        space = self.space()
        tracker = ProgressTracker(on_progress, seconds_per_trial_guess=self.seconds_per_trial_guess(quick))
        nvml = self._nvml if self._nvml is not None else (NvmlReader() if summary.gpu is not None else None)
        measurer = RunnerMeasurer(
            summary.base_config,
            self.workload(quick),
            cpu=summary.cpu,
            n_layers=summary.n_layers,
            cancel=cancel,
            nvml=nvml,
            vram_limit=summary.vram_limit,
            log_file=self.log_file,
            load_timeout_s=self.load_timeout_s,
            on_detail=tracker.on_detail,
            hopeless_below=lambda: _half_of_fastest(tracker),
            request_limit=lambda: _request_limit(tracker, self.workload(quick)),
        )
        search = {GRID: grid_search, COORDINATE: coordinate_search}.get(strategy) or functools.partial(
            racing_search, seconds=self.time_limit_s(quick=quick)
        )
        log.info("benchmark (%s, quick=%s) of %s from %s", strategy, quick, summary.model_path, space.start)
        try:
            outcome = search(space, measurer, cancel=cancel, on_step=tracker.on_step, on_trial=tracker.on_trial)
        finally:
            measurer.close()  # the runner kept from the last measurement
            if nvml is not None and self._nvml is None:
                nvml.close()
        tracker.finish()
        return self._result(summary, outcome, strategy, quick)

    def head_to_head(
        self, a: Point, b: Point, *, quick: bool, rounds: int = 2, cancel: threading.Event | None = None
    ) -> tuple[Measurement, Measurement, Comparison | None]:
        """Measure ``a`` and ``b`` alternately (a b, b a, a b…); runs pooled. Each measurement is in its own
        runner, or in the previous one when only thread counts differ (see :mod:`tray_app.benchmark.engine`).

        For checking a claim without the winner's curse: the best of many noisy measurements is
        flattered by its noise, two configurations measured side by side are not. The comparison is
        ``b`` against ``a`` (paired in time, :mod:`tray_app.benchmark.paired`), with its interval.
        """
        s = self.detect()
        measurer = RunnerMeasurer(
            s.base_config, self.workload(quick), cpu=s.cpu, n_layers=s.n_layers, cancel=cancel,
            log_file=self.log_file, load_timeout_s=self.load_timeout_s,
        )
        runs: dict[int, list[tuple[float, Measurement]]] = {0: [], 1: []}
        step = 0
        try:
            for r in range(rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    step += 1
                    runs[i].append((step, measurer((a, b)[i])))
        finally:
            measurer.close()  # the runner kept from the last measurement
        pooled = []
        for i in (0, 1):
            stable = [m for _, m in runs[i] if m.stable]
            m0 = stable[0] if stable else runs[i][0][1]
            for m in stable[1:]:
                m0 = m0.pooled_with(m)
            pooled.append(m0)
        series = [series_of(runs[i]) for i in (0, 1)]
        sigma = noise_sigma(series, prior=prior_from_requests(m for i in (0, 1) for _, m in runs[i]))
        return pooled[0], pooled[1], compare(series[0], series[1], sigma)

    def _result(self, s: MachineSummary, outcome: SearchOutcome, strategy: str, quick: bool) -> OptimizationResult:
        if outcome.best is None or outcome.best_measurement is None or outcome.start_measurement is None:
            first = outcome.trials[0].measurement if outcome.trials else None
            why = first.failure_fr if first is not None and first.failure_fr else ""
            raise BenchmarkError(
                "Aucun réglage n'a permis au modèle de fonctionner sur cet ordinateur. "
                + (why + " " if why else "")
                + "Essayez un modèle plus petit, ou fermez des programmes puis relancez « Optimiser ».",
                detail=f"no stable configuration among {len(outcome.trials)}",
            )
        if outcome.strategy == RACING:
            return self._racing_result(s, outcome, quick)
        best_point = outcome.best.point
        start_measurement = outcome.start_measurement
        if best_point == outcome.start or not start_measurement.stable:
            # Today's settings won (compare like with like: both runs pooled), or they crashed.
            start_measurement = outcome.best_measurement
        reference = start_measurement if start_measurement.text else outcome.best_measurement
        result = _measured_result(
            s, outcome, strategy, quick, best_point, start_measurement, reference,
            notes_fr(outcome.trials, drift=outcome.drift, control_failed=outcome.control_failed),
            start_failed=not outcome.start_measurement.stable,
        )
        gain = result.gen_gain
        slower = gain is not None and gain < -result.thresholds.gen / 2
        if not result.start_failed and result.improved and (slower or headline_kind(result) == "small"):
            # Measured again beside today's settings, the winner is not clearly better (or generates
            # more slowly, whatever its first word): keep what works today.
            log.info("winner %s not clearly better once measured again: keeping the start", best_point)
            result = replace(
                result,
                best_point=outcome.start,
                best_config=config_for(s.base_config, outcome.start, n_layers=s.n_layers),
                best_affinity=affinity_for(outcome.start, s.cpu),
                after=result.before,
                notes_fr=result.notes_fr + (KEPT_FR,),
            )
        log.info(
            "benchmark done in %.1f s: %d configurations, best %s (%.1f tok/s, before %.1f)",
            result.wall_s, len(result.trials), best_point, result.after.gen_tps or 0, result.before.gen_tps or 0,
        )
        return result

    def _racing_result(self, s: MachineSummary, outcome: SearchOutcome, quick: bool) -> OptimizationResult:
        """The racing search already decided, from its interleaved final check, whether the winner stays."""
        assert outcome.best is not None and outcome.best_measurement is not None  # checked by _result
        best_point = outcome.best.point
        start_failed = outcome.kept_because == KEPT_START_FAILED or not (
            outcome.start_measurement is not None and outcome.start_measurement.stable
        )
        before = outcome.best_measurement if best_point == outcome.start or start_failed else outcome.start_measurement
        assert before is not None
        reference = before if before.text else outcome.best_measurement
        notes = notes_fr(outcome.trials, drift=outcome.drift, control_failed=outcome.control_failed)
        if best_point == outcome.start and outcome.final_check is not None:
            notes += (KEPT_FR,)  # a winner was found, then not shown faster beside today's settings
        result = _measured_result(
            s, outcome, RACING, quick, best_point, before, reference, notes,
            start_failed=start_failed,
            final_check=outcome.final_check,
            prompt_check=outcome.prompt_check,
            kept_because=outcome.kept_because,
        )
        log.info(
            "benchmark done in %.1f s: %d measurements, best %s (%s; check %s)",
            result.wall_s, len(result.trials), best_point, outcome.kept_because or "today's settings kept",
            outcome.final_check.to_dict() if outcome.final_check is not None else None,
        )
        return result


def _measured_result(
    s: MachineSummary,
    outcome: SearchOutcome,
    strategy: str,
    quick: bool,
    best_point: Point,
    before: Measurement,
    reference: Measurement,
    notes: tuple[str, ...],
    **decided: Any,
) -> OptimizationResult:
    """The result both strategies share: this machine, the winner's configuration and figures against
    ``before``; ``decided``: what only one strategy sets (start_failed, the racing search's checks)."""
    assert outcome.best_measurement is not None  # checked by Optimizer._result
    return OptimizationResult(
        strategy=strategy,
        quick=quick,
        identity=s.identity,
        model_name=s.model_name,
        n_layers=s.n_layers,
        start_point=outcome.start,
        best_point=best_point,
        base_config=s.base_config,
        best_config=config_for(s.base_config, best_point, n_layers=s.n_layers),
        best_affinity=affinity_for(best_point, s.cpu),
        before=before,
        after=outcome.best_measurement,
        trials=tuple(outcome.trials),
        thresholds=outcome.thresholds,
        drift=outcome.drift,
        wall_s=outcome.wall_s,
        words_per_token=words_per_token(reference.text, reference.generated_tokens),
        notes_fr=notes,
        free_vram=s.gpu.memory_free if s.gpu is not None else None,
        **decided,
    )
