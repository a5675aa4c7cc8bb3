"""The plan as the program makes it on this machine: llama.cpp's dry run, our budget, this card's calibration.

:func:`plan_on_this_machine` is what ``plan`` and the host call once they have read the card (NVML) and
the engine (:func:`~tray_app.hardware.llama_backend.detect_llama_backend`): it sizes the budget (margin
from the other programs' history, the driver overhead calibrated on this card), asks llama.cpp's dry run
for the exact buffers (cached; a probe process on a miss, never this process) and makes the plan. Only
the probe's process loads llama.cpp.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.gpu_calibration import CalibrationBook, card_key, overhead_for
from tray_app.hardware.llama_backend import LlamaBackend
from tray_app.models.gguf_info import ModelInfo
from tray_app.monitoring.history import OtherVramUse
from tray_app.planning.dry_run import CACHE_NAME, DryRunCache, DryRunConfig, DryRuns
from tray_app.planning.memory_plan import DEFAULT_BATCH, MemoryPlan, context_for, make_plan
from tray_app.planning.vram_budget import make_budget
from tray_app.planning.vram_estimate import DEFAULT_UBATCH

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardView:
    """The graphics card a plan is made for: what NVML (or the caller) says."""

    free: int | None  # None: no usable card
    total: int | None
    name: str = ""
    driver: str = ""

    @property
    def identity(self) -> str:
        return f"{self.name}|{self.driver}"


@dataclass(frozen=True)
class PlanTiming:
    """How the plan was obtained (for ``plan --json`` and the benchmarks)."""

    seconds: float
    probe_runs: int  # dry runs the probe made
    cached_runs: int  # dry runs answered by the cache
    probe_start_s: float | None  # the probe's start-up (import, backend initialisation), when started


def dry_run_config(model: ModelInfo, wanted_ctx: int, kv_type: str, flash_attn: bool) -> DryRunConfig:
    """The runner settings a plan for these wishes gives (what the dry run must be asked about)."""
    n_ctx = context_for(model, wanted_ctx)
    return DryRunConfig(
        model_path=model.path,
        n_ctx=n_ctx,
        n_batch=min(DEFAULT_BATCH, n_ctx),
        n_ubatch=min(DEFAULT_UBATCH, n_ctx),
        type_k=kv_type,
        type_v=kv_type,
        flash_attn=flash_attn or kv_type != "f16",
    )


def default_cache(cache_dir: Path | None) -> DryRunCache:
    return DryRunCache(cache_dir / CACHE_NAME if cache_dir is not None else None)


def plan_on_this_machine(
    model: ModelInfo,
    *,
    card: CardView,
    backend: LlamaBackend,
    cpu: CpuInfo,
    calibration: CalibrationBook,
    cache: DryRunCache,
    wanted_ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = False,
    cores_left_for_avatar: int = 1,
    threads_override: int = 0,
    others: OtherVramUse | None = None,
    margin: int | None = None,
    gpu_offload_supported: bool | None = None,
    dry_run: bool = True,
    python: str | None = None,
) -> tuple[MemoryPlan, PlanTiming]:
    """The plan, and how long it took. ``margin`` given: that margin instead of the history's (tests,
    benchmarks); ``gpu_offload_supported``: whether to plan for the card (default: whether the engine can
    offload; a what-if for another machine says True); ``dry_run`` False: the formula alone."""
    started = time.perf_counter()
    offload = backend.gpu_offload if gpu_offload_supported is None else gpu_offload_supported
    budget = None
    runs: DryRuns | None = None
    if card.free is not None and offload:
        gpu_backend = backend.gpu_backend or "cuda"  # a what-if on a processor-only engine: CUDA's figures
        key = card_key(card.name, card.driver, gpu_backend)
        overhead, entry = overhead_for(calibration, key, gpu_backend)
        budget = make_budget(free_vram=card.free, total_vram=card.total, overhead=overhead, calibration=entry,
                             others=others, margin=margin)
        if dry_run and backend.gpu_offload:
            runs = DryRuns(dry_run_config(model, wanted_ctx, kv_type, flash_attn), backend, cache=cache,
                           gpu_identity=card.identity, python=python)
    try:
        plan = make_plan(
            model,
            free_vram=card.free,
            total_vram=card.total,
            cpu=cpu,
            wanted_ctx=wanted_ctx,
            kv_type=kv_type,
            flash_attn=flash_attn,
            cores_left_for_avatar=cores_left_for_avatar,
            threads_override=threads_override,
            gpu_offload_supported=offload,
            budget=budget,
            buffers=runs,
        )
    finally:
        if runs is not None:
            runs.close()
    timing = PlanTiming(
        seconds=time.perf_counter() - started,
        probe_runs=runs.probe_runs if runs is not None else 0,
        cached_runs=runs.cached_runs if runs is not None else 0,
        probe_start_s=runs.probe_start_s if runs is not None else None,
    )
    log.info("plan for %s: %s, %d GPU layers (%s; %.2f s, %d dry runs, %d cached)", model.name, plan.mode,
             plan.gpu_layers, plan.vram_source, timing.seconds, timing.probe_runs, timing.cached_runs)
    return plan, timing
