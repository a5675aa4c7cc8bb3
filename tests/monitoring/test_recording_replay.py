"""The monitor on recorded timelines: the RTX 4050 laptop with the avatar, an overflow, no GPU; recording
and replaying our own files."""

from __future__ import annotations

import collections
import json

from tests.conftest import DATA, RTX4050_RECORDING
from tests.monitor_helpers import GIB, MIB
from tray_app.hardware.gpu import NvmlReader, default_nvml_reader
from tray_app.hardware.nvml_replay import ReplayNvml
from tray_app.monitoring import (
    HostMetrics,
    HostNotice,
    HostNoticeKind,
    LiveMachine,
    Monitor,
    ProtectionReason,
    ReplayMachine,
    VramLevel,
)

OVERFLOW_RECORDING = DATA / "rtx4050_overflow.json"


def replay_all(monitor: Monitor) -> list:
    ticks = []
    while (tick := monitor.tick()) is not None:
        ticks.append(tick)
    return ticks


def first_time(ticks, predicate) -> float | None:
    return next((t.sample.at for t in ticks if predicate(t)), None)


def test_rtx4050_warning_then_critical_then_back_without_flood():
    ticks = replay_all(Monitor(ReplayMachine(RTX4050_RECORDING, runner_pid=5151, start_at=0)))
    assert len(ticks) == 240
    levels = [t.state.vram_level for t in ticks]
    assert set(levels[:150]) == {VramLevel.NORMAL}
    assert 150 <= first_time(ticks, lambda t: t.state.vram_level is VramLevel.ATTENTION) <= 156
    assert 180 <= first_time(ticks, lambda t: t.state.vram_level is VramLevel.CRITIQUE) <= 184
    # 96-97 % between the generation bursts: hysteresis keeps « critique » until the unload
    assert set(levels[184:210]) == {VramLevel.CRITIQUE}
    assert levels[-1] is VramLevel.NORMAL
    notes = [n for t in ticks for n in t.notifications]
    assert collections.Counter(n.kind.value for n in notes) == {"vram_warning": 1, "vram_critical": 1, "protection": 1}
    protections = [t.protection for t in ticks if t.protection]
    assert len(protections) == 1 and protections[0].reason is ProtectionReason.VRAM_CRITICAL
    assert 200 <= protections[0].at < 210  # while the model is still there
    assert not any(t.state.gpu_hot or t.state.overflow_suspected for t in ticks)


def test_the_model_share_is_estimated_when_windows_does_not_tell_it():
    ticks = replay_all(Monitor(ReplayMachine(RTX4050_RECORDING, runner_pid=5151, start_at=0)))
    before = [t for t in ticks if t.sample.at < 60]
    assert all(t.sample.model_vram is None for t in before)
    loaded = ticks[100].sample
    assert loaded.model_vram_estimated
    assert 3600 * MIB <= loaded.model_vram <= 3900 * MIB  # 3650 MiB of model (+ a generation buffer)
    # the browser video at 150-210 s counts as « other programs », not as the model
    assert ticks[190].sample.model_vram == loaded.model_vram
    assert ticks[190].sample.other_vram > 1.9 * GIB
    assert ticks[230].sample.model_vram is None  # unloaded


def test_overflow_recording_detects_the_collapse_and_protects():
    ticks = replay_all(Monitor(ReplayMachine(OVERFLOW_RECORDING, start_at=0)))
    notes = [(n.kind.value, n.at) for t in ticks for n in t.notifications]
    assert [k for k, _ in notes] == ["vram_critical", "vram_overflow", "protection", "gpu_hot", "model_unloaded"]
    overflow_at = dict(notes)["vram_overflow"]
    assert 44 <= overflow_at <= 46  # 5 s after the collapse at 40 s
    assert not ticks[95].state.overflow_suspected  # speed back: cleared
    assert ticks[50].sample.tokens_per_second < 5 and ticks[50].sample.cpu_percent > 30  # recorded fields
    assert abs(ticks[50].sample.ram_total - 16 * GIB) < MIB


