import copy
import json

from tests.conftest import RTX4050_RECORDING, run_cli
from tray_app.hardware.gpu import NO_NVIDIA_GPU, NvmlReader, default_nvml_reader
from tray_app.hardware.nvml_replay import NVMLError, ReplayNvml
from tray_app.hardware.snapshot import HardwareProbe
from tray_app.monitoring.alerts import AlertEngine
from tray_app.monitoring.sample import MonitorSample

MIB = 1024 * 1024


def test_recorded_rtx4050_is_read_through_the_nvml_calls(rtx4050_nvml):
    reader = NvmlReader(rtx4050_nvml)
    (gpu,) = reader.read()
    assert gpu.name == "NVIDIA GeForce RTX 4050 Laptop GPU"
    assert gpu.driver_version == "566.36"
    assert gpu.memory_total == 6141 * MIB
    assert gpu.memory_used + gpu.memory_free == gpu.memory_total
    assert gpu.power_limit_w == 80.0
    assert gpu.temperature_c is not None and 30 < gpu.temperature_c < 100
    # Windows (WDDM) does not tell per-process memory: the value is None, not 0
    assert all(p.used_bytes is None for p in gpu.processes)


def test_the_timeline_moves_on_and_shows_the_model_loading(rtx4050_nvml):
    reader = NvmlReader(rtx4050_nvml)
    before = reader.read()[0]
    rtx4050_nvml.index = 100  # model loaded, generating
    after = reader.read()[0]
    assert after.memory_used > before.memory_used + 3000 * MIB
    assert 5151 in {p.pid for p in after.processes}


def test_a_field_the_card_does_not_support_is_none_not_an_error(rtx4050_nvml):
    for sample in rtx4050_nvml.samples:
        del sample["devices"][0]["power_mw"]
        sample["devices"][0]["temperature"] = None
    (gpu,) = NvmlReader(rtx4050_nvml).read()
    assert gpu.power_w is None and gpu.temperature_c is None
    assert gpu.memory_total > 0


def test_no_nvidia_gpu_is_a_normal_result():
    replay = ReplayNvml({"nvml_error": "NVML Shared Library Not Found", "samples": [{}]})
    reader = NvmlReader(replay)
    assert reader.read() == ()
    assert not reader.available
    assert reader.unavailable_reason == NO_NVIDIA_GPU


def test_real_nvml_on_this_machine_does_not_raise():
    reader = NvmlReader()
    gpus = reader.read()  # no NVIDIA GPU here: () and a reason; with one: readings
    assert gpus or reader.unavailable_reason.startswith(NO_NVIDIA_GPU)


def test_replay_from_environment_feeds_the_snapshot(monkeypatch):
    monkeypatch.setenv("DESKTOP_MATE_NVML_REPLAY", str(RTX4050_RECORDING))
    probe = HardwareProbe(default_nvml_reader())
    first, second = probe.snapshot(), probe.snapshot()
    assert first.gpu is not None and first.gpu.name.endswith("Laptop GPU")
    assert first.gpu_unavailable_reason == ""
    assert 0 <= second.cpu_percent <= 100
    assert 0 < second.ram_used_fraction < 1


def test_snapshot_without_gpu_says_why():
    probe = HardwareProbe(NvmlReader(ReplayNvml({"nvml_error": "absent", "samples": [{}]})))
    snap = probe.snapshot()
    assert snap.gpu is None and snap.gpu_unavailable_reason == NO_NVIDIA_GPU


# -- what NVML does not give is unknown, never 0; one failing card does not hide the others -----------------


def _without_memory_info(recording: dict) -> dict:
    """The recording of a card whose driver answers « not supported » to the memory query."""
    for sample in recording["samples"]:
        for device in sample["devices"]:
            device["memory_used"] = None
    return recording


def test_memory_the_driver_does_not_give_is_unknown_not_zero(rtx4050_nvml):
    _without_memory_info(rtx4050_nvml.recording)
    (gpu,) = NvmlReader(rtx4050_nvml).read()
    assert gpu.name == "NVIDIA GeForce RTX 4050 Laptop GPU"  # the card is there, only its memory is unknown
    assert (gpu.memory_total, gpu.memory_used, gpu.memory_free) == (None, None, None)
    assert gpu.used_fraction is None
    # the monitor neither divides by it nor alerts on it
    sample = MonitorSample(at=0.0, gpu=gpu, gpu_unavailable_reason="", cpu_percent=10.0, ram_total=16 << 30,
                           ram_used=8 << 30, host=None)
    assert sample.vram_fraction is None and sample.other_vram is None
    update = AlertEngine().update(sample)
    assert update.notifications == () and update.state.vram_fraction is None


