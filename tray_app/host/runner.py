"""The runner: one child process that holds the model and answers OpenAI-compatible HTTP on loopback.

It is llama-cpp-python's own server (``llama_cpp.server``), started through the tiny
:mod:`tray_app.host.runner_entry` wrapper (a parent watchdog, see there) with:

* ``--host 127.0.0.1 --port <free private port>``; clients never see this port, they use the gateway;
* a random API key in the environment (``API_KEY``, never on the command line where any local program
  could read it): the server answers every origin with ``Access-Control-Allow-Origin: *``, so without
  the key a web page that guessed the port could use the model;
* ``--logits_all false``: the server's default (true) keeps logits for every token of the context,
  n_ctx × vocabulary floats (800 MB for SmolLM2 at 4096 tokens) and slows the prompt;
* ``--use_mlock false``: the default locks the whole file in RAM, even the part that went to the GPU;
* ``--interrupt_requests false``: the default cuts a streaming answer as soon as another request
  arrives; the gateway queues requests instead;
* ``--type_k/--type_v`` as ggml type numbers (the server takes ints), ``--flash_attn true|false``;
* an environment cleaned of variables named like the server's settings (``HOST``, ``PORT``, ``MODEL``,
  ``N_CTX``…): pydantic-settings would read them and override our arguments.

The model is loaded before the server listens, so "ready" = answering ``GET /v1/models`` with our key.
Progress comes from llama.cpp's own log lines (see :mod:`tray_app.host.runner_output`).
Unloading the model = ending this process: the OS returns all of its RAM and VRAM.
"""

from __future__ import annotations

import http.client
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tray_app.hardware.llama_buffers import BufferSizes
from tray_app.host.process_tree import free_loopback_port, stop_process_tree, tree_pids
from tray_app.host.runner_errors import FailureKind, RunnerError, classify_failure
from tray_app.host.runner_output import BoundedLog, LoadProgress, OutputWatcher, RunnerPhase, session_header
from tray_app.planning.runner_config import GGML_TYPES, RunnerConfig

log = logging.getLogger(__name__)

RUNNER_ENTRY = Path(__file__).with_name("runner_entry.py")
LOOPBACK = "127.0.0.1"
DEFAULT_LOAD_TIMEOUT_S = 300.0
PORT_ATTEMPTS = 3

# llama_cpp.server's Settings fields (0.3.x): environment variables with these names (any case) would
# override the command line, so they are removed from the runner's environment. Checked by a test.
SERVER_SETTING_NAMES = frozenset(
    """api_key cache cache_size cache_type chat_format chat_template_kwargs clip_model_path
    disable_ping_events draft_model draft_model_num_pred_tokens embedding flash_attn hf_model_repo_id
    hf_pretrained_model_name_or_path hf_tokenizer_config_path host interrupt_requests kv_overrides
    last_n_tokens_size logits_all lora_base lora_path main_gpu model model_alias mul_mat_q n_batch n_ctx
    n_gpu_layers n_threads n_threads_batch n_ubatch numa offload_kqv port root_path rope_freq_base
    rope_freq_scale rope_scaling_type rpc_servers seed split_mode ssl_certfile ssl_keyfile tensor_split
    type_k type_v use_mlock use_mmap verbose vocab_only yarn_attn_factor yarn_beta_fast yarn_beta_slow
    yarn_ext_factor yarn_orig_ctx config_file""".split()
)

ProgressCallback = Callable[[LoadProgress], None]
ExitCallback = Callable[["Runner"], None]


@dataclass(frozen=True)
class RunnerEndpoint:
    """Where a ready runner answers. ``headers`` must be sent with every request."""

    host: str
    port: int
    api_key: str
    model_id: str
    path_prefix: str = ""  # another computer's server may answer under a path (``/api`` + ``/v1/…``)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path_prefix}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def model_id_for(model_path: str | os.PathLike[str]) -> str:
    """The name clients see for a model file: its file name without ``.gguf``."""
    name = Path(model_path).name
    return name[:-5] if name.lower().endswith(".gguf") else name


def check_model_file(model_path: str | os.PathLike[str]) -> None:
    """Fail fast, before starting a process, on a model file that cannot be a GGUF model."""
    path = Path(model_path)
    if not path.exists():
        raise RunnerError(
            FailureKind.MODEL_FILE,
            f"Le fichier du modèle est introuvable : {path}. Vérifiez qu'il n'a pas été déplacé ou "
            "supprimé, ou choisissez un autre modèle.",
            detail=f"missing model file {path}",
        )
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise RunnerError(
            FailureKind.MODEL_FILE,
            f"Le fichier du modèle ne peut pas être lu : {path.name}. Vérifiez qu'il n'est pas ouvert "
            "par un autre programme, ou choisissez un autre modèle.",
            detail=f"cannot read {path}: {exc}",
        ) from exc
    if magic != b"GGUF":
        raise RunnerError(
            FailureKind.MODEL_FILE,
            f"Ce fichier n'est pas un modèle au format GGUF : {path.name}. Choisissez un fichier « .gguf ».",
            detail=f"{path}: magic {magic!r}",
        )


