"""Entry point of the dry-run probe process: llama.cpp's own memory figures for a configuration, nothing
allocated. Started by :mod:`tray_app.planning.dry_run` (never imported by the program).

Run as a script path (``python .../dry_run_entry.py``), like the runner: it needs only the standard
library and llama-cpp-python, the very engine the runner will load (``LLAMA_CPP_LIB_PATH`` included). It
never runs in the tray's process: loading llama.cpp there would cost its memory for good, and a crash in
the engine would take the icon with it.

Protocol (one JSON object per line): the first line read is the configuration (``model``, ``n_ctx``,
``n_batch``, ``n_ubatch``, ``type_k``, ``type_v`` as ggml type numbers, ``flash_attn``); the probe answers
with the engine (its devices, with the free and total memory ggml sees). Then each ``{"layers": N}``
line is answered with llama.cpp's memory breakdown for ``n_gpu_layers = N`` (``"model"``, ``"context"``,
``"compute"`` bytes per device, and the host's), and ``{"fit": {"margin": BYTES}}`` with the layers
llama.cpp's own fit (``common_fit_params``, as ``--fit``) chooses with that margin, when the engine ships
libllama-common. End of input ends the process.

How the figures are obtained, and why this way
----------------------------------------------
The model is loaded with ``no_alloc = true`` and ``load_mode = NONE`` (metadata only; any other load mode
aborts on an assertion) and a context is created on it: llama.cpp places every tensor, sizes the KV cache
and reserves its compute graphs exactly as for a real load, allocating nothing. It is the mechanism of
llama.cpp's own ``--fit``. Of the ways to read the result:

* its log lines ("Vulkan0 compute buffer size = 112.01 MiB") give the compute and output buffers only:
  model and KV buffers are logged as 0 in a dry run;
* ``common_fit_print`` and ``common_memory_breakdown_print`` (libllama-common) print whole MiB only, and
  libllama-common is not in every build (not in the Windows one the installer makes);
* ``llama_get_memory_breakdown`` (libllama, ``src/llama-ext.h``) is what ``--fit`` itself reads: exact
  bytes for every buffer type. It returns a ``std::map`` by value, so it is called through ctypes by its
  C++ name with a hidden return slot and the map's nodes are read as libstdc++ lays them out (the layout
  of GCC's red-black tree, stable since GCC 4; mingw builds use it too). That is the one used.

Reading C++ memory is only trusted when it proves itself: the compute bytes read must equal, for every
buffer type, the compute buffer sizes llama.cpp logged for the same dry run, and the model bytes must add
up to at least the model's tensor size (``llama_model_size``). Otherwise the line says ``"error"`` and the
planner falls back to its own formula; the process itself never depends on a figure it could not check.
The map's nodes are not freed (a few dozen bytes per dry run, in a process that lives for one plan).
"""

import ctypes
import json
import os
import re
import sys
import traceback
from pathlib import Path

MIB = 1024 * 1024
MAX_LAYERS = 0x7FFFFFFF  # llama.cpp's "every layer"
# llama_get_memory_breakdown(const llama_context *) (Itanium C++ ABI name; mingw uses the same scheme).
BREAKDOWN_SYMBOL = "_Z26llama_get_memory_breakdownPK13llama_context"
# common_fit_params (common/fit.h), in libllama-common: see fit_layers().
COMMON_FIT_PARAMS = (
    "_Z17common_fit_paramsPKcP18llama_model_paramsP20llama_context_paramsPfP32llama_model_tensor_buft_override"
    "PmjPK22common_fit_extra_model14ggml_log_level"
)
FIT_MIN_CTX = 4096  # common_params.fit_params_min_ctx (unused: a context set by the caller is kept)
GGML_LOG_LEVEL_ERROR = 4
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}  # enum ggml_backend_dev_type
# std::map<K, V> in libstdc++: the comparator (1 byte, padded), then the header node {color, parent (the
# root), left, right} and the node count. A node: {color, parent, left, right} then the value.
MAP_SIZE = 48
MAP_ROOT, MAP_COUNT = 16, 40
NODE_LEFT, NODE_RIGHT, NODE_VALUE = 16, 24, 32
COMPUTE_LINE = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_]*)\s+compute buffer size\s*=\s*(?P<mib>[0-9.]+)\s*MiB")


