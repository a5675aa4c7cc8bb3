"""The tray's side of the model host: a Qt adapter over :class:`~tray_app.host.host_control.HostControl`.

The host's logic (planning, events in plain words, protection, settings changes) is in ``HostControl``,
shared with ``serve``. This adapter runs its planning off the UI thread, brings its callbacks back to the
UI thread as signals, and offers the model's menu section (state, API address, choice of model, unload).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from tray_app.format_fr import size_fr
from tray_app.hardware.gpu import NvmlReader
from tray_app.host.host_control import HostControl
from tray_app.host.host_state import HostState
from tray_app.host.hosting import Host, HostPlan
from tray_app.monitoring.host_metrics import HostMetrics, HostNotice
from tray_app.monitoring.protection import ProtectionRequest
from tray_app.paths import AppPaths
from tray_app.settings import Settings
from tray_app.ui.icons import IconState
from tray_app.ui.menu_entries import MenuEntry

if TYPE_CHECKING:  # discovery is imported by the scan, in its thread; the dialog when first opened
    from tray_app.models.discovery import DiscoveredModel
    from tray_app.planning.fit import Machine
    from tray_app.ui.download_dialog import DownloadDialog

log = logging.getLogger(__name__)

HOST_ICONS = {
    HostState.IDLE: IconState.IDLE,
    HostState.LOADING: IconState.BUSY,
    HostState.READY: IconState.READY,
    HostState.BUSY: IconState.BUSY,
    HostState.ERROR: IconState.ERROR,
}


class HostController(QObject):
    """Signals (all emitted on the UI thread):
    changed(): the state, the model or the address changed; the menu and icon should be refreshed.
    monitor_event(object): a :class:`~tray_app.monitoring.host_metrics.HostNotice` for the monitor.
    models_found(list): the discovered models (list of ``DiscoveredModel``), after a scan.
    optimize_requested(): a model was just downloaded and chosen; « Optimiser » should open for it.
    """

    changed = Signal()
    monitor_event = Signal(object)
    models_found = Signal(list)
    optimize_requested = Signal()
    _then_elsewhere = Signal(object)
    _changed_elsewhere = Signal()
    _notice_elsewhere = Signal(object)
    _notify_elsewhere = Signal(str, bool)

    def __init__(
        self, settings: Settings, paths: AppPaths, notify: Callable[[str, bool], None], nvml: NvmlReader | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.notify = notify  # (French text, is a warning), on the UI thread
        self.models: list[DiscoveredModel] = []  # filled by scan_models_in_background()
        self.started = threading.Event()  # set once the first start has planned (host open, or « Erreur »)
        queued = Qt.ConnectionType.QueuedConnection
        self._changed_elsewhere.connect(self._emit_changed, queued)
        self._notice_elsewhere.connect(self._emit_notice, queued)
        self._notify_elsewhere.connect(self._show, queued)
        self._then_elsewhere.connect(lambda then: then(), queued)
        self.paths = paths
        self.download_dialog: DownloadDialog | None = None
        self.control = HostControl(
            settings, paths, notify=self._notify_elsewhere.emit, on_change=self._changed_elsewhere.emit,
            on_notice=self._notice_elsewhere.emit, nvml=nvml,
        )

    # -- back on the UI thread ---------------------------------------------------------------------
    def _emit_changed(self) -> None:
        self.changed.emit()

    def _emit_notice(self, notice: HostNotice) -> None:
        self.monitor_event.emit(notice)

    def _show(self, text: str, warning: bool) -> None:
        self.notify(text, warning)

    def _in_background(self, name: str, work: Callable[[], object]) -> None:
        """Planning reads the model file and NVML: never on the UI thread."""

        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("%s failed", name)
                self._notify_elsewhere.emit(
                    self.tr("Une erreur inattendue est survenue ; les détails sont dans le journal."), True
                )

        threading.Thread(target=run, name=f"host-{name}", daemon=True).start()

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Plan and open the gateway, in the background; the model loads at the first request."""

        def work() -> None:
            try:
                self.control.start()
            finally:
                self.started.set()

        self._in_background("start", work)

    def stop(self) -> None:
        self.control.stop()

    def add_reply_hook(self, hook: Callable[[str], None]) -> None:
        """``hook(text)`` is called on the gateway's thread with each complete assistant reply."""
        self.control.add_reply_hook(hook)

    # -- state -----------------------------------------------------------------------------------
    @property
    def host(self) -> Host | None:
        return self.control.host

    @property
    def plan(self) -> HostPlan | None:
        return self.control.plan

    @plan.setter
    def plan(self, plan: HostPlan | None) -> None:
        self.control.plan = plan

    @property
    def state(self) -> HostState:
        return self.control.state

    @property
    def message(self) -> str:
        return self.control.message

    @property
    def api_base(self) -> str:
        return self.control.api_base

    @property
    def model_name(self) -> str:
        remote = self.control.remote
        if remote is not None:
            text = self.tr("{0} (sur l'autre ordinateur, {1})").replace("{0}", remote.model_id or "?")
            return text.replace("{1}", remote.address.label)
        plan = self.plan
        if plan is None:
            return self.tr("aucun modèle")
        from tray_app.models.gguf_info import ModelFileError, read_model_info, readable_name

        try:
            return read_model_info(plan.model_path).name  # cached: the header was read by the plan
        except ModelFileError:
            return readable_name(plan.model_path)

    @property
    def icon(self) -> IconState:
        return HOST_ICONS[self.state]

    def status_line(self) -> str:
        """The state in one or two words (« Prêt », « Chargement… », « Optimisation en cours… »)."""
        if self.control.paused:
            return self.tr("Optimisation en cours…")
        return self.state.label

    def host_metrics(self) -> HostMetrics | None:
        """For the monitor thread, once a second: cheap and thread-safe."""
        return self.control.host_metrics()

    # -- actions ---------------------------------------------------------------------------------
    def load_now(self) -> None:
        self.control.load_now()

    def unload(self) -> None:
        self.control.unload()

    def retry(self) -> None:
        if self.host is None:
            self._in_background("start", self.control.start)
        else:
            self.control.retry()

    def protect(self, request: ProtectionRequest) -> None:
        self.control.protect(request)

    def pause_for_optimization(self) -> None:
        self.control.pause_for_optimization()

    def wait_until_unloaded(self, timeout: float = 150.0) -> None:
        self.control.wait_until_unloaded(timeout)

    def resume_after_optimization(self) -> None:
        self.control.resume_after_optimization()

    def apply_optimization(self) -> None:
        """« Appliquer » saved new settings: plan again with them (in the background)."""
        self._in_background("apply-optimization", self.control.apply_optimization)

    def apply_settings(self) -> None:
        """After « Paramètres » : keep-alive at once; a new plan (in the background) when it is needed."""
        self._in_background("apply-settings", self.control.apply_settings)

    def copy_api_address(self) -> None:
        QGuiApplication.clipboard().setText(self.api_base)
        self.notify(self.tr("Adresse copiée : {0}").replace("{0}", self.api_base), False)

    def use_local_model(self) -> None:
        self._in_background("use-local", self.control.use_local_model)

    def copy_share_address(self) -> None:
        QGuiApplication.clipboard().setText(self.control.share_note)
        self.notify(self.tr("Copié : {0}").replace("{0}", self.control.share_note), False)

    def use_model(self, path: Path, then: Callable[[], object] | None = None) -> None:
        """Switch to another model file (planned in the background): saved, loaded at the next request.
        ``then`` runs on the UI thread once it is chosen."""

        def work() -> None:
            plan = self.control.use_model(path)
            if plan is not None:
                text = self.tr("Modèle choisi : {0}. {1}").replace("{0}", self.model_name)
                self._notify_elsewhere.emit(text.replace("{1}", plan.explanation_fr), False)
                if then is not None:
                    self._then_elsewhere.emit(then)

        self._in_background("use-model", work)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            None, self.tr("Choisir un modèle"), str(Path.home()), self.tr("Modèles GGUF (*.gguf)")
        )
        if path:
            self.use_model(Path(path))

    def open_download_dialog(self) -> None:
        """« Télécharger un modèle… » (one window at a time)."""
        dialog = self.download_dialog
        if dialog is None:
            from tray_app.ui.download_dialog import DownloadDialog
            from tray_app.ui.icons import app_icon

            dialog = self.download_dialog = DownloadDialog(self.settings, self.paths, self._machine_for_badges)
            dialog.setWindowIcon(app_icon())
            dialog.use_model_requested.connect(self._use_downloaded)
            dialog.optimize_requested.connect(
                lambda path: self._use_downloaded(path, then=self.optimize_requested.emit)
            )
            dialog.finished.connect(self._forget_download_dialog)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _machine_for_badges(self) -> Machine:
        """This computer for the badges (in the dialog's worker thread): our runner's memory counts as free."""
        from tray_app.planning.catalogue_fit import current_machine

        metrics = self.control.host_metrics()
        return current_machine(self.control.nvml, metrics.runner_pids if metrics is not None else ())

    def _use_downloaded(self, path: Path, then: Callable[[], object] | None = None) -> None:
        self.use_model(path, then=then)
        self.scan_models_in_background()

    def _forget_download_dialog(self) -> None:
        if self.download_dialog is not None:
            self.download_dialog.deleteLater()
            self.download_dialog = None

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

    def set_models(self, models: list[DiscoveredModel]) -> None:
        self.models = models
        self.changed.emit()

    # -- menu ------------------------------------------------------------------------------------
    def entries(self) -> list[MenuEntry]:
        entries = [MenuEntry(self.tr("Modèle : {0}").replace("{0}", self.model_name))]
        if self.state is HostState.ERROR and self.control.remote is None:
            entries.append(MenuEntry(self.tr("Réessayer de charger le modèle"), self.retry))
        if self.host is not None:
            entries.append(MenuEntry(self.tr("API : {0}").replace("{0}", self.api_base)))
            entries.append(MenuEntry(self.tr("Copier l'adresse de l'API"), self.copy_api_address))
        current = str(self.plan.model_path) if self.plan is not None else ""
        choices = [
            MenuEntry(f"{m.name} ({m.source}, {size_fr(m.size)})", functools.partial(self.use_model, Path(m.path)),
                      checked=str(m.path) == current)
            for m in self.models
        ]
        choices.append(MenuEntry(self.tr("Autre fichier…"), self.choose_model_file, separator_before=bool(choices)))
        choices.append(MenuEntry(self.tr("Télécharger un modèle…"), self.open_download_dialog))
        entries.append(MenuEntry(self.tr("Choisir un modèle"), children=tuple(choices)))
        if self.control.remote is not None:
            entries.append(MenuEntry(self.tr("Utiliser le modèle de cet ordinateur"), self.use_local_model))
            return entries
        if self.state is HostState.IDLE and self.host is not None:
            entries.append(MenuEntry(self.tr("Charger le modèle maintenant"), self.load_now))
        if self.state in (HostState.READY, HostState.BUSY, HostState.LOADING):
            entries.append(MenuEntry(self.tr("Décharger le modèle"), self.unload))
        if self.control.share_note:
            entries.append(MenuEntry(self.tr("Partagé avec la maison — {0}").replace("{0}", self.control.share_note)))
            entries.append(MenuEntry(self.tr("Copier l'adresse et la clé du partage"), self.copy_share_address))
        return entries
