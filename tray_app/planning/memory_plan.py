"""How much of the model goes on the graphics card: :func:`make_plan`, and the fallback ladder.

Pure and deterministic: the same model, free VRAM and wishes always give the same plan. No NVML, no
llama.cpp here; the caller measures and passes numbers.

What a plan costs on the graphics card comes, best first, from **llama.cpp itself**: a dry run of the
engine that will run it (:mod:`tray_app.planning.dry_run`, passed in as ``buffers``: the exact model, KV
cache and compute buffers of a layer count, nothing allocated), else from **our formula**
(:mod:`tray_app.planning.vram_estimate`: the instant estimate, also shown beside the dry run). On top of
llama.cpp's buffers the plan reserves the **budget** (:mod:`tray_app.planning.vram_budget`): the driver's
overhead measured on this card, and a margin sized from what the avatar and the other programs used.

The policy
----------
1. **Context** = what the user wants (4 096 tokens by default), capped at the model's trained context.
   It is what the avatar remembers of the conversation: a user's choice, never traded for speed here.
2. **CPU only** when there is no usable GPU (``free_vram is None``) or the installed llama.cpp cannot
   offload.
3. Otherwise the **most layers that fit** in ``free VRAM − margin − driver overhead`` at that context:
   the whole model (output layer included) when possible, else the last ``k`` layers. More free VRAM
   never gives fewer layers. With llama.cpp's dry run the search starts where the formula says and
   asks the dry run as few times as it can (:mod:`tray_app.planning.layer_search`).
4. When not even one layer fits at that context, **CPU only**; ``explain_fr`` tells the user to close
   programs or shorten the conversation memory. Shrinking the context to host one or two layers would
   trade a lot of memory for almost no speed.
5. Quantised KV cache (q8_0, q4_0) turns flash attention on: llama.cpp refuses a quantised V cache
   without it.

When a real load fails anyway, :func:`safer_plans` gives the ladder the supervisor walks down: fewer
GPU layers (¾, ½, ¼) → a context half as long → CPU only. Each step predicts less VRAM than the one
before, and the ladder is finite.

"CPU only" means the runner must hide the GPU (``n_gpu_layers = 0`` alone still lets a CUDA build read
prompts on the GPU and allocate its context there); the predicted VRAM of a CPU plan is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tray_app.format_fr import int_fr, size_fr
from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.threads import recommend_threads
from tray_app.models.gguf_info import ModelInfo
from tray_app.planning.dry_run import EngineBuffers
from tray_app.planning.layer_search import most_that_fit
from tray_app.planning.runner_config import RunnerConfig
from tray_app.planning.vram_budget import MARGIN_DEFAULT, VramBudget, default_margin
from tray_app.planning.vram_estimate import (
    DEFAULT_UBATCH,
    GPU_OVERHEAD,
    KV_TYPES,
    MIB,
    VramBreakdown,
    predict_ram,
    predict_vram,
)

# llama.cpp's device buffers for n_gpu_layers = N (0..n_layers+1), or None when the dry run cannot say.
BufferSource = Callable[[int], "EngineBuffers | None"]
SOURCE_LLAMA = "llama.cpp"  # the plan's figures come from llama.cpp's dry run
SOURCE_FORMULA = "formule"  # from our formula (no dry run, or it failed)

DEFAULT_CONTEXT = 4096
CONTEXT_STEP = 256  # llama.cpp pads the KV cache to a multiple of 256 cells
DEFAULT_BATCH = 512
FALLBACK_MIN_CONTEXT = 1024  # the ladder never shortens the conversation memory below this
# What Windows and the avatar use on the reference laptop (RTX 4050 6 GB): the desktop ~450 MiB, the
# Unity avatar ~900 MiB (tests/data/rtx4050_laptop_avatar.json). ``plan --vram-mib`` assumes it.
TYPICAL_DESKTOP_AND_AVATAR = 1350 * MIB

CPU_NO_GPU = "no_gpu"
CPU_NO_GPU_BACKEND = "no_gpu_backend"
CPU_GPU_FULL = "gpu_full"
CPU_FALLBACK = "fallback"

STEP_FEWER_LAYERS = "fewer_layers"
STEP_SMALLER_CONTEXT = "smaller_context"
STEP_CPU_ONLY = "cpu_only"


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan was made from: :func:`safer_plans` replans from it."""

    model: ModelInfo
    free_vram: int | None
    total_vram: int | None
    wanted_ctx: int
    kv_type: str
    flash_attn: bool
    cpu: CpuInfo
    cores_left_for_avatar: int
    threads_override: int
    gpu_offload_supported: bool
    budget: VramBudget | None = None  # None without a usable GPU