class Log:
    """llama.cpp's log, kept in memory (the dry run's compute buffer lines are checked against the map)."""

    def __init__(self, llama_cpp) -> None:
        self.parts: list[str] = []

        def on_log(level, text, user_data) -> None:
            self.parts.append(text.decode("utf-8", "replace") if text else "")

        self.callback = llama_cpp.llama_log_callback(on_log)  # kept referenced: llama.cpp calls it later
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        return text


class Ggml:
    """The few ggml functions needed to name buffer types and devices (plain C, from libggml*)."""

    def __init__(self, lib_dir: Path) -> None:
        self.base = _load(lib_dir, "ggml-base")
        self.ggml = _load(lib_dir, "ggml")
        p, s = ctypes.c_void_p, ctypes.c_size_t
        for lib, name, restype, argtypes in (
            (self.base, "ggml_backend_buft_name", ctypes.c_char_p, [p]),
            (self.base, "ggml_backend_buft_is_host", ctypes.c_bool, [p]),
            (self.base, "ggml_backend_buft_get_device", p, [p]),
            (self.base, "ggml_backend_dev_name", ctypes.c_char_p, [p]),
            (self.base, "ggml_backend_dev_description", ctypes.c_char_p, [p]),
            (self.base, "ggml_backend_dev_type", ctypes.c_int, [p]),
            (self.base, "ggml_backend_dev_memory", None, [p, ctypes.POINTER(s), ctypes.POINTER(s)]),
            (self.ggml, "ggml_backend_dev_count", s, []),
            (self.ggml, "ggml_backend_dev_get", p, [s]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes

    def device(self, dev: int) -> dict:
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        self.base.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        return {
            "name": _text(self.base.ggml_backend_dev_name(dev)),
            "description": _text(self.base.ggml_backend_dev_description(dev)),
            "type": DEVICE_TYPES.get(self.base.ggml_backend_dev_type(dev), "other"),
            "free": int(free.value),
            "total": int(total.value),
        }

    def devices(self) -> list:
        return [self.device(self.ggml.ggml_backend_dev_get(i)) for i in range(self.ggml.ggml_backend_dev_count())]


def _load(lib_dir: Path, stem: str):
    for name in (f"lib{stem}.so", f"lib{stem}.dylib", f"{stem}.dll", f"lib{stem}.dll"):
        if (lib_dir / name).is_file():
            return ctypes.CDLL(str(lib_dir / name))
    raise OSError(f"{stem} not found in {lib_dir}")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if value else ""


class Probe:
    def __init__(self, config: dict) -> None:
        import llama_cpp
        from llama_cpp import llama_cpp as C

        self.C = C
        self.config = config
        self.lib_dir = Path(C._base_path)
        self.log = Log(C)
        C.llama_backend_init()
        self.ggml = Ggml(self.lib_dir)
        self.breakdown_fn = getattr(C._lib, BREAKDOWN_SYMBOL, None)
        if self.breakdown_fn is not None:
            self.breakdown_fn.restype = ctypes.c_void_p
            self.breakdown_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.version = getattr(llama_cpp, "__version__", "")

    def engine(self) -> dict:
        return {
            "version": self.version,
            "lib_dir": str(self.lib_dir),
            "gpu_offload": bool(self.C.llama_supports_gpu_offload()),
            "devices": self.ggml.devices(),
            "breakdown": self.breakdown_fn is not None,
        }

    def context_params(self):
        c, cfg = self.C, self.config
        params = c.llama_context_default_params()  # what llama_cpp.Llama starts from, as the runner does
        params.n_ctx = int(cfg["n_ctx"])
        params.n_batch = int(cfg["n_batch"])
        params.n_ubatch = min(int(cfg["n_batch"]), int(cfg["n_ubatch"]))
        params.type_k = int(cfg["type_k"])
        params.type_v = int(cfg["type_v"])
        enabled, disabled = c.LLAMA_FLASH_ATTN_TYPE_ENABLED, c.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.flash_attn_type = enabled if cfg["flash_attn"] else disabled
        params.offload_kqv = True
        return params

    def model_params(self, layers: int):
        params = self.C.llama_model_default_params()
        params.n_gpu_layers = MAX_LAYERS if layers < 0 else layers
        params.no_alloc = True
        params.load_mode = self.C.LLAMA_LOAD_MODE_NONE  # no_alloc with any other mode aborts
        return params

    def dry_run(self, layers: int) -> dict:
        c = self.C
        self.log.take()
        model = c.llama_model_load_from_file(self.config["model"].encode("utf-8"), self.model_params(layers))
        if not model:
            return {"layers": layers, "error": "model not loaded: " + _last_lines(self.log.take())}
        try:
            ctx = c.llama_init_from_model(model, self.context_params())
            if not ctx:
                return {"layers": layers, "error": "no context: " + _last_lines(self.log.take())}
            try:
                answer: dict = {"layers": layers, "n_layer": int(c.llama_model_n_layer(model))}
                logged = {m["name"]: float(m["mib"]) for m in COMPUTE_LINE.finditer(self.log.take())}
                answer["logged_compute_mib"] = logged
                if self.breakdown_fn is None:
                    answer["error"] = "llama_get_memory_breakdown is not exported by this libllama"
                    return answer
                rows = self.breakdown(ctx)
                why = _check(rows, logged, int(c.llama_model_size(model)))
                if why:
                    answer["error"] = why
                else:
                    answer["rows"] = rows
                return answer
            finally:
                c.llama_free(ctx)
        finally:
            c.llama_model_free(model)

    def breakdown(self, ctx) -> list:
        """llama.cpp's memory breakdown: one row per buffer type (name, device or host, bytes by kind)."""
        slot = ctypes.create_string_buffer(MAP_SIZE)
        base = ctypes.addressof(slot)
        if self.breakdown_fn is None:
            raise ValueError("llama_get_memory_breakdown is not exported by this libllama")
        self.breakdown_fn(base, ctx)
        count = _u64(base + MAP_COUNT)
        if not 0 < count <= 256:
            raise ValueError(f"implausible breakdown size {count}")
        nodes: list = []
        stack: list = []
        node = _u64(base + MAP_ROOT)
        while (stack or node) and len(nodes) <= count:  # in-order walk of the red-black tree
            while node:
                stack.append(node)
                node = _u64(node + NODE_LEFT)
            node = stack.pop()
            nodes.append(node)
            node = _u64(node + NODE_RIGHT)
        if len(nodes) != count:
            raise ValueError(f"breakdown walk found {len(nodes)} nodes, not {count}")
        rows = []
        base_lib = self.ggml.base
        for n in nodes:
            buft = _u64(n + NODE_VALUE)
            model, context, compute = (_u64(n + NODE_VALUE + 8 * i) for i in (1, 2, 3))
            host = bool(base_lib.ggml_backend_buft_is_host(buft))
            dev = None if host else base_lib.ggml_backend_buft_get_device(buft)
            rows.append({
                "buffer": _text(base_lib.ggml_backend_buft_name(buft)),
                "device": _text(base_lib.ggml_backend_dev_name(dev)) if dev else "",
                "device_type": DEVICE_TYPES.get(base_lib.ggml_backend_dev_type(dev), "other") if dev else "",
                "host": host,
                "model": model,
                "context": context,
                "compute": compute,
            })
        return rows

    def fit_layers(self, margin: int) -> dict:
        """llama.cpp's own fit (``common_fit_params``) with ``margin`` bytes kept free per device."""
        c = self.C
        fit, why = self._common_fit()
        if fit is None:
            return {"error": why}
        mparams = c.llama_model_default_params()  # n_gpu_layers left at its default: the fit sets it
        cparams = self.context_params()  # n_ctx set: the fit keeps it, as for a context the user chose
        n_dev, n_over = c.llama_max_devices(), c.llama_max_tensor_buft_overrides()
        split = (ctypes.c_float * n_dev)()
        overrides = (_BuftOverride * n_over)()
        margins = (ctypes.c_size_t * n_dev)(*([int(margin)] * n_dev))
        devices = self.ggml.devices()
        status = fit(self.config["model"].encode("utf-8"), ctypes.byref(mparams), ctypes.byref(cparams), split,
                     overrides, margins, FIT_MIN_CTX, None, GGML_LOG_LEVEL_ERROR)
        self.log.take()
        if status == 2:  # COMMON_PARAMS_FIT_STATUS_ERROR
            return {"error": "common_fit_params answered ERROR", "devices": devices}
        return {"n_gpu_layers": int(mparams.n_gpu_layers), "status": int(status), "n_ctx": int(cparams.n_ctx),
                "devices": devices}

    def _common_fit(self):
        candidates = [self.lib_dir / n for n in ("libllama-common.so", "libllama-common.so.0", "llama-common.dll")]
        candidates += [self.lib_dir.parent.parent / "lib" / "libllama-common.so"]  # the wheel's site-packages/lib
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            return None, "libllama-common is not in this engine"
        try:
            fn = getattr(ctypes.CDLL(str(found)), COMMON_FIT_PARAMS)
        except (OSError, AttributeError) as exc:
            return None, f"common_fit_params cannot be loaded: {exc}"
        c = self.C
        fn.restype = ctypes.c_int
        fn.argtypes = [
            ctypes.c_char_p, ctypes.POINTER(c.llama_model_params), ctypes.POINTER(c.llama_context_params),
            ctypes.POINTER(ctypes.c_float), ctypes.POINTER(_BuftOverride), ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int,
        ]
        return fn, ""


class _BuftOverride(ctypes.Structure):  # struct llama_model_tensor_buft_override
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _u64(address: int) -> int:
    return ctypes.c_uint64.from_address(address).value


def _check(rows: list, logged_mib: dict, model_size: int) -> str:
    """Why the breakdown read cannot be trusted, or "" when it agrees with what llama.cpp logged."""
    for row in rows:
        if row["compute"] or row["buffer"] in logged_mib:
            mib = logged_mib.get(row["buffer"])
            if mib is None or abs(row["compute"] / MIB - mib) > 0.006:  # the log rounds to 0.01 MiB
                return f"breakdown compute of {row['buffer']} ({row['compute']} B) disagrees with the log ({mib} MiB)"
    missing = set(logged_mib) - {r["buffer"] for r in rows}
    if missing:
        return f"buffers logged but not in the breakdown: {sorted(missing)}"
    model = sum(r["model"] for r in rows)
    if not model_size <= model <= 2 * model_size + 64 * MIB:
        return f"breakdown model bytes {model} implausible for a model of {model_size} bytes"
    return ""


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])[:400]


