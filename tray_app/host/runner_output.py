"""The runner's output: copied to a size-bounded log file, watched for load progress, kept short in memory.

llama.cpp (through llama-cpp-python, ``verbose=True``) prints its loading steps on stderr:
``llama_model_loader: loaded meta data …`` (file opened), ``load_tensors: …`` (weights being read), then
one dot per percent of weights read (no newline until 100 %), ``llama_context: constructing …`` (KV cache
and buffers), and uvicorn prints ``Uvicorn running on …`` once the server listens. Those markers give the
phases and a fraction. llama.cpp's buffer lines (``Vulkan0 model buffer size = …``) are kept as figures
(:attr:`OutputWatcher.buffers`): what the engine really allocated, which the calibration of the card
compares with NVML. Anything else is only logged.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO

from tray_app.hardware.llama_buffers import BUFFER_LINE, BufferSizes, add_buffer_line

log = logging.getLogger(__name__)

RUNNER_LOG_MAX_BYTES = 1_000_000
TAIL_LINES = 200


class RunnerPhase(str, Enum):
    STARTING = "starting"  # process started, Python importing the engine
    LOADING = "loading"  # llama.cpp reading the model
    READY = "ready"  # answering HTTP


_PHASE_TEXT = {
    RunnerPhase.STARTING: "Démarrage du moteur du modèle…",
    RunnerPhase.LOADING: "Chargement du modèle…",
    RunnerPhase.READY: "Le modèle est prêt.",
}


@dataclass(frozen=True)
class LoadProgress:
    phase: RunnerPhase
    fraction: float  # 0.0 … 1.0, monotonic during one load
    message: str  # French

    @staticmethod
    def of(phase: RunnerPhase, fraction: float) -> LoadProgress:
        text = _PHASE_TEXT[phase]
        if phase is RunnerPhase.LOADING:
            text = f"Chargement du modèle… {round(fraction * 100)} %"
        return LoadProgress(phase, fraction, text)


class BoundedLog:
    """Append-only text file rotated to ``<name>.1`` when it passes ``max_bytes`` (two files at most)."""

    def __init__(self, path: Path, max_bytes: int = RUNNER_LOG_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._size = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError:
            log.warning("runner log %s cannot be written; runner output kept in memory only", path)

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - open while the runner runs
        self._size = self._file.tell()

    def write(self, text: str) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                if self._size + len(text) > self.max_bytes:
                    self._file.close()
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    self._open()
                self._file.write(text)
                self._file.flush()
                self._size += len(text.encode("utf-8", "replace"))
            except OSError:
                log.warning("runner log %s: write failed; further output dropped", self.path)
                self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class OutputWatcher:
    """Reads the runner's merged stdout/stderr on its own thread until the process closes it.

    ``on_progress`` receives :class:`LoadProgress` (only when the fraction or phase moves);
    ``listening`` is set when uvicorn says it listens; ``on_eof`` is called once, at the end of output
    (the process exited, or is exiting).
    """

    def __init__(
        self,
        stream: IO[bytes],
        sink: BoundedLog | None,
        *,
        on_progress: Callable[[LoadProgress], None] | None = None,
        on_eof: Callable[[], None] | None = None,
        name: str = "runner-output",
    ) -> None:
        self._stream = stream
        self._sink = sink
        self._on_progress = on_progress
        self._on_eof = on_eof
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.listening = threading.Event()
        self.finished = threading.Event()
        self._partial = ""
        self._phase = RunnerPhase.STARTING
        self._fraction = 0.0
        self._in_tensors = False
        self.buffers: BufferSizes = {}  # llama.cpp's buffer sizes as logged (see the module docstring)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- reading ---------------------------------------------------------------------------------
    def _run(self) -> None:
        read = getattr(self._stream, "read1", self._stream.read)
        try:
            while True:
                try:
                    data = read(65536)
                except (OSError, ValueError):
                    break
                if not data:
                    break
                self.feed(data.decode("utf-8", "replace"))
        finally:
            if self._partial:
                self.tail.append(self._partial)
                self._partial = ""
            self.finished.set()
            if self._on_eof is not None:
                try:
                    self._on_eof()
                except Exception:
                    log.exception("runner on_eof callback failed")

    def feed(self, text: str) -> None:
        """Process one piece of output (public for tests)."""
        if self._sink is not None:
            self._sink.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            line = line.rstrip("\r")
            self.tail.append(line)
            self._look_at(line)
        if self._in_tensors and self._partial and not self._partial.strip("."):
            self._progress(RunnerPhase.LOADING, 0.10 + 0.80 * min(len(self._partial), 100) / 100)

    def _look_at(self, line: str) -> None:
        if "buffer size" in line:
            m = BUFFER_LINE.search(line)
            if m:
                add_buffer_line(self.buffers, m["name"], m["kind"], float(m["mib"]))
        if line.startswith("llama_model_loader: loaded meta data"):
            self._progress(RunnerPhase.LOADING, 0.05)
        elif line.startswith("load_tensors:"):
            self._in_tensors = True
            self._progress(RunnerPhase.LOADING, 0.10)
        elif self._in_tensors and line and not line.strip("."):
            self._progress(RunnerPhase.LOADING, 0.10 + 0.80 * min(len(line), 100) / 100)
        elif line.startswith("llama_context: constructing"):
            self._in_tensors = False
            self._progress(RunnerPhase.LOADING, 0.92)
        elif "Uvicorn running on" in line or "Application startup complete" in line:
            self._progress(RunnerPhase.LOADING, 0.98)
            self.listening.set()

    def _progress(self, phase: RunnerPhase, fraction: float) -> None:
        if fraction < self._fraction + 0.05 and phase is self._phase:
            return
        self._phase, self._fraction = phase, max(fraction, self._fraction)
        if self._on_progress is not None:
            try:
                self._on_progress(LoadProgress.of(phase, self._fraction))
            except Exception:
                log.exception("runner progress callback failed")


def session_header(text: str) -> str:
    return f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {text} =====\n"
