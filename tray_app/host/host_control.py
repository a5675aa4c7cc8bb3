"""The model host as the program runs it, without Qt: used by the tray (through a thin Qt adapter) and by
``serve``.

It plans (model file, memory plan, applied tuning; NVML is read, so the planning methods are for a
worker thread, never a UI thread), starts the gateway, follows the supervisor's events, tells the
monitor what the user should hear about (:class:`~tray_app.monitoring.host_metrics.HostNotice`), applies
the monitor's protection requests, and re-plans when the settings, the model or « Optimiser »'s tuning
change.

Callbacks (``on_change``, ``on_notice``, ``notify``) are called from the thread the change happened on:
the supervisor's event thread, or the caller's. A UI re-emits them on its own thread.

Threads: :meth:`start`, :meth:`use_model`, :meth:`apply_settings` and :meth:`apply_optimization` plan
(blocking, seconds at most); they run one at a time (a lock). Everything else only posts to the
supervisor and returns at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tray_app.hardware.gpu import NvmlReader
from tray_app.host.gateway import PortUnavailable
from tray_app.host.host_state import EventKind, HostEvent, HostState
from tray_app.host.hosting import Host, HostPlan, ModelChoiceError, choose_model, keep_alive_from, plan_host
from tray_app.monitoring.host_metrics import HostMetrics, HostNotice, HostNoticeKind
from tray_app.monitoring.protection import ProtectionAction, ProtectionRequest
from tray_app.paths import AppPaths
from tray_app.planning.runner_config import RunnerConfig
from tray_app.settings import Settings

log = logging.getLogger(__name__)

RUNNER_LOG = "runner.log"
OPTIMIZING_FR = (
    "Desktop-Mate mesure les performances de l'ordinateur (« Optimiser ») : le modèle reviendra à la fin "
    "des mesures. Réessayez dans une minute."
)
NEW_PORT_LATER_FR = "Le nouveau port de l'API sera utilisé au prochain démarrage du programme."


@dataclass(frozen=True)
class HostOptions:
    """What a command line may say instead of the settings (``serve``); None: the settings'."""

    model: str | None = None
    ctx: int | None = None
    port: int | None = None  # 0: any free port
    keep_alive_s: float | None = None


def _plan_inputs(settings: Settings) -> tuple[int, int, int]:
    """The settings a memory plan depends on: a change of any of them means planning again."""
    v = settings.values
    return v.threads, v.cores_left_for_avatar, v.context_size


