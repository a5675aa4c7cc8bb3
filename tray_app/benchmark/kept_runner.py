"""The runner process a :class:`~tray_app.benchmark.engine.RunnerMeasurer` keeps between measurements,
and the watch that stops it on cancel or when a request runs past its time limit.

After a stable measurement the runner is kept. The next configuration is measured in it when it differs
only in thread counts (:func:`~tray_app.benchmark.space.same_runner`) and is pinned to the same CPUs:
the counts are changed inside the running process (llama.cpp's ``llama_set_n_threads``, through the
runner's private route, :mod:`tray_app.host.runner_threads`) and checked against what llama.cpp reads
back; no new process, no second load of the model. When the change fails, the kept runner is stopped
and a new one is started, as for any other configuration.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from tray_app.benchmark.space import same_runner
from tray_app.hardware.affinity import pin_processes
from tray_app.host.runner import Runner, RunnerEndpoint
from tray_app.host.runner_threads import ThreadChangeError, set_threads
from tray_app.planning.runner_config import RunnerConfig

log = logging.getLogger(__name__)

THREAD_CHANGE_TIMEOUT_S = 30.0  # the change waits for nothing but an answer in progress (none here)


class RunnerWatch:
    """Stops the runner as soon as the cancel event is set, or when a request runs past its limit.

    Armed once the runner is ready (:meth:`arm`) and kept as long as the runner is (between measurements
    too: a cancel then stops a kept runner at once); while loading, :meth:`Runner.wait_ready` watches the
    cancel event itself. ``too_slow`` tells a stop for the time limit from a crash.
    """

    def __init__(self, cancel: threading.Event, runner: Runner) -> None:
        self._cancel = cancel
        self._runner = runner
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None
        self.too_slow = False

    def arm(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="bench-watch", daemon=True)
        self._thread.start()

    def start_request(self, limit_s: float | None) -> None:
        self._deadline = time.monotonic() + limit_s if limit_s else None

    def end_request(self) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._cancel.wait(0.05):
                if not self._done.is_set():
                    log.info("benchmark cancelled: stopping runner %s", self._runner.pid)
                    self._runner.stop(grace_s=0.5)
                return
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline and not self._done.is_set():
                log.info("request past its time limit: stopping runner %s", self._runner.pid)
                self.too_slow = True
                self._runner.stop(grace_s=0.5)
                return

    def close(self) -> None:
        """Stop watching (idempotent)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(10.0)


@dataclass
class KeptRunner:
    """A ready runner after a stable measurement, with what deciding whether to reuse it takes."""

    runner: Runner
    endpoint: RunnerEndpoint
    number: int  # the measurer's count of runner processes: this one's
    config: RunnerConfig  # what it runs now (its thread counts may no longer be those it started with)
    affinity: tuple[int, ...]
    watch: RunnerWatch
    used_before: int | None  # the card's used memory before it started (VRAM as growth, WDDM)

    def fits(self, config: RunnerConfig, affinity: tuple[int, ...]) -> bool:
        """``config`` pinned to ``affinity`` can be measured in this runner (after a thread change)."""
        return self.runner.alive and affinity == self.affinity and same_runner(self.config, config)

    def switch_to(self, config: RunnerConfig) -> tuple[int, int] | None:
        """Give the runner ``config``'s thread counts: the counts llama.cpp reads back, or None (logged)
        when the change failed or llama.cpp does not say the counts asked for."""
        wanted = (config.n_threads, config.n_threads_batch)
        try:
            got = set_threads(self.endpoint, *wanted, timeout=THREAD_CHANGE_TIMEOUT_S)
        except ThreadChangeError as exc:
            log.warning("thread change in runner %s failed, a new runner instead: %s", self.runner.pid, exc)
            return None
        if got != wanted:
            log.warning("runner %s uses threads %s after asking for %s: a new runner instead", self.runner.pid,
                        got, wanted)
            return None
        if self.affinity:
            pin_processes(self.runner.pids(), self.affinity)  # threads llama.cpp may have created meanwhile
        log.info("runner %s now measures with threads %s (was %s)", self.runner.pid, got,
                 (self.config.n_threads, self.config.n_threads_batch))
        self.config = config
        return got

    def stop(self) -> None:
        """End the process (idempotent)."""
        stop_runner(self.runner, self.watch)


def stop_runner(runner: Runner, watch: RunnerWatch) -> None:
    """Stop watching ``runner``, end its process and close its log (idempotent)."""
    watch.close()
    runner.stop()
    runner.close_log()
