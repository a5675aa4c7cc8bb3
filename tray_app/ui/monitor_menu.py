"""The tray menu's entries for the monitor: « Jauges… », « Enregistrer 5 minutes de mesures » and the
« Notifications » submenu where each kind of notification is ticked on or off.

Plain :class:`~tray_app.ui.menu_entries.MenuEntry` data, rebuilt with the rest of the menu each time it
opens (``aboutToShow``): the tray splices :func:`monitor_entries` into its ``entries()`` list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication

from tray_app.monitoring import NotificationKind
from tray_app.settings import Settings
from tray_app.settings_schema import SettingError
from tray_app.ui.menu_entries import MenuEntry

log = logging.getLogger(__name__)


def _tr(text: str) -> str:
    return QCoreApplication.translate("MonitorMenu", text)


def notification_labels() -> dict[NotificationKind, str]:
    """The French name of each kind the user may silence (PROTECTION reports an action: always told)."""
    return {
        NotificationKind.VRAM_WARNING: _tr("Mémoire graphique presque pleine"),
        NotificationKind.VRAM_CRITICAL: _tr("Mémoire graphique pleine"),
        NotificationKind.VRAM_OVERFLOW: _tr("Modèle ralenti faute de mémoire graphique"),
        NotificationKind.GPU_HOT: _tr("Carte graphique trop chaude"),
        NotificationKind.MODEL_UNLOADED: _tr("Modèle retiré de la mémoire après une pause"),
        NotificationKind.RUNNER_RESTARTED: _tr("Moteur du modèle relancé"),
    }


def monitor_entries(
    settings: Settings,
    *,
    open_gauges: Callable[[], None],
    start_recording: Callable[[], None],
    seconds_left_to_record: int,
    on_settings_changed: Callable[[], None],
) -> list[MenuEntry]:
    """« Jauges… », the recording entry (disabled with the time left while it runs) and « Notifications ».

    ``on_settings_changed`` runs after a notification was switched on or off and the settings saved (the
    tray passes ``AlertSettings.from_settings(settings)`` to ``MonitorService.configure``).
    """
    if seconds_left_to_record > 0:
        minutes, seconds = divmod(seconds_left_to_record, 60)
        left = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
        record = MenuEntry(_tr("Enregistrement des mesures… encore {0}").replace("{0}", left), start_recording,
                           enabled=False)
    else:
        record = MenuEntry(_tr("Enregistrer 5 minutes de mesures"), start_recording)
    toggles = tuple(
        MenuEntry(label, _toggle(settings, kind, on_settings_changed), checked=bool(settings.get(key)))
        for kind, label in notification_labels().items()
        if (key := kind.setting_key) is not None
    )
    return [
        MenuEntry(_tr("Jauges de la mémoire graphique…"), open_gauges),
        record,
        MenuEntry(_tr("Notifications"), children=toggles),
    ]


def _toggle(settings: Settings, kind: NotificationKind, on_changed: Callable[[], None]) -> Callable[[], None]:
    key = kind.setting_key or ""

    def flip() -> None:
        try:
            settings.set(key, not settings.get(key))
            settings.save()
        except (SettingError, OSError) as exc:
            log.warning("notification setting %s not saved: %s", key, exc)
            return
        on_changed()

    return flip