class HostControl:
    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        *,
        notify: Callable[[str, bool], None],
        on_change: Callable[[], None] = lambda: None,
        on_notice: Callable[[HostNotice], None] = lambda notice: None,
        nvml: NvmlReader | None = None,
        options: HostOptions = HostOptions(),
    ) -> None:
        self.settings = settings
        self.options = options
        self.paths = paths
        self.notify = notify  # (French text, is a warning)
        self.on_change = on_change
        self.on_notice = on_notice
        self.nvml = nvml  # shared with the monitor and the re-optimisation check; None: opened per plan
        self.host: Host | None = None
        self.plan: HostPlan | None = None
        self.state = HostState.IDLE
        self.message = ""
        self._planning = threading.Lock()
        self._unload_asked = False
        self._protecting = False  # protection asked to unload when idle (keep-alive 0 until then)
        self._safer_config: RunnerConfig | None = None  # protection: used from the next load
        self._plan_inputs = _plan_inputs(settings)
        self.reply_hooks: list[Callable[[str], None]] = []  # given to the gateway (see add_reply_hook)
        self.start_error: ModelChoiceError | PortUnavailable | None = None  # why the last start failed

    # -- life (planning: off the UI thread) ------------------------------------------------------
    def start(self) -> None:
        """Plan and open the gateway; the model loads at the first request. Errors are told, not raised."""
        with self._planning:
            try:
                model = choose_model(self.options.model, self.settings)
                self.plan = plan = plan_host(model, self.settings, wanted_ctx=self.options.ctx, nvml=self.nvml)
            except ModelChoiceError as exc:
                self.start_error = exc
                self._set(HostState.ERROR, exc.message_fr)
                self.notify(exc.message_fr, True)
                return
            self._plan_inputs = _plan_inputs(self.settings)
        self._open(plan)

    def _open(self, plan: HostPlan) -> None:
        port = self.options.port
        host = Host(
            plan,
            port=self.settings.values.api_port if port is None else port,
            allow_other_port=port is None,  # a port asked on the command line is that one or none
            keep_alive_s=self.keep_alive_s,
            log_file=self.paths.log_dir / RUNNER_LOG,
        )
        try:
            host.start()
        except PortUnavailable as exc:
            self.start_error = exc
            self._set(HostState.ERROR, exc.message_fr)
            self.notify(exc.message_fr, True)
            return
        self.host = host
        self.start_error = None
        host.gateway.reply_hooks.extend(self.reply_hooks)
        host.supervisor.add_listener(self._on_host_event)
        if host.gateway.port_notice:
            self.notify(host.gateway.port_notice, True)
        self._set(HostState.IDLE, host.supervisor.status().message)
        log.info("host ready at %s with %s (%s)", host.gateway.api_base, plan.model_path, plan.planner)

    def stop(self) -> None:
        if self.host is not None:
            self.host.close()
            self.host = None

    def add_reply_hook(self, hook: Callable[[str], None]) -> None:
        """``hook(text)`` is called on the gateway's thread with each complete assistant reply (now, or
        once the gateway opens)."""
        self.reply_hooks.append(hook)
        if self.host is not None:
            self.host.gateway.reply_hooks.append(hook)

    def use_model(self, path: Path) -> HostPlan | None:
        """Switch to another model file: saved in the settings, loaded at the next request. None (told)
        when it cannot be used."""
        try:
            plan = self._replan(Path(path))
        except ModelChoiceError as exc:
            self.notify(exc.message_fr, True)
            return None
        self.settings.set("model_path", str(path))
        self.settings.save()
        return plan

    def apply_optimization(self) -> None:
        """« Appliquer » saved new settings: plan again with them (used from the next load)."""
        if self.plan is None:
            self.start()
            return
        try:
            self._replan(self.plan.model_path)
        except ModelChoiceError as exc:
            self.notify(exc.message_fr, True)

    def apply_settings(self) -> None:
        """After « Paramètres » : keep-alive at once; a new plan when what it depends on changed."""
        if self.host is None:
            return
        self.host.supervisor.set_keep_alive(self.keep_alive_s)
        if _plan_inputs(self.settings) != self._plan_inputs and self.plan is not None:
            try:
                self._replan(self.plan.model_path)
            except ModelChoiceError as exc:
                self.notify(exc.message_fr, True)
        if self.host.gateway.options.port != self.settings.values.api_port:
            self.notify(NEW_PORT_LATER_FR, False)

    def _replan(self, model_path: Path) -> HostPlan:
        with self._planning:
            plan = plan_host(model_path, self.settings, wanted_ctx=self.options.ctx, nvml=self.nvml)
            self.plan = plan
            self._plan_inputs = _plan_inputs(self.settings)
            host = self.host
        if host is None:  # the gateway never opened (port taken…): try again with this plan
            self._open(plan)
        else:
            host.use_plan(plan)
            self.on_change()
        return plan

    # -- facts -----------------------------------------------------------------------------------
    @property
    def keep_alive_s(self) -> float:
        option = self.options.keep_alive_s
        return keep_alive_from(self.settings) if option is None else option

    @property
    def api_base(self) -> str:
        return self.host.gateway.api_base if self.host is not None else ""

    @property
    def paused(self) -> bool:
        return self.host is not None and self.host.supervisor.paused

    def host_metrics(self) -> HostMetrics | None:
        """For the monitor thread, once a second: cheap and thread-safe."""
        host = self.host
        if host is None:
            return None
        last = host.gateway.metrics.last()
        state = host.supervisor.state
        loaded = state in (HostState.READY, HostState.BUSY)
        plan = self.plan
        status = host.supervisor.status() if loaded else None
        return HostMetrics(
            runner_pid=status.pid if status is not None else None,
            runner_pids=status.pids if status is not None else (),
            tokens_per_second=last.tokens_per_s if last is not None else None,
            baseline_tokens_per_second=plan.measured_gen_tps if plan is not None else None,
            model_loaded=loaded,
        )

    def _set(self, state: HostState, message: str) -> None:
        self.state, self.message = state, message
        self.on_change()

    # -- the supervisor's events (its event thread) ------------------------------------------------
    def _on_host_event(self, event: HostEvent) -> None:
        previous = self.state
        if event.kind is EventKind.FALLBACK:
            self.on_notice(HostNotice(HostNoticeKind.RUNNER_RESTARTED_SAFER, detail_fr=event.message))
        elif event.kind is EventKind.RESTART:
            # Its state (« En veille ») is taken below: the STATE event that follows is no idle unload.
            self.on_notice(HostNotice(HostNoticeKind.RUNNER_RESTARTED, detail_fr=event.message))
        elif event.kind is EventKind.STATE:
            if event.state is HostState.ERROR:
                self.notify(event.message, True)
            elif event.state is HostState.IDLE and previous in (HostState.READY, HostState.BUSY):
                if not self._unload_asked:
                    keep = self.host.supervisor.keep_alive_s if self.host is not None else 0
                    self.on_notice(HostNotice(HostNoticeKind.MODEL_UNLOADED_IDLE, idle_seconds=keep))
                self._unload_asked = False
            if event.state is HostState.IDLE:
                self._apply_protection_when_idle()
        self._set(event.state, event.message)

    # -- actions (post to the supervisor, return at once) -------------------------------------------
    def load_now(self) -> None:
        if self.host is not None:
            self.host.supervisor.load()

    def unload(self) -> None:
        if self.host is not None:
            self._unload_asked = True
            self.host.supervisor.unload()

    def retry(self) -> None:
        """« Réessayer » after « Erreur » (planning again when the host never started: off the UI thread)."""
        if self.host is None:
            self.start()
        else:
            self.host.supervisor.retry()

    def protect(self, request: ProtectionRequest) -> None:
        """The monitor saw graphics memory stay full: act as it asks (its sentence is already shown).

        « next load safer »: the first rung of the plan's fallback ladder becomes the base configuration,
        applied once the model is out of memory (never in the middle of an answer). « unload when idle »:
        keep-alive 0 until the model has left the memory, then the setting again.
        """
        if self.host is None:
            return
        supervisor = self.host.supervisor
        if ProtectionAction.NEXT_LOAD_SAFER in request.actions and self.plan is not None:
            steps = list(self.plan.ladder(supervisor.base_config))
            if steps:
                self._safer_config = steps[0].config
                log.warning("protection: next load with %s", self._safer_config.to_dict())
        if ProtectionAction.UNLOAD_WHEN_IDLE in request.actions:
            self._protecting = True
            supervisor.set_keep_alive(0)
        if supervisor.state is HostState.IDLE:
            self._apply_protection_when_idle()

    def _apply_protection_when_idle(self) -> None:
        if self.host is None:
            return
        if self._protecting:
            self._protecting = False
            self.host.supervisor.set_keep_alive(self.keep_alive_s)
        if self._safer_config is not None and self.plan is not None:
            config, self._safer_config = self._safer_config, None
            self.host.supervisor.configure(config, self.plan.ladder)

    # -- « Optimiser » ------------------------------------------------------------------------------
    def pause_for_optimization(self) -> None:
        """The wizard starts measuring: new requests are refused (retry later), the model leaves the memory
        once the answer being written, if any, has ended."""
        if self.host is not None:
            self._unload_asked = self.state is not HostState.IDLE  # not an idle unload: not announced
            self.host.supervisor.pause(OPTIMIZING_FR)
            self.on_change()

    def wait_until_unloaded(self, timeout: float = 150.0) -> None:
        """Block (in the wizard's worker thread) until the runner has gone: its memory is needed. An
        answer being written when the pause began is let finish first (see ``Supervisor.pause``)."""
        if self.host is not None:
            self.host.supervisor.unload(wait=True, timeout=timeout)

    def resume_after_optimization(self) -> None:
        if self.host is not None and self.host.supervisor.paused:
            self.host.supervisor.resume()
            self.on_change()
