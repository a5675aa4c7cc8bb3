"""llama.cpp's exact buffers for a configuration, from a dry run of the engine that will run it, cached.

:class:`DryRuns` is what the memory plan asks: "how much does the device hold with ``n`` layers
offloaded?" It answers from the cache when this model file, engine and context were measured before
(a second plan is instant), else from a **probe process** (:mod:`tray_app.planning.dry_run_entry`),
started once per plan on the first miss and kept until :meth:`DryRuns.close`: one process, one llama.cpp
initialisation, as many dry runs as the plan's search needs. The probe's figures are llama.cpp's own
memory breakdown (see the entry script for how they are read and checked).

Never in the tray's process: the probe is a child process started with the runner's Python; it loads
llama.cpp, answers and ends. When it cannot run (no engine, an engine that crashes, a figure that does
not check out, too slow) the plan falls back to its formula and says so (``DryRuns.error``).

The cache key is everything a buffer size depends on: the model file (path, size, modification time),
the engine (:meth:`~tray_app.hardware.llama_backend.LlamaBackend.fingerprint`: version, library files,
the device-selection variables), the graphics card when NVML names it, the context, the KV cache types,
flash attention and the batch sizes. The file keeps the :data:`MAX_ENTRIES` most recent keys.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tray_app.hardware.llama_backend import LlamaBackend
from tray_app.planning.runner_config import GGML_TYPES

log = logging.getLogger(__name__)

PROBE_ENTRY = Path(__file__).with_name("dry_run_entry.py")
CACHE_NAME = "dry_runs.json"
CACHE_VERSION = 1
GPU_TYPES = ("gpu", "igpu")  # ggml device types that hold offloaded layers
MAX_ENTRIES = 64
START_TIMEOUT_S = 60.0  # importing llama_cpp and initialising the backend (Vulkan devices…)
RUN_TIMEOUT_S = 60.0  # one dry run: reading a header and reserving the graphs


class DryRunError(Exception):
    """The dry run could not give a figure (the English reason is for the log)."""


@dataclass(frozen=True)
class DryRunConfig:
    """What a dry run depends on besides the layer count (the runner's settings)."""

    model_path: str
    n_ctx: int
    n_batch: int
    n_ubatch: int
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False

    def probe_request(self) -> dict[str, Any]:
        return {
            "model": self.model_path, "n_ctx": self.n_ctx, "n_batch": self.n_batch, "n_ubatch": self.n_ubatch,
            "type_k": GGML_TYPES[self.type_k], "type_v": GGML_TYPES[self.type_v], "flash_attn": self.flash_attn,
        }


@dataclass(frozen=True)
class EngineBuffers:
    """llama.cpp's memory for one layer count (bytes): on the graphics device(s), and on the host."""

    offloaded: int  # llama.cpp's n_gpu_layers: the last layers, + 1 for the output layer when all are
    device_model: int
    device_context: int  # KV cache (and recurrent state)
    device_compute: int
    host_model: int
    host_context: int
    host_compute: int
    devices: tuple[str, ...] = ()  # the devices holding buffers ("Vulkan0", "CUDA0")

    @property
    def device_total(self) -> int:
        return self.device_model + self.device_context + self.device_compute

    @property
    def host_total(self) -> int:
        return self.host_model + self.host_context + self.host_compute

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = list(self.devices)
        data["device_total"] = self.device_total
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineBuffers:
        values = {k: int(data[k]) for k in (
            "offloaded", "device_model", "device_context", "device_compute", "host_model", "host_context",
            "host_compute")}
        return cls(**values, devices=tuple(str(d) for d in data.get("devices", ())))

    @classmethod
    def from_probe(cls, offloaded: int, rows: list[dict[str, Any]]) -> EngineBuffers:
        """From the probe's breakdown rows (one per buffer type). A graphics device's buffer types count as
        the device's; every other one (host memory, the CPU's repacked weights) as the host's."""
        dev = [r for r in rows if not r["host"] and r.get("device_type") in GPU_TYPES]
        host = [r for r in rows if r not in dev]
        devices = tuple(sorted({str(r["device"]) for r in dev if r["model"] or r["context"] or r["compute"]}))
        return cls(
            offloaded=offloaded,
            device_model=sum(int(r["model"]) for r in dev),
            device_context=sum(int(r["context"]) for r in dev),
            device_compute=sum(int(r["compute"]) for r in dev),
            host_model=sum(int(r["model"]) for r in host),
            host_context=sum(int(r["context"]) for r in host),
            host_compute=sum(int(r["compute"]) for r in host),
            devices=devices,
        )


@dataclass(frozen=True)
class EngineDevice:
    """A device as the engine sees it (ggml's name, description, type, free and total memory)."""

    name: str
    description: str
    type: str  # cpu, gpu, igpu, accel
    free: int
    total: int


# -- the probe process ----------------------------------------------------------------------------------


class ProbeProcess:
    """One probe child process for one configuration (see the module docstring)."""

    def __init__(self, config: DryRunConfig, *, python: str | None = None, env: dict[str, str] | None = None,
                 start_timeout_s: float = START_TIMEOUT_S, run_timeout_s: float = RUN_TIMEOUT_S) -> None:
        self.config = config
        self.python = python or sys.executable
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.run_timeout_s = run_timeout_s
        self.devices: tuple[EngineDevice, ...] = ()
        self.engine: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self.started_s: float | None = None  # seconds from start to the engine's first answer

    def start(self) -> None:
        started = time.monotonic()
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW
        try:
            self._proc = subprocess.Popen(
                [self.python, str(PROBE_ENTRY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", env=self.env, **kwargs,
            )
        except OSError as exc:
            raise DryRunError(f"cannot start the probe: {exc}") from exc
        threading.Thread(target=self._read, args=(self._proc.stdout, True), daemon=True, name="dry-run-out").start()
        threading.Thread(target=self._read, args=(self._proc.stderr, False), daemon=True, name="dry-run-err").start()
        answer = self._ask(self.config.probe_request(), self.start_timeout_s)
        if "engine" not in answer:
            raise DryRunError(f"probe did not start: {answer.get('error', answer)}")
        self.engine = answer["engine"]
        self.devices = tuple(EngineDevice(**{k: d[k] for k in ("name", "description", "type", "free", "total")})
                             for d in self.engine.get("devices", ()))
        self.started_s = time.monotonic() - started

    def _read(self, stream: Any, answers: bool) -> None:
        try:
            for line in stream:
                if answers:
                    self._answers.put(line)
                else:
                    self._stderr.append(line.rstrip())
        except (OSError, ValueError):
            pass
        finally:
            if answers:
                self._answers.put(None)

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise DryRunError("probe not started")
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise DryRunError(f"probe gone: {self._why_gone()}") from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise DryRunError(f"probe gave no answer within {timeout:.0f} s") from None
            if line is None:
                raise DryRunError(f"probe ended: {self._why_gone()}")
            if line.startswith("{"):
                try:
                    answer: dict[str, Any] = json.loads(line)
                    return answer
                except json.JSONDecodeError:
                    continue

    def _why_gone(self) -> str:
        code = self._proc.poll() if self._proc is not None else None
        tail = " | ".join(list(self._stderr)[-3:])
        return f"exit status {code}; {tail[-400:]}"

    def measure(self, offloaded: int) -> EngineBuffers:
        answer = self._ask({"layers": offloaded}, self.run_timeout_s)
        if "rows" not in answer:
            raise DryRunError(f"dry run with {offloaded} layers: {answer.get('error', answer)}")
        return EngineBuffers.from_probe(offloaded, answer["rows"])

    def fit(self, margin: int) -> dict[str, Any]:
        """llama.cpp's own fit (``common_fit_params``) with ``margin`` bytes kept free per device: its
        answer (``n_gpu_layers``, ``status``, the ``devices`` it saw), or ``error``."""
        answer = self._ask({"fit": {"margin": int(margin)}}, self.run_timeout_s * 4)
        fit: dict[str, Any] = answer.get("fit") or {"error": answer.get("error", "no answer")}
        return fit

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # end of input: the probe ends
            proc.wait(timeout=5.0)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def __enter__(self) -> ProbeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the cache --------------------------------------------------------------------------------------------


def file_identity(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    stat = p.stat()
    return f"{p.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def cache_key(config: DryRunConfig, engine_fingerprint: str, gpu_identity: str = "") -> str:
    fields = [file_identity(config.model_path), engine_fingerprint, gpu_identity, config.n_ctx, config.n_batch,
              config.n_ubatch, config.type_k, config.type_v, config.flash_attn]
    return hashlib.sha1(json.dumps(fields).encode("utf-8")).hexdigest()


class DryRunCache:
    """Dry-run figures per key and layer count, in one small JSON file (written atomically)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION and isinstance(data.get("entries"), dict):
                self._entries = data["entries"]
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("dry-run cache %s unreadable (%s): starting again", self.path, exc)

    def get(self, key: str) -> dict[int, EngineBuffers]:
        with self._lock:
            self._load()
            entry = self._entries.get(key)
            if not entry:
                return {}
            try:
                return {int(k): EngineBuffers.from_dict(v) for k, v in entry["runs"].items()}
            except (KeyError, ValueError, TypeError):
                return {}

    def put(self, key: str, buffers: EngineBuffers) -> None:
        with self._lock:
            self._load()
            entry = self._entries.setdefault(key, {"runs": {}})
            entry["runs"][str(buffers.offloaded)] = buffers.to_dict()
            entry["at"] = time.time()

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            newest = sorted(self._entries.items(), key=lambda kv: kv[1].get("at", 0.0), reverse=True)
            self._entries = dict(newest[:MAX_ENTRIES])
            document = {"version": CACHE_VERSION, "entries": self._entries}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("dry-run cache %s not written: %s", self.path, exc)


# -- what the plan asks --------------------------------------------------------------------------------


class DryRuns:
    """llama.cpp's buffers per layer count for one configuration: cache first, else the probe.

    Call it with llama.cpp's ``n_gpu_layers`` count (0..n_layers+1); it returns :class:`EngineBuffers`,
    or None once the dry run has failed (``error`` says why; the plan then uses its formula). Close it
    (or use ``with``) to end the probe and write the cache.
    """

    def __init__(self, config: DryRunConfig, backend: LlamaBackend, *, cache: DryRunCache,
                 gpu_identity: str = "", python: str | None = None, env: dict[str, str] | None = None,
                 require_device: bool = True) -> None:
        self.config = config
        self.require_device = require_device  # no graphics device seen: an error (the plan stays on the CPU)
        self.backend = backend
        self.cache = cache
        self.key = cache_key(config, backend.fingerprint(), gpu_identity)
        self.python = python
        self.env = env
        self.error = ""
        self.no_device = False  # the engine sees no graphics device at all (a plan then stays on the CPU)
        self.probe_runs = 0  # dry runs made by the probe (not from the cache)
        self.cached_runs = 0
        self.probe_start_s: float | None = None
        self._known = cache.get(self.key)
        self._probe: ProbeProcess | None = None

    @property
    def devices(self) -> tuple[EngineDevice, ...]:
        return self._probe.devices if self._probe is not None else ()

    def __call__(self, offloaded: int) -> EngineBuffers | None:
        if offloaded in self._known:
            self.cached_runs += 1
            return self._known[offloaded]
        if self.error:
            return None
        try:
            probe = self.probe()
            buffers = probe.measure(offloaded)
        except DryRunError as exc:
            self.error = str(exc)
            log.warning("dry run failed, the plan uses its formula: %s", exc)
            self.close()
            return None
        self.probe_runs += 1
        self._known[offloaded] = buffers
        self.cache.put(self.key, buffers)
        return buffers

    def probe(self) -> ProbeProcess:
        """The probe process (started on first use)."""
        if self._probe is None:
            probe = ProbeProcess(self.config, python=self.python, env=self.env)
            try:
                probe.start()
            except DryRunError:
                probe.close()
                raise
            self._probe = probe
            self.probe_start_s = probe.started_s
            if self.require_device and not any(d.type in GPU_TYPES for d in probe.devices):
                self.no_device = True
                raise DryRunError("the engine sees no graphics device")
        return self._probe

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self.probe_runs:
            self.cache.save()

    def __enter__(self) -> DryRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
