"""The supervisor: loads, unloads and watches the runner; walks the fallback ladder when it fails.

State machine (labels in :class:`~tray_app.host.host_state.HostState`)::

    En veille ──load/acquire──► Chargement… ──ok──► Prêt ◄──► Occupé (a request is generating)
        ▲                          │ fails: next safer config (FALLBACK event), or Erreur when none left
        └──── unload / idle ───────┘ runner dies while Prêt/Occupé: see "Crashes" below

Threads: one *worker* thread does every start and stop (so they never overlap), one *event* thread calls
the listeners. Public methods may be called from any thread and never block on a load, except
:meth:`acquire` (which is meant to) and ``unload(wait=True)`` / :meth:`close`.

Listener contract: ``listener(event: HostEvent) -> None`` is called on the supervisor's event thread, one
event at a time, in order, never on the caller's thread. It must return quickly and must not block on the
supervisor (a Qt adapter just emits a signal). An exception in a listener is logged and ignored.

Failure memory: a configuration that failed (load error with a cause, timeout, repeated crashes) is never
tried again on its own; :meth:`retry` and :meth:`configure` (explicit user actions) clear that memory. A
failure a safer plan cannot fix (bad model file, engine missing) goes straight to « Erreur ».

Crashes: a runner that dies with no cause in its output (killed from outside, a driver reset, a request
that crashed the engine) proves nothing against its settings. The same configuration is started again:
at once when requests wait for it (or the model is kept in memory for good), else at the next request;
the user reads one sentence (:data:`CRASH_RESTART_FR`, a RESTART event). Only an out-of-memory signature,
a load that fails with a cause, or :data:`CRASH_LIMIT` crashes of one configuration within
:data:`CRASH_WINDOW_S` walk the ladder down. When crashes alone exhaust the ladder, « Erreur » lasts
:data:`CRASH_WINDOW_S`: the first request after it tries every configuration again. Ollama and LM Studio
also restart a crashed runner as it was.

Pause (:meth:`pause` / :meth:`resume`): while another part of the program needs the machine to itself
(« Optimiser » measures with its own runners), new requests are refused with the pause's French message
and a retry delay, the model is unloaded once the answer being written (if any) has ended, and nothing
loads until :meth:`resume`.

Keep-alive (``keep_alive_s``): ``> 0`` unload after that many seconds without a request; ``0`` unload as
soon as no request uses or waits for the model; ``< 0`` (``-1``) never unload.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tray_app.format_fr import duration_fr, seconds_fr
from tray_app.host.fallback import FallbackStep, Ladder, default_ladder
from tray_app.host.host_state import (
    EventKind,
    HostEvent,
    HostState,
    HostStatus,
    HostUnavailable,
)
from tray_app.host.runner import DEFAULT_LOAD_TIMEOUT_S, Runner, RunnerEndpoint
from tray_app.host.runner_errors import FailureKind, RunnerError, classify_failure
from tray_app.host.runner_output import LoadProgress
from tray_app.planning.runner_config import RunnerConfig
from tray_app.settings_schema import SettingValues

log = logging.getLogger(__name__)

Listener = Callable[[HostEvent], None]
RunnerFactory = Callable[..., Runner]

DEFAULT_KEEP_ALIVE_S = float(SettingValues().keep_alive)  # the setting's default
CRASH_POLL_S = 1.0
PAUSE_RETRY_S = 30.0  # the Retry-After given to clients while paused
PAUSE_FINISH_ANSWER_S = 120.0  # a pause lets an answer being written end first, up to this long
IDLE_MESSAGE = "Le modèle n'est pas en mémoire : il se chargera à la première demande."
RELOAD_NOTE = "il se rechargera à la prochaine demande."
CRASH_LIMIT = 3  # crashes of one configuration within CRASH_WINDOW_S before a safer one is tried
CRASH_WINDOW_S = 600.0
CRASH_RESTART_FR = "Le moteur du modèle s'est arrêté ; il redémarre."
CRASH_IDLE_FR = "Le moteur du modèle s'est arrêté ; il redémarrera à la prochaine demande."
REPEATED_CRASHES_FR = "Le moteur du modèle s'est arrêté plusieurs fois en quelques minutes."
CRASH_RETRY_LATER_FR = "Il réessaiera tout seul à la première demande après 10 minutes."


@dataclass
class _Command:
    name: str
    runner: Runner | None = None
    config: RunnerConfig | None = None
    ladder: Ladder | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Supervisor:
    def __init__(
        self,
        config: RunnerConfig,
        *,
        ladder: Ladder | None = default_ladder,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
        log_file: Path | None = None,
        runner_factory: RunnerFactory = Runner,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cond = threading.Condition()
        self._clock = clock  # for the crash window only
        self._log_file = log_file
        self._runner_factory = runner_factory
        self._load_timeout_s = load_timeout_s
        self._keep_alive_s = float(keep_alive_s)
        self._listeners: list[Listener] = []
        # Everything below is guarded by self._cond.
        self._base: RunnerConfig
        self._steps: list[FallbackStep]
        self._failed: list[RunnerConfig]  # configurations that failed: never tried again on their own
        self._crashes: dict[RunnerConfig, list[float]]  # crash times per configuration (clock)
        self._retry_at: float | None  # « Erreur » after crashes only: the next request retries then
        self._set_base(config, ladder)
        self._state = HostState.IDLE
        self._message = IDLE_MESSAGE
        self._failure: FailureKind | None = None
        self._runner: Runner | None = None
        self._endpoint: RunnerEndpoint | None = None  # set only while a ready runner may take requests
        self._config_in_use: RunnerConfig | None = None
        self._load_seconds: float | None = None
        self._holders = 0  # requests using or waiting for the model
        self._generating = 0
        self._last_used = time.monotonic()
        self._load_pending = False
        self._reported_dead: Runner | None = None
        self._closed = False
        self._paused: str | None = None  # the French reason requests are refused, while paused
        self._cancel_load = threading.Event()
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._events: queue.Queue[HostEvent | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="runner-supervisor", daemon=True)
        self._notifier = threading.Thread(target=self._notify_loop, name="runner-supervisor-events", daemon=True)
        self._worker.start()
        self._notifier.start()

    # == public API ================================================================================
    def add_listener(self, listener: Listener) -> None:
        with self._cond:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @property
    def state(self) -> HostState:
        with self._cond:
            return self._state

    @property
    def base_config(self) -> RunnerConfig:
        """The configuration asked for (the first rung of the ladder)."""
        with self._cond:
            return self._base

    @property
    def keep_alive_s(self) -> float:
        return self._keep_alive_s

    def status(self) -> HostStatus:
        with self._cond:
            runner = self._runner
            status = HostStatus(
                state=self._state,
                message=self._message,
                config=self._config_in_use,
                pid=runner.pid if runner is not None else None,
                pids=(),
                endpoint=self._endpoint,
                load_seconds=self._load_seconds,
                failure=self._failure,
                failed_configs=tuple(self._failed),
                keep_alive_s=self._keep_alive_s,
                requests_in_progress=self._holders,
            )
        if runner is None:
            return status
        return replace(status, pids=tuple(runner.pids()), engine_buffers=runner.engine_buffers)  # psutil: unlocked

    def load(self) -> None:
        """Load now, in the background (no-op when loaded or loading)."""
        self._post(_Command("load"))

    def unload(self, *, wait: bool = False, timeout: float = 30.0) -> None:
        """End the runner (its memory is returned). A load in progress is cancelled."""
        self._cancel_load.set()
        cmd = self._post(_Command("unload"))
        if wait:
            cmd.done.wait(timeout)

    def restart(self) -> None:
        """Stop and start again with the configuration in use (failure memory kept)."""
        self._cancel_load.set()
        self._post(_Command("restart"))

    def retry(self) -> None:
        """User action after « Erreur »: forget failed configurations and load the base one again."""
        self._post(_Command("retry"))

    def configure(self, config: RunnerConfig, ladder: Ladder | None = default_ladder) -> None:
        """New base configuration (new model or settings): failure memory cleared; reloaded if it was loaded."""
        self._cancel_load.set()
        self._post(_Command("configure", config=config, ladder=ladder))

    def pause(self, message_fr: str, *, wait: bool = False, timeout: float = 150.0) -> None:
        """Refuse new requests (``HostUnavailable(message_fr)``) until :meth:`resume`, and unload once the
        answers being written have ended (at most :data:`PAUSE_FINISH_ANSWER_S`; a load is cancelled).

        With ``wait``, return once the runner is gone (its memory returned), or after ``timeout``.
        """
        with self._cond:
            self._paused = message_fr
            self._cond.notify_all()  # requests waiting for a load give up with the pause's message
        self._cancel_load.set()
        cmd = self._post(_Command("pause"))
        if wait:
            cmd.done.wait(timeout)

    def resume(self) -> None:
        """End the pause: the model loads again at the next request."""
        with self._cond:
            self._paused = None

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused is not None

    def set_keep_alive(self, seconds: float) -> None:
        with self._cond:
            self._keep_alive_s = float(seconds)
        self._post(_Command("tick"))

    def acquire(self, timeout: float) -> RunnerEndpoint:
        """Take a hold on the model for one request, loading it if needed; blocks up to ``timeout``.

        Every successful call must be paired with :meth:`release`. Raises :class:`HostUnavailable`
        (French message) when the model is in « Erreur », the program closes or the wait is too long.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._holders += 1
            try:
                while True:
                    if self._closed:
                        raise HostUnavailable("Le programme est en train de s'arrêter.")
                    if self._paused is not None:
                        raise HostUnavailable(self._paused, retry_after_s=PAUSE_RETRY_S)
                    if self._endpoint is not None:
                        runner = self._runner
                        if runner is None or (self._reported_dead is not runner and runner.alive):
                            return self._endpoint
                        if self._reported_dead is not runner:  # died, and the worker does not know yet
                            self._reported_dead = runner
                            self._commands.put(_Command("exited", runner=runner))
                    crashes_old = self._retry_at is not None and self._clock() >= self._retry_at
                    if self._state is HostState.ERROR and crashes_old:
                        log.info("crashes are %.0f s old: trying every configuration again", CRASH_WINDOW_S)
                        self._failed.clear()
                        self._crashes.clear()
                        self._retry_at = None
                        self._failure = None
                        self._set_state(HostState.IDLE, IDLE_MESSAGE)
                    if self._state is HostState.ERROR:
                        raise HostUnavailable(self._message, failure=self._failure)
                    if not self._load_pending and self._state is not HostState.LOADING:
                        self._load_pending = True
                        self._commands.put(_Command("load"))
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise HostUnavailable(
                            "Le modèle est encore en cours de chargement. Réessayez dans quelques secondes.",
                            retry_after_s=5.0,
                        )
                    self._cond.wait(remaining)
            except BaseException:
                self._holders -= 1
                self._last_used = time.monotonic()
                self._commands.put(_Command("tick"))
                raise

    def report_unreachable(self, endpoint: RunnerEndpoint) -> None:
        """A client of ``endpoint`` could not connect: the runner is dead or dying; handle it now."""
        with self._cond:
            runner = self._runner if self._endpoint == endpoint else None
            if runner is None or self._reported_dead is runner:
                return
            self._reported_dead = runner
        log.warning("runner %s unreachable on port %s", runner.pid, endpoint.port)
        self._commands.put(_Command("exited", runner=runner))

    def release(self) -> None:
        with self._cond:
            self._holders = max(0, self._holders - 1)
            self._last_used = time.monotonic()
        self._commands.put(_Command("tick"))  # the worker recomputes the idle deadline

    @contextlib.contextmanager
    def lease(self, timeout: float) -> Iterator[RunnerEndpoint]:
        endpoint = self.acquire(timeout)
        try:
            yield endpoint
        finally:
            self.release()

    @contextlib.contextmanager
    def generating(self) -> Iterator[None]:
        """Mark an answer being generated (« Occupé ») for the duration of the block."""
        with self._cond:
            self._generating += 1
            if self._generating == 1 and self._state is HostState.READY:
                self._set_state(HostState.BUSY, "Le modèle répond…")
        try:
            yield
        finally:
            with self._cond:
                self._generating -= 1
                self._last_used = time.monotonic()
                if self._generating == 0 and self._state is HostState.BUSY:
                    self._set_state(HostState.READY, "Le modèle est prêt.")

    def wait_for(self, states: set[HostState] | HostState, timeout: float) -> HostState:
        """Block until the state is one of ``states`` (or ``timeout``); returns the state then."""
        wanted = {states} if isinstance(states, HostState) else set(states)
        with self._cond:
            self._cond.wait_for(lambda: self._state in wanted, timeout)
            return self._state

    def close(self, timeout: float = 15.0) -> None:
        """Stop the runner and the supervisor's threads; returns when the runner is gone."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._cancel_load.set()
        cmd = self._post(_Command("shutdown"))
        cmd.done.wait(timeout)
        self._worker.join(timeout)
        self._events.put(None)
        self._notifier.join(timeout)

    # == worker thread =============================================================================
    def _post(self, cmd: _Command) -> _Command:
        if cmd.name == "load":
            with self._cond:
                self._load_pending = True
        self._commands.put(cmd)
        return cmd

    def _work(self) -> None:
        while True:
            try:
                cmd = self._commands.get(timeout=self._wait_time())
            except queue.Empty:
                self._check_runner()
                self._unload_if_idle()
                continue
            try:
                if cmd.name == "shutdown":
                    self._stop_runner(None)
                    return
                self._handle(cmd)
            except Exception:
                log.exception("supervisor command %s failed", cmd.name)
                self._fail(
                    "Une erreur inattendue est survenue avec le moteur du modèle. Cliquez sur « Réessayer » ; "
                    "les détails sont dans le journal.",
                    FailureKind.UNKNOWN,
                )
            finally:
                cmd.done.set()

    def _handle(self, cmd: _Command) -> None:
        if cmd.name == "load":
            self._load()
        elif cmd.name == "unload":
            self._stop_runner(f"Le modèle a quitté la mémoire ; {RELOAD_NOTE}")
        elif cmd.name == "pause":
            self._let_answers_end(PAUSE_FINISH_ANSWER_S)
            self._stop_runner(f"Le modèle a quitté la mémoire ; {RELOAD_NOTE}")
        elif cmd.name == "restart":
            self._stop_runner(None)
            self._load()
        elif cmd.name == "retry":
            with self._cond:
                self._failed.clear()
                self._crashes.clear()
                self._retry_at = None
                if self._state is HostState.ERROR:
                    self._failure = None
                    self._set_state(HostState.IDLE, IDLE_MESSAGE)
            self._load()
        elif cmd.name == "configure":
            assert cmd.config is not None
            with self._cond:
                was_loaded = self._runner is not None or self._holders > 0
            self._stop_runner(None)
            with self._cond:
                self._set_base(cmd.config, cmd.ladder)
                self._failure = None
                self._set_state(HostState.IDLE, IDLE_MESSAGE)
            if was_loaded:
                self._load()
        elif cmd.name == "exited":
            self._runner_died(cmd.runner)
        # "tick": nothing; the loop recomputes its deadline.
        self._check_runner()
        self._unload_if_idle()

    def _wait_time(self) -> float | None:
        with self._cond:
            if self._runner is None:
                return None
            wait = CRASH_POLL_S
            if self._idle_candidate():
                wait = min(wait, max(0.0, self._last_used + self._keep_alive_s - time.monotonic()))
            return wait

    def _idle_candidate(self) -> bool:
        return (
            self._endpoint is not None
            and self._holders == 0
            and self._generating == 0
            and self._keep_alive_s >= 0
        )

    # -- loading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        with self._cond:
            self._load_pending = False
            if self._endpoint is not None or self._closed or self._state is HostState.ERROR:
                return
            if self._paused is not None:
                log.info("load not started: host paused (%s)", self._paused)
                return
            self._cancel_load.clear()
        while True:
            step = self._next_step()
            if step is None:  # only when every step failed before this load was asked
                self._fail(self._exhausted_message(""), self._failure or FailureKind.UNKNOWN)
                return
            runner = self._runner_factory(
                step.config, log_file=self._log_file, on_progress=self._on_progress, on_exit=self._on_exit
            )
            with self._cond:
                self._runner = runner
                self._config_in_use = step.config
                self._load_seconds = None
                self._set_state(HostState.LOADING, "Chargement du modèle…")
            try:
                endpoint = runner.load(self._load_timeout_s, self._cancel_load)
            except RunnerError as exc:
                runner.stop()
                runner.close_log()
                with self._cond:
                    self._runner = None
                if exc.kind is FailureKind.CANCELLED:
                    with self._cond:
                        self._set_state(HostState.IDLE, "Chargement annulé. " + IDLE_MESSAGE)
                    return
                if exc.kind is FailureKind.CRASHED and self._crash_may_restart(step.config):
                    log.warning("runner crashed while loading (%s): same settings again", exc.detail)
                    self._emit(HostEvent(EventKind.RESTART, HostState.LOADING, CRASH_RESTART_FR,
                                         config=step.config, failure=exc.kind))
                    continue
                if exc.kind is FailureKind.CRASHED:
                    exc = RunnerError(FailureKind.CRASHED, REPEATED_CRASHES_FR, detail=exc.detail)
                if self._step_down(step.config, exc):
                    continue
                return
            with self._cond:
                self._endpoint = endpoint
                self._load_seconds = runner.load_seconds
                self._last_used = time.monotonic()
                self._failure = None
                seconds = seconds_fr(runner.load_seconds or 0.0)
                self._set_state(HostState.READY, f"Le modèle est prêt (chargé en {seconds}).", pid=runner.pid)
            return

    def _step_down(self, failed: RunnerConfig, exc: RunnerError) -> bool:
        """Remember a failure; announce the next safer step and return True, or go to « Erreur »."""
        log.warning("runner config failed (%s): %s; config %s", exc.kind.value, exc.detail, failed.to_dict())
        if not exc.kind.plan_may_help:
            self._fail(exc.message_fr, exc.kind)
            return False
        with self._cond:
            if failed not in self._failed:
                self._failed.append(failed)
            self._failure = exc.kind
        step = self._next_step()
        if step is None:
            if exc.kind is FailureKind.CRASHED:  # only crashes, no cause: worth trying again later
                with self._cond:
                    self._retry_at = self._clock() + CRASH_WINDOW_S
                self._fail(f"{self._exhausted_message(exc.message_fr)} {CRASH_RETRY_LATER_FR}", exc.kind)
            else:
                self._fail(self._exhausted_message(exc.message_fr), exc.kind)
            return False
        log.info("fallback: trying %s", step.config.to_dict())
        self._emit(
            HostEvent(
                EventKind.FALLBACK,
                HostState.LOADING,
                f"{exc.message_fr} {step.reason_fr}",
                config=step.config,
                failure=exc.kind,
            )
        )
        return True

    def _next_step(self) -> FallbackStep | None:
        with self._cond:
            for step in self._steps:
                if step.config not in self._failed:
                    return step
            return None

    @staticmethod
    def _exhausted_message(reason: str) -> str:
        return (
            f"{reason} Aucun réglage plus prudent n'a fonctionné : essayez un modèle plus petit, ou "
            "fermez des programmes puis cliquez sur « Réessayer »."
        ).strip()

    def _set_base(self, config: RunnerConfig, ladder: Ladder | None) -> None:
        steps = [FallbackStep(config, "")]
        if ladder is not None:
            steps += [s for s in ladder(config) if all(s.config != t.config for t in steps)]
        self._base = config
        self._steps = steps
        self._failed = []
        self._crashes = {}
        self._retry_at = None

    def _crash_may_restart(self, config: RunnerConfig) -> bool:
        """Count a crash of ``config``; True while it has crashed fewer than :data:`CRASH_LIMIT` times
        within :data:`CRASH_WINDOW_S` (then the same configuration is started again)."""
        now = self._clock()
        with self._cond:
            recent = [t for t in self._crashes.get(config, []) if now - t < CRASH_WINDOW_S] + [now]
            self._crashes[config] = recent
            return len(recent) < CRASH_LIMIT

    # -- watching --------------------------------------------------------------------------------
    def _on_progress(self, progress: LoadProgress) -> None:
        with self._cond:
            if self._state is not HostState.LOADING:
                return
            config = self._config_in_use
        self._emit(HostEvent(EventKind.PROGRESS, HostState.LOADING, progress.message, progress.fraction, config))

    def _on_exit(self, runner: Runner) -> None:
        self._commands.put(_Command("exited", runner=runner))

    def _check_runner(self) -> None:
        with self._cond:
            runner = self._runner if self._endpoint is not None else None
        if runner is not None and not runner.alive:
            self._runner_died(runner)

    def _runner_died(self, runner: Runner | None) -> None:
        with self._cond:
            if runner is None or runner is not self._runner or self._endpoint is None:
                return  # an old runner, or one that failed while loading (already handled)
            self._endpoint = None
            self._runner = None
            self._cond.notify_all()
        runner.stop()
        runner.close_log()
        kind, detail = classify_failure(runner.returncode, runner.output_tail(80))
        if kind in (FailureKind.UNKNOWN, FailureKind.PORT, FailureKind.TIMEOUT):
            kind = FailureKind.CRASHED  # no cause in its output: killed, or crashed by a request
        log.error("runner %s died while serving (%s): %s", runner.pid, kind.value, detail)
        if kind is FailureKind.CRASHED and self._crash_may_restart(runner.config):
            self._restart_after_crash(runner.config)
            return
        message = REPEATED_CRASHES_FR if kind is FailureKind.CRASHED else ""
        if self._step_down(runner.config, RunnerError(kind, message, detail=detail)):
            self._load()

    def _restart_after_crash(self, config: RunnerConfig) -> None:
        """The same configuration again: now when requests wait (or the model stays in memory for good),
        else at the next request."""
        with self._cond:
            now = (self._holders > 0 or self._keep_alive_s < 0) and not self._closed and self._paused is None
            self._emit(HostEvent(EventKind.RESTART, HostState.IDLE, CRASH_RESTART_FR, config=config,
                                 failure=FailureKind.CRASHED))
            self._set_state(HostState.IDLE, CRASH_RESTART_FR if now else CRASH_IDLE_FR)
        if now:
            self._load()

    def _let_answers_end(self, timeout: float) -> None:
        """Wait (worker thread) until no answer is being generated, or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._generating > 0 and not self._closed and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            if self._generating > 0 and not self._closed:
                log.warning("pause: an answer still running after %.0f s is cut", timeout)

    def _unload_if_idle(self) -> None:
        with self._cond:
            if not self._idle_candidate():
                return
            if time.monotonic() - self._last_used < self._keep_alive_s:
                return
            keep = self._keep_alive_s
        if keep > 0:
            message = f"Le modèle a quitté la mémoire après {duration_fr(keep)} sans demande ; {RELOAD_NOTE}"
        else:
            message = f"Le modèle a quitté la mémoire dès la fin de la réponse ; {RELOAD_NOTE}"
        self._stop_runner(message, only_if_idle=True)

    def _stop_runner(self, message: str | None, *, only_if_idle: bool = False) -> None:
        """Detach and stop the runner; state « En veille » (``message``) unless in « Erreur »."""
        with self._cond:
            if only_if_idle and not self._idle_candidate():
                return  # a request arrived meanwhile
            runner, self._runner, self._endpoint = self._runner, None, None
        if runner is not None:
            started = time.monotonic()
            runner.stop()
            runner.close_log()
            log.info("runner unloaded in %.2f s", time.monotonic() - started)
        with self._cond:
            if self._state is not HostState.ERROR and (
                runner is not None or (message and self._state is not HostState.IDLE)
            ):
                self._set_state(HostState.IDLE, message or IDLE_MESSAGE)
            self._cond.notify_all()
            waiting = self._holders > 0 and not self._closed and self._paused is None
            if waiting and self._state is not HostState.ERROR:
                self._load_pending = True  # someone waits: load again
                self._commands.put(_Command("load"))

    def _fail(self, message: str, kind: FailureKind) -> None:
        log.error("model unavailable (%s): %s", kind.value, message)
        with self._cond:
            self._failure = kind
            self._set_state(HostState.ERROR, message)

    # -- state and events (call with self._cond held) --------------------------------------------
    def _set_state(self, state: HostState, message: str, *, pid: int | None = None) -> None:
        self._state = state
        self._message = message
        self._cond.notify_all()
        failure = self._failure if state is HostState.ERROR else None
        self._emit(HostEvent(EventKind.STATE, state, message, config=self._config_in_use, pid=pid, failure=failure))

    def _emit(self, event: HostEvent) -> None:
        self._events.put(event)

    def _notify_loop(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            with self._cond:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("supervisor listener failed on %s", event.kind.value)
