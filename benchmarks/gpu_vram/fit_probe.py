"""llama.cpp's own fit for the same free memory as the plan, and the plan's buffers by llama.cpp's dry run.

Both come from the product's dry-run probe (:class:`tray_app.planning.dry_run.ProbeProcess`, its entry
script :mod:`tray_app.planning.dry_run_entry`: how the figures are read and checked, and how
``common_fit_params``, which the Python bindings do not wrap, is called from the wheel's
``libllama-common``). The probe is a process of its own: the fit runs inside llama-server after its CUDA
context exists, so it sees the free memory minus that context; the probe, with its own context, sees the
same, and this process stays free of CUDA (its NVML figures are the runner's and the holder's only).

The "emulated" answer is llama.cpp's rule applied by us to the dry run's exact device totals (the most
layers whose model + KV cache + compute stay under the free memory minus the margin), to compare with
llama.cpp's own answer, and in its place when the engine has no libllama-common.
:func:`run_fit_probe` returns a :class:`~.results.FitResult`; ``--fit-probe`` prints one as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.gpu_vram.fit_emulation import FIT_MARGIN, most_layers_under
from benchmarks.gpu_vram.results import FitResult

if TYPE_CHECKING:
    from tray_app.planning.memory_plan import MemoryPlan


def fit_for(model: Path, *, n_layers: int, n_ctx: int, n_batch: int, n_ubatch: int, kv_type: str,
            flash_attn: bool, plan_offloaded: int, margin: int = FIT_MARGIN) -> FitResult:
    """llama.cpp's fit and our emulation of it with ``margin`` bytes kept free, and the dry run's device
    bytes at the plan's layer count (``at_plan``)."""
    from tray_app.planning.dry_run import DryRunConfig, DryRunError, ProbeProcess

    config = DryRunConfig(str(model), n_ctx, n_batch, n_ubatch, kv_type, kv_type, flash_attn)
    probe = ProbeProcess(config)
    try:
        probe.start()
        gpu = next((d for d in probe.devices if d.type in ("gpu", "igpu")), None)
        if gpu is not None:
            free, source = gpu.free, "ggml_backend_dev_memory"
        else:
            free, source = _nvml_free(), "nvml"
        target = free - margin
        n_max = n_layers + 1
        seen: dict[int, int] = {}

        def device_memory(offloaded: int) -> int:
            seen[offloaded] = probe.measure(offloaded).device_total
            return seen[offloaded]

        layers, projected, _evaluations = most_layers_under(target, n_max, device_memory)
        at = probe.measure(max(0, min(plan_offloaded, n_max)))
        result: dict[str, Any] = {
            "offloaded": layers, "method": "emulated", "emulated": layers, "free_seen": free,
            "free_source": source, "target": target, "projected": projected, "dry_runs": len(seen) + 1,
            "at_plan": {"model": at.device_model, "kv": at.device_context, "compute": at.device_compute},
        }
        answer = probe.fit(margin)
        if "error" in answer:
            result["note"] = str(answer["error"])
        else:
            ngl = int(answer["n_gpu_layers"])
            result["offloaded"] = n_max if ngl < 0 else min(ngl, n_max)
            result["method"] = "common_fit_params"
            if answer.get("status") == 1:
                result["note"] = "common_fit_params: no allocation projected to fit"
        return FitResult(**result)
    except DryRunError as exc:
        return FitResult(error=f"fit probe: {exc}"[:300])
    finally:
        probe.close()


def _nvml_free() -> int:
    from tray_app.hardware.gpu import NvmlReader

    reader = NvmlReader()
    try:
        readings = reader.read()
    finally:
        reader.close()
    return (readings[0].memory_free or 0) if readings else 0


def run_fit_probe(model: Path, plan: MemoryPlan) -> FitResult:
    """The fit for the plan's model and context (the probe: a process of its own)."""
    return fit_for(model, n_layers=plan.n_layers, n_ctx=plan.n_ctx, n_batch=plan.n_batch, n_ubatch=plan.n_ubatch,
                   kv_type=plan.kv_type, flash_attn=plan.flash_attn,
                   plan_offloaded=plan.gpu_layers + int(plan.output_on_gpu))


def _parse_probe_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_vram_check.py --fit-probe")
    p.add_argument("--model", required=True)
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--ubatch", type=int, default=512)
    p.add_argument("--kv-type", default="f16")
    p.add_argument("--flash-attn", type=int, default=0)
    p.add_argument("--plan-offloaded", type=int, required=True)
    p.add_argument("--margin", type=int, default=FIT_MARGIN)
    return p.parse_args(argv)


def fit_probe_main(argv: Sequence[str]) -> int:
    """``--fit-probe``: the fit for one model and context, as one JSON line (a FitResult)."""
    a = _parse_probe_args(argv)
    from tray_app.models.gguf_info import read_model_info

    info = read_model_info(a.model)
    result = fit_for(Path(a.model), n_layers=info.n_layers, n_ctx=a.ctx, n_batch=min(a.batch, a.ctx),
                     n_ubatch=min(a.ubatch, a.batch, a.ctx), kv_type=a.kv_type, flash_attn=bool(a.flash_attn),
                     plan_offloaded=a.plan_offloaded, margin=a.margin)
    print(json.dumps(result.__dict__), flush=True)
    return 0 if not result.error else 1
