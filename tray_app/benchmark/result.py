"""The outcome of « Optimiser »: before, after, every configuration tried, notes, the machine's identity.

Frozen and JSON-friendly: the wizard's result page, ``bench --json`` and the results file read the same.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from tray_app.benchmark.identity import MachineIdentity
from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.objective import Thresholds
from tray_app.benchmark.paired import Comparison
from tray_app.benchmark.search import Trial
from tray_app.benchmark.space import Point
from tray_app.planning.runner_config import RunnerConfig

DEFAULT_WORDS_PER_TOKEN = 0.65  # French with an English-centred tokenizer: about 1.5 tokens a word
_WORD = re.compile(r"\w+", re.UNICODE)


def words_per_token(text: str, tokens: int) -> float:
    """Words per generated token, from a real answer; the default when it cannot be measured."""
    if tokens <= 0 or not text.strip():
        return DEFAULT_WORDS_PER_TOKEN
    ratio = len(_WORD.findall(text)) / tokens
    return ratio if 0.3 <= ratio <= 1.0 else DEFAULT_WORDS_PER_TOKEN


@dataclass(frozen=True)
class OptimizationResult:
    strategy: str  # "coordinate" or "grid"
    quick: bool
    identity: MachineIdentity
    model_name: str
    n_layers: int
    start_point: Point
    best_point: Point
    base_config: RunnerConfig  # what the program used before
    best_config: RunnerConfig  # what « Appliquer » saves
    best_affinity: tuple[int, ...]  # logical CPUs the runner is pinned to, () for none
    before: Measurement  # the start configuration
    after: Measurement  # the winner (its runs pooled with the control run)
    trials: tuple[Trial, ...]
    thresholds: Thresholds
    drift: float | None
    wall_s: float
    words_per_token: float
    notes_fr: tuple[str, ...] = ()
    free_vram: int | None = None  # free graphics memory when measured (the GPU-layers choice depends on it)
    start_failed: bool = False  # today's settings crashed: ``before`` is then the winner's figures
    finished_at: float = field(default_factory=time.time)
    # The racing search's final check (winner and today's settings measured alternately): the gain in
    # generation speed and in first-word delay with their intervals, and why the winner was kept
    # ("faster", "sooner", "more_on_gpu", "lighter", "start_failed"; "" when today's settings stay).
    final_check: Comparison | None = None
    prompt_check: Comparison | None = None
    kept_because: str = ""

    @property
    def improved(self) -> bool:
        return self.best_point != self.start_point

    @property
    def gen_gain(self) -> float | None:
        """Relative generation-speed gain, after vs before (0.23 = 23 % faster)."""
        a, b = self.after.gen_tps, self.before.gen_tps
        return a / b - 1 if a and b else None

    @property
    def ttft_gain(self) -> float | None:
        """Relative time-to-first-token gain (0.3 = the first word comes 30 % sooner)."""
        a, b = self.after.ttft_s, self.before.ttft_s
        return 1 - a / b if a and b else None

    def words_per_second(self, tokens_per_s: float | None) -> float | None:
        return tokens_per_s * self.words_per_token if tokens_per_s else None

    @property
    def unstable_trials(self) -> list[Trial]:
        return [t for t in self.trials if not t.measurement.stable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "quick": self.quick,
            "identity": self.identity.to_dict(),
            "model_name": self.model_name,
            "n_layers": self.n_layers,
            "start_point": self.start_point.to_dict(),
            "best_point": self.best_point.to_dict(),
            "base_config": self.base_config.to_dict(),
            "best_config": self.best_config.to_dict(),
            "best_affinity": list(self.best_affinity),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "gen_gain": self.gen_gain,
            "ttft_gain": self.ttft_gain,
            "trials": [t.to_dict() for t in self.trials],
            "thresholds": {"gen": self.thresholds.gen, "ttft": self.thresholds.ttft},
            "drift": self.drift,
            "wall_s": self.wall_s,
            "words_per_token": self.words_per_token,
            "notes": list(self.notes_fr),
            "free_vram": self.free_vram,
            "start_failed": self.start_failed,
            "finished_at": self.finished_at,
            "final_check": self.final_check.to_dict() if self.final_check is not None else None,
            "prompt_check": self.prompt_check.to_dict() if self.prompt_check is not None else None,
            "kept_because": self.kept_because,
        }
