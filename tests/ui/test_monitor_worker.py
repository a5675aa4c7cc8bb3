"""The Qt worker: ticks in its own thread, signals to the UI thread, host events, recording, stop."""

from __future__ import annotations

import json
import threading

from tests.conftest import DATA, RTX4050_RECORDING
from tray_app.monitoring import (
    AlertSettings,
    HostNotice,
    HostNoticeKind,
    Monitor,
    ReplayMachine,
    VramLevel,
)
from tray_app.ui.monitor_worker import MonitorService, live_monitor_service


class ThreadSpy(ReplayMachine):
    """A replay that notes which thread reads it (NVML must never be read on the UI thread)."""

    threads: set[int]

    def read(self):
        self.threads.add(threading.get_ident())
        return super().read()


def service_for(path, speed=200.0, **kwargs) -> tuple[MonitorService, ThreadSpy]:
    source = ThreadSpy(path, start_at=0, **kwargs)
    source.threads = set()
    return MonitorService(Monitor(source), speed=speed), source


def test_ticks_run_off_the_ui_thread_and_signals_arrive(qtbot):
    service, source = service_for(RTX4050_RECORDING, runner_pid=5151)
    samples, notes, states, protections, receivers = [], [], [], [], set()
    service.sample_ready.connect(samples.append)
    service.sample_ready.connect(lambda _: receivers.add(threading.get_ident()))
    service.notification.connect(lambda kind, text: notes.append((kind, text)))
    service.state_changed.connect(states.append)
    service.protection_requested.connect(protections.append)
    with qtbot.waitSignal(service.replay_finished, timeout=15000):
        service.start()
    service.stop()
    assert len(samples) == 240
    assert threading.get_ident() not in source.threads and len(source.threads) == 1  # NVML off the UI thread
    assert receivers == {threading.get_ident()}  # the service's signals arrive in the UI thread
    assert service.latest is not None and service.latest.sample is samples[-1]
    assert [k for k, _ in notes] == ["vram_warning", "vram_critical", "protection"]
    assert all(text and "Traceback" not in text for _, text in notes)
    assert [s.vram_level for s in states if s.vram_level is not VramLevel.NORMAL][:2] == [
        VramLevel.ATTENTION, VramLevel.CRITIQUE]
    assert len(protections) == 1
    assert len(service.history) == 240
    assert not service.worker_thread.isRunning()


def test_host_events_can_be_pushed_from_any_thread(qtbot):
    service, _ = service_for(RTX4050_RECORDING, speed=1.0)
    notes = []
    service.notification.connect(lambda kind, text: notes.append(kind))
    with qtbot.waitSignal(service.sample_ready, timeout=5000):
        service.start()
    pusher = threading.Thread(target=service.push_host_event,
                              args=(HostNotice(HostNoticeKind.RUNNER_RESTARTED_SAFER, detail_fr="contexte réduit"),))
    with qtbot.waitSignal(service.notification, timeout=5000):
        pusher.start()
    pusher.join()
    service.stop()
    assert notes == ["runner_restarted"]


def test_settings_changes_reach_the_worker(qtbot):
    service, _ = service_for(RTX4050_RECORDING, runner_pid=5151)
    notes = []
    service.notification.connect(lambda kind, text: notes.append(kind))
    service.configure(AlertSettings(warning_fraction=0.5, critical_fraction=0.99, protection_enabled=False))
    with qtbot.waitSignal(service.replay_finished, timeout=15000):
        service.start()
    service.stop()
    assert notes == ["vram_warning"]  # 84 % is « attention » at 50 %; 97 % never reaches 99 %


def test_record_five_minutes_writes_a_replayable_file(qtbot, tmp_path):
    service, _ = service_for(DATA / "rtx4050_overflow.json", speed=500.0)
    target = tmp_path / "mesures" / "m.json"
    progress = []
    service.recording_progress.connect(progress.append)
    service.start_recording(target, seconds=20)
    assert service.recording
    with qtbot.waitSignal(service.recording_finished, timeout=15000) as blocker:
        service.start()
    ok, message = blocker.args
    qtbot.waitUntil(lambda: not service.recording, timeout=2000)
    service.stop()
    assert ok and str(target) in message and message.startswith("Mesures enregistrées dans")
    assert progress[0] == 20 and progress[-1] == 0
    document = json.loads(target.read_text(encoding="utf-8"))
    assert len(document["samples"]) == 20
    assert ReplayMachine(target).read().gpu.name.startswith("NVIDIA")


def test_a_recording_that_cannot_be_written_is_explained(qtbot, tmp_path):
    service, _ = service_for(RTX4050_RECORDING, speed=500.0)
    blocker_file = tmp_path / "not-a-folder"
    blocker_file.write_text("x")
    service.start_recording(blocker_file / "m.json", seconds=3)
    with qtbot.waitSignal(service.recording_finished, timeout=15000) as blocker:
        service.start()
    service.stop()
    ok, message = blocker.args
    assert not ok and "n'ont pas pu être enregistrées" in message and "réessayez" in message


def test_a_failing_tick_is_logged_and_the_worker_goes_on(qtbot, caplog):
    service, source = service_for(RTX4050_RECORDING, speed=100.0)
    real_read, calls = source.read, []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("driver hiccup")
        return real_read()

    source.read = flaky
    samples = []
    service.sample_ready.connect(samples.append)
    service.start()
    qtbot.waitUntil(lambda: len(samples) >= 5, timeout=5000)
    service.stop()
    assert "monitor tick failed" in caplog.text and "driver hiccup" in caplog.text


def test_live_service_uses_the_users_settings(qtbot, monkeypatch):
    from tray_app.paths import app_paths
    from tray_app.settings import Settings

    monkeypatch.setenv("DESKTOP_MATE_NVML_REPLAY", str(RTX4050_RECORDING))
    settings = Settings.load(app_paths().settings_file)
    settings.set("vram_warning_percent", 80)
    service = live_monitor_service(settings, host_metrics=lambda: None)
    assert service.monitor.engine.settings.warning_fraction == 0.80
    with qtbot.waitSignal(service.sample_ready, timeout=5000) as blocker:
        service.start()
    service.stop()
    assert blocker.args[0].gpu.name.endswith("Laptop GPU")


def test_installed_pyside_does_not_lose_references():
    """PySide6-Essentials 6.12.0 lost a reference to True per emit and to None per void call, and a
    1 Hz monitor aborted within minutes (pyproject excludes it). A PySide6 with that bug fails here."""
    import sys

    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class Emitter(QObject):
        changed = Signal(object)

    app = QCoreApplication.instance() or QCoreApplication([])
    emitter = Emitter()
    emitter.changed.connect(lambda value: None)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(500):
        emitter.changed.emit(i)
        emitter.setObjectName("x")
        app.processEvents()
    assert sys.getrefcount(True) - true_before > -100
    assert sys.getrefcount(None) - none_before > -100
