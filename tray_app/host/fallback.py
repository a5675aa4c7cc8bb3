"""The fallback ladder: safer runner configurations to try, in order, when a load fails or the runner dies.

Order (DESIGN.md): fewer GPU layers → shorter context → CPU only. A ladder is a finite list computed once
per base configuration; the supervisor walks it forward and never tries a configuration that already
failed, so it cannot loop.

The memory planner (``tray_app.planning.memory_plan.safer_plans``) knows the model and the GPU and builds
the real ladder: :func:`ladder_from_plans` adapts its plans. :func:`default_ladder` is the planner-free
version used when no plan is available (and by tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tray_app.format_fr import int_fr
from tray_app.planning.runner_config import RunnerConfig

MIN_CONTEXT = 1024


@dataclass(frozen=True)
class FallbackStep:
    config: RunnerConfig
    reason_fr: str  # one French sentence told to the user when this step is tried: « Nouvel essai … »


Ladder = Callable[[RunnerConfig], Sequence[FallbackStep]]


def describe_change(old: RunnerConfig, new: RunnerConfig) -> str:
    """One plain French sentence that says what a safer configuration changes."""
    if old.n_gpu_layers != 0 and new.n_gpu_layers == 0:
        return "Nouvel essai sur le processeur seul : plus lent, mais plus sûr."
    if new.n_gpu_layers != old.n_gpu_layers and (old.n_gpu_layers < 0 or 0 <= new.n_gpu_layers < old.n_gpu_layers):
        return "Nouvel essai en mettant moins du modèle sur la carte graphique."
    if new.n_ctx < old.n_ctx:
        return (
            f"Nouvel essai avec une mémoire de conversation plus courte ({int_fr(new.n_ctx)} jetons au "
            f"lieu de {int_fr(old.n_ctx)})."
        )
    return "Nouvel essai avec des réglages plus prudents."


def default_ladder(config: RunnerConfig, *, n_layers: int | None = None) -> list[FallbackStep]:
    """Fewer GPU layers (half), then half the context, then CPU only. ``n_layers`` resolves ``-1``."""
    steps: list[FallbackStep] = []
    current = config

    def add(new: RunnerConfig) -> None:
        nonlocal current
        if new != current and all(s.config != new for s in steps) and new != config:
            steps.append(FallbackStep(new, describe_change(current, new)))
            current = new

    on_gpu = config.n_gpu_layers if config.n_gpu_layers >= 0 else n_layers
    if on_gpu and on_gpu > 1:
        add(current.with_changes(n_gpu_layers=on_gpu // 2))
    if current.n_ctx > MIN_CONTEXT:
        add(current.with_changes(n_ctx=max(MIN_CONTEXT, current.n_ctx // 2)))
    if current.n_gpu_layers != 0:
        add(current.with_changes(n_gpu_layers=0, flash_attn=False))
    return steps


def ladder_from_plans(plans: Iterable[Any], model_path: str, base: RunnerConfig | None = None) -> list[FallbackStep]:
    """Adapt memory plans (objects with ``to_runner_config(model_path)`` and ``explain_fr()``) to steps.

    The sentence told to the user is the plan's ``step_fr`` when it has one, else :func:`describe_change`
    from the previous step (what changes, in plain words).
    """
    steps: list[FallbackStep] = []
    previous = base
    for plan in plans:
        config = plan.to_runner_config(model_path)
        if config == base or any(s.config == config for s in steps):
            continue
        reason = getattr(plan, "step_fr", "") or (
            describe_change(previous, config)
            if previous is not None
            else "Nouvel essai avec des réglages plus prudents."
        )
        steps.append(FallbackStep(config, reason))
        previous = config
    return steps
