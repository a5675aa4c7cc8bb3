"""Monitoring without Qt: 1 Hz samples of the GPU, CPU, RAM and model host; alerts and protection.

Public API::

    Monitor(source, host_metrics=None, settings=None).tick() -> MonitorTick | None
    LiveMachine() / ReplayMachine(path_or_dict, loop=False, runner_pid=None)   # sources
    HostMetrics, HostNotice, HostNoticeKind                                       # from the host
    AlertSettings.from_settings(settings), AlertEngine, AlertState, VramLevel
    Notification, NotificationKind, ProtectionRequest, ProtectionAction
    SampleHistory (bounded, compact), TimelineRecorder (« Enregistrer 5 minutes de mesures »)
"""

from __future__ import annotations

from tray_app.monitoring.alert_settings import AlertSettings
from tray_app.monitoring.alerts import AlertEngine, AlertState, AlertUpdate, VramLevel
from tray_app.monitoring.history import SampleHistory
from tray_app.monitoring.host_metrics import HostMetrics, HostMetricsSource, HostNotice, HostNoticeKind
from tray_app.monitoring.machine_source import LiveMachine, MachineSource, ReplayMachine
from tray_app.monitoring.monitor import Monitor, MonitorTick
from tray_app.monitoring.notification import Notification, NotificationKind
from tray_app.monitoring.protection import ProtectionAction, ProtectionReason, ProtectionRequest
from tray_app.monitoring.recording import TimelineRecorder
from tray_app.monitoring.sample import MonitorSample

__all__ = [
    "AlertEngine",
    "AlertSettings",
    "AlertState",
    "AlertUpdate",
    "HostNotice",
    "HostNoticeKind",
    "HostMetrics",
    "HostMetricsSource",
    "LiveMachine",
    "MachineSource",
    "Monitor",
    "MonitorSample",
    "MonitorTick",
    "Notification",
    "NotificationKind",
    "ProtectionAction",
    "ProtectionReason",
    "ProtectionRequest",
    "ReplayMachine",
    "SampleHistory",
    "TimelineRecorder",
    "VramLevel",
]
