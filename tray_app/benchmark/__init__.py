"""« Optimiser »: measure this machine, find the best runner settings, apply them. No Qt here.

Public API
----------
* :class:`~tray_app.benchmark.optimizer.Optimizer` — ``detect()``, ``estimate_seconds(quick=)``,
  ``run(quick=, on_progress=, cancel=)`` → :class:`~tray_app.benchmark.result.OptimizationResult`
  (raises :class:`BenchmarkCancelled` or :class:`BenchmarkError`, whose ``message_fr`` is for the user).
* :func:`~tray_app.benchmark.saved.apply_result`, :func:`~tray_app.benchmark.saved.needs_reoptimization`,
  :func:`~tray_app.benchmark.saved.should_offer_optimization`,
  :func:`~tray_app.benchmark.saved.mark_optimization_offered`.
* What « Appliquer » saves is used by the plan (:func:`~tray_app.planning.applied_tuning.tuned_config`)
  and the host (:func:`~tray_app.hardware.affinity.pin_processes`, P-cores pinning): both below this layer.

Layout: ``workload`` (the Kira conversation), ``space`` (what is explored), ``objective`` (what is
better), ``search`` (coordinate descent and grid, on any measuring function), ``engine`` (measuring
with real runner processes), ``sampler`` (memory peaks, contention, throttling), ``optimizer`` (all of
it together), ``report_fr`` (French wording), ``saved``/``identity`` (keeping it, and when to measure again).
"""

from typing import Any

__all__ = ["BenchmarkCancelled", "BenchmarkError"]


def __getattr__(name: str) -> Any:
    """The two exceptions, imported when asked for: the tray imports ``saved`` at start-up
    and must not pay for the measuring engine (``engine``, ``search``, ``statistics``…) it may never use."""
    if name == "BenchmarkError":
        from tray_app.benchmark.engine import BenchmarkError

        return BenchmarkError
    if name == "BenchmarkCancelled":
        from tray_app.benchmark.search import BenchmarkCancelled

        return BenchmarkCancelled
    raise AttributeError(name)
