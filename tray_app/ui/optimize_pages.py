"""The first three pages of the « Optimiser » wizard: what it does, what was found, the measuring.

The fourth, the result, is in :mod:`tray_app.ui.optimize_result_page`.

Pages only show what the wizard hands them (:class:`~tray_app.ui.optimize_worker.Detection`,
:class:`~tray_app.benchmark.progress.BenchProgress`, :class:`~tray_app.benchmark.result.OptimizationResult`);
they never measure anything themselves.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QLabel,
    QProgressBar,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from tray_app.benchmark.machine import MachineSummary
from tray_app.benchmark.progress import BenchProgress
from tray_app.benchmark.report_fr import describe_change_fr
from tray_app.benchmark.result import DEFAULT_WORDS_PER_TOKEN, OptimizationResult, words_per_token
from tray_app.benchmark.search import Trial
from tray_app.format_fr import about_duration_fr, seconds_fr, size_fr
from tray_app.ui.optimize_worker import Detection

ERROR_STYLE = "color: #b00020;"
HINT_STYLE = "color: #555555;"


def wrapped(text: str = "", *, style: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    if style:
        label.setStyleSheet(style)
    return label


def bigger(label: QLabel, points: int = 3, bold: bool = True) -> QLabel:
    font = QFont(label.font())
    font.setPointSize(font.pointSize() + points)
    font.setBold(bold)
    label.setFont(font)
    return label


class IntroPage(QWizardPage):
    """Page 1: what « Optimiser » does, how long it takes, and the choice of a quick or precise run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("Optimiser la vitesse du modèle"))
        layout = QVBoxLayout(self)
        layout.addWidget(wrapped(self.tr(
            "Le programme va essayer plusieurs réglages du modèle sur votre ordinateur, mesurer la vitesse "
            "de ses réponses à chaque essai, puis vous proposer les réglages les plus rapides."
        )))
        layout.addSpacing(6)
        layout.addWidget(wrapped(self.tr(
            "Pendant les mesures, l'ordinateur travaille beaucoup et l'avatar peut répondre plus lentement. "
            "Pour des résultats fiables, fermez les jeux et les programmes lourds, et branchez le chargeur "
            "si c'est un ordinateur portable."
        )))
        layout.addSpacing(8)
        self.quick = QRadioButton()
        self.precise = QRadioButton()
        self.quick.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.quick)
        group.addButton(self.precise)
        layout.addWidget(self.quick)
        layout.addWidget(self.precise)
        layout.addSpacing(8)
        layout.addWidget(wrapped(self.tr(
            "Vous pouvez annuler à tout moment : rien n'est changé tant que vous n'avez pas cliqué sur "
            "« Appliquer » à la fin."
        ), style=HINT_STYLE))
        layout.addStretch(1)
        self.show_durations(None, None)

    def show_durations(self, quick_s: float | None, precise_s: float | None) -> None:
        pending = self.tr("durée en cours de calcul")
        self.quick.setText(
            self.tr("Mesure rapide — {0}").replace("{0}", about_duration_fr(quick_s) if quick_s else pending)
        )
        self.precise.setText(
            self.tr("Mesure précise — {0}, plus de mesures pour chaque réglage").replace(
                "{0}", about_duration_fr(precise_s) if precise_s else pending
            )
        )

    @property
    def quick_chosen(self) -> bool:
        return self.quick.isChecked()