def build_command(
    config: RunnerConfig, *, port: int, model_id: str, python: str = sys.executable, host: str = LOOPBACK
) -> list[str]:
    """The runner's command line (without the API key, which travels in the environment)."""
    try:
        type_k, type_v = GGML_TYPES[config.type_k], GGML_TYPES[config.type_v]
    except KeyError as exc:
        raise ValueError(f"unknown KV cache type {exc.args[0]!r}; known: {sorted(GGML_TYPES)}") from None
    args = {
        "model": config.model_path,
        "model_alias": model_id,
        "host": host,
        "port": port,
        "n_gpu_layers": config.n_gpu_layers,
        "n_ctx": config.n_ctx,
        "n_batch": config.n_batch,
        "n_ubatch": config.n_ubatch,
        "n_threads": config.n_threads,
        "n_threads_batch": config.n_threads_batch,
        "type_k": type_k,
        "type_v": type_v,
        "flash_attn": "true" if config.flash_attn else "false",
        "logits_all": "false",
        "use_mlock": "false",
        "interrupt_requests": "false",
        "verbose": "true",
    }
    command = [python, str(RUNNER_ENTRY)]
    for key, value in args.items():
        command += [f"--{key}", str(value)]
    return command


def runner_environment(
    api_key: str, config: RunnerConfig | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The runner's environment: ours minus the server-setting names, plus the key and UTF-8 output.

    A CPU-only configuration (``n_gpu_layers == 0``) also hides the graphics cards (CUDA's and Vulkan's
    device lists emptied): otherwise a CUDA or Vulkan build still creates its context and reads prompts on
    the GPU, taking VRAM the plan promised to leave.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k.lower() not in SERVER_SETTING_NAMES}
    env.update(API_KEY=api_key, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PYTHONUTF8="1")
    if config is not None and config.n_gpu_layers == 0:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        env["GGML_VK_VISIBLE_DEVICES"] = ""  # set and empty: ggml-vulkan uses no device
    return env


