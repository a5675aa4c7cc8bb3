"""What the monitor needs from the host (gateway + supervisor), as small frozen values.

The host is another part of the program; the monitor only calls a ``host_metrics`` callable (from its own
thread, once per tick, so it must be cheap and thread-safe) and receives :class:`HostNotice` values pushed
by whoever listens to the supervisor. Nothing here imports the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class HostMetrics:
    """The model host at one instant.

    ``tokens_per_second`` is the speed of the request being generated, or of the last completed one;
    ``baseline_tokens_per_second`` the speed this machine normally reaches with the loaded plan (the
    « Optimiser » measurement). Either may be None when unknown. ``runner_pids``: the runner and its
    children (graphics memory is reported per process); empty means ``runner_pid`` alone.
    """

    runner_pid: int | None
    tokens_per_second: float | None
    baseline_tokens_per_second: float | None
    model_loaded: bool
    runner_pids: tuple[int, ...] = ()


HostMetricsSource = Callable[[], "HostMetrics | None"]


class HostNoticeKind(str, Enum):
    MODEL_UNLOADED_IDLE = "model_unloaded_idle"  # the keep-alive delay ran out: the runner was ended
    RUNNER_RESTARTED_SAFER = "runner_restarted_safer"  # the runner died and was restarted on a safer plan
    RUNNER_RESTARTED = "runner_restarted"  # the runner died with no cause found; the same plan restarts


@dataclass(frozen=True, slots=True)
class HostNotice:
    """Something the host did that the user should hear about.

    ``idle_seconds``: the keep-alive delay that ran out (MODEL_UNLOADED_IDLE).
    ``detail_fr``: for RUNNER_RESTARTED_SAFER, the new plan in a few French words, e.g.
    « 20 couches sur la carte graphique au lieu de 33 » (optional); for RUNNER_RESTARTED, the host's
    own sentence (optional).
    ``at``: time.time() of the event; None means "now" for the engine.
    """

    kind: HostNoticeKind
    idle_seconds: float | None = None
    detail_fr: str = ""
    at: float | None = None
