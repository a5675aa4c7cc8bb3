"""The tray's side of the model host: a Qt adapter over :class:`~tray_app.host.hosting.Host`.

It starts the gateway (the model itself loads on the first request), re-emits the supervisor's events on
the UI thread, offers the model's menu section (state, API address, choice of model, unload) and gives
the monitor its cheap ``host_metrics`` reading.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from tray_app.host.gateway import PortUnavailable
from tray_app.host.host_state import EventKind, HostEvent, HostState
from tray_app.host.hosting import Host, HostPlan, ModelChoiceError, choose_model, keep_alive_from, plan_host
from tray_app.monitoring.host_metrics import HostMetrics, HostNotice, HostNoticeKind
from tray_app.monitoring.protection import ProtectionAction, ProtectionRequest
from tray_app.paths import AppPaths
from tray_app.planning.runner_config import RunnerConfig
from tray_app.settings import Settings
from tray_app.ui.icons import IconState
from tray_app.ui.menu_entries import MenuEntry

log = logging.getLogger(__name__)

HOST_ICONS = {
    HostState.IDLE: IconState.IDLE,
    HostState.LOADING: IconState.BUSY,
    HostState.READY: IconState.READY,
    HostState.BUSY: IconState.BUSY,
    HostState.ERROR: IconState.ERROR,
}
PLAN_KEYS = ("threads", "cores_left_for_avatar", "context_size")
OPTIMIZING_FR = (
    "Desktop-Mate mesure les performances de l'ordinateur (« Optimiser ») : le modèle reviendra à la fin "
    "des mesures. Réessayez dans une minute."
)


class HostController(QObject):
    """Signals:
    changed(): the state, the model or the address changed; the menu and icon should be refreshed.
    monitor_event(object): a :class:`~tray_app.monitoring.host_metrics.HostNotice` for the monitor.
    models_found(list): the discovered models (list of ``DiscoveredModel``), after a scan.
    """

    changed = Signal()
    monitor_event = Signal(object)
    models_found = Signal(list)
    _event_from_host = Signal(object)

    def __init__(self, settings: Settings, paths: AppPaths, notify: Callable[[str, bool], None]) -> None:
        super().__init__()
        self.settings = settings
        self.paths = paths
        self.notify = notify
        self.host: Host | None = None
        self.plan: HostPlan | None = None
        self.state = HostState.IDLE
        self.message = ""
        self.models: list = []  # DiscoveredModel, filled by scan_models_in_background()
        self._unload_asked = False
        self._protecting = False  # protection asked to unload when idle (keep-alive 0 until then)
        self._safer_config: RunnerConfig | None = None  # protection: used from the next load
        self._plan_inputs = self._current_plan_inputs()
        self._event_from_host.connect(self._on_host_event, Qt.ConnectionType.QueuedConnection)

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Plan and open the gateway; the model loads at the first request."""
        try:
            model = choose_model(None, self.settings)
            self.plan = plan_host(model, self.settings)
        except ModelChoiceError as exc:
            self._set(HostState.ERROR, exc.message_fr)
            self.notify(exc.message_fr, True)
            return
        host = Host(
            self.plan,
            port=self.settings.values.api_port,
            keep_alive_s=keep_alive_from(self.settings),
            log_file=self.paths.log_dir / "runner.log",
        )
        try:
            host.start()
        except PortUnavailable as exc:
            self._set(HostState.ERROR, exc.message_fr)
            self.notify(exc.message_fr, True)
            return
        self.host = host
        host.supervisor.add_listener(self._event_from_host.emit)
        if host.gateway.port_notice:
            self.notify(host.gateway.port_notice, True)
        self._set(HostState.IDLE, host.supervisor.status().message)
        log.info("host ready at %s with %s (%s)", host.gateway.api_base, self.plan.model_path, self.plan.planner)

    def stop(self) -> None:
        if self.host is not None:
            self.host.close()
            self.host = None

    def add_reply_hook(self, hook: Callable[[str], None]) -> None:
        """``hook(text)`` is called on the gateway's thread with each complete assistant reply."""
        if self.host is not None:
            self.host.gateway.reply_hooks.append(hook)

    # -- state -----------------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return self.host.gateway.api_base if self.host is not None else ""

    @property
    def model_name(self) -> str:
        if self.plan is None:
            return self.tr("aucun modèle")
        from tray_app.models.gguf_info import ModelFileError, read_model_info, readable_name

        try:
            return read_model_info(self.plan.model_path).name  # cached: the header was read by the plan
        except ModelFileError:
            return readable_name(self.plan.model_path)

    @property
    def icon(self) -> IconState:
        return HOST_ICONS[self.state]

    def status_line(self) -> str:
        """The state in one or two words (« Prêt », « Chargement… », « Optimisation en cours… »)."""
        if self.host is not None and self.host.supervisor.paused:
            return self.tr("Optimisation en cours…")
        return self.state.label

    def host_metrics(self) -> HostMetrics | None:
        """For the monitor thread, once a second: cheap and thread-safe."""
        host = self.host
        if host is None:
            return None
        last = host.gateway.metrics.last()
        state = host.supervisor.state
        runner = host.supervisor.status().pid if state in (HostState.READY, HostState.BUSY) else None
        return HostMetrics(
            runner_pid=runner,
            tokens_per_second=last.tokens_per_s if last is not None else None,
            baseline_tokens_per_second=self.plan.measured_gen_tps if self.plan is not None else None,
            model_loaded=state in (HostState.READY, HostState.BUSY),
        )

    def _set(self, state: HostState, message: str) -> None:
        self.state, self.message = state, message
        self.changed.emit()

    def _on_host_event(self, event: HostEvent) -> None:
        previous = self.state
        if event.kind is EventKind.FALLBACK:
            self.monitor_event.emit(HostNotice(HostNoticeKind.RUNNER_RESTARTED_SAFER, detail_fr=event.message))
        elif event.kind is EventKind.RESTART:
            # Its state (« En veille ») is taken below: the STATE event that follows is no idle unload.
            self.monitor_event.emit(HostNotice(HostNoticeKind.RUNNER_RESTARTED, detail_fr=event.message))
        elif event.kind is EventKind.STATE:
            if event.state is HostState.ERROR:
                self.notify(event.message, True)
            elif event.state is HostState.IDLE and previous in (HostState.READY, HostState.BUSY):
                if not self._unload_asked:
                    keep = self.host.supervisor.keep_alive_s if self.host is not None else 0
                    self.monitor_event.emit(HostNotice(HostNoticeKind.MODEL_UNLOADED_IDLE, idle_seconds=keep))
                self._unload_asked = False
            if event.state is HostState.IDLE:
                self._apply_protection_when_idle()
        self._set(event.state, event.message)

    # -- actions ---------------------------------------------------------------------------------
    def load_now(self) -> None:
        if self.host is not None:
            self.host.supervisor.load()

    def unload(self) -> None:
        if self.host is not None:
            self._unload_asked = True
            self.host.supervisor.unload()

    def retry(self) -> None:
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
            self.host.supervisor.set_keep_alive(keep_alive_from(self.settings))
        if self._safer_config is not None and self.plan is not None:
            config, self._safer_config = self._safer_config, None
            self.host.supervisor.configure(config, self.plan.ladder)

    # -- « Optimiser » ---------------------------------------------------------------------------
    def pause_for_optimization(self) -> None:
        """The wizard starts measuring: new requests are refused (retry later), the model leaves the memory
        once the answer being written, if any, has ended."""
        if self.host is not None:
            self._unload_asked = self.state is not HostState.IDLE  # not an idle unload: not announced
            self.host.supervisor.pause(OPTIMIZING_FR)
            self.changed.emit()

    def wait_until_unloaded(self, timeout: float = 150.0) -> None:
        """Block (in the wizard's worker thread) until the runner has gone: its memory is needed. An
        answer being written when the pause began is let finish first (see ``Supervisor.pause``)."""
        if self.host is not None:
            self.host.supervisor.unload(wait=True, timeout=timeout)

    def resume_after_optimization(self) -> None:
        if self.host is not None and self.host.supervisor.paused:
            self.host.supervisor.resume()
            self.changed.emit()

    def apply_optimization(self) -> None:
        """« Appliquer » saved new settings: plan again with them (used from the next load)."""
        if self.plan is None:
            self.start()
            return
        try:
            self._apply_plan(plan_host(self.plan.model_path, self.settings))
        except ModelChoiceError as exc:
            self.notify(exc.message_fr, True)

    def copy_api_address(self) -> None:
        QGuiApplication.clipboard().setText(self.api_base)
        self.notify(self.tr("Adresse copiée : {0}").replace("{0}", self.api_base), False)

    def use_model(self, path: Path) -> None:
        """Switch to another model file: saved in the settings, loaded at the next request."""
        try:
            plan = plan_host(Path(path), self.settings)
        except ModelChoiceError as exc:
            self.notify(exc.message_fr, True)
            return
        self.settings.set("model_path", str(path))
        self.settings.save()
        self._apply_plan(plan)
        self.notify(self.tr("Modèle choisi : {0}. {1}").replace("{0}", self.model_name)
                    .replace("{1}", plan.explanation_fr), False)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            None, self.tr("Choisir un modèle"), str(Path.home()), self.tr("Modèles GGUF (*.gguf)")
        )
        if path:
            self.use_model(Path(path))

    def apply_settings(self) -> None:
        """After « Paramètres » : keep-alive at once; a new plan when what it depends on changed."""
        if self.host is None:
            return
        self.host.supervisor.set_keep_alive(keep_alive_from(self.settings))
        inputs = self._current_plan_inputs()
        if inputs != self._plan_inputs and self.plan is not None:
            try:
                self._apply_plan(plan_host(self.plan.model_path, self.settings))
            except ModelChoiceError as exc:
                self.notify(exc.message_fr, True)
        if self.host.gateway.options.port != self.settings.values.api_port:
            self.notify(self.tr("Le nouveau port de l'API sera utilisé au prochain démarrage du programme."), False)

    def _apply_plan(self, plan: HostPlan) -> None:
        self.plan = plan
        self._plan_inputs = self._current_plan_inputs()
        if self.host is None:
            self.start()
            return
        self.host.use_plan(plan)
        self.changed.emit()

    def _current_plan_inputs(self) -> tuple:
        return tuple(self.settings.get(k) for k in PLAN_KEYS)

    # -- discovery -------------------------------------------------------------------------------
    def scan_models_in_background(self) -> None:
        """Look for the user's models (LM Studio, Ollama, Hugging Face…) off the UI thread."""

        def scan() -> None:
            from tray_app.models.discovery import discover_models

            try:
                found = discover_models(self.settings.values.model_folders)
            except Exception:
                log.exception("model discovery failed")
                found = []
            self.models_found.emit(found)

        threading.Thread(target=scan, name="model-discovery", daemon=True).start()

    def set_models(self, models: list) -> None:
        self.models = models
        self.changed.emit()

    # -- menu ------------------------------------------------------------------------------------
    def entries(self) -> list[MenuEntry]:
        entries = [MenuEntry(self.tr("Modèle : {0}").replace("{0}", self.model_name))]
        if self.state is HostState.ERROR:
            entries.append(MenuEntry(self.tr("Réessayer de charger le modèle"), self.retry))
        if self.host is not None:
            entries.append(MenuEntry(self.tr("API : {0}").replace("{0}", self.api_base)))
            entries.append(MenuEntry(self.tr("Copier l'adresse de l'API"), self.copy_api_address))
        current = str(self.plan.model_path) if self.plan is not None else ""
        choices = [
            MenuEntry(f"{m.name} ({m.source}, {_size(m.size)})", functools.partial(self.use_model, Path(m.path)),
                      checked=str(m.path) == current)
            for m in self.models
        ]
        choices.append(MenuEntry(self.tr("Autre fichier…"), self.choose_model_file, separator_before=bool(choices)))
        entries.append(MenuEntry(self.tr("Choisir un modèle"), children=tuple(choices)))
        if self.state is HostState.IDLE and self.host is not None:
            entries.append(MenuEntry(self.tr("Charger le modèle maintenant"), self.load_now))
        if self.state in (HostState.READY, HostState.BUSY, HostState.LOADING):
            entries.append(MenuEntry(self.tr("Décharger le modèle"), self.unload))
        return entries


def _size(n: int) -> str:
    from tray_app.units_fr import size_fr

    return size_fr(n)