@dataclass(frozen=True)
class MemoryPlan:
    model_path: str
    model_name: str
    n_layers: int
    gpu_layers: int  # repeating layers on the GPU (the last ones), 0..n_layers
    output_on_gpu: bool
    n_ctx: int
    wanted_ctx: int
    n_batch: int
    n_ubatch: int
    kv_type: str
    flash_attn: bool
    threads: int
    threads_reason: str
    vram: VramBreakdown
    free_vram: int | None
    total_vram: int | None
    ram: int  # predicted RAM for the weights and cache that stay on the CPU
    cpu_reason: str = ""  # why no GPU: no_gpu, no_gpu_backend, gpu_full, fallback; "" when on the GPU
    step: str = ""  # for ladder plans: fewer_layers, smaller_context, cpu_only
    step_fr: str = ""  # the French sentence the supervisor shows when it moves to this plan
    vram_source: str = SOURCE_FORMULA  # SOURCE_LLAMA: ``vram`` is llama.cpp's dry run; else our formula
    formula_vram: VramBreakdown | None = None  # our formula for the same layers (beside the dry run)
    formula_layers: tuple[int, bool] | None = None  # (GPU layers, output on GPU) the formula alone chose
    engine_buffers: EngineBuffers | None = None  # the dry run's figures for this plan, host side included
    dry_run_error: str = ""  # why the dry run could not be used (English, for the log and --json)
    inputs: PlanInputs | None = field(default=None, repr=False, compare=False)

    # -- what kind of plan ----------------------------------------------------------------------
    @property
    def full_offload(self) -> bool:
        return self.output_on_gpu and self.gpu_layers == self.n_layers

    @property
    def mode(self) -> str:
        """``gpu`` (whole model on the card), ``partial`` or ``cpu``."""
        if self.full_offload:
            return "gpu"
        return "partial" if self.gpu_layers or self.output_on_gpu else "cpu"

    @property
    def n_gpu_layers(self) -> int:
        """llama.cpp's ``n_gpu_layers``: -1 for everything, else the number of repeating layers."""
        return -1 if self.full_offload else self.gpu_layers + int(self.output_on_gpu)

    @property
    def gpu_fraction(self) -> float:
        return (self.gpu_layers + int(self.output_on_gpu)) / (self.n_layers + 1)

    # -- outputs --------------------------------------------------------------------------------
    def to_runner_config(self, model_path: str | Path | None = None) -> RunnerConfig:
        return RunnerConfig(
            model_path=str(model_path if model_path is not None else self.model_path),
            n_gpu_layers=self.n_gpu_layers,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            n_ubatch=self.n_ubatch,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            type_k=self.kv_type,
            type_v=self.kv_type,
            flash_attn=self.flash_attn,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "model_name": self.model_name,
            "mode": self.mode,
            "n_layers": self.n_layers,
            "gpu_layers": self.gpu_layers,
            "output_on_gpu": self.output_on_gpu,
            "n_gpu_layers": self.n_gpu_layers,
            "n_ctx": self.n_ctx,
            "wanted_ctx": self.wanted_ctx,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "kv_type": self.kv_type,
            "flash_attn": self.flash_attn,
            "threads": self.threads,
            "threads_reason": self.threads_reason,
            "vram": self.vram.to_dict(),
            "free_vram": self.free_vram,
            "total_vram": self.total_vram,
            "ram": self.ram,
            "cpu_reason": self.cpu_reason,
            "step": self.step,
            "step_fr": self.step_fr,
            "vram_source": self.vram_source,
            "formula": self.formula_dict(),
            "engine_buffers": self.engine_buffers.to_dict() if self.engine_buffers is not None else None,
            "dry_run_error": self.dry_run_error,
            "budget": self.budget.to_dict() if self.budget is not None else None,
            "explanation": self.explain_fr(),
        }

    @property
    def budget(self) -> VramBudget | None:
        return self.inputs.budget if self.inputs is not None else None

    def formula_dict(self) -> dict[str, Any] | None:
        """Our formula beside llama.cpp's dry run: its figures for the same layers, the difference (dry run
        − formula, bytes) and the layers it alone would have chosen."""
        if self.formula_vram is None:
            return None
        f = self.formula_vram
        data: dict[str, Any] = {"vram": f.to_dict()}
        if self.vram_source == SOURCE_LLAMA:
            v = self.vram
            data["difference"] = {
                "weights": v.weights - f.weights,
                "kv_cache": v.kv_cache - f.kv_cache,
                "compute": v.compute - f.compute,
                "used": v.used - f.used,
                "used_percent": round(100.0 * (v.used - f.used) / f.used, 2) if f.used else None,
            }
        if self.formula_layers is not None:
            data["gpu_layers"], data["output_on_gpu"] = self.formula_layers
        return data

    def explain_fr(self) -> str:
        """One or two sentences for someone who does not know what a layer or VRAM is."""
        ctx_note = ""
        trained = self.inputs.model.n_ctx_train if self.inputs is not None else 0
        if 0 < trained < self.wanted_ctx and self.step != STEP_SMALLER_CONTEXT:
            ctx_note = (
                f" La mémoire de conversation est limitée à {int_fr(self.n_ctx)} jetons, "
                "le maximum de ce modèle."
            )
        if self.mode == "cpu":
            cores = f"{self.threads} cœur{'s' if self.threads > 1 else ''}"
            if self.cpu_reason == CPU_NO_GPU_BACKEND:
                text = (
                    f"Le moteur installé ne sait pas utiliser la carte graphique : le modèle tourne sur "
                    f"le processeur ({cores}), les réponses seront plus lentes. Installez la version "
                    "du programme pour carte NVIDIA pour aller plus vite."
                )
            elif self.cpu_reason == CPU_GPU_FULL:
                text = (
                    f"La carte graphique n'a pas assez de place libre ({size_fr(self.free_vram or 0)} "
                    f"libres) : le modèle tourne sur le processeur ({cores}), les réponses seront plus "
                    "lentes. Fermez des programmes qui utilisent la carte graphique, ou réduisez la "
                    "mémoire de conversation."
                )
            elif self.cpu_reason == CPU_FALLBACK:
                text = (
                    f"Le modèle tourne sur le processeur seulement ({cores}) : les réponses sont plus "
                    "lentes, mais la carte graphique reste libre pour l'avatar."
                )
            else:
                text = (
                    f"Pas de carte graphique NVIDIA utilisable : le modèle tourne sur le processeur "
                    f"({cores}), les réponses seront plus lentes."
                )
            return text + ctx_note
        free = self.free_vram or 0
        left = max(0, free - self.vram.used)
        why = self.budget.margin_why_fr() if self.budget is not None else ""
        why_note = f" ({why})" if why else ""
        if self.mode == "gpu":
            return (
                f"Le modèle tient entièrement dans la carte graphique ({size_fr(self.vram.used)} sur "
                f"{size_fr(free)} libres) : réponses rapides. Il reste {size_fr(left)} pour l'avatar et vos "
                f"autres programmes{why_note}." + ctx_note
            )
        speed = "réponses correctes" if self.gpu_fraction >= 0.5 else "réponses un peu lentes"
        return (
            f"{self.gpu_layers} couches sur {self.n_layers} dans la carte graphique : il reste {size_fr(left)} "
            f"pour l'avatar et vos autres programmes{why_note}. Le reste du modèle tourne sur le processeur : "
            f"{speed}." + ctx_note
        )


