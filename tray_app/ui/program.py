"""The running tray program: the icon and its parts (model host, monitor, avatar) wired together.

Each part is a small controller with its own menu section (model, « Optimiser… », gauges and alerts,
avatar); this module only connects their signals.
Nothing slow happens here: the model loads on the first request (in the runner process), NVML opens in
the monitor's thread, pyqtgraph loads when the gauges window is first opened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from tray_app.hardware.gpu import default_nvml_reader
from tray_app.monitoring.alert_settings import AlertSettings
from tray_app.monitoring.alerts import AlertState
from tray_app.monitoring.monitor import MonitorTick
from tray_app.monitoring.notification import NotificationKind
from tray_app.monitoring.recording import default_recording_path
from tray_app.paths import AppPaths
from tray_app.settings import Settings
from tray_app.ui.avatar_controller import AvatarController
from tray_app.ui.host_controller import HostController
from tray_app.ui.menu_entries import MenuEntry
from tray_app.ui.monitor_menu import monitor_entries
from tray_app.ui.monitor_status import icon_state, tooltip_summary
from tray_app.ui.monitor_worker import MonitorService, live_monitor_service
from tray_app.ui.optimize_controller import OptimizeController
from tray_app.ui.tray import TrayController, TrayStatus

if TYPE_CHECKING:  # imported when first opened: pyqtgraph stays out of start-up
    from tray_app.ui.gauges_window import GaugesWindow

log = logging.getLogger(__name__)


class TrayProgram(QObject):
    def __init__(self, settings: Settings, paths: AppPaths, *, use_tray: bool) -> None:
        super().__init__()
        self.settings = settings
        self.paths = paths
        self.tray = TrayController(settings, paths, use_tray=use_tray)

        def notify(text: str, warning: bool = False) -> None:
            self.tray.notify(text, warning=warning)

        # One NVML session for the plan, the re-optimisation check and the monitor (opened by the first
        # of them to read it, off the UI thread; closed at the end).
        self.nvml = default_nvml_reader()
        self.host = HostController(settings, paths, notify, nvml=self.nvml)
        self.avatar = AvatarController(settings, notify)
        self.optimize = OptimizeController(settings, paths, self.host, notify, nvml=self.nvml)
        self.monitor: MonitorService = live_monitor_service(
            settings, host_metrics=self.host.host_metrics, nvml=self.nvml
        )
        self.host.control.vram_history = self.monitor.history.other_vram  # the plan's margin is sized from it
        self.gauges: GaugesWindow | None = None  # created on first open (pyqtgraph loads then)
        self._alert_state: AlertState | None = None
        self._tooltip = ""

        self.tray.sections += [self.host.entries, self.optimize.entries, self._monitor_entries, self.avatar.entries]
        self.tray.settings_changed.connect(self._on_settings_changed)
        self.host.changed.connect(self._on_host_changed)
        self.host.models_found.connect(self.host.set_models)
        self.host.optimize_requested.connect(self.optimize.open)
        self.host.monitor_event.connect(self.monitor.push_host_event)
        self.avatar.state_changed.connect(lambda _state: self.tray.rebuild_menu())
        self.optimize.advice_changed.connect(self.tray.rebuild_menu)
        self.monitor.notification.connect(
            lambda kind, text: self.tray.notify(text, warning=NotificationKind(kind).is_warning)
        )
        self.monitor.tick_ready.connect(self._on_tick)
        self.monitor.state_changed.connect(lambda _state: self._refresh())
        self.monitor.protection_requested.connect(self.host.protect)
        self.monitor.recording_finished.connect(lambda ok, text: self.tray.notify(text, warning=not ok))

    def start(self) -> None:
        self.host.start()
        self.host.add_reply_hook(self.avatar.on_assistant_reply)
        self.host.scan_models_in_background()
        self.avatar.start()
        self.monitor.start()
        self._refresh()
        self.tray.show()
        self.optimize.start()

    def stop(self) -> None:
        self.optimize.stop()
        self.monitor.stop()
        self.avatar.stop()
        self.host.stop()
        if self.gauges is not None:
            self.gauges.close()
        self.tray.close()
        self.nvml.close()

    # -- icon, tooltip, menu -----------------------------------------------------------------------
    def _on_host_changed(self) -> None:
        """The model, its state or its address changed: the fallback window shows them at once (the tray's
        menu is rebuilt each time it opens)."""
        self._refresh()
        if self.tray.window is not None:
            self.tray.rebuild_menu()

    def _refresh(self) -> None:
        icon = icon_state(self.host.icon, self._alert_state)
        self.tray.set_status(TrayStatus(self.host.status_line(), icon))
        self.tray.set_tooltip(self._tooltip or f"Desktop-Mate — {self.host.status_line()}")

    def _on_tick(self, tick: MonitorTick) -> None:
        self._tooltip = tooltip_summary(tick.sample, tick.state)
        if tick.state != self._alert_state:
            self._alert_state = tick.state
            self._refresh()
        else:
            self.tray.set_tooltip(self._tooltip)
        if self.gauges is not None and self.gauges.isVisible():
            self.gauges.show_tick(tick)

    def _monitor_entries(self) -> list[MenuEntry]:
        return monitor_entries(
            self.settings,
            open_gauges=self.open_gauges,
            start_recording=self.start_recording,
            seconds_left_to_record=self.monitor.seconds_left_to_record,
            on_settings_changed=lambda: self.monitor.configure(AlertSettings.from_settings(self.settings)),
        )

    # -- actions -----------------------------------------------------------------------------------
    def open_gauges(self) -> None:
        if self.gauges is None:
            from tray_app.ui.gauges_window import GaugesWindow
            from tray_app.ui.icons import app_icon

            self.gauges = GaugesWindow(self.monitor.history, AlertSettings.from_settings(self.settings))
            self.gauges.setWindowIcon(app_icon())
            self.gauges.record_requested.connect(self.start_recording)
            self.monitor.recording_progress.connect(self.gauges.set_recording)
        self.gauges.show()
        self.gauges.raise_()
        self.gauges.activateWindow()

    def start_recording(self) -> None:
        if not self.monitor.recording:
            self.monitor.start_recording(default_recording_path(self.paths.data_dir))
            self.tray.notify(self.tr("Enregistrement de 5 minutes de mesures commencé."))

    def _on_settings_changed(self) -> None:
        alert_settings = AlertSettings.from_settings(self.settings)
        self.monitor.configure(alert_settings)
        if self.gauges is not None:
            self.gauges.set_settings(alert_settings)
        self.host.apply_settings()
        self.avatar.apply_settings()
        self._refresh()
