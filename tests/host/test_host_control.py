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


# -- the card's calibration (NVML replayed at its boundary, the supervisor replaced by its snapshot) --------


class _Supervisor:
    def __init__(self, status, base_config) -> None:
        self._status, self.base_config = status, base_config

    def status(self):
        return self._status


class _Host:
    def __init__(self, supervisor: _Supervisor) -> None:
        self.supervisor = supervisor


def _recorded_card(runner_pid: int, runner_mib: int | None):
    from tray_app.hardware.nvml_replay import ReplayNvml

    mib = 1 << 20
    processes = [{"pid": 1200, "used": 900 * mib, "kind": "graphics"}]
    before = {"memory_used": 1300 * mib, "processes": processes}
    after = {"memory_used": (1300 + 3300) * mib,
             "processes": processes + [{"pid": runner_pid, "used": None if runner_mib is None else runner_mib * mib,
                                        "kind": "compute"}]}
    return ReplayNvml({
        "format": "desktop-mate-nvml-recording", "version": 1, "driver_version": "566.36",
        "devices": [{"name": "NVIDIA GeForce RTX 4050 Laptop GPU", "uuid": "GPU-1", "memory_total": 6144 * mib}],
        "samples": [{"t": 0, "devices": [before]}, {"t": 1, "devices": [after]}],
    })


def _calibrated_control(settings, runner_mib: int | None):
    from tray_app.host.host_state import EventKind, HostEvent, HostStatus
    from tray_app.planning.runner_config import RunnerConfig

    replay = _recorded_card(4242, runner_mib)
    heard = Heard()
    control = HostControl(settings, app_paths(), notify=heard.notify, on_notice=heard.notice,
                          nvml=NvmlReader(replay, on_read=replay.step))
    config = RunnerConfig("model.gguf", n_gpu_layers=-1)
    mib = 1 << 20
    status = HostStatus(HostState.READY, "", config, 4242, (4242,), None, 1.0, None, (), 300.0, 0,
                        engine_buffers={"CUDA0": {"model": 2800 * mib, "kv": 256 * mib, "compute": 100 * mib},
                                        "CUDA_Host": {"compute": 20 * mib}})
    control.host = _Host(_Supervisor(status, config))  # a stand-in with only what the calibration reads
    control._on_host_event(HostEvent(EventKind.STATE, HostState.LOADING, "", config=config))
    control._on_host_event(HostEvent(EventKind.STATE, HostState.READY, "", config=config, pid=4242))
    return control


def test_after_a_load_nvmls_figure_minus_llama_cpps_buffers_is_kept_for_the_next_plan(settings):
    from tray_app.hardware.gpu_calibration import CalibrationBook, card_key
    from tray_app.hardware.llama_backend import detect_llama_backend

    _calibrated_control(settings, runner_mib=3300)
    key = card_key("NVIDIA GeForce RTX 4050 Laptop GPU", "566.36", detect_llama_backend(ask_library=False).gpu_backend)
    entry = CalibrationBook.from_settings(Settings.load(app_paths().settings_file)).get(key)
    assert entry is not None and entry.overhead == (3300 - 3156) << 20 and entry.loads == 1  # the host's not counted


def test_without_per_process_figures_the_cards_increase_is_the_runners(settings):
    from tray_app.hardware.gpu_calibration import CalibrationBook

    _calibrated_control(settings, runner_mib=None)  # Windows (WDDM): no process memory; the card's delta
    (entry,) = CalibrationBook.from_settings(settings).entries.values()
    assert entry.overhead == (3300 - 3156) << 20


def test_a_load_that_ran_out_of_memory_raises_the_overhead(settings):
    from tray_app.hardware.gpu_calibration import CalibrationBook
    from tray_app.host.host_state import EventKind, HostEvent
    from tray_app.host.runner_errors import FailureKind

    control = _calibrated_control(settings, runner_mib=3300)
    before = next(iter(CalibrationBook.from_settings(settings).entries.values())).overhead
    control._on_host_event(HostEvent(EventKind.FALLBACK, HostState.LOADING, "Nouvel essai…",
                                     failure=FailureKind.OUT_OF_MEMORY))
    (entry,) = CalibrationBook.from_settings(settings).entries.values()
    assert entry.overhead > before and entry.overflows == 1
