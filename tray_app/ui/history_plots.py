"""History plots of the gauges window (pyqtgraph): VRAM, GPU load, temperature, CPU, RAM, tokens/s.

Imported only when the gauges window is first opened: pyqtgraph and numpy cost start-up time and
memory that the tray does not need. The columns of :class:`~tray_app.monitoring.history.SampleHistory`
are turned into numpy arrays without copying; NaN values (no reading) are drawn as gaps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import QGridLayout, QWidget

from tray_app.format_fr import GIB, MIB
from tray_app.monitoring.history import SampleHistory

MIB_PER_GIB = GIB / MIB
CURVE_PEN = pg.mkPen("#3b6fd8", width=2)
MODEL_PEN = pg.mkPen("#7b4fc9", width=2)
TOTAL_PEN = pg.mkPen("#5f6873", width=1)
ATTENTION_PEN = pg.mkPen("#d97a00", width=1, style=Qt.PenStyle.DashLine)
CRITIQUE_PEN = pg.mkPen("#c62828", width=1, style=Qt.PenStyle.DashLine)

# window (seconds) → (major tick spacing, minor tick spacing), in seconds
TICKS = {60: (15, 5), 600: (120, 60), 3600: (600, 300)}
# window → seconds between two redraws: a few pixels of a ~450 px plot at most (1 h: 8 s a pixel)
REDRAW_EVERY_S = {60: 1.0, 600: 4.0, 3600: 8.0}


def _tr(text: str) -> str:
    return QCoreApplication.translate("HistoryPlots", text)


class AgoAxis(pg.AxisItem):
    """A time axis in seconds before now, labelled « maintenant », « −30 s », « −5 min »."""

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        labels = []
        for v in values:
            seconds = round(-v)
            if seconds <= 0:
                labels.append(_tr("maintenant"))
            elif seconds < 120 and seconds % 60:
                labels.append(f"−{seconds} s")
            else:
                labels.append(f"−{round(seconds / 60)} min")
        return labels


@dataclass
class _Plot:
    widget: pg.PlotWidget
    curve: pg.PlotDataItem
    column: str
    scale: float = 1.0  # divides the stored value (MiB → Go)
    gpu_only: bool = False


class HistoryPlots(QWidget):
    """Six small plots in a grid; :meth:`refresh` redraws them from the history for the chosen window."""

    def __init__(self, history: SampleHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.window_s = 600
        self.has_gpu = True
        self._drawn_at = -1e9  # time.monotonic() of the last redraw
        self._plots: list[_Plot] = []
        self._grid = grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        specs = (
            (_tr("Mémoire graphique (Go) — en violet : le modèle"), "vram_used_mib", MIB_PER_GIB, True),
            (_tr("Calcul de la carte graphique (%)"), "gpu_util", 1.0, True),
            (_tr("Température de la carte (°C)"), "temperature_c", 1.0, True),
            (_tr("Processeur (%)"), "cpu_percent", 1.0, False),
            (_tr("Mémoire de l'ordinateur (%)"), "ram_percent", 1.0, False),
            (_tr("Vitesse du modèle (jetons/s)"), "tokens_per_s", 1.0, False),
        )
        for i, (title, column, scale, gpu_only) in enumerate(specs):
            widget = self._make_plot(title)
            curve = widget.plot(pen=CURVE_PEN, connect="finite")
            self._plots.append(_Plot(widget, curve, column, scale, gpu_only))
            grid.addWidget(widget, i // 2, i % 2)
        vram = self._plots[0].widget
        self._model_curve = vram.plot(pen=MODEL_PEN, connect="finite", name=_tr("dont le modèle"))
        self._total_line = pg.InfiniteLine(angle=0, pen=TOTAL_PEN, movable=False)
        self._attention_line = pg.InfiniteLine(angle=0, pen=ATTENTION_PEN, movable=False)
        self._critique_line = pg.InfiniteLine(angle=0, pen=CRITIQUE_PEN, movable=False)
        for line in (self._total_line, self._attention_line, self._critique_line):
            vram.addItem(line)
        self._hot_line = pg.InfiniteLine(angle=0, pen=CRITIQUE_PEN, movable=False)
        self._plots[2].widget.addItem(self._hot_line)
        for plot in self._plots[1:5]:
            if plot.column != "temperature_c":
                plot.widget.setYRange(0, 100, padding=0.02)
        self.set_window(self.window_s)

    def _make_plot(self, title: str) -> pg.PlotWidget:
        widget = pg.PlotWidget(background="w", axisItems={"bottom": AgoAxis("bottom")})
        widget.setTitle(title, color="#222222", size="10pt")
        widget.setMenuEnabled(False)
        widget.setMouseEnabled(x=False, y=False)
        widget.hideButtons()
        widget.setMinimumHeight(130)
        item = widget.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen("#5f6873")
            axis.setTextPen("#222222")
        return widget

    def set_window(self, seconds: int) -> None:
        """1 min, 10 min or 1 h of history (60, 600, 3600)."""
        self.window_s = seconds
        major, minor = TICKS.get(seconds, (seconds / 4, seconds / 12))
        for plot in self._plots:
            plot.widget.setXRange(-seconds, 0, padding=0.01)
            plot.widget.getPlotItem().getAxis("bottom").setTickSpacing(major, minor)
        self.refresh(force=True)

    def set_gpu(self, total_mib: float | None, warning_fraction: float, critical_fraction: float,
                hot_celsius: float) -> None:
        """Show the GPU plots (with the total and thresholds drawn), or hide them without a GPU."""
        has_gpu = total_mib is not None
        if has_gpu != self.has_gpu:
            self.has_gpu = has_gpu
            self._relayout()
        if total_mib is None:
            self.refresh(force=True)
            return
        total = total_mib / MIB_PER_GIB
        self._total_line.setValue(total)
        self._attention_line.setValue(total * warning_fraction)
        self._critique_line.setValue(total * critical_fraction)
        self._plots[0].widget.setYRange(0, total * 1.02, padding=0)
        self._hot_line.setValue(hot_celsius)
        self._plots[2].widget.setYRange(30, max(95.0, hot_celsius + 5), padding=0)
        self.refresh(force=True)

    def _relayout(self) -> None:
        """The visible plots, in order, two per row (no hole where the GPU plots were)."""
        for plot in self._plots:
            self._grid.removeWidget(plot.widget)
        visible = [p for p in self._plots if self.has_gpu or not p.gpu_only]
        for plot in self._plots:
            plot.widget.setVisible(plot in visible)
        for i, plot in enumerate(visible):
            self._grid.addWidget(plot.widget, i // 2, i % 2)

    def refresh(self, *, force: bool = False) -> None:
        """Redraw from the history; without ``force``, at most every ``REDRAW_EVERY_S[window]`` seconds
        (redrawing seven curves of 3600 points each second costs a few % of a core for nothing)."""
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_EVERY_S.get(self.window_s, 1.0) - 0.05:
            return
        self._drawn_at = now
        columns = self.history.window(self.window_s)
        at = np.frombuffer(columns["at"], dtype=np.float64)
        if not len(at):
            for plot in self._plots:
                plot.curve.setData([], [])
            self._model_curve.setData([], [])
            return
        x = at - at[-1]
        for plot in self._plots:
            if plot.gpu_only and not self.has_gpu:
                continue
            y = np.frombuffer(columns[plot.column], dtype=np.float32)
            plot.curve.setData(x, y / plot.scale if plot.scale != 1.0 else y, connect="finite")
        model = np.frombuffer(columns["model_vram_mib"], dtype=np.float32) / MIB_PER_GIB
        self._model_curve.setData(x, model, connect="finite")
        speed = np.frombuffer(columns["tokens_per_s"], dtype=np.float32)
        finite = speed[np.isfinite(speed)]
        top = float(finite.max()) if len(finite) else 10.0
        self._plots[5].widget.setYRange(0, max(10.0, top * 1.15), padding=0)
