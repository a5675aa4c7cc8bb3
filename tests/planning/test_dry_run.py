"""llama.cpp's dry run in a probe process (real llama-cpp-python, real GGUF files), its cache, and how the
plan uses its figures or falls back to the formula. The Vulkan build's own checks are in tests/vulkan/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tray_app.format_fr import MIB
from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.gpu_calibration import CalibrationBook
from tray_app.hardware.llama_backend import LlamaBackend, detect_llama_backend
from tray_app.models.gguf_info import read_model_info
from tray_app.planning.dry_run import DryRunCache, DryRunConfig, DryRuns, EngineBuffers, ProbeProcess
from tray_app.planning.gpu_plan import CardView, dry_run_config, plan_on_this_machine
from tray_app.planning.memory_plan import CPU_NO_GPU_BACKEND, SOURCE_FORMULA, SOURCE_LLAMA, make_plan
from tray_app.planning.vram_budget import MARGIN_GIVEN, VramBudget

GIB = 1024 * MIB
CPU = CpuInfo("test", 8, 16, 8, 0, tuple(range(16)), 16 << 30, "test")


def test_the_probe_reads_llama_cpps_own_breakdown_and_checks_it(demo_gguf: Path):
    with ProbeProcess(DryRunConfig(str(demo_gguf), 4096, 512, 512)) as probe:
        assert probe.engine["version"] and probe.engine["breakdown"] is True
        assert [d.type for d in probe.devices] == ["cpu"]  # this CPU engine: no graphics device
        figures = probe.measure(31)
        demo = read_model_info(demo_gguf)
        # every byte is the host's here; llama.cpp's model bytes are the file's tensors, its KV cache exact
        assert figures.device_total == 0
        assert figures.host_model >= demo.file_size - 4 * MIB and figures.host_model <= demo.file_size
        assert figures.host_context == 4096 * 30 * 2 * (3 * 64) * 2  # 30 layers, K+V, 3 heads of 64, f16
        assert 90 * MIB < figures.host_compute < 120 * MIB  # the logits of 512 tokens × 49 152 words
        assert probe.measure(31) == figures  # a dry run allocates nothing: the same answer again
        fit = probe.fit(GIB)
        assert fit.get("n_gpu_layers") == -1 or "libllama-common" in fit.get("error", "")


def test_a_second_plan_is_answered_by_the_cache(demo_gguf: Path, tmp_path: Path):
    backend = detect_llama_backend(ask_library=False)
    config = DryRunConfig(str(demo_gguf), 2048, 512, 512, "q8_0", "q8_0", True)
    cache = DryRunCache(tmp_path / "dry_runs.json")
    with DryRuns(config, backend, cache=cache, require_device=False) as runs:  # a CPU engine: host figures
        first = runs(10)
        assert first is not None and runs.probe_runs == 1 and not runs.error
    again = DryRuns(config, backend, cache=DryRunCache(tmp_path / "dry_runs.json"), require_device=False)
    started = time.perf_counter()
    assert again(10) == first
    assert time.perf_counter() - started < 1.0 and again.probe_runs == 0 and again.cached_runs == 1
    other_ctx = DryRuns(DryRunConfig(str(demo_gguf), 4096, 512, 512, "q8_0", "q8_0", True), backend,
                        cache=DryRunCache(tmp_path / "dry_runs.json"))
    assert other_ctx.key != again.key  # another context: another entry


def test_an_engine_without_a_graphics_device_plans_for_the_processor(demo_gguf: Path, tmp_path: Path):
    info = read_model_info(demo_gguf)
    engine = detect_llama_backend(ask_library=False)
    claims_gpu = LlamaBackend(True, engine.version, ("cpu", "vulkan"), True, engine.lib_dir)  # says it can
    plan, timing = plan_on_this_machine(
        info, card=CardView(4 * GIB, 6 * GIB, "NVIDIA GeForce RTX 4050 Laptop GPU", "566.36"), backend=claims_gpu,
        cpu=CPU, calibration=CalibrationBook(), cache=DryRunCache(tmp_path / "c.json"), wanted_ctx=2048)
    assert plan.mode == "cpu" and plan.cpu_reason == CPU_NO_GPU_BACKEND
    assert plan.dry_run_error == "the engine sees no graphics device" and timing.probe_runs == 0


def test_a_probe_that_cannot_run_leaves_the_formula_and_says_why(demo_gguf: Path, tmp_path: Path):
    info = read_model_info(demo_gguf)
    engine = detect_llama_backend(ask_library=False)
    backend = LlamaBackend(True, engine.version, ("cpu", "vulkan"), True, engine.lib_dir)
    config = dry_run_config(info, 2048, "f16", False)
    runs = DryRuns(config, backend, cache=DryRunCache(None), python=str(tmp_path / "no-python"))
    plan = make_plan(info, free_vram=4 * GIB, total_vram=6 * GIB, cpu=CPU, wanted_ctx=2048, buffers=runs)
    runs.close()
    assert plan.vram_source == SOURCE_FORMULA and plan.mode == "gpu"
    assert plan.dry_run_error.startswith("cannot start the probe")
    assert plan.to_dict()["formula"]["vram"] == plan.vram.to_dict()


# -- the plan with llama.cpp's figures (a recorded answer per layer count) ----------------------------


def recorded(n_layers: int, per_layer: int, fixed: int):
    """A dry run whose device holds ``fixed`` + ``per_layer`` × offloaded bytes (split weights/KV/compute)."""
    asked: list[int] = []

    def buffers(offloaded: int) -> EngineBuffers:
        asked.append(offloaded)
        total = fixed + per_layer * offloaded
        return EngineBuffers(offloaded, total // 2, total // 4, total - total // 2 - total // 4, 0, 0, 0,
                             ("Vulkan0",))

    return buffers, asked


@pytest.fixture(scope="module")
def mistral(tmp_path_factory: pytest.TempPathFactory):
    from tray_app.models.shape_gguf import write_shape_only

    return read_model_info(write_shape_only(tmp_path_factory.mktemp("m") / "Mistral-7B-shape.Q4_K_M.gguf"))


def test_the_plan_takes_llama_cpps_figures_and_shows_the_formula_beside(mistral):
    buffers, asked = recorded(32, 130 * MIB, 400 * MIB)
    budget = VramBudget(300 * MIB, MARGIN_GIVEN, 200 * MIB, "default")
    plan = make_plan(mistral, free_vram=4 * GIB, total_vram=6 * GIB, cpu=CPU, budget=budget, buffers=buffers)
    # 4 GiB − 300 MiB margin − 200 MiB driver = 3 596 MiB for llama.cpp's buffers: 400 + 130 × 24 = 3 520
    assert plan.vram_source == SOURCE_LLAMA and (plan.gpu_layers, plan.output_on_gpu) == (24, False)
    assert plan.vram.used == 3520 * MIB + 200 * MIB and plan.vram.margin == 300 * MIB
    assert len(asked) <= 6 and 24 in asked and 25 in asked  # searched from the formula's answer
    data = plan.to_dict()
    assert data["vram_source"] == "llama.cpp" and data["budget"]["margin"] == 300 * MIB
    difference = data["formula"]["difference"]
    assert difference["used"] == plan.vram.used - plan.formula_vram.used
    assert data["formula"]["gpu_layers"] == plan.formula_layers[0]
    assert plan.explain_fr().startswith("24 couches sur 32 dans la carte graphique : il reste 376 Mo pour l'avatar")


def test_more_free_memory_never_gives_fewer_layers_with_the_dry_run(mistral):
    budget = VramBudget(256 * MIB, MARGIN_GIVEN, 256 * MIB, "default")
    previous = -1
    for free_mib in range(1000, 7000, 250):
        buffers, _ = recorded(32, 130 * MIB, 400 * MIB)
        plan = make_plan(mistral, free_vram=free_mib * MIB, total_vram=8 * GIB, cpu=CPU, budget=budget,
                         buffers=buffers)
        offloaded = plan.gpu_layers + int(plan.output_on_gpu)
        assert offloaded >= previous
        previous = offloaded
    assert previous == 33
