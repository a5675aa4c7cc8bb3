"""« Optimiser » off the UI thread: detection and the benchmark run in a ``QThread``.

:class:`OptimizeJob` is what the wizard creates (in the UI thread). It owns the thread and an
:class:`OptimizeWorker` living in it, and relays the worker's results as its own signals, emitted in
the UI thread, so any slot may touch widgets. Cancelling sets a ``threading.Event`` the engine watches:
the runner is stopped at once and ``cancelled`` follows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, Signal, Slot

from tray_app.benchmark.engine import BenchmarkError
from tray_app.benchmark.machine import MachineSummary
from tray_app.benchmark.optimizer import OptimizationEngine
from tray_app.benchmark.progress import BenchProgress
from tray_app.benchmark.search import BenchmarkCancelled

log = logging.getLogger(__name__)

EngineFactory = Callable[[], OptimizationEngine]
UNEXPECTED_FR = (
    "Une erreur inattendue a arrêté les mesures. Rien n'a été changé. Les détails sont dans le journal "
    "(menu de l'icône, « Ouvrir le dossier des journaux »)."
)


@dataclass(frozen=True)
class Detection:
    """What page 2 shows, and the expected durations page 1 announces."""

    summary: MachineSummary
    quick_s: float
    precise_s: float


class OptimizeWorker(QObject):
    """Runs in the job's thread. Use it through :class:`OptimizeJob`, whose signals have the same names.

    Signals (emitted in the worker's thread):
        detected(Detection): the machine, the model and today's settings.
        detection_failed(str): French sentence (unusable model, missing demo model…).
        progress(BenchProgress): a step of the benchmark (several per configuration).
        finished(OptimizationResult): the benchmark is over; nothing is applied yet.
        failed(str): French sentence: no configuration worked, or an unexpected error (traceback logged).
        cancelled(): the user cancelled; the runner is stopped, nothing was changed.
    """

    detected = Signal(object)
    detection_failed = Signal(str)
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self, factory: EngineFactory, cancel: threading.Event, before_run: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self._factory = factory
        self._before_run = before_run
        self._engine: OptimizationEngine | None = None
        self._cancel = cancel

    @Slot()
    def detect(self) -> None:
        from tray_app.host.hosting import ModelChoiceError

        try:
            self._engine = self._factory()
            summary = self._engine.detect()
            detection = Detection(
                summary, self._engine.estimate_seconds(quick=True), self._engine.estimate_seconds(quick=False)
            )
        except ModelChoiceError as exc:
            self.detection_failed.emit(exc.message_fr)
            return
        except Exception:
            log.exception("optimisation: detection failed")
            self.detection_failed.emit(UNEXPECTED_FR)
            return
        self.detected.emit(detection)

    @Slot(bool)
    def run(self, quick: bool) -> None:
        if self._engine is None:
            self.failed.emit(UNEXPECTED_FR)
            return
        if self._before_run is not None:
            try:
                self._before_run()  # e.g. wait until the tray's own runner has returned its memory
            except Exception:
                log.exception("optimisation: preparing the machine failed; measuring anyway")
        try:
            result = self._engine.run(quick=quick, on_progress=self.progress.emit, cancel=self._cancel)
        except BenchmarkCancelled:
            log.info("optimisation cancelled by the user")
            self.cancelled.emit()
            return
        except BenchmarkError as exc:
            log.warning("optimisation failed: %s", exc)
            self.failed.emit(exc.message_fr)
            return
        except Exception:
            log.exception("optimisation: unexpected error")
            self.failed.emit(UNEXPECTED_FR)
            return
        if self._cancel.is_set():  # cancelled just as it finished: the user asked for nothing to change
            self.cancelled.emit()
            return
        self.finished.emit(result)


class OptimizeJob(QObject):
    """Owns the worker's thread; every signal below is emitted in the thread that created the job.

    Signals:
        detected(Detection): the machine, the model, today's settings and the expected durations.
        detection_failed(str): French sentence; the wizard cannot go on.
        progress(BenchProgress): a step of the benchmark.
        finished(OptimizationResult): the benchmark is over (nothing applied).
        failed(str): French sentence; nothing was changed.
        cancelled(): cancelled; the runner is stopped and nothing was changed.
    """

    detected = Signal(object)
    detection_failed = Signal(str)
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    _detect = Signal()
    _run = Signal(bool)

    def __init__(
        self,
        factory: EngineFactory,
        parent: QObject | None = None,
        *,
        before_run: Callable[[], None] | None = None,
    ) -> None:
        """``before_run`` is called in the worker's thread just before the measurements (it may block)."""
        super().__init__(parent)
        self.cancel_event = threading.Event()
        self.running = False  # a benchmark is under way (between start() and its last signal)
        self.worker_thread = QThread()
        self.worker_thread.setObjectName("desktop-mate-optimize")
        self.worker = OptimizeWorker(factory, self.cancel_event, before_run)
        self.worker.moveToThread(self.worker_thread)
        self._detect.connect(self.worker.detect)
        self._run.connect(self.worker.run)
        w = self.worker  # bound methods of this QObject: Qt queues these calls to the UI thread
        w.detected.connect(self._on_detected)
        w.detection_failed.connect(self._on_detection_failed)
        w.progress.connect(self._on_progress)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        self.worker_thread.start()

    def detect(self) -> None:
        self._detect.emit()

    def start(self, quick: bool) -> None:
        self.running = True
        self._run.emit(quick)

    def cancel(self) -> None:
        """Ask the benchmark to stop (returns at once; ``cancelled`` follows when the runner is gone)."""
        self.cancel_event.set()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel anything running and end the thread (call from the UI thread)."""
        self.cancel_event.set()
        self.worker_thread.quit()
        if not self.worker_thread.wait(timeout_ms):
            log.warning("optimisation thread did not stop within %d ms", timeout_ms)

    # -- relays (run in the UI thread) ------------------------------------------------------------
    @Slot(object)
    def _on_detected(self, detection: Detection) -> None:
        self.detected.emit(detection)

    @Slot(str)
    def _on_detection_failed(self, message: str) -> None:
        self.detection_failed.emit(message)

    @Slot(object)
    def _on_progress(self, event: BenchProgress) -> None:
        self.progress.emit(event)

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        self.running = False
        self.finished.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.running = False
        self.failed.emit(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self.running = False
        self.cancelled.emit()
