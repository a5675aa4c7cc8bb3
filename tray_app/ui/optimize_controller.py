"""« Optimiser… » in the tray: the menu entry, the wizard's link to the host, and when to propose it.

* The entry opens :class:`~tray_app.ui.optimize_wizard.OptimizeWizard` (one at a time). While it
  measures, the host is paused: its model leaves the memory, requests get a French « retry in a minute »
  and nothing loads until the measuring ends (finished, failed or cancelled). « Appliquer » makes the host
  plan again with the saved settings; they are used from the next load.
* The very first start proposes it once, in a small question box (:func:`should_offer_optimization`).
* At each start, off the UI thread (NVML is read), :func:`needs_reoptimization` says whether the machine,
  its driver, the model or the engine changed since the applied optimisation: then a notification says
  so, and the entry reads « Optimiser… (conseillé) ».
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QMessageBox

from tray_app import APP_DISPLAY_NAME
from tray_app.benchmark.saved import (
    FIRST_RUN_OFFER_FR,
    mark_optimization_offered,
    needs_reoptimization,
    should_offer_optimization,
)
from tray_app.format_fr import no_break_fr
from tray_app.hardware.gpu import NvmlReader
from tray_app.paths import AppPaths
from tray_app.settings import Settings
from tray_app.ui.host_controller import HostController
from tray_app.ui.menu_entries import MenuEntry

if TYPE_CHECKING:  # imported when first opened: the measuring engine stays out of start-up
    from tray_app.ui.optimize_wizard import OptimizeWizard

log = logging.getLogger(__name__)

OFFER_DELAY_MS = 1500  # the icon is on screen before the question appears


class OptimizeController(QObject):
    """Signals:
    advice_changed(): the « conseillé » mark of the entry changed (the menu picks it up when it opens).
    """

    advice_changed = Signal()
    _reason_found = Signal(str)

    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        host: HostController,
        notify: Callable[[str, bool], None],
        *,
        wizard_factory: Callable[..., OptimizeWizard] | None = None,
        nvml: NvmlReader | None = None,
    ) -> None:
        super().__init__()
        self.nvml = nvml  # the program's shared NVML session, for the re-optimisation check
        self.settings = settings
        self.paths = paths
        self.host = host
        self.notify = notify
        self.wizard: OptimizeWizard | None = None  # while open
        self.offer_box: QMessageBox | None = None
        self.reason_fr: str | None = None  # why optimising again is advised, when it is
        self.wizard_factory = wizard_factory  # tests give a wizard on a fake engine
        self._reason_found.connect(self._on_reason, Qt.ConnectionType.QueuedConnection)
        self._offer_timer = QTimer(self)
        self._offer_timer.setSingleShot(True)
        self._offer_timer.timeout.connect(self.offer)

    # -- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        """First start: propose « Optimiser » once. Later starts: check whether it should run again."""
        if should_offer_optimization(self.settings):
            self._offer_timer.start(OFFER_DELAY_MS)
        else:
            threading.Thread(target=self._check_identity, name="optimize-check", daemon=True).start()

    def stop(self) -> None:
        self._offer_timer.stop()  # a program that stops before the question is asked does not ask it
        if self.offer_box is not None:
            self.offer_box.close()
        if self.wizard is not None:
            self.wizard.close_for_exit()

    def offer(self) -> None:
        """The first-start question; asked once whatever the answer (``optimize_offered``)."""
        mark_optimization_offered(self.settings)
        box = QMessageBox(QMessageBox.Icon.Question, APP_DISPLAY_NAME, no_break_fr(FIRST_RUN_OFFER_FR))
        box.setInformativeText(no_break_fr(
            self.tr("Vous pourrez aussi le faire plus tard : menu de l'icône, « Optimiser… ».")
        ))
        go = box.addButton(self.tr("Optimiser…"), QMessageBox.ButtonRole.AcceptRole)
        box.addButton(self.tr("Plus tard"), QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(go)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self.open() if button is go else None)
        box.destroyed.connect(self._forget_offer)
        self.offer_box = box
        box.show()

    def _forget_offer(self) -> None:
        self.offer_box = None

    def _check_identity(self) -> None:
        try:
            reason = needs_reoptimization(self.settings, self.paths, nvml=self.nvml)
        except Exception:  # a check, never a reason to disturb the user
            log.exception("re-optimisation check failed")
            return
        if reason:
            self._reason_found.emit(reason)

    def _on_reason(self, reason: str) -> None:
        log.info("optimisation out of date: %s", reason)
        self.reason_fr = reason
        self.advice_changed.emit()
        self.notify(reason, False)

    # -- menu -------------------------------------------------------------------------------------
    def entries(self) -> list[MenuEntry]:
        if self.host.control.remote_active:  # another computer's model: nothing of this one to measure
            return []
        text = self.tr("Optimiser… (conseillé)") if self.reason_fr else self.tr("Optimiser…")
        return [MenuEntry(text, self.open)]

    # -- the wizard ---------------------------------------------------------------------------------
    def open(self) -> None:
        wizard = self.wizard
        if wizard is None:
            wizard = self.wizard = self._make_wizard()
            wizard.measuring_started.connect(self.host.pause_for_optimization)
            wizard.measuring_ended.connect(self.host.resume_after_optimization)
            wizard.applied.connect(self._on_applied)
            wizard.finished.connect(self._forget_wizard)
        wizard.show()
        wizard.raise_()
        wizard.activateWindow()

    def _make_wizard(self) -> OptimizeWizard:
        if self.wizard_factory is not None:
            return self.wizard_factory(self.settings, self.paths, before_measuring=self.host.wait_until_unloaded)
        from tray_app.ui.icons import app_icon
        from tray_app.ui.optimize_wizard import OptimizeWizard

        wizard = OptimizeWizard(self.settings, self.paths, before_measuring=self.host.wait_until_unloaded)
        wizard.setWindowIcon(app_icon())
        return wizard

    def _on_applied(self, _tuning: object) -> None:
        self.reason_fr = None
        self.advice_changed.emit()
        self.host.apply_optimization()
        self.notify(
            self.tr("Réglages optimisés appliqués : ils servent dès le prochain chargement du modèle."), False
        )

    def _forget_wizard(self) -> None:
        self.host.resume_after_optimization()  # whatever happened, the host is never left paused
        if self.wizard is not None:
            self.wizard.deleteLater()
            self.wizard = None
