"""The monitor: one call per tick reads the machine, keeps the history and runs the alert engine.

Used by the Qt worker (``tray_app.ui.monitor_worker``, on its own thread) and by the headless
``desktop-mate-tray monitor`` command. Not thread-safe by itself: call it from one thread; only
:attr:`history` may be read from another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tray_app.monitoring.alert_settings import AlertSettings
from tray_app.monitoring.alerts import AlertEngine, AlertState
from tray_app.monitoring.history import DEFAULT_CAPACITY, SampleHistory
from tray_app.monitoring.host_metrics import HostMetrics, HostMetricsSource, HostNotice
from tray_app.monitoring.machine_source import MachineSource, ReplayMachine
from tray_app.monitoring.model_share import ModelShareEstimator
from tray_app.monitoring.notification import Notification
from tray_app.monitoring.protection import ProtectionRequest
from tray_app.monitoring.recording import TimelineRecorder
from tray_app.monitoring.sample import MonitorSample

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonitorTick:
    sample: MonitorSample
    state: AlertState
    notifications: tuple[Notification, ...] = ()
    protection: ProtectionRequest | None = None


class Monitor:
    """Sampler + bounded history + alert engine (+ an optional recorder)."""

    def __init__(
        self,
        source: MachineSource,
        host_metrics: HostMetricsSource | None = None,
        settings: AlertSettings | None = None,
        *,
        history_capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.source = source
        if host_metrics is None and isinstance(source, ReplayMachine):
            host_metrics = source.host_metrics
        self._host_metrics = host_metrics
        self.engine = AlertEngine(settings)
        self.history = SampleHistory(history_capacity)
        self.share = ModelShareEstimator()
        self.latest: MonitorTick | None = None
        self.recorder: TimelineRecorder | None = None
        self._host_failed = False

    @property
    def interval_s(self) -> float:
        return self.source.interval_s

    def configure(self, settings: AlertSettings) -> None:
        self.engine.configure(settings)

    def tick(self) -> MonitorTick | None:
        """Read, store and judge one sample; None when a replay is over."""
        snapshot = self.source.read()
        if snapshot is None:
            return None
        host = self._read_host()
        gpu = snapshot.gpu
        model_vram, estimated = self.share.update(gpu, host, snapshot.taken_at)
        sample = MonitorSample(
            at=snapshot.taken_at,
            gpu=gpu,
            gpu_unavailable_reason=snapshot.gpu_unavailable_reason,
            cpu_percent=snapshot.cpu_percent,
            ram_total=snapshot.ram_total,
            ram_used=snapshot.ram_total - snapshot.ram_available,
            host=host,
            model_vram=model_vram,
            model_vram_estimated=estimated,
        )
        self.history.append(sample)
        update = self.engine.update(sample)
        notes = update.notifications
        if isinstance(self.source, ReplayMachine):  # host events recorded with this sample
            for event in self.source.host_events():
                if self.recorder is not None:
                    self.recorder.add_event(event)
                notes += self.engine.host_event(event, now=sample.at)
        if self.recorder is not None:
            self.recorder.add(sample)
        self.latest = MonitorTick(sample, update.state, notes, update.protection)
        return self.latest

    def push_host_event(self, event: HostNotice) -> tuple[Notification, ...]:
        """A host event (model unloaded, runner restarted); returns the notifications to show."""
        if self.recorder is not None:
            self.recorder.add_event(event)
        now = self.latest.sample.at if self.latest and isinstance(self.source, ReplayMachine) else None
        return self.engine.host_event(event, now=now)

    def start_recording(self, seconds: float) -> TimelineRecorder:
        self.recorder = TimelineRecorder(seconds, self.interval_s)
        return self.recorder

    def _read_host(self) -> HostMetrics | None:
        if self._host_metrics is None:
            return None
        try:
            host = self._host_metrics()
        except Exception:  # the host is another component: its failure must not stop the gauges
            if not self._host_failed:
                log.exception("host metrics unavailable")
                self._host_failed = True
            return None
        self._host_failed = False
        return host

    def close(self) -> None:
        self.source.close()
