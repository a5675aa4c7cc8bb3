"""Will this model fit this computer? The badge of the download list, from the memory plan itself.

:func:`fit_badge` makes the same plan as ``plan`` and the host make once the file is here
(:func:`~tray_app.planning.memory_plan.make_plan`, same inputs), from a header read before any download,
and says it in a few words:

* ``gpu`` — « tient entièrement sur la carte graphique »;
* ``partial`` — « tient en partie sur la carte graphique (environ N mots/seconde) »;
* ``cpu`` — « sur le processeur seulement (environ N mots/seconde) »;
* ``too_big`` — « trop gros pour cet ordinateur »: what stays in the computer's memory (weights and
  conversation cache of the layers not on the card) does not fit in its RAM once Windows and the avatar
  have theirs (:data:`RAM_KEPT_FOR_THE_REST`).

The speed is a rough estimate (:func:`words_per_second`): generating a token reads every weight once,
so its time is the bytes on the card over the card's memory speed plus the bytes in the computer's
memory over the processor's. Without a measurement of this machine the speeds are those of the
reference laptop (RTX 4050 Laptop: 192 GB/s; dual-channel DDR5: about 40 GB/s usable by llama.cpp),
and llama.cpp reaches about 60 % of them; a French word is about 1,5 token for these models.

:func:`recommend` picks one file for a non-expert: the best-ranked model that fits the card, or runs
partly on it at a comfortable pace, else the best one the processor runs at a bearable pace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tray_app.format_fr import GIB, int_fr
from tray_app.hardware.cpu import CpuInfo
from tray_app.models.gguf_info import ModelInfo
from tray_app.planning.memory_plan import DEFAULT_CONTEXT, MemoryPlan, make_plan

GPU_BANDWIDTH = 192e9  # bytes/s: the reference RTX 4050 Laptop (96 bits at 16 Gb/s)
CPU_BANDWIDTH = 40e9  # bytes/s: dual-channel DDR5 as llama.cpp can use it
EFFICIENCY = 0.6  # the share of those speeds llama.cpp reaches while generating
TOKENS_PER_WORD = 1.5  # French, with the tokenizers of the catalogue's models
RAM_KEPT_FOR_THE_REST = 4 * GIB  # Windows, the avatar, a browser
COMFORTABLE_WORDS_PER_S = 8.0  # faster than one reads: a partial offload at this pace is recommended
BEARABLE_WORDS_PER_S = 3.0  # about as fast as one speaks: the floor for a processor-only recommendation

KIND_TEXTS = {
    "gpu": "tient entièrement sur la carte graphique",
    "partial": "tient en partie sur la carte graphique (environ {n} mots/seconde)",
    "cpu": "sur le processeur seulement (environ {n} mots/seconde)",
    "too_big": "trop gros pour cet ordinateur",
}


@dataclass(frozen=True)
class Machine:
    """What the badge is computed for: free graphics memory (None: no usable card), CPU and RAM."""

    free_vram: int | None
    total_vram: int | None
    gpu_offload_supported: bool
    cpu: CpuInfo


@dataclass(frozen=True)
class FitBadge:
    kind: str  # gpu, partial, cpu, too_big
    text_fr: str
    words_per_second: float
    plan: MemoryPlan
    ram_needed: int  # bytes the model takes in the computer's memory

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text_fr,
            "words_per_second": round(self.words_per_second, 1),
            "gpu_layers": self.plan.gpu_layers,
            "n_layers": self.plan.n_layers,
            "n_gpu_layers": self.plan.n_gpu_layers,
            "ram_needed": self.ram_needed,
        }


def words_per_second(model: ModelInfo, plan: MemoryPlan) -> float:
    """A rough generation speed in French words per second (see the module's note)."""
    on_gpu = sum(model.layer_bytes[model.n_layers - plan.gpu_layers :])
    on_cpu = sum(model.layer_bytes[: model.n_layers - plan.gpu_layers])
    output = model.output_bytes
    if plan.output_on_gpu:
        on_gpu += output
    else:
        on_cpu += output
    seconds = on_gpu / GPU_BANDWIDTH + on_cpu / CPU_BANDWIDTH
    if seconds <= 0:
        return 0.0
    return EFFICIENCY / seconds / TOKENS_PER_WORD


def fit_badge(
    model: ModelInfo,
    machine: Machine,
    *,
    wanted_ctx: int = DEFAULT_CONTEXT,
    kv_type: str = "f16",
    cores_left_for_avatar: int = 1,
    threads_override: int = 0,
) -> FitBadge:
    plan = make_plan(
        model,
        free_vram=machine.free_vram,
        total_vram=machine.total_vram,
        cpu=machine.cpu,
        wanted_ctx=wanted_ctx,
        kv_type=kv_type,
        cores_left_for_avatar=cores_left_for_avatar,
        threads_override=threads_override,
        gpu_offload_supported=machine.gpu_offload_supported,
    )
    speed = words_per_second(model, plan)
    if plan.ram > max(0, machine.cpu.ram_total - RAM_KEPT_FOR_THE_REST):
        kind = "too_big"
    else:
        kind = plan.mode
    shown = int_fr(max(1, round(speed)))
    return FitBadge(kind, KIND_TEXTS[kind].replace("{n}", shown), speed, plan, plan.ram)


def recommend(candidates: Sequence[tuple[str, float, FitBadge]]) -> str | None:
    """The key of the file to recommend among (key, quality, badge), or None when nothing can run here."""

    def good(badge: FitBadge) -> bool:
        if badge.kind == "gpu":
            return True
        if badge.kind == "partial":
            return badge.words_per_second >= COMFORTABLE_WORDS_PER_S
        return badge.kind == "cpu" and badge.words_per_second >= BEARABLE_WORDS_PER_S

    usable = [c for c in candidates if good(c[2])]
    if usable:
        # Best quality; between equals, the faster one.
        return max(usable, key=lambda c: (c[1], c[2].words_per_second))[0]
    runnable = [c for c in candidates if c[2].kind != "too_big"]
    if runnable:
        return max(runnable, key=lambda c: c[2].words_per_second)[0]
    return None
