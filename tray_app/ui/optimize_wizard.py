"""« Optimiser… »: the wizard that measures this machine, finds the best settings and applies them.

Four pages (:mod:`tray_app.ui.optimize_pages`, :mod:`tray_app.ui.optimize_result_page`): what it does → what
was detected → live measuring → the result. Detection and the benchmark run in a worker thread
(:class:`OptimizeJob`), never on the UI thread. « Annuler » works at every moment: during the measuring it
stops the runner and the wizard closes once it is gone; nothing is changed. Only « Appliquer » on the last
page writes anything (:func:`tray_app.benchmark.saved.apply_result`), then emits
:attr:`OptimizeWizard.applied`.

How the tray opens it (:class:`tray_app.ui.optimize_controller.OptimizeController`)::

    wizard = OptimizeWizard(settings, paths, before_measuring=host.wait_until_unloaded)
    wizard.measuring_started.connect(host.pause_for_optimization)  # the measurements need memory and CPU
    wizard.measuring_ended.connect(host.resume_after_optimization)
    wizard.applied.connect(host.apply_optimization)
    wizard.show()
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMessageBox, QWidget, QWizard

from tray_app.benchmark.optimizer import OptimizationEngine
from tray_app.benchmark.progress import BenchProgress
from tray_app.benchmark.result import OptimizationResult
from tray_app.benchmark.saved import apply_result
from tray_app.paths import AppPaths
from tray_app.settings import Settings
from tray_app.ui.optimize_pages import IntroPage, MachinePage, ProgressPage
from tray_app.ui.optimize_result_page import ResultPage
from tray_app.ui.optimize_worker import Detection, EngineFactory, OptimizeJob

log = logging.getLogger(__name__)

INTRO, MACHINE, PROGRESS, RESULT = range(4)


def real_engine_factory(settings: Settings) -> EngineFactory:
    """The engine on the model chosen in the settings (raises ``ModelChoiceError`` in the worker)."""

    def factory() -> OptimizationEngine:
        from tray_app.benchmark.optimizer import Optimizer
        from tray_app.host.hosting import choose_model

        return Optimizer(choose_model(None, settings), settings)

    return factory


class OptimizeWizard(QWizard):
    """The « Optimiser » wizard.

    Signals:
        measuring_started(): the benchmark starts its own runners; the host should have unloaded its
            model (it takes memory and CPU the measurements need) and not load it until
            ``measuring_ended``.
        measuring_ended(): the benchmark is over (finished, failed or cancelled): no runner of ours
            is left; the host may load its model again.
        applied(Tuning): « Appliquer » saved the settings (``optimized_config`` and the results file);
            the host should use them at its next load (restart the runner to use them now).
    """

    measuring_started = Signal()
    measuring_ended = Signal()
    applied = Signal(object)

    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        *,
        engine_factory: EngineFactory | None = None,
        before_measuring: Callable[[], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """``before_measuring`` runs in the worker thread after ``measuring_started``, before the first
        runner starts; it may block (the tray waits there until its own runner has freed the memory)."""
        super().__init__(parent)
        self.settings = settings
        self.paths = paths
        self.outcome: OptimizationResult | None = None
        self.detection: Detection | None = None
        self._closing = False
        self._threads_were_manual = bool(settings.values.threads)
        self.setWindowTitle(self.tr("Optimiser — Desktop-Mate"))
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setMinimumSize(680, 560)
        for button, text in (
            (QWizard.WizardButton.NextButton, self.tr("Suivant")),
            (QWizard.WizardButton.BackButton, self.tr("Précédent")),
            (QWizard.WizardButton.CancelButton, self.tr("Annuler")),
            (QWizard.WizardButton.FinishButton, self.tr("Appliquer")),
            (QWizard.WizardButton.CommitButton, self.tr("Commencer les mesures")),
        ):
            self.setButtonText(button, text)
        self.intro = IntroPage()
        self.machine = MachinePage()
        self.progress_page = ProgressPage()
        self.result_page = ResultPage()
        for page_id, page in enumerate((self.intro, self.machine, self.progress_page, self.result_page)):
            self.setPage(page_id, page)
        self.job = OptimizeJob(engine_factory or real_engine_factory(settings), self, before_run=before_measuring)
        self.job.detected.connect(self._on_detected)
        self.job.detection_failed.connect(self.machine.show_error)
        self.job.progress.connect(self._on_progress)
        self.job.finished.connect(self._on_finished)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.currentIdChanged.connect(self._on_page)
        self.job.detect()

    # -- flow -------------------------------------------------------------------------------------
    def _on_page(self, page_id: int) -> None:
        if page_id == PROGRESS and not self.job.running and self.outcome is None:
            summary = self.detection.summary if self.detection is not None else None
            self.progress_page.begin(summary.n_layers if summary is not None else 0)
            self.measuring_started.emit()
            self.job.start(self.intro.quick_chosen)
        elif page_id == RESULT and self.outcome is not None:
            self.result_page.show_result(self.outcome, threads_were_manual=self._threads_were_manual)

    def _on_detected(self, detection: Detection) -> None:
        self.detection = detection
        self.intro.show_durations(detection.quick_s, detection.precise_s)
        self.machine.show_detection(detection)

    def _on_progress(self, event: BenchProgress) -> None:
        if not self._closing:
            self.progress_page.show_progress(event)

    def _on_finished(self, result: OptimizationResult) -> None:
        self.measuring_ended.emit()
        if self._closing:
            self._close_now()
            return
        self.outcome = result
        self.progress_page.show_finished(result)
        if self.currentId() == PROGRESS:
            self.next()

    def _on_failed(self, message: str) -> None:
        self.measuring_ended.emit()
        if self._closing:
            self._close_now()
            return
        self.progress_page.show_failure(message)
        self.setButtonText(QWizard.WizardButton.CancelButton, self.tr("Fermer"))

    def _on_cancelled(self) -> None:
        self.measuring_ended.emit()
        self._close_now()

    # -- closing ----------------------------------------------------------------------------------
    def reject(self) -> None:
        """« Annuler », Échap or the window's cross: stop the measuring first, change nothing."""
        if self.job.running:
            if not self._closing:
                self._closing = True
                self.job.cancel()
                self.progress_page.show_stopping()
                self.button(QWizard.WizardButton.CancelButton).setEnabled(False)
            return  # closes when the worker says the runner is gone (_close_now)
        self._close_now()

    def close_for_exit(self) -> None:
        """The program quits: stop any measuring (waits for the runner to end) and close."""
        self._close_now()

    def _close_now(self) -> None:
        self._closing = True
        self.job.shutdown()
        super().reject()

    def accept(self) -> None:
        """« Appliquer »: save the settings and the results file, then tell the tray."""
        if self.outcome is None:
            return
        try:
            tuning = apply_result(self.outcome, self.settings, self.paths)
        except OSError as exc:
            log.warning("optimisation not saved: %s", exc)
            QMessageBox.warning(
                self,
                self.tr("Optimiser — Desktop-Mate"),
                self.tr(
                    "Les réglages n'ont pas pu être enregistrés ({0}). Vérifiez l'espace disque, puis "
                    "cliquez à nouveau sur « Appliquer »."
                ).replace("{0}", getattr(exc, "strerror", None) or str(exc)),
            )
            return
        self.job.shutdown()
        super().accept()
        self.applied.emit(tuning)
