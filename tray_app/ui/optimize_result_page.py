"""The last page of the « Optimiser » wizard: the result in plain words, before/after, the details."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from tray_app.benchmark.report_fr import (
    describe_change_fr,
    describe_point_fr,
    failure_short_fr,
    first_word_fr,
    headline_fr,
    memory_short_fr,
)
from tray_app.benchmark.result import OptimizationResult
from tray_app.format_fr import seconds_fr
from tray_app.ui.optimize_pages import HINT_STYLE, bigger, wrapped


class ResultPage(QWizardPage):
    """Page 4: the result in plain words, a before/after chart, the details for the curious."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("Résultat"))
        self._layout = QVBoxLayout(self)
        self.headline = bigger(wrapped(), points=3)
        self.first_word = wrapped()
        self.notes = wrapped(style=HINT_STYLE)
        self.apply_hint = wrapped(style=HINT_STYLE)
        self.toggle = QToolButton()
        self.toggle.setText(self.tr("Afficher les détails des essais"))
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self._toggle_details)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels([
            self.tr("Essai"), self.tr("Ce qui change"), self.tr("Mots/s"), self.tr("Premier mot"),
            self.tr("Mémoire"), self.tr("Résultat"),
        ])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setVisible(False)
        self.chart: QWidget | None = None
        for label in (self.headline, self.first_word):
            self._layout.addWidget(label)
        self._chart_index = self._layout.count()
        for widget in (self.notes, self.apply_hint, self.toggle):
            self._layout.addWidget(widget)
        self._layout.addWidget(self.table, 1)

    def show_result(self, result: OptimizationResult, *, threads_were_manual: bool = False) -> None:
        from tray_app.ui.optimize_charts import BeforeAfterChart

        self.headline.setText(headline_fr(result))
        self.first_word.setText(first_word_fr(result))
        before = result.words_per_second(result.before.gen_tps) or 0.0
        after = result.words_per_second(result.after.gen_tps) or 0.0
        if self.chart is not None:
            self.chart.deleteLater()
        self.chart = BeforeAfterChart(before, after)
        self._layout.insertWidget(self._chart_index, self.chart)
        self.notes.setText("\n".join(result.notes_fr))
        self.notes.setVisible(bool(result.notes_fr))
        hint = self.tr(
            "« Appliquer » enregistre ces réglages : ils serviront dès le prochain chargement du modèle. "
            "« Annuler » ne change rien."
        )
        if threads_were_manual:
            hint += " " + self.tr(
                "Le nombre de cœurs choisi à la main dans les paramètres repassera en « Automatique »."
            )
        self.apply_hint.setText(hint)
        self.fill_table(result)

    def fill_table(self, result: OptimizationResult) -> None:
        trials = result.trials
        with_gpu = any(t.measurement.peak_vram for t in trials)
        self.table.setHorizontalHeaderItem(
            4, QTableWidgetItem(self.tr("Mémoire (vive / graphique)") if with_gpu else self.tr("Mémoire vive"))
        )
        self.table.setRowCount(len(trials))
        for row, trial in enumerate(trials):
            m = trial.measurement
            if not m.stable:
                outcome, why = self.tr("écarté : {0}").replace("{0}", failure_short_fr(m)), m.failure_fr
            elif trial.control:
                outcome, why = self.tr("mesuré à nouveau"), self.tr(
                    "Mesuré une deuxième fois à la fin, pour comparer dans les mêmes conditions."
                )
            elif trial.point == result.best_point:
                outcome, why = self.tr("retenu"), ""
            else:
                outcome, why = "", ""
            words = result.words_per_second(m.gen_tps)
            change = describe_change_fr(trial.point, result.start_point, result.n_layers)
            cells = (
                (str(trial.number), ""),
                (change, describe_point_fr(trial.point, result.n_layers)),
                (str(round(words)) if words else "—", ""),
                (seconds_fr(m.ttft_s) if m.ttft_s is not None else "—", ""),
                (memory_short_fr(m) or "—", ""),
                (outcome, why),
            )
            for column, (text, tip) in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip or text)
                if column in (0, 2, 3, 4):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()

    def _toggle_details(self, shown: bool) -> None:
        self.table.setVisible(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.toggle.setText(
            self.tr("Masquer les détails des essais") if shown else self.tr("Afficher les détails des essais")
        )
        if self.chart is not None:
            self.chart.setVisible(not shown)  # room for the table in a window of ordinary size

