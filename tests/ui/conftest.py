"""Every UI test leaves the screen as it found it: a window still up after a test is a window the program
would leave behind too (a question asked after « Quitter », a message box outliving its window), and the
next test would see it (the UI report lists every window on screen)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QApplication


@pytest.fixture(autouse=True)
def no_window_left_behind() -> Iterator[None]:
    yield  # torn down after qtbot has closed the widgets the test gave it
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    left = [f"{type(w).__name__} « {w.windowTitle()} »" for w in app.topLevelWidgets() if w.isVisible()]
    for widget in app.topLevelWidgets():
        widget.close()  # the next test starts with an empty screen either way
    if left:
        pytest.fail(f"windows left on screen after the test: {', '.join(left)}")
