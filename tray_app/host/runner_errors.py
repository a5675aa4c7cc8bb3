"""Why a runner failed, in one French sentence, and whether a safer memory plan could help.

The runner's output (llama.cpp's log and Python's traceback) is read by :func:`classify_failure`. The
English detail goes to the log; the user reads :attr:`RunnerError.message_fr`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum


class FailureKind(str, Enum):
    MODEL_FILE = "model_file"  # missing, unreadable, not GGUF, truncated: a safer plan cannot help
    MODEL_UNSUPPORTED = "model_unsupported"  # architecture unknown to this llama.cpp
    OUT_OF_MEMORY = "out_of_memory"  # VRAM or RAM exhausted while loading or generating
    CRASHED = "crashed"  # the process died (signal, abort, access violation)
    TIMEOUT = "timeout"  # not ready within the load timeout
    PORT = "port"  # its private port was taken meanwhile: retried on another port, same plan
    ENGINE = "engine"  # llama-cpp-python missing or broken: reinstall
    REFUSED = "refused"  # llama.cpp refused these settings (a quantised V cache without flash attention…)
    CANCELLED = "cancelled"  # stopped on purpose while loading
    UNKNOWN = "unknown"

    @property
    def plan_may_help(self) -> bool:
        """True when a smaller memory plan (fewer GPU layers, shorter context, CPU) may succeed."""
        return self in (
            FailureKind.OUT_OF_MEMORY,
            FailureKind.CRASHED,
            FailureKind.TIMEOUT,
            FailureKind.REFUSED,
            FailureKind.UNKNOWN,
        )


MESSAGES_FR: dict[FailureKind, str] = {
    FailureKind.MODEL_FILE: (
        "Le fichier du modèle est illisible ou abîmé. Téléchargez-le à nouveau ou choisissez un autre modèle."
    ),
    FailureKind.MODEL_UNSUPPORTED: (
        "Ce modèle n'est pas pris en charge par le moteur installé. Choisissez un autre modèle ou mettez "
        "le programme à jour."
    ),
    FailureKind.OUT_OF_MEMORY: "Le modèle n'a pas tenu en mémoire avec ces réglages.",
    FailureKind.CRASHED: "Le moteur du modèle s'est arrêté brutalement.",
    FailureKind.TIMEOUT: "Le modèle a mis trop de temps à se charger.",
    FailureKind.PORT: "Le moteur du modèle n'a pas trouvé de port libre sur cet ordinateur.",
    FailureKind.ENGINE: (
        "Le moteur du modèle (llama-cpp-python) est absent ou abîmé. Réinstallez le programme."
    ),
    FailureKind.REFUSED: "Le moteur du modèle n'accepte pas ces réglages sur cet ordinateur.",
    FailureKind.CANCELLED: "Le chargement du modèle a été annulé.",
    FailureKind.UNKNOWN: "Le moteur du modèle s'est arrêté pendant le chargement.",
}


class RunnerError(Exception):
    """A runner that could not start or died; ``message_fr`` is for the user, ``detail`` for the log."""

    def __init__(self, kind: FailureKind, message_fr: str = "", detail: str = "") -> None:
        self.kind = kind
        self.message_fr = message_fr or MESSAGES_FR[kind]
        self.detail = detail
        super().__init__(f"{kind.value}: {detail or self.message_fr}")


# Most specific first. Matched case-insensitively against the runner's last lines of output.
_PATTERNS: tuple[tuple[FailureKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        (FailureKind.ENGINE, r"No module named '?(llama_cpp|uvicorn|fastapi|sse_starlette|starlette_context|pydantic_settings)"),
        (FailureKind.ENGINE, r"(OSError|FileNotFoundError|RuntimeError): .*(libllama|llama\.dll|Failed to load shared library)"),
        (FailureKind.PORT, r"address already in use|error while attempting to bind|only one usage of each socket address"),
        (FailureKind.MODEL_UNSUPPORTED, r"unknown model architecture|unsupported model architecture"),
        (FailureKind.OUT_OF_MEMORY, r"out of memory|cudaMalloc failed|failed to allocate|unable to allocate|ErrorOutOfDeviceMemory|std::bad_alloc|MemoryError"),
        (FailureKind.MODEL_FILE, r"invalid magic|not within the file bounds|corrupted or incomplete|failed to read|gguf_init_from_file|tensor .* has wrong shape|wrong number of tensors|Model path does not exist"),
        # after out-of-memory: a KV cache that does not fit also ends in "Failed to create llama_context"
        (FailureKind.REFUSED, r"requires flash_attn|flash_attn is not (compatible|supported)|Failed to create llama_context"),
    )
)

# Windows NTSTATUS exit codes that mean "killed by a fault", as unsigned ints.
_WINDOWS_CRASH_CODES = {0xC0000005, 0xC0000409, 0xC000001D, 0xC00000FD, 0xC0000374, 0x40000015}


def classify_failure(returncode: int | None, tail: Iterable[str]) -> tuple[FailureKind, str]:
    """(kind, English detail) from the exit status and the last lines the runner printed."""
    lines = [line for line in tail if line.strip()]
    text = "\n".join(lines[-80:])
    for kind, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            return kind, _line_of(text, match.start())
    if returncode is not None and (returncode < 0 or (returncode & 0xFFFFFFFF) in _WINDOWS_CRASH_CODES):
        return FailureKind.CRASHED, f"exit status {returncode}"
    last = lines[-1].strip() if lines else ""
    return FailureKind.UNKNOWN, f"exit status {returncode}; last output: {last[:300]}"


def _line_of(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start : end if end >= 0 else len(text)].strip()[:300]