def test_without_a_gpu_cpu_and_ram_keep_working():
    recording = {"format": "desktop-mate-nvml-recording", "version": 1, "devices": [],
                 "samples": [{"t": float(t), "devices": [], "cpu_percent": 50.0, "ram_total": 8 * GIB,
                              "ram_used": 4 * GIB} for t in range(5)]}
    ticks = replay_all(Monitor(ReplayMachine(recording, start_at=0)))
    assert len(ticks) == 5
    sample = ticks[-1].sample
    assert sample.gpu is None and sample.gpu_unavailable_reason == "pas de carte NVIDIA détectée"
    assert sample.cpu_percent == 50.0 and sample.ram_fraction == 0.5
    assert ticks[-1].state.vram_level is VramLevel.NO_GPU and not ticks[-1].notifications

    missing_library = {"format": "desktop-mate-nvml-recording", "nvml_error": "NVML Shared Library Not Found",
                       "samples": [{}]}
    (tick,) = replay_all(Monitor(ReplayMachine(missing_library, start_at=0)))
    assert tick.sample.gpu is None and tick.sample.ram_total > 0


def test_a_looping_replay_keeps_time_moving_forward():
    source = ReplayMachine(RTX4050_RECORDING, loop=True, start_at=0)
    monitor = Monitor(source)
    times = [monitor.tick().sample.at for _ in range(500)]
    assert times == sorted(times) and times[-1] == 499.0


def test_record_then_replay_gives_the_same_measurements(tmp_path):
    original = Monitor(ReplayMachine(OVERFLOW_RECORDING, start_at=1000.0))
    recorder = original.start_recording(60)
    originals = [original.tick() for _ in range(60)]
    original.push_host_event(HostNotice(HostNoticeKind.RUNNER_RESTARTED_SAFER, detail_fr="moins de couches"))
    original.tick()  # the recorder is complete: this sample is not kept
    assert recorder.complete and recorder.count == 60
    path = recorder.write(tmp_path / "mesures.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "desktop-mate-nvml-recording" and document["interval_s"] == 1.0
    assert document["samples"][0]["host"]["runner_pid"] == 5151

    # the NVML part is read by the unchanged replay code…
    (gpu,) = NvmlReader(ReplayNvml.from_file(path)).read()
    assert gpu.memory_used == originals[0].sample.gpu.memory_used and gpu.power_limit_w == 80.0
    # …and the monitor finds the same figures and alerts again
    replayed = replay_all(Monitor(ReplayMachine(path, start_at=1000.0)))
    assert [t.sample.vram_used for t in replayed] == [t.sample.vram_used for t in originals]
    assert [t.sample.tokens_per_second for t in replayed] == [t.sample.tokens_per_second for t in originals]
    assert [n.kind for t in replayed for n in t.notifications] == [n.kind for t in originals for n in t.notifications]


def test_recorded_host_events_are_replayed(tmp_path):
    monitor = Monitor(ReplayMachine(RTX4050_RECORDING, runner_pid=5151, start_at=0))
    recorder = monitor.start_recording(3)
    monitor.tick()
    monitor.push_host_event(HostNotice(HostNoticeKind.MODEL_UNLOADED_IDLE, idle_seconds=60))
    monitor.tick()
    monitor.tick()
    path = recorder.write(tmp_path / "events.json")
    ticks = replay_all(Monitor(ReplayMachine(path, start_at=0)))
    assert [n.kind.value for t in ticks for n in t.notifications] == ["model_unloaded"]


def test_the_environment_replay_still_reads_our_recordings(tmp_path, monkeypatch):
    monitor = Monitor(ReplayMachine(OVERFLOW_RECORDING, start_at=0))
    recorder = monitor.start_recording(5)
    for _ in range(5):
        monitor.tick()
    path = recorder.write(tmp_path / "env.json")
    monkeypatch.setenv("DESKTOP_MATE_NVML_REPLAY", str(path))
    live = Monitor(LiveMachine(), host_metrics=lambda: HostMetrics(5151, 20.0, 25.0, True))
    tick = live.tick()
    assert tick.sample.gpu.name == "NVIDIA GeForce RTX 4050 Laptop GPU"
    assert tick.sample.host.tokens_per_second == 20.0
    assert default_nvml_reader().read()[0].memory_total == 6141 * MIB


def test_a_failing_host_does_not_stop_the_gauges(caplog):
    def broken() -> HostMetrics:
        raise RuntimeError("gateway is restarting")

    monitor = Monitor(ReplayMachine(RTX4050_RECORDING, start_at=0), host_metrics=broken)
    ticks = [monitor.tick() for _ in range(3)]
    assert all(t.sample.host is None and t.sample.gpu is not None for t in ticks)
    assert caplog.text.count("host metrics unavailable") == 1  # logged once, not every second


def test_the_core_imports_no_qt_and_no_numpy():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys, tray_app.monitoring, tray_app.commands.monitor; "
            "print(sorted(m for m in ('PySide6', 'numpy', 'pyqtgraph') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
