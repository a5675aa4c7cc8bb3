"""What the supervisor tells the rest of the program: its state, its events, its snapshot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

from tray_app.host.runner import RunnerEndpoint
from tray_app.host.runner_errors import FailureKind
from tray_app.planning.runner_config import RunnerConfig


class HostState(str, Enum):
    IDLE = "idle"  # no model in memory
    LOADING = "loading"
    READY = "ready"  # loaded, waiting for a request
    BUSY = "busy"  # generating an answer
    ERROR = "error"  # no configuration could load; see the message

    @property
    def label(self) -> str:
        """The word the tray shows."""
        return _LABELS[self]


_LABELS = {
    HostState.IDLE: "En veille",
    HostState.LOADING: "Chargement…",
    HostState.READY: "Prêt",
    HostState.BUSY: "Occupé",
    HostState.ERROR: "Erreur",
}


class EventKind(str, Enum):
    STATE = "state"  # the state changed (or its message did); ``message`` says it in French
    PROGRESS = "progress"  # loading progress, ``progress`` in 0…1
    FALLBACK = "fallback"  # a configuration failed and a safer one is being tried; ``message`` says both
    RESTART = "restart"  # the runner died with no cause found (killed, crashed): the same settings restart


@dataclass(frozen=True)
class HostEvent:
    kind: EventKind
    state: HostState
    message: str  # one French sentence, ready to show
    progress: float | None = None
    config: RunnerConfig | None = None  # the configuration loading / loaded / being tried
    pid: int | None = None
    failure: FailureKind | None = None  # why, for FALLBACK and ERROR
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class HostStatus:
    """A snapshot for menus and gauges (``Supervisor.status()``)."""

    state: HostState
    message: str
    config: RunnerConfig | None  # in use, or last tried
    pid: int | None
    pids: tuple[int, ...]  # the runner process and its children (VRAM is reported per pid)
    endpoint: RunnerEndpoint | None
    load_seconds: float | None
    failure: FailureKind | None
    failed_configs: tuple[RunnerConfig, ...]
    keep_alive_s: float
    requests_in_progress: int
    engine_buffers: dict[str, dict[str, int]] = field(default_factory=dict)  # llama.cpp's, as it logged them


class HostUnavailable(Exception):
    """The model cannot serve a request now; ``message_fr`` says why and what to do."""

    def __init__(
        self, message_fr: str, *, retry_after_s: float | None = None, failure: FailureKind | None = None
    ) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr
        self.retry_after_s = retry_after_s
        self.failure = failure
