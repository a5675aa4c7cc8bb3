"""What the tray shows on screen, written to a file for the Windows check under wine.

Off unless the environment variable ``DESKTOP_MATE_UI_REPORT`` names a file (only
``installer/check_under_wine.sh`` sets it). Then, four times a second, when something changed, the
tray rewrites that file with JSON: its process id, the status line, and for every visible top-level
window (menus included) its title and the accessible tree Qt gives screen readers: each element's
name, role and place on the screen.

It reports and does nothing else: the check acts with real input events (clicks and keys on the X
display) and reads window titles and notifications from outside with Win32 calls; this file adds
only what is drawn by Qt and so invisible to Win32: the text and place of each menu entry or button.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QAccessible, QAccessibleInterface
from PySide6.QtWidgets import QApplication, QMenu, QWidget

log = logging.getLogger(__name__)

UI_REPORT_ENV = "DESKTOP_MATE_UI_REPORT"
MAX_NODES = 400  # per window: the gauges' plots have many parts, none of which the check needs
MAX_DEPTH = 10


def _rect(r: Any) -> list[int]:
    return [r.x(), r.y(), r.width(), r.height()]


def accessible_tree(widget: QWidget) -> list[dict[str, Any]]:
    """The visible elements under ``widget``, flattened in reading order."""
    nodes: list[dict[str, Any]] = []

    def walk(iface: QAccessibleInterface | None, depth: int) -> None:
        if iface is None or not iface.isValid() or len(nodes) >= MAX_NODES or depth > MAX_DEPTH:
            return
        state = iface.state()
        if depth > 0 and not state.invisible:
            name = iface.text(QAccessible.Text.Name)
            role = iface.role().name
            if name or role in ("CheckBox", "RadioButton", "PushButton", "PageTab", "MenuItem", "ComboBox"):
                nodes.append({
                    "name": name,
                    "role": role,
                    "rect": _rect(iface.rect()),
                    "enabled": not state.disabled,
                    "checked": bool(state.checked),
                })
        for i in range(iface.childCount()):
            walk(iface.child(i), depth + 1)

    walk(QAccessible.queryAccessibleInterface(widget), 0)
    return nodes


class UiReport(QObject):
    """Writes the report every 250 ms while it changes. ``status`` gives the tray's status line."""

    def __init__(self, path: Path, status: Callable[[], str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self._status = status
        self._last = ""
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.write)
        self._timer.start()
        self.write()

    def snapshot(self) -> dict[str, Any]:
        windows = []
        for widget in QApplication.topLevelWidgets():
            if not widget.isVisible():
                continue
            windows.append({
                "title": widget.windowTitle(),
                "kind": "menu" if isinstance(widget, QMenu) else type(widget).__name__,
                "rect": _rect(widget.frameGeometry()),
                "elements": accessible_tree(widget),
            })
        return {"pid": os.getpid(), "status": self._status(), "windows": windows}

    def write(self) -> None:
        try:
            text = json.dumps(self.snapshot(), ensure_ascii=False)
            if text == self._last:
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
            self._last = text
        except Exception:  # a report that cannot be written must never disturb the tray
            log.exception("UI report not written")
            self._timer.stop()


def start_ui_report(status: Callable[[], str]) -> UiReport | None:
    path = os.environ.get(UI_REPORT_ENV)
    return UiReport(Path(path), status) if path else None
