"""The memory plan proven on a real Vulkan device (Mesa's lavapipe; real llama.cpp, real GGUF files, real
runner processes): the dry run predicts what a real load allocates, planned budgets load with at least
llama.cpp's own fit's layers, a budget too small walks the ladder for real and the user is told."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest

from benchmarks import plan_accuracy
from benchmarks.lavapipe import budget_python, device_budget_library
from tests.conftest import run_cli
from tray_app.hardware.llama_buffers import device_buffer_total
from tray_app.host.fallback import ladder_from_plans
from tray_app.host.host_state import EventKind, HostEvent, HostState
from tray_app.host.runner import Runner
from tray_app.host.runner_errors import FailureKind
from tray_app.host.supervisor import Supervisor
from tray_app.models.gguf_info import read_model_info
from tray_app.planning.dry_run import DryRunCache, ProbeProcess
from tray_app.planning.gpu_plan import dry_run_config
from tray_app.planning.memory_plan import safer_plans
from tray_app.planning.runner_config import RunnerConfig

MODELS = ("demo", "llama32-1b", "qwen25-05b", "gemma-2b")  # SmolLM2 (llama), Llama 3.2, Qwen2, Gemma
MIB = 1 << 20


def runner_config(path: Path, offloaded: int, n_layers: int, ctx: int, kv: str) -> RunnerConfig:
    config = dry_run_config(read_model_info(path), ctx, kv, False)
    return RunnerConfig(str(path), n_gpu_layers=-1 if offloaded > n_layers else offloaded, n_ctx=config.n_ctx,
                        n_batch=config.n_batch, n_ubatch=config.n_ubatch, n_threads=1, n_threads_batch=1,
                        type_k=kv, type_v=kv, flash_attn=config.flash_attn)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("ctx", "kv", "offload"), [(2048, "f16", "all"), (4096, "f16", "half"),
                                                    (2048, "q8_0", "half"), (4096, "q8_0", "all")])
def test_the_dry_run_predicts_what_a_real_load_allocates(on_lavapipe, shapes, tmp_path, model, ctx, kv, offload):
    path = plan_accuracy.model_file(model, shapes)
    info = read_model_info(path)
    offloaded = info.n_layers + 1 if offload == "all" else info.n_layers // 2
    with ProbeProcess(dry_run_config(info, ctx, kv, False)) as probe:
        predicted = probe.measure(offloaded)
    assert predicted.devices == ("Vulkan0",)
    done = plan_accuracy.load(runner_config(path, offloaded, info.n_layers, ctx, kv), tmp_path)
    assert not done.failed, done.failure
    allocated = done.buffers["Vulkan0"]
    assert abs(predicted.device_total - done.device) <= 0.02 * done.device
    # and part by part: the weights and the KV cache to the byte as logged (0,01 MiB), the compute buffer too
    assert abs(predicted.device_model - allocated["model"]) <= 0.01 * MIB
    assert abs(predicted.device_context - allocated["kv"]) <= 0.01 * MIB
    assert abs(predicted.device_compute - allocated["compute"]) <= 0.02 * allocated["compute"]


@pytest.mark.parametrize("model", MODELS)
def test_a_planned_budget_loads_with_at_least_llama_cpps_own_layers(on_lavapipe, shapes, tmp_path, model):
    case = plan_accuracy.Case(model, 4096, "f16", "tight")
    row = plan_accuracy.measure(case, shapes, DryRunCache(tmp_path / "dry_runs.json"), device_budget_library(tmp_path))
    assert row.plan_source == "llama.cpp", row.notes
    assert 0 < (row.layers_ours or 0) <= row.n_layers  # a real partial offload
    assert not row.load_failed, row.notes  # on a device of exactly the budget
    assert row.allocated is not None and row.allocated <= row.budget_bytes
    assert row.error_pct is not None and abs(row.error_pct) <= 2.0
    assert row.layers_fit is not None, row.notes
    assert (row.layers_ours or 0) >= row.layers_fit


def test_a_budget_too_small_walks_the_ladder_for_real_and_the_user_is_told(on_lavapipe, shapes, tmp_path):
    path = plan_accuracy.model_file("llama32-1b", shapes)
    info = read_model_info(path)
    cache = DryRunCache(tmp_path / "dry_runs.json")
    full = plan_accuracy.full_offload_bytes(path, info.n_layers, 2048, "f16", cache)
    plan, _timing = plan_accuracy.make_plan_for(path, 2048, "f16", int(full * 1.2), cache)
    assert plan.mode == "gpu"  # planned for a card with room for everything…
    room = int(full * 0.5)  # …but the device really has half of it
    python = budget_python(tmp_path, device_budget_library(tmp_path), room)
    ladder_plans = safer_plans(plan)
    events: list[HostEvent] = []
    supervisor = Supervisor(
        plan.to_runner_config(),
        ladder=lambda base: ladder_from_plans(ladder_plans, str(path), base),
        runner_factory=functools.partial(Runner, python=str(python)),
        log_file=tmp_path / "runner.log",
        load_timeout_s=300,
    )
    supervisor.add_listener(events.append)
    try:
        supervisor.load()
        deadline = time.monotonic() + 600
        while supervisor.state not in (HostState.READY, HostState.ERROR):
            assert time.monotonic() < deadline, [e.message for e in events]
            time.sleep(0.2)
        status = supervisor.status()
        assert status.state is HostState.READY, status.message
        fallbacks = [e for e in events if e.kind is EventKind.FALLBACK]
        assert fallbacks and all(e.failure is FailureKind.OUT_OF_MEMORY for e in fallbacks)
        # what the user reads: why, then what is tried, in plain French
        assert fallbacks[0].message.startswith("Le modèle n'a pas tenu en mémoire avec ces réglages. Nouvel essai")
        assert status.config is not None and 0 < status.config.n_gpu_layers < info.n_layers
        assert device_buffer_total(status.engine_buffers) <= room
    finally:
        supervisor.close()


def test_a_processor_only_runner_leaves_the_vulkan_device_alone(on_lavapipe, tiny_gguf, tmp_path):
    done = plan_accuracy.load(RunnerConfig(str(tiny_gguf), n_gpu_layers=0, n_ctx=512, n_threads=1,
                                           n_threads_batch=1), tmp_path)
    assert not done.failed, done.failure
    assert done.device == 0 and "Vulkan0" not in done.buffers and done.buffers  # logged, all on the host


def test_plan_shows_llama_cpp_beside_the_formula_and_plans_again_from_the_cache(on_lavapipe, shapes):
    path = plan_accuracy.model_file("qwen25-05b", shapes)
    # 700 MiB free: 128 kept for the others, Vulkan's usual 256 for the driver (nothing calibrated yet),
    # 316 for llama.cpp's buffers: part of the 410 MiB the whole model takes at 4 096 tokens
    first = run_cli("plan", str(path), "--free-mib", "700", "--margin-mib", "128", "--json", timeout=300)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    plan = doc["plan"]
    assert doc["engine"]["gpu_backend"] == "vulkan" and plan["vram_source"] == "llama.cpp"
    assert plan["mode"] == "partial" and plan["budget"]["margin"] == 128 * MIB
    assert plan["vram"]["used"] + plan["vram"]["margin"] <= 700 * MIB
    difference = plan["formula"]["difference"]
    assert difference["used"] == plan["vram"]["used"] - plan["formula"]["vram"]["used"]
    assert doc["timing"]["probe_runs"] >= 2
    again = run_cli("plan", str(path), "--free-mib", "700", "--margin-mib", "128", "--json", timeout=120)
    doc2 = json.loads(again.stdout)
    assert doc2["timing"]["probe_runs"] == 0 and doc2["timing"]["cached_runs"] >= 2
    assert doc2["plan"]["gpu_layers"] == plan["gpu_layers"]
    text = run_cli("plan", str(path), "--free-mib", "700", "--margin-mib", "128", timeout=120).stdout
    assert "llama.cpp    formule" in text and "il reste" in text and "Traceback" not in text


def test_doctor_names_the_vulkan_engine_in_french(on_lavapipe):
    result = run_cli("doctor", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Le plan mémoire est fait pour ce moteur : Vulkan (toutes les cartes graphiques)." in result.stdout