_ANSWERS = sys.stdout


def _answer(obj: dict) -> None:
    _ANSWERS.write(json.dumps(obj) + "\n")
    _ANSWERS.flush()


def _keep_stdout_for_answers() -> None:
    """Answers go to the original stdout; whatever the engine prints there (C code writes to file
    descriptor 1) goes to stderr instead, so that it never mixes with the JSON lines."""
    global _ANSWERS
    try:
        sys.stdout.flush()
        answers = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        return
    _ANSWERS = os.fdopen(answers, "w", encoding="utf-8", newline="\n")
    sys.stdout = sys.stderr


def main() -> int:
    here = str(Path(__file__).resolve().parent)
    if sys.path and str(Path(sys.path[0] or ".").resolve()) == here:
        sys.path.pop(0)  # our folder's modules must not shadow anything llama_cpp imports
    _keep_stdout_for_answers()
    first = sys.stdin.readline()
    if not first:
        return 0
    try:
        probe = Probe(json.loads(first))
        _answer({"engine": probe.engine()})
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back to its formula
        _answer({"error": f"engine: {type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]})
        return 1
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if "fit" in request:
                _answer({"fit": probe.fit_layers(int(request["fit"]["margin"]))})
            else:
                _answer(probe.dry_run(int(request["layers"])))
        except Exception as exc:  # noqa: BLE001 - one bad request is an answer, not the end of the probe
            _answer({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
