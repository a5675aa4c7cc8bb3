"""The host as the tray and ``serve`` run it, without Qt: plans, events in plain words, settings changes."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from tests.conftest import free_port
from tray_app.hardware.gpu import NvmlReader
from tray_app.host.host_control import HostControl, HostOptions
from tray_app.host.host_state import HostState
from tray_app.monitoring.host_metrics import HostNotice, HostNoticeKind
from tray_app.paths import app_paths
from tray_app.settings import Settings


class Heard:
    def __init__(self) -> None:
        self.notices: list[HostNotice] = []
        self.said: list[tuple[str, bool]] = []
        self.changed = threading.Event()

    def notice(self, notice: HostNotice) -> None:
        self.notices.append(notice)

    def notify(self, text: str, warning: bool) -> None:
        self.said.append((text, warning))


def control_for(model: Path, settings: Settings, heard: Heard, **kwargs) -> HostControl:
    settings.set("model_path", str(model))
    settings.set("api_port", free_port())
    return HostControl(settings, app_paths(), notify=heard.notify, on_notice=heard.notice,
                       on_change=heard.changed.set, **kwargs)


def wait(predicate, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_runner_killed_is_told_once_in_plain_words_and_an_unload_asked_is_not_an_idle_unload(tiny_gguf, settings):
    heard = Heard()
    control = control_for(tiny_gguf, settings, heard)
    control.start()
    try:
        assert control.host is not None and control.state is HostState.IDLE and control.start_error is None
        control.load_now()
        wait(lambda: control.state is HostState.READY)
        os.kill(control.host.supervisor.status().pid, signal.SIGKILL)
        wait(lambda: any(n.kind is HostNoticeKind.RUNNER_RESTARTED for n in heard.notices))
        wait(lambda: control.state is HostState.IDLE)
        assert [n.kind for n in heard.notices] == [HostNoticeKind.RUNNER_RESTARTED]  # not also « unloaded »
        assert heard.notices[0].detail_fr == "Le moteur du modèle s'est arrêté ; il redémarre."
        control.load_now()
        wait(lambda: control.state is HostState.READY)
        control.unload()  # asked by the user: no notice
        wait(lambda: control.state is HostState.IDLE)
        assert len(heard.notices) == 1
    finally:
        control.stop()


def test_a_longer_context_in_the_settings_is_planned_again(tiny_gguf, settings):
    heard = Heard()
    control = control_for(tiny_gguf, settings, heard)
    control.start()
    try:
        assert control.host is not None
        before = control.host.supervisor.base_config.n_ctx
        settings.set("context_size", before // 2)
        control.apply_settings()
        host = control.host
        wait(lambda: host.supervisor.base_config.n_ctx == before // 2, timeout=10)  # the supervisor's turn
    finally:
        control.stop()


def test_the_plan_reads_the_shared_nvml_session_and_leaves_it_open(tiny_gguf, settings, rtx4050_nvml):
    reads = []
    shared = NvmlReader(rtx4050_nvml, on_read=lambda: reads.append(1))
    control = control_for(tiny_gguf, settings, Heard(), nvml=shared)
    control.start()
    try:
        assert reads and control.plan is not None and control.plan.planner == "memory_plan"
        assert shared.read()  # still open for the monitor
    finally:
        control.stop()
        shared.close()


def test_command_line_options_win_over_the_settings(tiny_gguf, settings):
    heard = Heard()
    taken = free_port()
    control = control_for(tiny_gguf, settings, heard, options=HostOptions(ctx=1024, port=0, keep_alive_s=-1))
    control.start()
    try:
        assert control.host is not None and control.host.gateway.port not in (0, taken)
        assert control.host.supervisor.base_config.n_ctx == 1024 and control.keep_alive_s == -1
    finally:
        control.stop()


def test_a_missing_model_is_told_and_remembered_as_the_start_error(tmp_path, settings):
    heard = Heard()
    control = control_for(tmp_path / "absent.gguf", settings, heard)
    control.start()
    assert control.host is None and control.state is HostState.ERROR
    assert control.start_error is not None and "absent.gguf" in control.start_error.message_fr
    assert heard.said and heard.said[0][1] is True
