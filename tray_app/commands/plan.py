"""``desktop-mate-tray plan MODEL``: how the model would be spread between graphics card and processor.

Without ``--vram-mib``/``--free-mib`` the free graphics memory is read from the NVIDIA driver (NVML), and
the installed llama-cpp-python must be able to use the card; with ``--vram-mib N`` the plan is for a card
of N MiB on which Windows and the avatar already use 1 350 MiB (the reference RTX 4050 laptop), with
``--free-mib N`` for exactly N MiB free, whatever this machine has. MODEL is a ``.gguf`` path or ``demo``.

When the installed engine can use a graphics card, the buffers come from llama.cpp's dry run (in a probe
process, cached) and our formula is shown beside them with the difference; ``--formula`` skips the dry
run. The margin comes from the settings' history when a program passes one (the tray does), else the
cautious default, or ``--margin-mib``; the driver overhead from this card's calibration
(:mod:`tray_app.hardware.gpu_calibration`). Exit status: 0 planned, 2 unusable model file or bad option.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from typing import Any

from tray_app.format_fr import int_fr, percent_fr, size_fr
from tray_app.hardware.cpu import detect_cpu
from tray_app.hardware.gpu_calibration import CalibrationBook
from tray_app.hardware.llama_backend import LlamaBackend, detect_llama_backend
from tray_app.models.discovery import resolve_model_path
from tray_app.models.gguf_info import ModelFileError, ModelInfo, read_model_info
from tray_app.paths import app_paths
from tray_app.planning.gpu_plan import CardView, PlanTiming, default_cache, plan_on_this_machine
from tray_app.planning.memory_plan import (
    DEFAULT_CONTEXT,
    SOURCE_LLAMA,
    TYPICAL_DESKTOP_AND_AVATAR,
    MemoryPlan,
    assumed_free_vram,
)
from tray_app.planning.vram_budget import MARGIN_DEFAULT, MARGIN_GIVEN
from tray_app.planning.vram_estimate import KV_TYPES, MIB
from tray_app.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class GpuView:
    """The graphics memory the plan was made for."""

    source: str  # "nvml" (measured), "assumed" (--vram-mib, --free-mib), "none"
    name: str
    free: int | None
    total: int | None
    offload_supported: bool
    note_fr: str  # why there is no usable GPU, or the assumption made
    driver: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "driver": self.driver,
            "free": self.free,
            "total": self.total,
            "offload_supported": self.offload_supported,
            "note": self.note_fr,
        }

    @property
    def card(self) -> CardView:
        usable = self.source != "none"
        return CardView(self.free if usable else None, self.total, self.name, self.driver)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"« {text} » n'est pas un nombre entier") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} doit être plus grand que 0")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="répartition prévue du modèle entre carte graphique et processeur")
    p.add_argument(
        "model", metavar="MODELE", help="fichier .gguf, ou « demo » pour le modèle de démonstration"
    )
    p.add_argument(
        "--vram-mib",
        type=_positive,
        metavar="N",
        help="prévoir pour une carte graphique de N Mo (Windows et l'avatar en utilisant déjà 1 350)",
    )
    p.add_argument(
        "--ctx",
        type=_positive,
        default=DEFAULT_CONTEXT,
        metavar="N",
        help=f"mémoire de conversation voulue, en jetons (par défaut {DEFAULT_CONTEXT})",
    )
    p.add_argument("--kv-type", choices=sorted(KV_TYPES), default="f16", help="type du cache de conversation")
    p.add_argument(
        "--free-mib",
        type=_positive,
        metavar="N",
        help="prévoir pour exactement N Mo libres sur la carte graphique (rien d'autre n'est supposé)",
    )
    p.add_argument(
        "--margin-mib",
        type=_non_negative,
        metavar="N",
        help="garder N Mo libres pour les autres programmes au lieu de la marge calculée",
    )
    p.add_argument("--formula", action="store_true",
                   help="chiffres de la formule seulement, sans essai à blanc de llama.cpp")
    p.add_argument("--json", action="store_true", help="sortie JSON pour les programmes")
    p.set_defaults(func=run)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"« {text} » n'est pas un nombre entier") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} ne peut pas être négatif")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        path = resolve_model_path(args.model)
        info = read_model_info(path)
    except ModelFileError as exc:
        if args.json:
            error = {"kind": exc.kind, "message": exc.message_fr, "path": str(exc.path)}
            print(json.dumps({"error": error}, indent=2, ensure_ascii=False))
        else:
            print(exc.message_fr)
        return EXIT_BAD_INPUT
    paths = app_paths()
    settings = Settings.load(paths.settings_file)
    backend = detect_llama_backend(ask_library=False)  # from its files: llama.cpp loads in the probe only
    if args.free_mib:
        gpu = _free_gpu(args.free_mib)
    elif args.vram_mib:
        gpu = _assumed_gpu(args.vram_mib)
    else:
        gpu = _measured_gpu(backend)
    plan, timing = plan_on_this_machine(
        info,
        card=gpu.card,
        backend=backend,
        cpu=detect_cpu(),
        calibration=CalibrationBook.from_settings(settings),
        cache=default_cache(paths.cache_dir),
        wanted_ctx=args.ctx,
        kv_type=args.kv_type,
        cores_left_for_avatar=settings.values.cores_left_for_avatar,
        threads_override=settings.values.threads,
        margin=args.margin_mib * MIB if args.margin_mib is not None else None,
        gpu_offload_supported=gpu.offload_supported,
        dry_run=backend.gpu_offload and not args.formula,
    )
    if args.json:
        document = {
            "model": info.summary_dict(),
            "gpu": gpu.to_dict(),
            "engine": _engine_dict(backend),
            "plan": plan.to_dict(),
            "timing": _timing_dict(timing),
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_text(info, gpu, plan, backend))
    return EXIT_OK


def _engine_dict(backend: LlamaBackend) -> dict[str, Any]:
    return {
        "version": backend.version,
        "backends": list(backend.backends),
        "gpu_backend": backend.gpu_backend,
        "gpu_offload": backend.gpu_offload,
        "lib_dir": backend.lib_dir,
        "summary": backend.summary,
    }


def _timing_dict(timing: PlanTiming) -> dict[str, Any]:
    return {
        "seconds": round(timing.seconds, 4),
        "probe_runs": timing.probe_runs,
        "cached_runs": timing.cached_runs,
        "probe_start_s": round(timing.probe_start_s, 3) if timing.probe_start_s is not None else None,
    }


def _assumed_gpu(vram_mib: int) -> GpuView:
    total = vram_mib * MIB
    used = min(total, TYPICAL_DESKTOP_AND_AVATAR)
    return GpuView(
        source="assumed",
        name=f"carte supposée de {size_fr(total)}",
        free=assumed_free_vram(total),
        total=total,
        offload_supported=True,
        note_fr=f"Windows et l'avatar utilisent déjà {size_fr(used)} de cette carte (valeur habituelle).",
    )


def _free_gpu(free_mib: int) -> GpuView:
    free = free_mib * MIB
    return GpuView(
        source="assumed",
        name="carte supposée",
        free=free,
        total=free,
        offload_supported=True,
        note_fr="Rien d'autre n'est supposé sur cette carte.",
    )


def _measured_gpu(backend: LlamaBackend | None = None) -> GpuView:
    """The first NVIDIA card as NVML sees it; ``backend``: the engine (default: asked to llama_cpp itself)."""
    from tray_app.hardware.gpu import default_nvml_reader

    try:
        reader = default_nvml_reader()
        readings = reader.read()
        reason = reader.unavailable_reason
        reader.close()
    except Exception:  # a broken driver or recording: plan for the processor, say why in the log
        log.exception("reading the GPU failed")
        readings, reason = (), "la carte graphique n'a pas pu être interrogée (voir le journal)"
    if not readings:
        return GpuView("none", "", None, None, False, reason or "pas de carte NVIDIA détectée")
    gpu = readings[0]
    if backend is None:
        backend = detect_llama_backend()
    note = "" if backend.gpu_offload else backend.summary
    if gpu.memory_free is None:  # unknown, not 0: no budget to plan with, so the processor
        note = ("la carte ne dit pas combien de mémoire est libre : le modèle reste sur le processeur. "
                "Mettre à jour le pilote NVIDIA peut régler cela.")
    return GpuView("nvml", gpu.name, gpu.memory_free, gpu.memory_total, backend.gpu_offload, note,
                   gpu.driver_version)


def render_text(info: ModelInfo, gpu: GpuView, plan: MemoryPlan, backend: LlamaBackend | None = None) -> str:
    ctx_max = f", jusqu'à {int_fr(info.n_ctx_train)} jetons" if info.n_ctx_train else ""
    lines = [
        f"Plan mémoire pour « {info.name} »",
        "",
        f"  Fichier          : {info.path}",
        f"  Modèle           : {info.architecture}, {info.n_layers} couches, {info.file_type}, "
        f"{size_fr(info.file_size)}{ctx_max}",
    ]
    if gpu.source == "none":
        lines.append(f"  Carte graphique  : {gpu.note_fr}")
    elif gpu.source == "assumed":
        lines.append(f"  Carte graphique  : {gpu.name}, {size_fr(gpu.free or 0)} libres")
        lines.append(f"                     {gpu.note_fr}")
    elif gpu.free is None:
        lines.append(f"  Carte graphique  : {gpu.name}, mémoire libre inconnue")
        if gpu.note_fr:
            lines.append(f"                     {gpu.note_fr}")
    else:
        free, total = size_fr(gpu.free), size_fr(gpu.total or 0)
        lines.append(f"  Carte graphique  : {gpu.name}, {free} libres sur {total}")
        if gpu.note_fr:
            lines.append(f"                     {gpu.note_fr}")
    if backend is not None:
        lines.append(f"  Moteur           : {backend.summary}")
    if plan.mode == "gpu":
        layers = f"toutes ({plan.n_layers} sur {plan.n_layers}, couche de sortie comprise)"
    elif plan.mode == "partial":
        layers = f"{plan.gpu_layers} sur {plan.n_layers} (couche de sortie sur le processeur)"
    else:
        layers = "aucune : tout sur le processeur"
    lines += [
        "",
        "  Réglages choisis",
        f"    Couches dans la carte graphique : {layers}",
        f"    Mémoire de conversation         : {int_fr(plan.n_ctx)} jetons",
        f"    Cache de conversation           : {plan.kv_type}"
        + (" (attention rapide activée)" if plan.flash_attn else ""),
        f"    Cœurs du processeur             : {plan.threads} — {plan.threads_reason}",
        "",
    ]
    if plan.mode != "cpu":
        lines += _vram_rows(plan)
    lines.append(f"  Mémoire vive prévue pour le modèle : {size_fr(plan.ram)}")
    lines += ["", plan.explain_fr()]
    return "\n".join(lines)


def _vram_rows(plan: MemoryPlan) -> list[str]:
    """The predicted graphics memory: llama.cpp's dry run beside our formula when it ran."""
    v, f = plan.vram, plan.formula_vram
    measured = plan.vram_source == SOURCE_LLAMA and f is not None
    rows = [
        ("Poids du modèle", v.weights, f.weights if f else None),
        ("Cache de conversation", v.kv_cache, f.kv_cache if f else None),
        ("Tampons de calcul", v.compute, f.compute if f else None),
        ("Pilote", v.overhead, None),
        ("Total prévu", v.used, f.used if f else None),
    ]
    lines = ["  Mémoire de la carte graphique prévue" + ("      llama.cpp    formule" if measured else "")]
    for label, value, formula in rows:
        line = f"    {label:<22} {size_fr(value):>9}"
        if measured and formula is not None:
            line += f"  {size_fr(formula):>9}"
            if label == "Total prévu" and formula:
                line += f"  ({'+' if value >= formula else '−'}{percent_fr(abs(value - formula) / formula)})"
        lines.append(line)
    lines.append(f"    {'Marge gardée':<22} {size_fr(v.margin):>9}   pour l'avatar et vos autres programmes")
    lines.append(f"    {'Libre maintenant':<22} {size_fr(plan.free_vram or 0):>9}")
    lines.append("")
    if measured:
        lines.append("  Chiffres de llama.cpp lui-même (essai à blanc, rien n'est chargé), formule à côté.")
    elif plan.dry_run_error:
        lines.append("  L'essai à blanc de llama.cpp n'a pas pu se faire : chiffres de la formule.")
    budget = plan.budget
    if budget is not None:
        if budget.calibration is not None:
            lines.append(f"  Pilote : {budget.calibration.describe_fr()}.")
        else:
            lines.append("  Pilote : valeur habituelle, pas encore mesurée sur cette carte (elle le sera au "
                         "premier chargement).")
        if budget.margin_source == MARGIN_DEFAULT:
            lines.append("  Marge : valeur prudente, faute d'historique des autres programmes.")
        elif budget.margin_source == MARGIN_GIVEN:
            lines.append("  Marge : choisie à la main.")
        elif budget.margin_why_fr():
            lines.append(f"  Marge : {budget.margin_why_fr()}.")
    lines.append("")
    return lines