def context_for(model: ModelInfo, wanted_ctx: int) -> int:
    """The wanted context capped at the trained one, rounded down to a multiple of 256 (≥ 256)."""
    ctx = min(wanted_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else wanted_ctx
    return max(CONTEXT_STEP, ctx // CONTEXT_STEP * CONTEXT_STEP)


def assumed_free_vram(card_total: int) -> int:
    """Free VRAM on a card of ``card_total`` bytes once Windows and the avatar run (for what-ifs)."""
    return max(0, card_total - TYPICAL_DESKTOP_AND_AVATAR)


# -- planning -------------------------------------------------------------------------------------------


def make_plan(
    model: ModelInfo,
    *,
    free_vram: int | None,
    cpu: CpuInfo,
    total_vram: int | None = None,
    wanted_ctx: int = DEFAULT_CONTEXT,
    kv_type: str = "f16",
    flash_attn: bool = False,
    cores_left_for_avatar: int = 1,
    threads_override: int = 0,
    gpu_offload_supported: bool = True,
    budget: VramBudget | None = None,
    buffers: BufferSource | None = None,
) -> MemoryPlan:
    """The plan for ``model`` given free VRAM in bytes (``None``: no usable GPU). See the module policy.

    ``free_vram`` is what is free *without* this model: when replanning while a runner is loaded, add
    the runner's own use back first. ``budget``: the margin and driver overhead to reserve (default: the
    cautious margin and the CUDA overhead of :mod:`~tray_app.planning.vram_estimate`). ``buffers``:
    llama.cpp's dry run for this model and context (:class:`~tray_app.planning.dry_run.DryRuns`); without
    it, or when it fails, the formula decides.
    """
    if kv_type not in KV_TYPES:
        raise ValueError(f"unknown KV cache type {kv_type!r}; expected one of {sorted(KV_TYPES)}")
    if wanted_ctx <= 0:
        raise ValueError("wanted_ctx must be positive")
    if budget is None and free_vram is not None:
        budget = VramBudget(default_margin(free_vram, total_vram), MARGIN_DEFAULT, GPU_OVERHEAD, "default")
    inputs = PlanInputs(
        model=model,
        free_vram=free_vram,
        total_vram=total_vram,
        wanted_ctx=wanted_ctx,
        kv_type=kv_type,
        flash_attn=flash_attn or kv_type != "f16",
        cpu=cpu,
        cores_left_for_avatar=cores_left_for_avatar,
        threads_override=threads_override,
        gpu_offload_supported=gpu_offload_supported,
        budget=budget,
    )
    n_ctx = context_for(model, wanted_ctx)
    if free_vram is None:
        return _plan(inputs, 0, False, n_ctx, cpu_reason=CPU_NO_GPU)
    if not gpu_offload_supported:
        return _plan(inputs, 0, False, n_ctx, cpu_reason=CPU_NO_GPU_BACKEND)
    formula = most_layers_that_fit(inputs, n_ctx)
    measured: tuple[tuple[int, bool] | None, EngineBuffers | None] | None = None
    error = ""
    if buffers is not None:
        try:
            measured = _most_layers_measured(inputs, n_ctx, buffers, formula)
        except _DryRunFailed as exc:
            error = str(exc)
            if getattr(buffers, "no_device", False):  # the engine cannot use the card at all
                return _plan(inputs, 0, False, n_ctx, cpu_reason=CPU_NO_GPU_BACKEND, dry_run_error=error)
    extra: dict[str, Any] = {"formula_layers": formula, "dry_run_error": error}
    if measured is not None:
        fit, engine = measured
        extra.update(vram_source=SOURCE_LLAMA, engine_buffers=engine)
    else:
        fit = formula
    if fit is None:
        return _plan(inputs, 0, False, n_ctx, cpu_reason=CPU_GPU_FULL, **extra)
    return _plan(inputs, fit[0], fit[1], n_ctx, **extra)


def most_layers_that_fit(inputs: PlanInputs, n_ctx: int) -> tuple[int, bool] | None:
    """(GPU layers, output on GPU) of the biggest offload within the budget by our formula, or None."""
    if inputs.free_vram is None or inputs.budget is None:
        return None
    model = inputs.model
    budget = inputs.free_vram - inputs.budget.margin
    for k in range(model.n_layers + 1, 0, -1):  # n_layers + 1 = every layer and the output layer
        layers, output = min(k, model.n_layers), k > model.n_layers
        if _formula(inputs, layers, output, n_ctx).used <= budget:
            return layers, output
    return None


class _DryRunFailed(Exception):
    pass


def _most_layers_measured(
    inputs: PlanInputs, n_ctx: int, buffers: BufferSource, formula: tuple[int, bool] | None
) -> tuple[tuple[int, bool] | None, EngineBuffers | None]:
    """The biggest offload within the budget by llama.cpp's dry run (searched from the formula's answer),
    with the dry run's figures for it. Raises :class:`_DryRunFailed` when the dry run cannot answer."""
    if inputs.free_vram is None or inputs.budget is None:  # make_plan asks only with a card and a budget
        raise _DryRunFailed("no graphics card to plan for")
    available = inputs.budget.available(inputs.free_vram)
    n = inputs.model.n_layers
    seen: dict[int, EngineBuffers] = {}

    def fits(offloaded: int) -> bool:
        figures = buffers(offloaded)
        if figures is None:
            raise _DryRunFailed(getattr(buffers, "error", "") or "the dry run gave no figure")
        seen[offloaded] = figures
        return figures.device_total <= available

    hint = 0 if formula is None else formula[0] + int(formula[1])
    best = most_that_fit(fits, 1, n + 1, max(1, hint))
    if best is None:
        return None, None
    return (min(best, n), best > n), seen[best]


def _formula(inputs: PlanInputs, layers: int, output: bool, n_ctx: int, margin: int = 0) -> VramBreakdown:
    return predict_vram(
        inputs.model,
        gpu_layers=layers,
        output_on_gpu=output,
        n_ctx=n_ctx,
        n_ubatch=_ubatch(n_ctx),
        kv_type=inputs.kv_type,
        flash_attn=inputs.flash_attn,
        margin=margin,
        overhead=inputs.budget.overhead if inputs.budget is not None else GPU_OVERHEAD,
    )


def _ubatch(n_ctx: int) -> int:
    return min(DEFAULT_UBATCH, n_ctx)


def _plan(
    inputs: PlanInputs,
    gpu_layers: int,
    output_on_gpu: bool,
    n_ctx: int,
    *,
    cpu_reason: str = "",
    step: str = "",
    step_fr: str = "",
    vram_source: str = SOURCE_FORMULA,
    engine_buffers: EngineBuffers | None = None,
    formula_layers: tuple[int, bool] | None = None,
    dry_run_error: str = "",
) -> MemoryPlan:
    model = inputs.model
    on_gpu = gpu_layers > 0 or output_on_gpu
    margin = inputs.budget.margin if on_gpu and inputs.budget is not None else 0
    formula_vram = _formula(inputs, gpu_layers, output_on_gpu, n_ctx, margin)
    vram = formula_vram
    if not on_gpu:
        vram_source, engine_buffers = SOURCE_FORMULA, None
    elif engine_buffers is not None and inputs.budget is not None:
        vram = VramBreakdown(
            weights=engine_buffers.device_model,
            kv_cache=engine_buffers.device_context,
            compute=engine_buffers.device_compute,
            overhead=inputs.budget.overhead,
            margin=margin,
        )
    fraction = (gpu_layers + int(output_on_gpu)) / (model.n_layers + 1)
    advice = recommend_threads(
        inputs.cpu, gpu_offload_fraction=fraction, cores_left_for_avatar=inputs.cores_left_for_avatar
    )
    threads, reason = advice.threads, advice.reason
    if inputs.threads_override > 0:
        threads, reason = inputs.threads_override, "Choisi à la main dans les paramètres."
    return MemoryPlan(
        model_path=model.path,
        model_name=model.name,
        n_layers=model.n_layers,
        gpu_layers=gpu_layers,
        output_on_gpu=output_on_gpu,
        n_ctx=n_ctx,
        wanted_ctx=inputs.wanted_ctx,
        n_batch=min(DEFAULT_BATCH, n_ctx),
        n_ubatch=_ubatch(n_ctx),
        kv_type=inputs.kv_type,
        flash_attn=inputs.flash_attn,
        threads=threads,
        threads_reason=reason,
        vram=vram,
        free_vram=inputs.free_vram,
        total_vram=inputs.total_vram,
        ram=predict_ram(model, gpu_layers, output_on_gpu, n_ctx, inputs.kv_type),
        cpu_reason="" if on_gpu else cpu_reason,
        step=step,
        step_fr=step_fr,
        vram_source=vram_source,
        formula_vram=formula_vram if on_gpu else None,
        formula_layers=formula_layers,
        engine_buffers=engine_buffers,
        dry_run_error=dry_run_error,
        inputs=inputs,
    )


def safer_plans(plan: MemoryPlan) -> list[MemoryPlan]:
    """The fallback ladder after ``plan`` failed: fewer GPU layers → shorter context → CPU only.

    Finite (at most five plans), each predicting less VRAM than the one before; empty for a CPU plan
    (nothing safer to try). Each plan's ``step_fr`` is the sentence to show when moving to it.
    """
    inputs = plan.inputs
    if inputs is None or plan.mode == "cpu":
        return []
    model = inputs.model
    ladder: list[MemoryPlan] = []
    previous = (plan.formula_vram or plan.vram).used  # the ladder's plans are the formula's: compare alike
    layers = plan.gpu_layers
    for fraction in (0.75, 0.5, 0.25):
        k = int(plan.gpu_layers * fraction)
        if 1 <= k < layers:
            candidate = _plan(
                inputs,
                k,
                False,
                plan.n_ctx,
                step=STEP_FEWER_LAYERS,
                step_fr=(
                    f"Nouvel essai avec moins de couches dans la carte graphique ({k} sur "
                    f"{model.n_layers}) : un peu plus lent, mais plus sûr."
                ),
            )
            if candidate.vram.used < previous:
                ladder.append(candidate)
                previous, layers = candidate.vram.used, k
    shorter = plan.n_ctx // 2 // CONTEXT_STEP * CONTEXT_STEP
    if shorter >= FALLBACK_MIN_CONTEXT:
        candidate = _plan(
            inputs,
            layers,
            False,
            shorter,
            step=STEP_SMALLER_CONTEXT,
            step_fr=(
                f"Nouvel essai avec une mémoire de conversation plus courte ({int_fr(shorter)} jetons "
                f"au lieu de {int_fr(plan.n_ctx)}) pour libérer la carte graphique."
            ),
        )
        if candidate.vram.used < previous:
            ladder.append(candidate)
    ladder.append(
        _plan(
            inputs,
            0,
            False,
            plan.n_ctx,
            cpu_reason=CPU_FALLBACK,
            step=STEP_CPU_ONLY,
            step_fr="Nouvel essai sur le processeur seulement : plus lent, mais sans la carte graphique.",
        )
    )
    return ladder
