"""What ``doctor`` reports: the machine as detected and the settings the program would choose.

Plain data (``build_report``) rendered either as French text for people or as JSON for programs.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

from tray_app import __version__
from tray_app.format_fr import gib_fr
from tray_app.hardware.cpu import CpuInfo, detect_cpu
from tray_app.hardware.gpu import GpuReading, NvmlReader, default_nvml_reader
from tray_app.hardware.gpu_calibration import Calibration, CalibrationBook, card_key
from tray_app.hardware.llama_backend import LlamaBackend, detect_llama_backend
from tray_app.hardware.system_info import describe_system
from tray_app.hardware.threads import ThreadAdvice, recommend_threads
from tray_app.settings import Settings


@dataclass(frozen=True)
class DoctorReport:
    version: str
    system: str
    python: str
    cpu: CpuInfo
    ram_available: int
    gpus: tuple[GpuReading, ...]
    gpu_unavailable_reason: str
    llama: LlamaBackend
    threads: ThreadAdvice
    threads_overridden: bool
    calibration: Calibration | None = None  # this card's measured driver overhead, for this engine
    calibrations: tuple[Calibration, ...] = ()  # every card and driver measured on this machine

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpu"] = data["gpus"][0] if data["gpus"] else None
        data["llama"]["gpu_backend"] = self.llama.gpu_backend
        data["llama"]["backend_fr"] = self.llama.name_fr
        data["llama"]["summary"] = self.llama.summary
        return data


def build_report(settings: Settings, nvml: NvmlReader | None = None) -> DoctorReport:
    import psutil

    cpu = detect_cpu()
    reader = nvml or default_nvml_reader()
    gpus = reader.read()
    llama = detect_llama_backend()
    advice = recommend_threads(
        cpu,
        # Before a model is chosen, assume a partial offload on a usable GPU: the CPU rule applies.
        gpu_offload_fraction=0.0,
        cores_left_for_avatar=settings.values.cores_left_for_avatar,
    )
    overridden = settings.values.threads > 0
    if overridden:
        advice = ThreadAdvice(settings.values.threads, "Choisi à la main dans les paramètres.")
    book = CalibrationBook.from_settings(settings)
    calibration = None
    if gpus:
        calibration = book.get(card_key(gpus[0].name, gpus[0].driver_version, llama.gpu_backend))
    return DoctorReport(
        version=__version__,
        system=describe_system(),
        python=sys.version.split()[0],
        cpu=cpu,
        ram_available=psutil.virtual_memory().available,
        gpus=gpus,
        gpu_unavailable_reason="" if gpus else reader.unavailable_reason,
        llama=llama,
        threads=advice,
        threads_overridden=overridden,
        calibration=calibration,
        calibrations=tuple(book.entries.values()),
    )


def render_text(r: DoctorReport) -> str:
    cpu = r.cpu
    lines = [f"Desktop-Mate {r.version} — diagnostic de cette machine", ""]
    lines.append(f"Système : {r.system}")
    lines.append(f"Processeur : {cpu.model}")
    cores = f"  {cpu.physical_cores} cœurs physiques, {cpu.logical_cpus} processeurs logiques"
    if cpu.hybrid:
        cores += f" ({cpu.performance_cores} cœurs rapides + {cpu.efficiency_cores} cœurs économes)"
    lines.append(cores)
    lines.append(f"Mémoire vive : {gib_fr(cpu.ram_total)} au total, {gib_fr(r.ram_available)} libres")
    if r.gpus:
        for g in r.gpus:
            lines.append(f"Carte graphique : {g.name} (pilote {g.driver_version or 'inconnu'})")
            if g.memory_used is None or g.memory_total is None or g.memory_free is None:
                lines.append("  Mémoire graphique : inconnue (le pilote de la carte ne la donne pas)")
            else:
                lines.append(
                    f"  Mémoire graphique : {gib_fr(g.memory_used)} utilisés sur {gib_fr(g.memory_total)}, "
                    f"{gib_fr(g.memory_free)} libres"
                )
            extras = []
            if g.utilization_percent is not None:
                extras.append(f"occupée à {g.utilization_percent} %")
            if g.temperature_c is not None:
                extras.append(f"{g.temperature_c} °C")
            if g.power_w is not None:
                extras.append(f"{g.power_w:.0f} W".replace(".", ","))
            if extras:
                lines.append("  " + ", ".join(extras))
    else:
        lines.append(f"Carte graphique : {r.gpu_unavailable_reason}")
    lines.append(f"Moteur du modèle : {r.llama.summary}")
    if r.llama.installed:
        lines.append(f"  Le plan mémoire est fait pour ce moteur : {r.llama.name_fr}.")
    if r.calibration is not None:
        lines.append(f"  Pilote, mesuré sur cette carte : {r.calibration.describe_fr()}.")
    elif r.gpus and r.llama.gpu_offload:
        lines.append("  Pas encore mesuré sur cette carte : ce sera fait au premier chargement du modèle.")
    lines.append("")
    lines.append("Recommandation")
    lines.append(f"  Cœurs du processeur pour le modèle : {r.threads.threads} — {r.threads.reason}")
    if r.gpus and r.llama.gpu_offload and r.gpus[0].memory_free is None:
        lines.append(
            "  La carte graphique ne dit pas combien de mémoire est libre : le modèle tournera sur le "
            "processeur pour ne pas la remplir. Mettre à jour le pilote NVIDIA peut régler cela."
        )
    elif r.gpus and r.llama.gpu_offload:
        lines.append("  La carte graphique sera utilisée pour accélérer le modèle.")
    elif r.gpus:
        lines.append(
            "  Une carte NVIDIA est là, mais le moteur installé ne sait utiliser que le processeur : "
            "réinstallez le programme avec le moteur pour carte graphique pour aller plus vite."
        )
    else:
        lines.append("  Le modèle tournera sur le processeur (plus lent qu'avec une carte graphique).")
    return "\n".join(lines)
