"""The large graphics-memory gauge: the model's share, the other programs', the free part, the thresholds.

Painted with QPainter (no pyqtgraph), so it is cheap and shows at once. Colours are also told in words
by the legend under it (:meth:`VramGauge.legend_text`), never by colour alone.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from tray_app.monitoring import VramLevel

MODEL_COLOR = QColor("#3b6fd8")
OTHERS_COLOR = QColor("#8f99a6")
FREE_COLOR = QColor("#e7eaee")
ATTENTION_COLOR = QColor("#d97a00")
CRITIQUE_COLOR = QColor("#c62828")
FRAME_COLOR = QColor("#5f6873")


class VramGauge(QWidget):
    """A horizontal bar: [model | other programs | free], with « attention » and « critique » marks."""

    BAR_HEIGHT = 34

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.total = 0
        self.used = 0
        self.model: int | None = None
        self.warning_fraction = 0.90
        self.critical_fraction = 0.97
        self.level = VramLevel.NORMAL
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(self.tr("Mémoire de la carte graphique"))

    def sizeHint(self) -> QSize:
        return QSize(520, self.minimumSizeHint().height())

    def minimumSizeHint(self) -> QSize:
        fm = QFontMetrics(self._mark_font())
        return QSize(300, 2 * (fm.height() + 6) + self.BAR_HEIGHT)

    def set_values(self, total: int, used: int, model: int | None, level: VramLevel) -> None:
        self.total, self.used, self.model, self.level = total, used, model, level
        self.setToolTip(self.tr("{0} % utilisés").replace("{0}", str(round(100 * used / total)) if total else "0"))
        self.update()

    def set_thresholds(self, warning_fraction: float, critical_fraction: float) -> None:
        self.warning_fraction, self.critical_fraction = warning_fraction, critical_fraction
        self.update()

    def _mark_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        return font

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        fm = QFontMetrics(self._mark_font())
        painter.setFont(self._mark_font())
        top = fm.height() + 6
        bar = QRectF(1, top, self.width() - 2, self.BAR_HEIGHT)
        painter.fillRect(bar, FREE_COLOR)
        if self.total > 0:
            used = min(self.used, self.total)
            model = min(self.model or 0, used)
            x = bar.left()
            for amount, color in ((model, MODEL_COLOR), (used - model, OTHERS_COLOR)):
                width = bar.width() * amount / self.total
                painter.fillRect(QRectF(x, bar.top(), width, bar.height()), color)
                x += width
        frame = {VramLevel.ATTENTION: (ATTENTION_COLOR, 3), VramLevel.CRITIQUE: (CRITIQUE_COLOR, 3)}
        color, width = frame.get(self.level, (FRAME_COLOR, 1))
        painter.setPen(QPen(color, width))
        painter.drawRect(bar)
        self._draw_mark(painter, fm, bar, self.warning_fraction, ATTENTION_COLOR, self.tr("attention"), above=True)
        self._draw_mark(painter, fm, bar, self.critical_fraction, CRITIQUE_COLOR, self.tr("critique"), above=False)
        painter.end()

    def _draw_mark(self, painter: QPainter, fm: QFontMetrics, bar: QRectF, fraction: float, color: QColor,
                   label: str, *, above: bool) -> None:
        """A vertical line through the bar; its label above (ending at the line) or below (starting at
        the line, moved left when the bar ends first), so that two close thresholds never overlap."""
        x = bar.left() + bar.width() * fraction
        tick = fm.height() // 2
        painter.setPen(QPen(color, 3))
        painter.drawLine(round(x), round(bar.top() - (tick if above else 0)), round(x),
                         round(bar.bottom() + (0 if above else tick)))
        text = f"{label} {round(fraction * 100)} %"
        width = fm.horizontalAdvance(text) + 2
        tx = x - width - 4 if above else x + 4
        tx = max(bar.left(), min(tx, bar.right() - width))
        ty = 0 if above else bar.bottom() + 4
        painter.setPen(color.darker(115))
        painter.drawText(QRectF(tx, ty, width, fm.height() + 2), Qt.AlignmentFlag.AlignLeft, text)