def test_the_plan_says_the_free_memory_is_unknown_not_0_mo(tmp_path):
    recording = _without_memory_info(json.loads(RTX4050_RECORDING.read_text(encoding="utf-8")))
    path = tmp_path / "no-memory-info.json"
    path.write_text(json.dumps(recording), encoding="utf-8")
    result = run_cli("plan", "demo", env={"DESKTOP_MATE_NVML_REPLAY": str(path)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "RTX 4050 Laptop GPU, mémoire libre inconnue" in out
    assert "la carte ne dit pas combien de mémoire est libre" in out
    assert "0 Mo libres" not in out and "aucune : tout sur le processeur" in out
    assert "Traceback" not in out + result.stderr


class NVMLError_GpuIsLost(NVMLError):
    pass


class _FirstCardLost(ReplayNvml):
    """Two cards; NVML cannot give a handle for the first (fallen off the bus, driver reset)."""

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index == 0:
            raise NVMLError_GpuIsLost("GPU is lost")
        return index


def _two_cards(recording: dict) -> dict:
    second = dict(recording["devices"][0], name="NVIDIA RTX A2000", uuid="GPU-second")
    recording["devices"].append(second)
    for sample in recording["samples"]:
        sample["devices"].append(copy.deepcopy(sample["devices"][0]))
    return recording


def test_a_card_whose_handle_fails_is_skipped_and_the_others_keep_their_index(rtx4050_nvml, caplog):
    replay = _FirstCardLost(_two_cards(rtx4050_nvml.recording))
    reader = NvmlReader(replay)
    (gpu,) = reader.read()
    assert (gpu.index, gpu.name, gpu.uuid) == (1, "NVIDIA RTX A2000", "GPU-second")
    assert gpu.memory_total == 6141 * MIB
    assert reader.available and reader.unavailable_reason == ""
    assert "GPU 0 skipped" in caplog.text


def test_nvml_is_shut_down_even_when_it_found_no_card():
    replay = ReplayNvml({"devices": [], "samples": [{"devices": []}]})
    reader = NvmlReader(replay)
    assert reader.read() == () and reader.unavailable_reason == NO_NVIDIA_GPU
    assert replay.initialised
    reader.close()
    assert not replay.initialised


def test_the_runner_vram_rule_shared_by_the_gauges_optimiser_and_the_gpu_check():
    from tray_app.hardware.gpu import GpuProcess, GpuReading, runner_vram

    def card(used: int | None, *procs: GpuProcess) -> GpuReading:
        return GpuReading(0, "RTX", "GPU-1", "555", 6 << 30, used, None if used is None else (6 << 30) - used,
                          None, None, None, None, None, procs)

    launcher, runner, avatar, game = 10, 11, 20, 30
    reported = card(3 << 30, GpuProcess(runner, 2 << 30), GpuProcess(avatar, 1 << 30))
    assert runner_vram(reported, {launcher, runner}) == (2 << 30, "pid")  # the runner's tree, summed
    hidden = card(3 << 30, GpuProcess(99, 2 << 30), GpuProcess(avatar, 1 << 30))  # a container's pids
    assert runner_vram(hidden, {runner}, pids_before={avatar}) == (2 << 30, "new-process")
    assert runner_vram(hidden, {runner}, used_before=1 << 30) == (2 << 30, "card-delta")  # no "before" list
    wddm = card(5 << 30, GpuProcess(runner, None), GpuProcess(game, None))  # Windows: no per-process figure
    assert runner_vram(wddm, {runner}, used_before=1 << 30) == (4 << 30, "card-delta")
    assert runner_vram(wddm, {runner}, used_before=6 << 30) == (0, "card-delta")  # never negative
    assert runner_vram(wddm, {runner}) == (None, "unknown")
    assert runner_vram(card(None), {runner}, used_before=1 << 30) == (None, "unknown")
