"""The wizard's two charts (pyqtgraph): the speed of each configuration tried, and before/after.

Imported only when the wizard opens. Speeds are shown in words per second (see
:mod:`tray_app.benchmark.report_fr`); a configuration that was left out (crash, out of memory) is a
short red bar at the bottom, the best one so far is green.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QWidget

from tray_app.benchmark.objective import Thresholds, select_best
from tray_app.benchmark.search import Trial

BLUE = "#3b6fd8"
GREEN = "#2e9d4f"
GREY = "#8a939e"
RED = "#c62828"


def _tr(text: str) -> str:
    return QCoreApplication.translate("OptimizeCharts", text)


class TrialsChart(pg.PlotWidget):
    """One bar per configuration tried, in words per second; call :meth:`show_trials` as they come."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background="w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setLabel("left", _tr("mots/seconde"))
        self.setLabel("bottom", _tr("essai"))
        self.showGrid(y=True, alpha=0.25)
        self.setMinimumHeight(190)
        self._bars: pg.BarGraphItem | None = None
        self.show_trials((), 0.65)

    def show_trials(self, trials: tuple[Trial, ...], words_per_token: float) -> None:
        if self._bars is not None:
            self.removeItem(self._bars)
            self._bars = None
        trials = tuple(t for t in trials if not t.control)
        n = max(len(trials), 5)
        self.setXRange(0.4, n + 0.6, padding=0)
        speeds = [(t.measurement.gen_tps or 0.0) * words_per_token for t in trials]
        top = max(speeds, default=0.0)
        self.setYRange(0, max(top * 1.15, 1.0), padding=0)
        self.getAxis("bottom").setTicks([[(i, str(i)) for i in range(1, n + 1)]])
        if not trials:
            return
        best = select_best([t.measurement for t in trials], Thresholds())
        heights, brushes = [], []
        for i, (trial, speed) in enumerate(zip(trials, speeds)):
            if not trial.measurement.stable:
                heights.append(max(top, 1.0) * 0.03)
                brushes.append(pg.mkBrush(RED))
            else:
                heights.append(speed)
                brushes.append(pg.mkBrush(GREEN if i == best else BLUE))
        self._bars = pg.BarGraphItem(
            x=np.arange(1, len(trials) + 1),
            height=heights,
            width=0.7,
            brushes=brushes,
            pens=[pg.mkPen(None)] * len(trials),
        )
        self.addItem(self._bars)


class BeforeAfterChart(pg.PlotWidget):
    """Two bars, « Avant » and « Après », with their value written above."""

    def __init__(self, before: float, after: float, parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background="w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setLabel("left", _tr("mots/seconde"))
        self.setMinimumHeight(150)
        top = max(before, after, 1.0)
        self.setXRange(0.3, 2.7, padding=0)
        self.setYRange(0, top * 1.25, padding=0)
        self.getAxis("bottom").setTicks([[(1, _tr("Avant")), (2, _tr("Après"))]])
        colour = GREEN if after > before else GREY
        bars = pg.BarGraphItem(
            x=[1, 2], height=[before, after], width=0.55,
            brushes=[pg.mkBrush(GREY), pg.mkBrush(colour)], pens=[pg.mkPen(None)] * 2,
        )
        self.addItem(bars)
        font = QFont()
        font.setBold(True)
        for x, value in ((1, before), (2, after)):
            label = pg.TextItem(str(round(value)), color="#30363d", anchor=(0.5, 1.0))
            label.setFont(font)
            label.setPos(x, value + top * 0.03)
            self.addItem(label)
        self.getAxis("bottom").setStyle(tickTextOffset=6)
        self.getAxis("left").setStyle(showValues=True)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
