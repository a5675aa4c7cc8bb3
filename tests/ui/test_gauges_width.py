"""The gauges window fits a small laptop screen with Windows' widget style too (seen under wine: 2 119 px
wide, and 783 px high over a 780-pixel work area).

Windows' style ("windowsvista", "windows11") asks about 370 px for any QProgressBar; six tiles side by side
made the window wider than a 1280-pixel screen (a 1920×1080 laptop at 150 %). The style is simulated here.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle

from tray_app.monitoring import Monitor, ReplayMachine

GIB = 1024**3


class WideProgressBars(QProxyStyle):
    def sizeFromContents(self, kind, option, size, widget=None):
        result = super().sizeFromContents(kind, option, size, widget)
        if kind == QStyle.ContentsType.CT_ProgressBar:
            return QSize(max(result.width(), 371), result.height())
        return result


def test_gauges_fit_1280_pixels_with_windows_wide_progress_bars(qtbot):
    from tray_app.ui.gauges_window import GaugesWindow

    app = QApplication.instance()
    old_style = app.style().name()
    app.setStyle(WideProgressBars(old_style))
    try:
        recording = {"format": "desktop-mate-nvml-recording", "version": 1, "devices": [],
                     "samples": [{"t": 0.0, "devices": [], "cpu_percent": 5.0, "ram_total": 16 * GIB,
                                  "ram_used": 8 * GIB}]}
        window = GaugesWindow(Monitor(ReplayMachine(recording, start_at=0)).history)
        qtbot.addWidget(window)
        assert window.minimumSizeHint().width() <= 1280  # before the first tick: every tile is shown
        window.show()
        qtbot.waitExposed(window)
        assert window.width() <= 1280
        room = window.screen().availableGeometry()  # and it opens within the screen, above the taskbar
        assert window.height() <= room.height()
        assert window.width() <= max(room.width(), window.minimumSizeHint().width())
    finally:
        app.setStyle(old_style)