class MachinePage(QWizardPage):
    """Page 2: the processor, memory, graphics card, model and today's settings, in plain words."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("Votre ordinateur"))
        self.setSubTitle(self.tr("Voici ce que le programme a trouvé. Les mesures partiront des réglages actuels."))
        self.setCommitPage(True)  # no way back once the measuring starts
        layout = QVBoxLayout(self)
        self.status = wrapped(self.tr("Détection en cours…"))
        layout.addWidget(self.status)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        layout.addLayout(self.form)
        self.fields: dict[str, QLabel] = {}
        for key, title in (
            ("cpu", self.tr("Processeur")),
            ("ram", self.tr("Mémoire vive")),
            ("gpu", self.tr("Carte graphique")),
            ("model", self.tr("Modèle")),
            ("now", self.tr("Réglages actuels")),
        ):
            value = wrapped()
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            self.form.addRow(QLabel(f"<b>{title}</b>"), value)
        layout.addStretch(1)
        self.next_hint = wrapped(
            self.tr("Cliquez sur « Commencer les mesures » quand vous êtes prêt."), style=HINT_STYLE
        )
        layout.addWidget(self.next_hint)
        self._ready = False
        self._set_visible(False)

    def _set_visible(self, visible: bool) -> None:
        for i in range(self.form.rowCount()):
            for role in (QFormLayout.ItemRole.LabelRole, QFormLayout.ItemRole.FieldRole):
                item = self.form.itemAt(i, role)
                widget = item.widget() if item is not None else None
                if widget is not None:
                    widget.setVisible(visible)
        self.next_hint.setVisible(visible)

    def show_detection(self, detection: Detection) -> None:
        s = detection.summary
        self.fields["cpu"].setText(cpu_fr(s))
        self.fields["ram"].setText(size_fr(s.cpu.ram_total))
        self.fields["gpu"].setText(gpu_fr(s))
        self.fields["model"].setText(f"{s.model_name} ({size_fr(s.model_size)})")
        self.fields["now"].setText(s.plan_fr)
        self.status.setVisible(False)
        self._set_visible(True)
        self._ready = True
        self.completeChanged.emit()

    def show_error(self, message: str) -> None:
        self.status.setText(message)
        self.status.setStyleSheet(ERROR_STYLE)
        self._ready = False
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self._ready


def cpu_fr(s: MachineSummary) -> str:
    cpu = s.cpu
    if cpu.hybrid:
        cores = (
            f"{cpu.performance_cores} cœurs rapides et {cpu.efficiency_cores} cœurs économes "
            f"({cpu.logical_cpus} fils)"
        )
    elif cpu.smt:
        cores = f"{cpu.physical_cores} cœurs ({cpu.logical_cpus} fils)"
    else:
        cores = f"{cpu.physical_cores} cœurs"
    return f"{cpu.model} — {cores}"


def gpu_fr(s: MachineSummary) -> str:
    if s.gpu is None:
        return s.gpu_note_fr[:1].upper() + s.gpu_note_fr[1:] if s.gpu_note_fr else "Pas de carte NVIDIA détectée"
    if s.gpu.memory_total is None or s.gpu.memory_free is None:
        text = f"{s.gpu.name} — mémoire libre inconnue"
    else:
        text = f"{s.gpu.name} — {size_fr(s.gpu.memory_total)}, dont {size_fr(s.gpu.memory_free)} libres"
    if not s.gpu_usable:
        text += f" ({s.gpu_note_fr})"
    return text


class ProgressPage(QWizardPage):
    """Page 3: the live measuring: current step, time left, a bar per configuration tried."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from tray_app.ui.optimize_charts import TrialsChart

        self.setTitle(self.tr("Mesures en cours"))
        self.setSubTitle(self.tr("Chaque barre est un réglage essayé ; le meilleur est en vert."))
        layout = QVBoxLayout(self)
        self.step = bigger(wrapped(self.tr("Préparation…")), points=1)
        self.detail = wrapped(style=HINT_STYLE)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.time_left = wrapped()
        self.chart = TrialsChart()
        self.last = wrapped()
        self.error = wrapped(style=ERROR_STYLE)
        self.error.setVisible(False)
        for widget in (self.step, self.detail, self.bar, self.time_left, self.chart, self.last, self.error):
            layout.addWidget(widget)
        self.result: OptimizationResult | None = None
        self._ratio = DEFAULT_WORDS_PER_TOKEN
        self._n_layers = 0

    def begin(self, n_layers: int) -> None:
        self._n_layers = n_layers
        self.result = None

    def show_progress(self, event: BenchProgress) -> None:
        trials = event.trials
        for trial in trials:
            m = trial.measurement
            if m.stable and m.text:
                self._ratio = words_per_token(m.text, m.generated_tokens)
                break
        if event.point is not None and event.step:
            start = trials[0].point if trials else event.point
            what = describe_change_fr(event.point, start, self._n_layers) if trials else self.tr("réglages actuels")
            if event.control:
                what = (
                    self.tr("nouvelle mesure des réglages actuels, pour comparer")
                    if trials and event.point == trials[0].point
                    else self.tr("vérification du meilleur réglage")
                )
            self.step.setText(
                self.tr("Essai {0} sur environ {1} : {2}")
                .replace("{0}", str(event.step))
                .replace("{1}", str(event.total))
                .replace("{2}", what)
            )
        self.detail.setText(f"{event.detail_fr}…" if event.detail_fr else "")
        self.bar.setValue(round(event.fraction * 1000))
        if event.seconds_left is not None and not event.finished:
            self.time_left.setText(self.tr("Temps restant : {0}").replace("{0}", about_duration_fr(event.seconds_left)))
        self.chart.show_trials(trials, self._ratio)
        if event.last is not None:
            self.last.setText(self.last_fr(event.last))

    def last_fr(self, trial: Trial) -> str:
        m = trial.measurement
        if not m.stable:
            return self.tr("Dernier essai écarté : {0}").replace("{0}", m.failure_fr)
        words = round((m.gen_tps or 0) * self._ratio)
        return self.tr("Dernier essai : {0} mots/seconde, premier mot après {1}.").replace(
            "{0}", str(words)
        ).replace("{1}", seconds_fr(m.ttft_s or 0))

    def show_finished(self, result: OptimizationResult) -> None:
        self.result = result
        self.bar.setValue(1000)
        self.time_left.setText(self.tr("Terminé."))
        self.detail.setText("")
        self.completeChanged.emit()

    def show_stopping(self) -> None:
        self.step.setText(self.tr("Arrêt des mesures…"))
        self.detail.setText(self.tr("Le modèle d'essai se ferme ; rien n'a été changé."))
        self.time_left.setText("")

    def show_failure(self, message: str) -> None:
        self.step.setText(self.tr("Les mesures se sont arrêtées."))
        self.detail.setText("")
        self.time_left.setText("")
        self.error.setText(message + " " + self.tr("Rien n'a été changé."))
        self.error.setVisible(True)

    def isComplete(self) -> bool:
        return self.result is not None