class Runner:
    """One runner process for one :class:`RunnerConfig`. Not reusable: after :meth:`stop`, make another.

    ``on_progress`` and ``on_exit`` are called from the runner's output thread. ``on_exit`` is called only
    when the process ends without :meth:`stop` having been asked (a crash).
    """

    def __init__(
        self,
        config: RunnerConfig,
        *,
        log_file: Path | None = None,
        on_progress: ProgressCallback | None = None,
        on_exit: ExitCallback | None = None,
        python: str | None = None,
    ) -> None:
        self.config = config
        self.model_id = model_id_for(config.model_path)
        self._log_file = log_file
        self._on_progress = on_progress
        self._on_exit = on_exit
        self._python = python or sys.executable
        self._api_key = secrets.token_urlsafe(24)
        self._proc: subprocess.Popen[bytes] | None = None
        self._watcher: OutputWatcher | None = None
        self._sink: BoundedLog | None = None
        self._port = 0
        self._stopping = False
        self._ready = False
        self._was_ready = False  # exits before readiness are reported by wait_ready, not on_exit
        self._started_at = 0.0
        self.load_seconds: float | None = None  # from process start to ready, once ready

    # -- facts ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The process we started (on Windows with a venv, a launcher: see :meth:`pids`)."""
        return self._proc.pid if self._proc is not None else None

    def pids(self) -> list[int]:
        """Every living process of the runner (the pid and its descendants), for VRAM accounting."""
        return tree_pids(self._proc.pid) if self._proc is not None else []

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def endpoint(self) -> RunnerEndpoint | None:
        return RunnerEndpoint(LOOPBACK, self._port, self._api_key, self.model_id) if self._ready else None

    @property
    def engine_buffers(self) -> BufferSizes:
        """llama.cpp's buffer sizes as it logged them while loading (a copy; empty before)."""
        watcher = self._watcher
        return {name: dict(kinds) for name, kinds in watcher.buffers.items()} if watcher is not None else {}

    def output_tail(self, lines: int = 40) -> list[str]:
        return list(self._watcher.tail)[-lines:] if self._watcher is not None else []

    # -- life -------------------------------------------------------------------------------------
    def load(self, timeout: float = DEFAULT_LOAD_TIMEOUT_S, cancel: threading.Event | None = None) -> RunnerEndpoint:
        """Check the file, start the process and wait until it answers. Raises :class:`RunnerError`.

        A private port taken between choosing and binding it is retried on another port.
        """
        check_model_file(self.config.model_path)
        deadline = time.monotonic() + timeout
        for attempt in range(PORT_ATTEMPTS):
            self.start()
            try:
                return self.wait_ready(max(0.1, deadline - time.monotonic()), cancel)
            except RunnerError as exc:
                self.stop()
                if exc.kind is not FailureKind.PORT or attempt == PORT_ATTEMPTS - 1:
                    raise
                log.info("runner port %s was taken; retrying on another port", self._port)
                self._stopping = False
        raise AssertionError("unreachable")

    def start(self, port: int | None = None) -> None:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        if self.alive:
            raise RuntimeError("runner already started")
        self._port = port or free_loopback_port()
        self._ready = False
        command = build_command(self.config, port=self._port, model_id=self.model_id, python=self._python)
        if self._sink is None and self._log_file is not None:
            self._sink = BoundedLog(self._log_file)
        if self._sink is not None:
            self._sink.write(session_header(f"runner port {self._port}: {self.config.to_dict()}"))
        log.info("starting runner on port %s: %s", self._port, self.config.to_dict())
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # Ctrl+C in a terminal reaches us, not the runner
        self._started_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=runner_environment(self._api_key, self.config),
                **kwargs,
            )
        except OSError as exc:
            raise RunnerError(FailureKind.ENGINE, detail=f"cannot start {command[0]}: {exc}") from exc
        assert self._proc.stdout is not None  # stdout=PIPE
        self._watcher = OutputWatcher(
            self._proc.stdout,
            self._sink,
            on_progress=self._on_progress,
            on_eof=self._output_ended,
            name=f"runner-{self._proc.pid}-output",
        )
        self._report(LoadProgress.of(RunnerPhase.STARTING, 0.0))
        self._watcher.start()

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> RunnerEndpoint:
        """Block until the runner answers with our key, it dies, ``timeout`` passes or ``cancel`` is set."""
        proc, watcher = self._proc, self._watcher
        if proc is None or watcher is None:
            raise RuntimeError("runner not started")
        deadline = time.monotonic() + timeout
        next_probe = 0.0
        while True:
            if cancel is not None and cancel.is_set():
                raise RunnerError(FailureKind.CANCELLED, detail="load cancelled")
            returncode = proc.poll()
            if returncode is not None:
                watcher.finished.wait(2.0)  # let the last lines arrive
                kind, detail = classify_failure(returncode, watcher.tail)
                log.warning("runner exited while loading (%s): %s", kind.value, detail)
                raise RunnerError(kind, detail=detail)
            now = time.monotonic()
            if now >= next_probe:
                status = self._probe()
                if status == 200:
                    self._ready = self._was_ready = True
                    self.load_seconds = now - self._started_at
                    log.info("runner %s ready in %.2f s", proc.pid, self.load_seconds)
                    self._report(LoadProgress.of(RunnerPhase.READY, 1.0))
                    return RunnerEndpoint(LOOPBACK, self._port, self._api_key, self.model_id)
                if status is not None:  # someone else answers on "our" port
                    raise RunnerError(FailureKind.PORT, detail=f"port {self._port} answered HTTP {status}")
                next_probe = now + (0.05 if watcher.listening.is_set() else 0.5)
            if now >= deadline:
                raise RunnerError(FailureKind.TIMEOUT, detail=f"not ready after {timeout:.0f} s")
            # Wake early when uvicorn says it listens or the process ends.
            if not watcher.listening.is_set():
                watcher.listening.wait(min(0.05, max(0.0, deadline - now)))
            elif cancel is not None:
                cancel.wait(0.02)
            else:
                time.sleep(0.02)

    def _probe(self) -> int | None:
        conn = http.client.HTTPConnection(LOOPBACK, self._port, timeout=2.0)
        try:
            conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {self._api_key}"})
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def stop(self, grace_s: float = 3.0) -> None:
        """End the process and wait until it and its children are gone (memory returned)."""
        proc = self._proc
        if proc is None:
            return
        self._stopping = True
        self._ready = False
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # the runner's watchdog exits at end-of-file
            except OSError:
                pass
            stop_process_tree(proc, grace_s=grace_s)
        if self._watcher is not None:
            self._watcher.join(2.0)
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        log.info("runner %s stopped (exit status %s)", proc.pid, proc.returncode)

    def close_log(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    # -- callbacks --------------------------------------------------------------------------------
    def _report(self, progress: LoadProgress) -> None:
        if self._on_progress is not None:
            try:
                self._on_progress(progress)
            except Exception:
                log.exception("runner progress callback failed")

    def _output_ended(self) -> None:
        if self._stopping or not self._was_ready or self._on_exit is None:
            return
        proc = self._proc
        if proc is not None:
            # Poll rather than wait(): a thread blocked in wait() makes poll() elsewhere answer "running".
            deadline = time.monotonic() + 5.0
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    return  # closed its output but still running: the supervisor's poll will see it
                time.sleep(0.01)
        if not self._stopping:
            self._on_exit(self)
