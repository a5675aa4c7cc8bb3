"""``desktop-mate-tray plan MODEL``: how the model would be spread between graphics card and processor.

Without ``--vram-mib`` the free graphics memory is read from the NVIDIA driver (NVML), and the installed
llama-cpp-python must be able to use the card; with ``--vram-mib N`` the plan is for a card of N MiB on
which Windows and the avatar already use 1 350 MiB (the reference RTX 4050 laptop), whatever this machine
has. MODEL is a ``.gguf`` path or ``demo``. Exit status: 0 planned, 2 unusable model file or bad option.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from typing import Any

from tray_app.format_fr import int_fr, size_fr
from tray_app.hardware.cpu import detect_cpu
from tray_app.models.discovery import resolve_model_path
from tray_app.models.gguf_info import ModelFileError, ModelInfo, read_model_info
from tray_app.paths import app_paths
from tray_app.planning.memory_plan import (
    DEFAULT_CONTEXT,
    TYPICAL_DESKTOP_AND_AVATAR,
    MemoryPlan,
    assumed_free_vram,
    make_plan,
)
from tray_app.planning.vram_estimate import KV_TYPES, MIB
from tray_app.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class GpuView:
    """The graphics memory the plan was made for."""

    source: str  # "nvml" (measured), "assumed" (--vram-mib), "none"
    name: str
    free: int | None
    total: int | None
    offload_supported: bool
    note_fr: str  # why there is no usable GPU, or the assumption made

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "free": self.free,
            "total": self.total,
            "offload_supported": self.offload_supported,
            "note": self.note_fr,
        }


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
    p.add_argument("--json", action="store_true", help="sortie JSON pour les programmes")
    p.set_defaults(func=run)


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
    settings = Settings.load(app_paths().settings_file)
    gpu = _assumed_gpu(args.vram_mib) if args.vram_mib else _measured_gpu()
    plan = make_plan(
        info,
        free_vram=gpu.free if gpu.source != "none" else None,
        total_vram=gpu.total,
        cpu=detect_cpu(),
        wanted_ctx=args.ctx,
        kv_type=args.kv_type,
        cores_left_for_avatar=settings.values.cores_left_for_avatar,
        threads_override=settings.values.threads,
        gpu_offload_supported=gpu.offload_supported,
    )
    if args.json:
        document = {"model": info.summary_dict(), "gpu": gpu.to_dict(), "plan": plan.to_dict()}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_text(info, gpu, plan))
    return EXIT_OK


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


def _measured_gpu() -> GpuView:
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
    from tray_app.hardware.llama_backend import detect_llama_backend

    backend = detect_llama_backend()
    note = "" if backend.gpu_offload else backend.summary
    if gpu.memory_free is None:  # unknown, not 0: no budget to plan with, so the processor
        note = ("la carte ne dit pas combien de mémoire est libre : le modèle reste sur le processeur. "
                "Mettre à jour le pilote NVIDIA peut régler cela.")
    return GpuView("nvml", gpu.name, gpu.memory_free, gpu.memory_total, backend.gpu_offload, note)


def render_text(info: ModelInfo, gpu: GpuView, plan: MemoryPlan) -> str:
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
        v = plan.vram
        rows = [
            ("Poids du modèle", v.weights, ""),
            ("Cache de conversation", v.kv_cache, ""),
            ("Tampons de calcul", v.compute, ""),
            ("Pilote et CUDA", v.overhead, ""),
            ("Total prévu", v.used, ""),
            ("Marge gardée", v.margin, "pour l'avatar et les autres programmes"),
            ("Libre maintenant", plan.free_vram or 0, ""),
        ]
        lines.append("  Mémoire de la carte graphique prévue")
        for label, value, note in rows:
            lines.append(f"    {label:<22} {size_fr(value):>9}" + (f"   {note}" if note else ""))
        lines.append("")
    lines.append(f"  Mémoire vive prévue pour le modèle : {size_fr(plan.ram)}")
    lines += ["", plan.explain_fr()]
    return "\n".join(lines)
