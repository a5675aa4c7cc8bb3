"""The memory plan: exact KV cache, compute-buffer anchors, the RTX 4050 case, budgets and monotonicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tray_app.hardware.cpu import CpuInfo
from tray_app.models.gguf_info import ModelInfo, model_info_from_shape, read_model_info
from tray_app.models.shape_gguf import write_shape_only_llama
from tray_app.planning.memory_plan import (
    CPU_GPU_FULL,
    CPU_NO_GPU,
    CPU_NO_GPU_BACKEND,
    MemoryPlan,
    assumed_free_vram,
    make_plan,
    safer_plans,
)
from tray_app.planning.vram_estimate import (
    GPU_OVERHEAD,
    MARGIN_MIN,
    compute_buffer_bytes,
    kv_cache_bytes,
    predict_vram,
    safety_margin,
)

MIB = 1 << 20
GIB = 1 << 30
RTX4050_TOTAL = 6141 * MIB
RTX4050_FREE = RTX4050_TOTAL - 1350 * MIB  # desktop + avatar running

LAPTOP_CPU = CpuInfo(
    model="Intel Core i7-13620H",
    physical_cores=10,
    logical_cpus=16,
    performance_cores=6,
    efficiency_cores=4,
    performance_logical_cpus=tuple(range(12)),
    ram_total=16 * GIB,
    source="test",
)


def seven_b(**changes) -> ModelInfo:
    """A Mistral-7B Q4_K_M-sized model (4,1 Go, 32 layers, 8 KV heads × 128), no file needed."""
    shape = dict(
        name="Mistral 7B", n_layers=32, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=32768,
        layer_bytes=131 * MIB, input_bytes=72 * MIB, output_bytes=105 * MIB, n_ctx_train=32768,
    )
    shape.update(changes)
    return model_info_from_shape(**shape)


def llama3_8b() -> ModelInfo:
    return seven_b(name="Llama 3 8B", n_vocab=128256, n_ctx_train=8192, output_bytes=411 * MIB)


@pytest.fixture(scope="module")
def sparse_7b_info(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    path = write_shape_only_llama(tmp_path_factory.mktemp("big") / "Mistral-7B-Instruct-v0.3.Q4_K_M.gguf")
    return read_model_info(path)


def plan(model: ModelInfo, free: int | None, **kw) -> MemoryPlan:
    kw.setdefault("cpu", LAPTOP_CPU)
    return make_plan(model, free_vram=free, **kw)


# -- the memory model ---------------------------------------------------------------------------------


def test_kv_cache_is_exact():
    m = seven_b()
    per_layer_token = 8 * (128 + 128)  # n_head_kv × (key_length + value_length)
    assert kv_cache_bytes(m, 4096, 32, "f16") == 4096 * 32 * per_layer_token * 2 == 512 * MIB
    assert kv_cache_bytes(m, 4096, 32, "q8_0") == 4096 * 32 * per_layer_token * 34 // 32
    assert kv_cache_bytes(m, 4096, 32, "q4_0") == 4096 * 32 * per_layer_token * 18 // 32
    assert kv_cache_bytes(m, 4096, 10, "f16") == 160 * MIB  # only the layers on the GPU
    with pytest.raises(ValueError):
        kv_cache_bytes(m, 4096, 1, "q5_9")


def test_kv_cache_of_a_real_file(demo_gguf: Path):
    info = read_model_info(demo_gguf)
    # SmolLM2: 30 layers × 3 KV heads × (64 + 64) × 2 bytes × 8192 tokens = 180 MiB
    assert kv_cache_bytes(info, 8192, 30) == 8192 * 30 * 3 * 128 * 2 == 180 * MIB


def test_compute_buffer_matches_llama_cpp_logs():
    """Llama-3-8B, all layers on the GPU, n_ubatch 512, no flash attention (figures from llama.cpp
    CUDA logs in bug reports; the GPU measurement script checks them on the reference machine)."""
    m = llama3_8b()
    at_2048 = compute_buffer_bytes(m, n_ctx=2048, n_ubatch=512, gpu_layers=32, output_on_gpu=True)
    assert at_2048 == 258.5 * MIB  # the logits phase: 512 × (4096 + 128256) × 4
    at_8192 = compute_buffer_bytes(m, n_ctx=8192, n_ubatch=512, gpu_layers=32, output_on_gpu=True)
    assert abs(at_8192 - 560 * MIB) < 0.05 * 560 * MIB  # attention scores dominate
    with_fa = compute_buffer_bytes(
        m, n_ctx=8192, n_ubatch=512, gpu_layers=32, output_on_gpu=True, flash_attn=True
    )
    assert with_fa < at_8192 / 2
    # partial offload: CPU weights are copied in for prompt batches, so the buffer grows
    partial = compute_buffer_bytes(m, n_ctx=8192, n_ubatch=512, gpu_layers=20, output_on_gpu=False)
    assert partial > at_8192
    assert compute_buffer_bytes(m, n_ctx=8192, n_ubatch=512, gpu_layers=0, output_on_gpu=False) == 0


def test_prediction_parts(sparse_7b_info: ModelInfo):
    m = sparse_7b_info
    full = predict_vram(m, gpu_layers=32, output_on_gpu=True, n_ctx=4096)
    assert full.weights == sum(m.layer_bytes) + m.output_bytes  # token_embd stays on the CPU
    assert full.kv_cache == 512 * MIB and full.overhead == GPU_OVERHEAD
    part = predict_vram(m, gpu_layers=8, output_on_gpu=False, n_ctx=4096)
    assert part.weights == sum(m.layer_bytes[-8:])  # the LAST layers are offloaded
    with pytest.raises(ValueError):
        predict_vram(m, gpu_layers=10, output_on_gpu=True, n_ctx=4096)


def test_safety_margin():
    assert safety_margin(4 * GIB, 6 * GIB) == MARGIN_MIN
    assert safety_margin(20 * GIB, 24 * GIB) == int(24 * GIB * 0.05)
    assert safety_margin(3 * GIB, None) == MARGIN_MIN


# -- the plans ----------------------------------------------------------------------------------------


def test_rtx4050_with_a_7b_q4_k_m_is_a_partial_offload_that_fits(sparse_7b_info: ModelInfo):
    for model in (sparse_7b_info, seven_b()):
        p = plan(model, RTX4050_FREE, total_vram=RTX4050_TOTAL)
        assert p.mode == "partial"
        assert 16 <= p.gpu_layers < 32 and not p.output_on_gpu
        assert p.vram.reserved <= RTX4050_FREE
        assert p.n_ctx == 4096 and p.kv_type == "f16"
        # one more layer would not fit: the plan uses the card
        more = predict_vram(model, gpu_layers=p.gpu_layers + 1, output_on_gpu=False, n_ctx=4096)
        assert more.used + p.vram.margin > RTX4050_FREE
        text = p.explain_fr()
        assert f"{p.gpu_layers} couches sur 32" in text and "pour l'avatar" in text
        assert p.threads == 5  # 6 P-cores, one left for the avatar, E-cores unused
        cfg = p.to_runner_config()
        assert cfg.n_gpu_layers == p.gpu_layers and cfg.n_ctx == 4096 and cfg.n_threads == 5


def test_demo_fits_entirely_on_any_nvidia_card(demo_gguf: Path):
    info = read_model_info(demo_gguf)
    p = plan(info, RTX4050_FREE, total_vram=RTX4050_TOTAL)
    assert p.mode == "gpu" and p.full_offload and p.n_gpu_layers == -1
    assert p.vram.weights == sum(info.layer_bytes) + info.output_bytes
    assert p.threads <= 2  # the CPU only feeds the GPU
    assert p.explain_fr().startswith("Le modèle tient entièrement dans la carte graphique (")
    assert "réponses rapides" in p.explain_fr()
    assert p.to_runner_config(demo_gguf).model_path == str(demo_gguf)


def test_no_gpu_or_no_gpu_backend_gives_cpu_plans(demo_gguf: Path):
    info = read_model_info(demo_gguf)
    none = plan(info, None)
    assert none.mode == "cpu" and none.cpu_reason == CPU_NO_GPU and none.vram.used == 0
    assert "NVIDIA" in none.explain_fr() and "processeur" in none.explain_fr()
    assert none.to_runner_config().n_gpu_layers == 0
    assert none.ram >= info.weights_bytes - info.output_bytes
    backend = plan(info, 8 * GIB, gpu_offload_supported=False)
    assert backend.mode == "cpu" and backend.cpu_reason == CPU_NO_GPU_BACKEND
    assert "Installez" in backend.explain_fr()


def test_full_card_gives_cpu_with_what_to_do():
    p = plan(seven_b(), 900 * MIB, total_vram=RTX4050_TOTAL)
    assert p.mode == "cpu" and p.cpu_reason == CPU_GPU_FULL and p.n_ctx == 4096
    assert "Fermez des programmes" in p.explain_fr() and "900 Mo" in p.explain_fr()


@pytest.mark.parametrize("model_name", ["seven_b", "llama3_8b", "demo", "tiny"])
@pytest.mark.parametrize("ctx", [512, 4096, 16384])
def test_more_vram_never_gives_fewer_layers_and_never_exceeds_the_budget(
    model_name, ctx, demo_gguf: Path, tiny_gguf: Path
):
    model = {
        "seven_b": seven_b,
        "llama3_8b": llama3_8b,
        "demo": lambda: read_model_info(demo_gguf),
        "tiny": lambda: read_model_info(tiny_gguf),
    }[model_name]()
    previous = -1
    for free_mib in range(0, 16 * 1024, 96):
        free = free_mib * MIB
        p = plan(model, free, total_vram=16 * GIB, wanted_ctx=ctx)
        layers = p.gpu_layers + int(p.output_on_gpu)
        assert layers >= previous, (free_mib, layers, previous)
        previous = layers
        if p.mode != "cpu":
            assert p.vram.reserved <= free
        assert p.n_ctx == min(ctx, model.n_ctx_train)  # the context is never traded for layers
    assert previous == model.n_layers + 1  # 16 GB hold any of these at these contexts


def test_context_is_capped_at_the_trained_one(tiny_gguf: Path):
    info = read_model_info(tiny_gguf)  # trained on 2 048 tokens
    p = plan(info, 4 * GIB, wanted_ctx=8192)
    assert p.n_ctx == 2048 and p.wanted_ctx == 8192
    assert "le maximum de ce modèle" in p.explain_fr()
    assert plan(info, 4 * GIB, wanted_ctx=1000).n_ctx == 768  # a multiple of 256, as llama.cpp pads


def test_quantized_cache_turns_flash_attention_on_and_fits_more():
    f16 = plan(seven_b(), RTX4050_FREE, total_vram=RTX4050_TOTAL, wanted_ctx=8192)
    q8 = plan(seven_b(), RTX4050_FREE, total_vram=RTX4050_TOTAL, wanted_ctx=8192, kv_type="q8_0")
    q4 = plan(seven_b(), RTX4050_FREE, total_vram=RTX4050_TOTAL, wanted_ctx=8192, kv_type="q4_0")
    assert not f16.flash_attn and q8.flash_attn and q4.flash_attn
    assert f16.gpu_layers <= q8.gpu_layers <= q4.gpu_layers
    cfg = q8.to_runner_config()
    assert (cfg.type_k, cfg.type_v, cfg.flash_attn) == ("q8_0", "q8_0", True)
    with pytest.raises(ValueError):
        plan(seven_b(), GIB, kv_type="f8")


def test_plans_are_deterministic_and_serialisable(sparse_7b_info: ModelInfo):
    a = plan(sparse_7b_info, RTX4050_FREE, total_vram=RTX4050_TOTAL)
    b = plan(sparse_7b_info, RTX4050_FREE, total_vram=RTX4050_TOTAL)
    assert a == b and a.to_dict() == b.to_dict()
    data = json.loads(json.dumps(a.to_dict()))
    assert data["mode"] == "partial" and data["vram"]["reserved"] <= data["free_vram"]
    assert data["explanation"] == a.explain_fr()


def test_assumed_free_vram_for_what_ifs():
    assert assumed_free_vram(6144 * MIB) == 4794 * MIB
    assert assumed_free_vram(1024 * MIB) == 0


# -- the fallback ladder ------------------------------------------------------------------------------


def test_ladder_fewer_layers_then_shorter_context_then_cpu(sparse_7b_info: ModelInfo):
    first = plan(sparse_7b_info, RTX4050_FREE, total_vram=RTX4050_TOTAL)
    ladder = safer_plans(first)
    steps = [p.step for p in ladder]
    assert steps[-1] == "cpu_only" and "smaller_context" in steps and steps[0] == "fewer_layers"
    assert steps == sorted(steps, key=["fewer_layers", "smaller_context", "cpu_only"].index)
    used = [first.vram.used] + [p.vram.used for p in ladder]
    assert all(a > b for a, b in zip(used, used[1:], strict=False))  # every step is safer
    assert len(ladder) <= 5
    for p in ladder:
        assert p.step_fr.startswith("Nouvel essai") and p.explain_fr()
    shorter = next(p for p in ladder if p.step == "smaller_context")
    assert shorter.n_ctx == 2048 and "2 048 jetons au lieu de 4 096" in shorter.step_fr
    assert ladder[-1].mode == "cpu" and ladder[-1].n_ctx == 4096
    assert safer_plans(ladder[-1]) == []  # nothing safer than the processor


def test_ladder_from_a_full_offload(demo_gguf: Path):
    first = plan(read_model_info(demo_gguf), RTX4050_FREE, total_vram=RTX4050_TOTAL)
    ladder = safer_plans(first)
    assert [p.gpu_layers for p in ladder if p.step == "fewer_layers"] == [22, 15, 7]
    assert all(not p.output_on_gpu for p in ladder)
    assert ladder[-1].to_runner_config().n_gpu_layers == 0
