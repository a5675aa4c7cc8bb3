"""« Jauges » : graphics memory (the model's share and the other programs'), load, temperature, CPU, RAM,
speed, and their history over 1 min, 10 min or 1 h.

The window only reads what the monitor publishes (:class:`~tray_app.monitoring.MonitorTick` through
:meth:`GaugesWindow.show_tick`, and the shared :class:`~tray_app.monitoring.history.SampleHistory`); it
never calls NVML or psutil. pyqtgraph is imported when the window is created, not when this module is.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tray_app.format_fr import decimal_fr, gib_fr, percent_fr, speed_fr
from tray_app.monitoring import AlertSettings, AlertState, MonitorSample, MonitorTick, VramLevel
from tray_app.monitoring.history import SampleHistory
from tray_app.monitoring.throttle_fr import SW_POWER_CAP, THERMAL_MASK, throttle_reasons_fr
from tray_app.ui.vram_gauge import ATTENTION_COLOR, CRITIQUE_COLOR, VramGauge

WINDOWS = ((60, "1 min"), (600, "10 min"), (3600, "1 h"))
NO_VALUE = "—"
OK_COLOR = "#2e7d32"


class _Tile(QFrame):
    """One small gauge: a title, a large value, an optional bar (0-100) and a detail line."""

    def __init__(self, title: str, *, with_bar: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(2)
        self.title = QLabel(title)
        self.title.setStyleSheet("color: #555555;")
        self.value = QLabel(NO_VALUE)
        font = self.value.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.value.setFont(font)
        self.bar: QProgressBar | None = None
        layout.addWidget(self.title)
        layout.addWidget(self.value)
        if with_bar:
            self.bar = QProgressBar()
            self.bar.setRange(0, 100)
            self.bar.setTextVisible(False)
            self.bar.setFixedHeight(8)
            # Windows' style asks ~370 px for any progress bar: six tiles made the window 2 100 px wide.
            self.bar.setMinimumWidth(40)
            layout.addWidget(self.bar)
        self.detail = QLabel("")
        self.detail.setStyleSheet("color: #555555;")
        self.detail.setWordWrap(True)
        layout.addWidget(self.detail)

    def set(self, value: str, percent: float | None = None, detail: str = "") -> None:
        self.value.setText(value)
        if self.bar is not None:
            self.bar.setValue(0 if percent is None else max(0, min(100, round(percent))))
        self.detail.setText(detail)


class GaugesWindow(QWidget):
    """The gauges and their history.

    Signals:
        record_requested(): the user clicked « Enregistrer 5 minutes de mesures ».
        closed(): the window was closed (the tray may drop its reference).
    """

    record_requested = Signal()
    closed = Signal()

    def __init__(self, history: SampleHistory, settings: AlertSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from tray_app.ui.history_plots import HistoryPlots  # pyqtgraph: only once the window opens

        self.settings = settings or AlertSettings()
        self.latest: MonitorTick | None = None
        self._shown_total: int | None = -1  # VRAM total the plots are scaled for (-1: not yet)
        self.setWindowTitle(self.tr("Jauges — Desktop-Mate"))
        self.resize(960, 760)
        screen = self.screen()
        if screen is not None:  # a 1920×1080 laptop at 150 % leaves ~1280×680 above the taskbar
            room = screen.availableGeometry()
            self.resize(min(960, room.width() - 16), min(760, room.height() - 40))  # title bar, borders
        root = QVBoxLayout(self)

        # -- graphics memory --------------------------------------------------------------------
        self.gpu_title = QLabel(self.tr("Mémoire de la carte graphique"))
        title_font = self.gpu_title.font()
        title_font.setPointSizeF(title_font.pointSizeF() * 1.15)
        title_font.setBold(True)
        self.gpu_title.setFont(title_font)
        self.vram_text = QLabel(NO_VALUE)
        big = self.vram_text.font()
        big.setPointSizeF(big.pointSizeF() * 1.9)
        big.setBold(True)
        self.vram_text.setFont(big)
        self.vram_gauge = VramGauge()
        self.vram_gauge.set_thresholds(self.settings.warning_fraction, self.settings.critical_fraction)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.status_line = QLabel("")
        self.status_line.setWordWrap(True)
        self.no_gpu_text = QLabel("")
        self.no_gpu_text.setWordWrap(True)
        self.no_gpu_text.hide()
        for widget in (self.gpu_title, self.vram_text, self.vram_gauge, self.legend, self.status_line,
                       self.no_gpu_text):
            root.addWidget(widget)

        # -- small gauges ---------------------------------------------------------------------
        self._tiles = tiles = QGridLayout()
        tiles.setSpacing(6)
        self.gpu_load = _Tile(self.tr("Calcul de la carte graphique"))
        self.temperature = _Tile(self.tr("Température de la carte"))
        self.power = _Tile(self.tr("Consommation de la carte"))
        self.cpu = _Tile(self.tr("Processeur"))
        self.ram = _Tile(self.tr("Mémoire de l'ordinateur"))
        self.speed = _Tile(self.tr("Vitesse du modèle"), with_bar=False)
        self.speed.setToolTip(self.tr("Un jeton est un morceau de mot : 20 jetons par seconde, c'est "
                                      "plus vite qu'on ne lit."))
        self.gpu_tiles = (self.gpu_load, self.temperature, self.power)
        for i, tile in enumerate((*self.gpu_tiles, self.cpu, self.ram, self.speed)):
            tiles.addWidget(tile, 0, i)
            tiles.setColumnStretch(i, 1)
        root.addLayout(tiles)

        # -- history --------------------------------------------------------------------------
        bar = QHBoxLayout()
        bar.addWidget(QLabel(self.tr("Historique :")))
        self.window_buttons = QButtonGroup(self)
        for seconds, label in WINDOWS:
            button = QPushButton(self.tr(label))
            button.setCheckable(True)
            button.setChecked(seconds == 600)
            self.window_buttons.addButton(button, seconds)
            bar.addWidget(button)
        self.window_buttons.idClicked.connect(self.set_window)
        bar.addStretch(1)
        self.record_button = QPushButton(self.tr("Enregistrer 5 minutes de mesures"))
        self.record_button.setToolTip(self.tr(
            "Garde les mesures des 5 prochaines minutes dans un fichier, à joindre à un signalement. "
            "Le fichier ne contient que ces mesures."))
        self.record_button.clicked.connect(self.record_requested.emit)
        bar.addWidget(self.record_button)
        root.addLayout(bar)
        self.plots = HistoryPlots(history)
        root.addWidget(self.plots, 1)

    # -- input ----------------------------------------------------------------------------------
    def show_tick(self, tick: MonitorTick) -> None:
        """Connect the worker's ``tick_ready`` here. Updates only while the window is visible."""
        self.latest = tick
        if self.isVisible():
            self._render(tick)

    def set_settings(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._apply_thresholds()

    def set_window(self, seconds: int) -> None:
        self.plots.set_window(seconds)
        button = self.window_buttons.button(seconds)
        if button is not None:
            button.setChecked(True)

    def set_recording(self, seconds_left: int) -> None:
        """Connect the worker's ``recording_progress`` here."""
        if seconds_left > 0:
            minutes, seconds = divmod(seconds_left, 60)
            left = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
            self.record_button.setText(self.tr("Enregistrement en cours… encore {0}").replace("{0}", left))
            self.record_button.setEnabled(False)
        else:
            self.record_button.setText(self.tr("Enregistrer 5 minutes de mesures"))
            self.record_button.setEnabled(True)

    # -- Qt events --------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.latest is not None:
            self._render(self.latest)
            self.plots.refresh(force=True)

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)
        self.closed.emit()

    # -- drawing ----------------------------------------------------------------------------------
    def _apply_thresholds(self) -> None:
        s = self.settings
        self.vram_gauge.set_thresholds(s.warning_fraction, s.critical_fraction)
        total = self._shown_total
        if total == -1:  # nothing shown yet
            return
        for column in range(len(self.gpu_tiles)):  # hidden GPU tiles leave no empty columns
            self._tiles.setColumnStretch(column, 0 if total is None else 1)
        self.plots.set_gpu(None if total is None else total / 1024**2, s.warning_fraction,
                           s.critical_fraction, s.hot_celsius)

    def _render(self, tick: MonitorTick) -> None:
        sample, state = tick.sample, tick.state
        if sample.vram_total != self._shown_total:
            self._shown_total = sample.vram_total
            self._apply_thresholds()
        if sample.gpu is None:
            self._render_no_gpu(sample)
        else:
            self._render_gpu(sample, state)
        self._render_common(sample)
        self.plots.refresh()  # throttled by the plots themselves

    def _render_gpu(self, sample: MonitorSample, state: AlertState) -> None:
        gpu = sample.gpu
        if gpu is None:
            return
        self.no_gpu_text.hide()
        for widget in (self.vram_text, self.vram_gauge, self.legend, self.status_line, *self.gpu_tiles):
            widget.show()
        self.gpu_title.setText(self.tr("Mémoire de la carte graphique — {0}").replace("{0}", gpu.name))
        fraction = gpu.used_fraction
        if gpu.memory_total is None or gpu.memory_used is None or fraction is None:
            # the driver does not say: no gauge rather than an empty one that reads « 0 % »
            for widget in (self.vram_gauge, self.legend, self.status_line):
                widget.hide()
            self.vram_text.setText(self.tr("Mémoire utilisée : inconnue (le pilote ne la donne pas)"))
        else:
            self.vram_text.setText(
                self.tr("{0} utilisés sur {1} ({2})")
                .replace("{0}", gib_fr(gpu.memory_used))
                .replace("{1}", gib_fr(gpu.memory_total))
                .replace("{2}", percent_fr(fraction))
            )
            self.vram_gauge.set_values(gpu.memory_total, gpu.memory_used, sample.model_vram, state.vram_level)
        self.legend.setText(self._legend_html(sample))
        self.legend.setToolTip(
            self.tr("Windows ne donne pas la mémoire de chaque programme : la part du modèle est estimée "
                    "d'après la mémoire utilisée juste avant son chargement et juste après.")
            if sample.model_vram_estimated else ""
        )
        text, color = self._status_sentence(state)
        if state.protection_requested:
            text += " " + self.tr("Protection : le modèle sera retiré de la mémoire dès qu'il aura fini de "
                                  "répondre.")
        self.status_line.setText(text)
        self.status_line.setStyleSheet(f"color: {color}; font-weight: bold;")
        temp = gpu.temperature_c
        thermal = throttle_reasons_fr((gpu.throttle_reasons or 0) & THERMAL_MASK)
        other_reasons = throttle_reasons_fr((gpu.throttle_reasons or 0) & ~THERMAL_MASK)
        self.gpu_load.set(NO_VALUE if gpu.utilization_percent is None else f"{gpu.utilization_percent} %",
                          gpu.utilization_percent)
        self.temperature.set(
            NO_VALUE if temp is None else f"{temp} °C",
            None if temp is None else (temp - 30) * 100 / 70,
            thermal[0] if thermal else "",
        )
        if gpu.power_w is None:
            self.power.set(NO_VALUE)
        else:
            limit = gpu.power_limit_w
            at_limit = bool((gpu.throttle_reasons or 0) & SW_POWER_CAP)
            if limit:
                detail = (self.tr("au maximum ({0} W)") if at_limit else self.tr("sur {0} W au maximum")).replace(
                    "{0}", str(round(limit)))
            else:
                detail = other_reasons[0] if other_reasons else ""
            self.power.set(f"{round(gpu.power_w)} W", 100 * gpu.power_w / limit if limit else None, detail)

    def _legend_html(self, sample: MonitorSample) -> str:
        gpu = sample.gpu
        if gpu is None or gpu.memory_total is None or gpu.memory_used is None:
            return ""
        free = max(0, gpu.memory_total - gpu.memory_used)
        parts = []
        if sample.model_vram is not None:
            model = gib_fr(sample.model_vram)
            if sample.model_vram_estimated:
                model = self.tr("{0} (estimé)").replace("{0}", model)
            parts.append(_swatch("#3b6fd8") + self.tr("Modèle : {0}").replace("{0}", model))
            parts.append(_swatch("#8f99a6") + self.tr("Autres programmes (avatar, navigateur…) : {0}")
                         .replace("{0}", gib_fr(sample.other_vram or 0)))
        elif sample.model_loaded:
            parts.append(_swatch("#8f99a6") + self.tr("Utilisée (modèle et autres programmes) : {0}")
                         .replace("{0}", gib_fr(gpu.memory_used)))
        else:
            parts.append(_swatch("#8f99a6") + self.tr("Autres programmes (avatar, navigateur…) : {0}")
                         .replace("{0}", gib_fr(gpu.memory_used)))
        parts.append(_swatch("#e7eaee") + self.tr("Libre : {0}").replace("{0}", gib_fr(free)))
        return "&nbsp;&nbsp;&nbsp;".join(parts)

    def _status_sentence(self, state: AlertState) -> tuple[str, str]:
        if state.overflow_suspected:
            return (self.tr("Le modèle ralentit : la mémoire graphique déborde. Fermez les jeux, vidéos ou "
                            "onglets que vous n'utilisez pas."), CRITIQUE_COLOR.name())
        if state.vram_level is VramLevel.CRITIQUE:
            return (self.tr("Critique : la mémoire graphique est pleine. Fermez les jeux, vidéos ou onglets "
                            "que vous n'utilisez pas."), CRITIQUE_COLOR.name())
        if state.vram_level is VramLevel.ATTENTION:
            return (self.tr("Attention : la mémoire graphique est presque pleine. Évitez d'ouvrir d'autres "
                            "jeux ou vidéos."), ATTENTION_COLOR.name())
        if state.gpu_hot:
            return (self.tr("La carte graphique est très chaude : dégagez les aérations de l'ordinateur."),
                    ATTENTION_COLOR.name())
        return self.tr("Tout va bien : il reste de la place pour le modèle et l'avatar."), OK_COLOR

    def _render_no_gpu(self, sample: MonitorSample) -> None:
        for widget in (self.vram_text, self.vram_gauge, self.legend, self.status_line, *self.gpu_tiles):
            widget.hide()
        self.gpu_title.setText(self.tr("Pas de carte graphique NVIDIA"))
        reason = sample.gpu_unavailable_reason
        detail = " " + reason[reason.index("("):] if "(" in reason else ""  # « (bibliothèque NVML absente) »
        self.no_gpu_text.setText(
            self.tr("Aucune carte graphique NVIDIA n'a été trouvée{0} : le modèle fonctionne avec le "
                    "processeur et la mémoire de l'ordinateur, plus lentement, sans rien à régler. Leurs "
                    "jauges sont ci-dessous. Si votre ordinateur a une carte NVIDIA, mettez à jour son pilote "
                    "(site de NVIDIA), puis relancez Desktop-Mate.").replace("{0}", detail)
        )
        self.no_gpu_text.show()

    def _render_common(self, sample: MonitorSample) -> None:
        self.cpu.set(percent_fr(sample.cpu_percent / 100), sample.cpu_percent)
        self.ram.set(
            self.tr("{0} sur {1}").replace("{0}", gib_fr(sample.ram_used).removesuffix(" Go"))
            .replace("{1}", gib_fr(sample.ram_total)),
            sample.ram_fraction * 100,
            percent_fr(sample.ram_fraction),
        )
        host = sample.host
        if host is None or not host.model_loaded:
            self.speed.set(NO_VALUE, detail=self.tr("aucun modèle chargé"))
        elif host.tokens_per_second is None:
            self.speed.set(NO_VALUE, detail=self.tr("en attente d'une question"))
        else:
            usual = host.baseline_tokens_per_second
            self.speed.set(
                speed_fr(host.tokens_per_second),
                detail=self.tr("d'habitude : {0}").replace("{0}", decimal_fr(usual, 0 if usual >= 10 else 1))
                if usual else "",
            )


def _swatch(color: str) -> str:
    return f'<span style="color:{color}; font-size:large;">■</span>&nbsp;'

