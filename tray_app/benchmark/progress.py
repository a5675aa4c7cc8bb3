"""Progress of a benchmark, as one frozen object per event, with an estimate of the time left.

The search calls :class:`ProgressTracker` before and after each configuration, the measurer for each
sub-step; the tracker turns that into :class:`BenchProgress` objects for one callback (the wizard's
worker thread re-emits them as a Qt signal; the CLI prints them). The time left is the mean duration
of the configurations measured so far times the configurations still expected (the search revises its
estimate as it goes); before the first one ends, the a-priori estimate per configuration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tray_app.benchmark.search import Trial
from tray_app.benchmark.space import Point


@dataclass(frozen=True)
class BenchProgress:
    """One progress event. ``step`` is the configuration being measured (1-based), ``total`` an estimate."""

    step: int
    total: int
    elapsed_s: float
    seconds_left: float | None
    detail_fr: str  # the current sub-step: « Chargement du modèle », « Mesure 2 sur 3 »…
    point: Point | None  # the configuration being measured
    last: Trial | None  # the configuration measured last (None before the first one ends)
    trials: tuple[Trial, ...]  # every configuration measured so far, in order
    finished: bool = False
    control: bool = False  # the configuration being measured is the winner, measured again

    @property
    def fraction(self) -> float:
        """0…1 for a progress bar: finished configurations over the expected total."""
        if self.finished:
            return 1.0
        return min(0.99, len(self.trials) / self.total) if self.total else 0.0


ProgressCallback = Callable[[BenchProgress], None]


class ProgressTracker:
    """Collects search events into :class:`BenchProgress` objects (thread-safe, callback outside lock)."""

    def __init__(self, callback: ProgressCallback | None, *, seconds_per_trial_guess: float) -> None:
        self._callback = callback
        self._guess = seconds_per_trial_guess
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._step = 0
        self._total = 1
        self._point: Point | None = None
        self._trial_started = self._started
        self._trials: list[Trial] = []
        self._detail = ""
        self._control = False

    # -- search callbacks -------------------------------------------------------------------------
    def on_step(self, step: int, total: int, point: Point, control: bool = False) -> None:
        with self._lock:
            self._step, self._total, self._point, self._control = step, total, point, control
            self._trial_started = time.monotonic()
            self._detail = ""
        self._emit()

    def on_trial(self, trial: Trial, total: int) -> None:
        with self._lock:
            self._trials.append(trial)
            self._total = total
        self._emit()

    def on_detail(self, text_fr: str) -> None:
        with self._lock:
            self._detail = text_fr
        self._emit()

    def finish(self) -> None:
        self._emit(finished=True)

    @property
    def trials(self) -> tuple[Trial, ...]:
        with self._lock:
            return tuple(self._trials)

    # -- estimate ---------------------------------------------------------------------------------
    def seconds_per_trial(self) -> float:
        walls = [t.measurement.wall_s for t in self._trials if t.measurement.wall_s > 0]
        return sum(walls) / len(walls) if walls else self._guess

    def _emit(self, finished: bool = False) -> None:
        if self._callback is None:
            return
        with self._lock:
            now = time.monotonic()
            per = self.seconds_per_trial()
            done = len(self._trials)
            in_current = now - self._trial_started if self._step > done else 0.0
            remaining = max(0, self._total - done)
            left = max(0.0, (remaining - 1) * per, remaining * per - in_current) if not finished else 0.0
            event = BenchProgress(
                step=self._step,
                total=max(self._total, self._step),
                elapsed_s=now - self._started,
                seconds_left=left,
                detail_fr=self._detail,
                point=self._point,
                last=self._trials[-1] if self._trials else None,
                trials=tuple(self._trials),
                finished=finished,
                control=self._control,
            )
        self._callback(event)
