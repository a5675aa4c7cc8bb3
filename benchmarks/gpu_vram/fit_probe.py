"""llama.cpp's own fit for the same free memory as the plan, in a process of its own (``--fit-probe``).

Why a process: the fit runs inside llama-server after its CUDA context exists, so it sees the free
memory minus that context; a child with its own context sees the same, and the parent stays free of
CUDA (its NVML figures are the runner's and the holder's only).

Why ctypes: llama-cpp-python 0.3.36 does not expose the fit. ``llama_params_fit`` left ``llama.h`` for
libcommon (``common_fit_params`` in ``common/fit.cpp``, llama.cpp PR 22171), the Python bindings do not
wrap it and ``llama_cpp.server`` has no ``--fit``. But the wheel ships ``libllama-common.so`` (in
``site-packages/lib/``) and the function takes plain C types, so it is called by its C++ name with the
1 GiB margin of ``--fit`` (:func:`common_fit_function`). Its rule is also emulated every time
(:mod:`.fit_emulation`, with compute buffers from dry runs: ``no_alloc`` loads, where llama.cpp builds
the graphs and logs their buffer sizes without allocating), to compare, and in place of the call when a
build lacks it. The child prints one JSON line; the parent (:func:`run_fit_probe`) reads it as a
:class:`~.results.FitResult`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.gpu_vram import ENTRY_SCRIPT
from benchmarks.gpu_vram.fit_emulation import FIT_MARGIN, fit_kv_bytes, fit_model_bytes, most_layers_under
from benchmarks.gpu_vram.results import FitResult, device_buffer_total, parse_buffer_sizes

if TYPE_CHECKING:
    from tray_app.planning.memory_plan import MemoryPlan

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


class DryRuns:
    """llama.cpp's ``no_alloc`` loads of one model and context: buffer sizes per layer count, cached."""

    def __init__(self, a: argparse.Namespace, logs: LlamaLogCapture) -> None:
        self.a, self.logs = a, logs
        self.cache: dict[int, dict[str, dict[str, int]]] = {}

    def context_params(self) -> Any:
        from llama_cpp import llama_cpp as C

        from tray_app.host.runner import GGML_TYPES

        a = self.a
        cparams = C.llama_context_default_params()
        cparams.n_ctx = a.ctx
        cparams.n_batch = min(a.batch, a.ctx)
        cparams.n_ubatch = min(a.ubatch, cparams.n_batch)
        cparams.type_k = cparams.type_v = GGML_TYPES[a.kv_type]
        cparams.flash_attn_type = 1 if a.flash_attn else 0  # ENABLED / DISABLED, as llama_cpp.Llama sets it
        cparams.offload_kqv = True
        return cparams

    def buffers(self, offloaded: int) -> dict[str, dict[str, int]]:
        """The buffer sizes llama.cpp logs for n_gpu_layers = ``offloaded`` (allocating nothing)."""
        from llama_cpp import llama_cpp as C

        if offloaded in self.cache:
            return self.cache[offloaded]
        mparams = C.llama_model_default_params()
        mparams.n_gpu_layers = offloaded
        mparams.no_alloc = True
        if hasattr(mparams, "load_mode"):
            mparams.load_mode = 0  # LLAMA_LOAD_MODE_NONE: what llama.cpp's fit uses (no mmap)
        self.logs.take()
        model = C.llama_model_load_from_file(self.a.model.encode(), mparams)
        if not model:
            raise RuntimeError(f"dry run: the model did not load: {self.logs.take()[-400:]}")
        ctx = C.llama_init_from_model(model, self.context_params())
        if not ctx:
            C.llama_model_free(model)
            raise RuntimeError(f"dry run: no context: {self.logs.take()[-400:]}")
        C.llama_free(ctx)
        C.llama_model_free(model)
        self.cache[offloaded] = parse_buffer_sizes(self.logs.take())
        return self.cache[offloaded]

    def compute(self, offloaded: int) -> int:
        return device_buffer_total(self.buffers(offloaded), "compute")


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
    """Child process: llama.cpp's own fit and our emulation of it, for one model and context; one JSON line."""
    a = _parse_probe_args(argv)
    from llama_cpp import llama_cpp as C

    from tray_app.models.gguf_info import read_model_info

    logs = LlamaLogCapture()
    C.llama_backend_init()
    info = read_model_info(a.model)
    runs = DryRuns(a, logs)

    def device_memory(offloaded: int) -> int:
        kv = fit_kv_bytes(info, offloaded, a.ctx, a.kv_type)
        return fit_model_bytes(info, offloaded) + kv + runs.compute(offloaded)

    n_max = info.n_layers + 1
    runs.buffers(n_max)  # initialises CUDA in this process, as the server's own fit runs after it
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
    layers, projected, evaluations = most_layers_under(target, n_max, device_memory)
    plan_k = max(0, min(a.plan_offloaded, n_max))
    at_plan = {
        "model": fit_model_bytes(info, plan_k),
        "kv": fit_kv_bytes(info, plan_k, a.ctx, a.kv_type),
        "compute": runs.compute(plan_k),
    }
    result: dict[str, Any] = {
        "offloaded": layers, "method": "emulated", "emulated": layers, "free_seen": free,
        "free_source": source, "target": target, "projected": projected,
        "dry_runs": max(evaluations, len(runs.cache)), "at_plan": at_plan,
    }
    result.update(_call_common_fit(a, runs, logs, n_max))
    print(json.dumps(result), flush=True)
    return 0


def _call_common_fit(a: argparse.Namespace, runs: DryRuns, logs: LlamaLogCapture, n_max: int) -> dict[str, Any]:
    """llama.cpp's own answer (``offloaded``, ``method``) when it can be called, and ``note``: why not."""
    from llama_cpp import llama_cpp as C

    fit, why = common_fit_function()
    answer: dict[str, Any] = {}
    if fit is not None:
        mparams = C.llama_model_default_params()  # n_gpu_layers left at its default: the fit sets it
        cparams = runs.context_params()  # n_ctx set: the fit keeps it, as for a context the user chose
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
            answer["offloaded"] = n_max if ngl < 0 else min(ngl, n_max)
            answer["method"] = "common_fit_params"
            if status == 1:
                why = "common_fit_params: no allocation projected to fit"
    answer["note"] = why
    return answer


def run_fit_probe(model: Path, plan: MemoryPlan, timeout: float = 180.0) -> FitResult:
    """The parent's side: start the probe for the plan's model and context, read its JSON line."""
    command = [
        sys.executable, str(ENTRY_SCRIPT), "--fit-probe", "--model", str(model),
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
