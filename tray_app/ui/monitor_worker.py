"""The monitor on its own thread: NVML and psutil never run on the UI thread.

:class:`MonitorService` is what the tray creates (in the UI thread); it owns a ``QThread`` and a
:class:`MonitorWorker` living in it, whose ``QTimer`` ticks the core :class:`~tray_app.monitoring.Monitor`
once per interval (1 s). The service relays the worker's results as its own signals, emitted in the UI
thread (queued connections to the service's bound methods), so the tray can connect anything to them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from tray_app.hardware.gpu import NvmlReader
from tray_app.monitoring import (
    AlertSettings,
    AlertState,
    HostMetricsSource,
    HostNotice,
    LiveMachine,
    Monitor,
    MonitorTick,
)
from tray_app.monitoring.history import SampleHistory
from tray_app.settings import Settings

log = logging.getLogger(__name__)


class MonitorWorker(QObject):
    """Ticks the monitor in the thread it was moved to. Use it through :class:`MonitorService`, whose
    signals (same names) are emitted in the UI thread.

    Signals (emitted in the monitor's thread):
        sample_ready(MonitorSample): one per tick, for the gauges.
        tick_ready(MonitorTick): one per tick, the sample with its alert state (for the tray helper).
        state_changed(AlertState): the alert state changed (level, overflow, hot); icon and tooltip.
        notification(str, str): (NotificationKind value, French text) to show in a balloon;
            ``NotificationKind(kind).is_warning`` says which icon.
        protection_requested(ProtectionRequest): the host should act (next load safer, unload when idle).
        recording_progress(int): seconds of measurements still to record.
        recording_finished(bool, str): (written?, French sentence for the user, with the file's path).
        replay_finished(): a replayed timeline has no more samples (never for the real machine).
    """

    sample_ready = Signal(object)
    tick_ready = Signal(object)
    state_changed = Signal(object)
    notification = Signal(str, str)
    protection_requested = Signal(object)
    recording_progress = Signal(int)
    recording_finished = Signal(bool, str)
    replay_finished = Signal()

    def __init__(self, monitor: Monitor, *, speed: float = 1.0) -> None:
        super().__init__()
        self.monitor = monitor
        self.speed = speed
        self._timer: QTimer | None = None
        self._state = AlertState()
        self._record_path: Path | None = None
        self._failures = 0

    @Slot()
    def start(self) -> None:
        if self._timer is None:
            self._timer = QTimer(self)
            self._timer.timeout.connect(self.tick)
        self._timer.start(max(1, round(self.monitor.interval_s * 1000 / self.speed)))
        self.tick()

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.monitor.close()

    @Slot()
    def tick(self) -> None:
        try:
            result = self.monitor.tick()
        except Exception:
            self._failures += 1
            if self._failures in (1, 10, 100):  # the log keeps the traceback without filling up
                log.exception("monitor tick failed (%d times)", self._failures)
            return
        self._failures = 0
        if result is None:
            if self._timer is not None:
                self._timer.stop()
            self.replay_finished.emit()
            return
        self._publish(result)
        self._continue_recording()

    def _publish(self, tick: MonitorTick) -> None:
        self.sample_ready.emit(tick.sample)
        self.tick_ready.emit(tick)
        if tick.state.alerts != self._state.alerts:
            self._state = tick.state
            self.state_changed.emit(tick.state)
        for note in tick.notifications:
            self.notification.emit(note.kind.value, note.text)
        if tick.protection is not None:
            self.protection_requested.emit(tick.protection)

    @Slot(object)
    def push_host_event(self, event: HostNotice) -> None:
        for note in self.monitor.push_host_event(event):
            self.notification.emit(note.kind.value, note.text)

    @Slot(object)
    def configure(self, settings: AlertSettings) -> None:
        self.monitor.configure(settings)

    # -- « Enregistrer 5 minutes de mesures » ---------------------------------------------------
    @Slot(float, str)
    def start_recording(self, seconds: float, path: str) -> None:
        self.monitor.start_recording(seconds)
        self._record_path = Path(path)
        self.recording_progress.emit(round(seconds))

    def _continue_recording(self) -> None:
        recorder = self.monitor.recorder
        if recorder is None or self._record_path is None:
            return
        if not recorder.complete:
            self.recording_progress.emit(round((recorder.wanted - recorder.count) * recorder.interval_s))
            return
        path, self._record_path = self._record_path, None
        self.monitor.recorder = None
        try:
            recorder.write(path)
        except (OSError, ValueError) as exc:
            log.warning("recording not written to %s: %s", path, exc)
            self.recording_progress.emit(0)
            self.recording_finished.emit(
                False,
                self.tr("Les mesures n'ont pas pu être enregistrées ({0}). Vérifiez l'espace disque, puis "
                        "réessayez.").replace("{0}", getattr(exc, "strerror", None) or str(exc)),
            )
            return
        self.recording_progress.emit(0)
        self.recording_finished.emit(
            True,
            self.tr("Mesures enregistrées dans {0}. Vous pouvez joindre ce fichier à un signalement.").replace(
                "{0}", str(path)
            ),
        )


class MonitorService(QObject):
    """Owns the monitor's thread and relays its results to the UI thread.

    Create it, connect to its signals, then :meth:`start`. Every signal below is emitted in the thread
    that created the service (the UI thread), so any slot may touch widgets — lambdas included. (Connect
    to :attr:`worker`'s own signals only from QObjects' bound methods: a lambda connected there runs
    in the monitor's thread.) Its methods may be called from any thread, except :meth:`stop`.

    Signals:
        sample_ready(MonitorSample): one per tick, for the gauges.
        tick_ready(MonitorTick): one per tick: the sample and its alert state (gauges window, tray helper).
        state_changed(AlertState): the alerts changed (level, overflow, hot, protection): icon, tooltip.
        notification(str, str): (NotificationKind value, French text) to show in a balloon;
            ``NotificationKind(kind).is_warning`` tells which icon.
        protection_requested(ProtectionRequest): the host should act (next load safer, unload when idle).
        recording_progress(int): seconds of measurements still to record (0: finished).
        recording_finished(bool, str): (written?, French sentence for the user, with the file's path).
        replay_finished(): a replayed timeline is over (never with the real machine).
    """

    sample_ready = Signal(object)
    tick_ready = Signal(object)
    state_changed = Signal(object)
    notification = Signal(str, str)
    protection_requested = Signal(object)
    recording_progress = Signal(int)
    recording_finished = Signal(bool, str)
    replay_finished = Signal()

    _host_event = Signal(object)
    _configure = Signal(object)
    _record = Signal(float, str)
    _stop = Signal()

    def __init__(self, monitor: Monitor, *, speed: float = 1.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.monitor = monitor
        self.latest: MonitorTick | None = None  # the last tick that reached the UI thread
        self.seconds_left_to_record = 0
        self.worker_thread = QThread()
        self.worker_thread.setObjectName("desktop-mate-monitor")
        self.worker = MonitorWorker(monitor, speed=speed)
        self.worker.moveToThread(self.worker_thread)
        self.worker_thread.started.connect(self.worker.start)
        self._host_event.connect(self.worker.push_host_event)
        self._configure.connect(self.worker.configure)
        self._record.connect(self.worker.start_recording)
        self._stop.connect(self.worker.stop, Qt.ConnectionType.BlockingQueuedConnection)
        # Bound methods of this QObject: Qt queues these calls to the UI thread.
        w = self.worker
        w.tick_ready.connect(self._on_tick)
        w.state_changed.connect(self._on_state)
        w.notification.connect(self._on_notification)
        w.protection_requested.connect(self._on_protection)
        w.recording_progress.connect(self._on_progress)
        w.recording_finished.connect(self._on_recording_finished)
        w.replay_finished.connect(self._on_replay_finished)

    @property
    def history(self) -> SampleHistory:
        return self.monitor.history

    @property
    def recording(self) -> bool:
        """True while « Enregistrer 5 minutes de mesures » is running (for the menu entry)."""
        return self.seconds_left_to_record > 0

    def start(self) -> None:
        self.worker_thread.start()

    def push_host_event(self, event: HostNotice) -> None:
        self._host_event.emit(event)

    def configure(self, settings: AlertSettings) -> None:
        self._configure.emit(settings)

    def start_recording(self, path: Path, seconds: float = 300) -> None:
        self.seconds_left_to_record = round(seconds)
        self._record.emit(float(seconds), str(path))

    def stop(self, timeout_ms: int = 5000) -> None:
        """Stop ticking, close NVML and end the thread (waits at most ``timeout_ms``).

        Call it from the UI thread (never from a slot running in the monitor's thread).
        """
        if not self.worker_thread.isRunning():
            return
        self._stop.emit()  # blocking: the worker has stopped its timer and closed NVML when this returns
        self.worker_thread.quit()
        if not self.worker_thread.wait(timeout_ms):
            log.warning("monitor thread did not stop within %d ms", timeout_ms)

    # -- relays (run in the UI thread) ------------------------------------------------------------
    @Slot(object)
    def _on_tick(self, tick: MonitorTick) -> None:
        self.latest = tick
        self.sample_ready.emit(tick.sample)
        self.tick_ready.emit(tick)

    @Slot(object)
    def _on_state(self, state: AlertState) -> None:
        self.state_changed.emit(state)

    @Slot(str, str)
    def _on_notification(self, kind: str, text: str) -> None:
        self.notification.emit(kind, text)

    @Slot(object)
    def _on_protection(self, request: object) -> None:
        self.protection_requested.emit(request)

    @Slot(int)
    def _on_progress(self, seconds_left: int) -> None:
        self.seconds_left_to_record = seconds_left
        self.recording_progress.emit(seconds_left)

    @Slot(bool, str)
    def _on_recording_finished(self, ok: bool, message: str) -> None:
        self.seconds_left_to_record = 0
        self.recording_finished.emit(ok, message)

    @Slot()
    def _on_replay_finished(self) -> None:
        self.replay_finished.emit()


def live_monitor_service(
    settings: Settings, host_metrics: HostMetricsSource | None = None, nvml: NvmlReader | None = None
) -> MonitorService:
    """The service the tray starts: the real machine (or ``DESKTOP_MATE_NVML_REPLAY``), the user's
    thresholds. Cheap to call on the UI thread: NVML is opened by the first read, off the UI thread.
    ``nvml``: the program's shared NVML session (its owner closes it)."""
    machine = LiveMachine(nvml=nvml)
    return MonitorService(Monitor(machine, host_metrics, AlertSettings.from_settings(settings)))
