"""What the tray shows about the monitor: a one-line tooltip summary and the icon state.

Plain functions of the latest :class:`~tray_app.monitoring.MonitorSample` and
:class:`~tray_app.monitoring.AlertState`, so the tray can call them whenever it rebuilds its menu.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication

from tray_app.format_fr import gib_fr, percent_fr, speed_fr
from tray_app.monitoring import AlertState, MonitorSample, VramLevel
from tray_app.ui.icons import IconState


def _tr(text: str) -> str:
    return QCoreApplication.translate("MonitorStatus", text)


def tooltip_summary(sample: MonitorSample | None, state: AlertState | None = None) -> str:
    """One line for the tray tooltip, e.g. « Mémoire graphique 5,2 / 6,0 Go (87 %) · 24 jetons/s ».

    In alert: « Mémoire graphique pleine : 5,9 / 6,0 Go (99 %) · modèle ralenti (3,5 jetons/s) · carte
    très chaude ». Without an NVIDIA GPU: « Processeur 23 % · mémoire 9,1 / 16,0 Go ». Windows cuts
    tooltips at 127 characters: the longest line, with « Desktop-Mate — » in front, stays below.
    """
    if sample is None:
        return _tr("Mesures en cours de démarrage…")
    state = state or AlertState()
    parts: list[str] = []
    gpu = sample.gpu
    fraction = gpu.used_fraction if gpu is not None else None
    if gpu is not None and gpu.memory_total is not None and gpu.memory_used is not None and fraction is not None:
        if state.vram_level is VramLevel.CRITIQUE:
            label = _tr("Mémoire graphique pleine :")
        elif state.vram_level is VramLevel.ATTENTION:
            label = _tr("Mémoire graphique presque pleine :")
        else:
            label = _tr("Mémoire graphique")
        parts.append(
            f"{label} "
            + _tr("{0} / {1} ({2})")
            .replace("{0}", gib_fr(gpu.memory_used).removesuffix(" Go"))
            .replace("{1}", gib_fr(gpu.memory_total))
            .replace("{2}", percent_fr(fraction))
        )
    else:
        parts.append(_tr("Processeur {0}").replace("{0}", percent_fr(sample.cpu_percent / 100)))
        parts.append(
            _tr("mémoire {0} / {1}")
            .replace("{0}", gib_fr(sample.ram_used).removesuffix(" Go"))
            .replace("{1}", gib_fr(sample.ram_total))
        )
    speed = sample.tokens_per_second if sample.model_loaded else None
    if state.overflow_suspected:
        parts.append(_tr("modèle ralenti ({0})").replace("{0}", speed_fr(speed)) if speed else _tr("modèle ralenti"))
    elif speed:
        parts.append(speed_fr(speed))
    if state.gpu_hot:
        parts.append(_tr("carte très chaude"))
    return " · ".join(parts)


def icon_state(host_icon: IconState, state: AlertState | None) -> IconState:
    """The icon to show: the host's state (idle, ready, busy, error), or WARNING while the monitor
    sees « attention », « critique », an overflow or a hot GPU. ERROR (the model cannot run) wins."""
    if host_icon is IconState.ERROR or state is None or not state.needs_attention:
        return host_icon
    return IconState.WARNING
