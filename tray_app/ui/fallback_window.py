"""A small window with the tray's actions, for desktops without a notification area."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from tray_app.ui.icons import app_icon
from tray_app.ui.menu_entries import MenuEntry


class FallbackWindow(QWidget):
    """Shows the status lines and one button per action of the menu, with the reason it exists.

    Signals:
        closed(): the user closed the window (the program then stops).
    """

    closed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(self.tr("Desktop-Mate"))
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(380)
        self._layout = QVBoxLayout(self)
        why = QLabel(
            self.tr(
                "Votre bureau n'a pas de zone de notification (les petites icônes près de l'horloge) : "
                "Desktop-Mate s'affiche donc dans cette fenêtre. Fermer la fenêtre arrête le programme."
            )
        )
        why.setWordWrap(True)
        self._layout.addWidget(why)
        self._dynamic: list[QWidget] = []

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)
        self.closed.emit()

    def set_entries(self, entries: list[MenuEntry]) -> None:
        for old in self._dynamic:
            self._layout.removeWidget(old)
            old.deleteLater()
        self._dynamic = []
        for entry in _flatten(entries):
            widget: QWidget
            if entry.on_click is None:
                label = QLabel(entry.text)
                label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                widget = label
            else:
                button = QPushButton(entry.text.replace("&", "&&"))
                button.setEnabled(entry.enabled)
                button.clicked.connect(lambda _=False, f=entry.on_click: f())
                widget = button
            self._layout.addWidget(widget)
            self._dynamic.append(widget)


def _flatten(entries: list[MenuEntry]) -> list[MenuEntry]:
    """Submenus become buttons named « Sous-menu : entrée »."""
    flat: list[MenuEntry] = []
    for entry in entries:
        if entry.children:
            title = entry.text.replace("&", "").rstrip(" .…")
            flat.extend(replace(child, text=f"{title} : {child.text}") for child in _flatten(list(entry.children)))
        else:
            flat.append(entry)
    return flat
