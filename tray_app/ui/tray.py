"""The tray icon and its menu (or the fallback window when the desktop has no tray).

The menu is rebuilt from state every time it opens (``aboutToShow``), so it never shows a stale
status. Slow work never runs here: the tray only reads state and starts dialogs or requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QCursor, QDesktopServices
from PySide6.QtWidgets import QMenu, QMessageBox, QSystemTrayIcon

from tray_app import APP_DISPLAY_NAME, __version__
from tray_app.format_fr import no_break_fr
from tray_app.paths import AppPaths
from tray_app.settings import Settings
from tray_app.ui.fallback_window import FallbackWindow
from tray_app.ui.icons import IconState, app_icon, state_icon
from tray_app.ui.menu_entries import MenuEntry, fill_menu
from tray_app.ui.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrayStatus:
    """What the icon says right now: one line for the menu and tooltip, and the icon's state."""

    line: str
    icon: IconState


class TrayController(QObject):
    """Owns the tray icon or the fallback window.

    Signals:
        quit_requested(): the user chose « Quitter ».
        settings_changed(): the Paramètres dialog saved new values.
    """

    quit_requested = Signal()
    settings_changed = Signal()

    def __init__(self, settings: Settings, paths: AppPaths, *, use_tray: bool) -> None:
        super().__init__()
        self.settings = settings
        self.paths = paths
        self.status = TrayStatus(self.tr("En veille — aucun modèle chargé"), IconState.IDLE)
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.tray: QSystemTrayIcon | None = None
        self.window: FallbackWindow | None = None
        self._settings_dialog: SettingsDialog | None = None
        self._notice_box: QMessageBox | None = None  # the fallback window's messages
        self._window_texts: list[tuple[str, bool, bool | None]] = []
        # Parts of the program add their entries here (model, avatar…), shown under the status line.
        self.sections: list[Callable[[], list[MenuEntry]]] = []
        if use_tray:
            self.tray = QSystemTrayIcon(state_icon(self.status.icon))
            self.tray.setContextMenu(self.menu)
            self.tray.activated.connect(self._on_activated)
        else:
            self.window = FallbackWindow()
        self.rebuild_menu()

    # -- what the menu offers --------------------------------------------------------------------
    def entries(self) -> list[MenuEntry]:
        entries = [MenuEntry(f"{APP_DISPLAY_NAME} : {self.status.line}")]
        for section in self.sections:
            part = section()
            if part:
                entries.append(replace(part[0], separator_before=True))
                entries.extend(part[1:])
        return entries + [
            MenuEntry(self.tr("Paramètres…"), self.open_settings, separator_before=True),
            MenuEntry(self.tr("Ouvrir le dossier des journaux"), self.open_log_folder),
            MenuEntry(self.tr("À propos"), self.show_about),
            MenuEntry(self.tr("Quitter"), self.quit_requested.emit, separator_before=True),
        ]

    def rebuild_menu(self) -> None:
        """Fill the menu (called when it opens) and the fallback window from the current state."""
        entries = self.entries()
        if not self.menu.isVisible():  # clearing an open menu would close it under the user's pointer
            fill_menu(self.menu, entries)
        if self.window is not None:
            texts = [(e.text, e.enabled, e.checked) for e in entries]
            if texts != self._window_texts:  # the window is rebuilt only when something it shows changed
                self._window_texts = texts
                self.window.set_entries(entries)

    # -- state -----------------------------------------------------------------------------------
    def set_status(self, status: TrayStatus) -> None:
        """New status line and icon. The menu picks it up the next time it opens."""
        if status == self.status:
            return
        self.status = status
        if self.tray is not None:
            self.tray.setIcon(state_icon(status.icon))
        if self.window is not None:
            self.rebuild_menu()

    def set_tooltip(self, text: str) -> None:
        """The one-line summary shown when the pointer rests on the icon."""
        if self.tray is not None and text != self.tray.toolTip():
            self.tray.setToolTip(text)

    def show(self) -> None:
        if self.tray is not None:
            if not self.tray.toolTip():
                self.tray.setToolTip(f"{APP_DISPLAY_NAME} — {self.status.line}")
            self.tray.show()
        elif self.window is not None:
            self.window.show()

    def bring_to_front(self) -> None:
        """Another copy of the program was launched: show where this one is."""
        if self.window is not None:
            self.window.showNormal()
            self.window.raise_()
            self.window.activateWindow()
            return
        self.notify(self.tr("Desktop-Mate est déjà ouvert : son icône est près de l'horloge."))
        self.rebuild_menu()
        self.menu.popup(QCursor.pos())

    def notify(self, text: str, *, warning: bool = False) -> None:
        """A short message from the icon (or a dialog box in the fallback window)."""
        text = no_break_fr(text)
        if self.tray is not None and QSystemTrayIcon.supportsMessages():
            icon = QSystemTrayIcon.MessageIcon.Warning if warning else QSystemTrayIcon.MessageIcon.Information
            self.tray.showMessage(APP_DISPLAY_NAME, text, icon, 8000)
        else:
            # One box, its text replaced by the latest message: a user away from the screen does not come
            # back to a pile of boxes (and the program does not keep one more window per message).
            box = self._notice_box
            if box is None:
                box = self._notice_box = QMessageBox(parent=self.window)
                box.setWindowTitle(APP_DISPLAY_NAME)
                box.setModal(False)
            box.setIcon(QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Information)
            box.setText(text)
            box.show()
            box.raise_()

    # -- actions ---------------------------------------------------------------------------------
    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:  # left click: same menu as right click
            self.rebuild_menu()
            self.menu.popup(QCursor.pos())

    def open_settings(self) -> None:
        if self._settings_dialog is None:
            self._settings_dialog = SettingsDialog(self.settings)
            self._settings_dialog.setWindowIcon(app_icon())
            self._settings_dialog.accepted.connect(self.settings_changed.emit)
            self._settings_dialog.finished.connect(self._forget_settings_dialog)
        self._settings_dialog.show()
        self._settings_dialog.raise_()
        self._settings_dialog.activateWindow()

    def _forget_settings_dialog(self) -> None:
        if self._settings_dialog is not None:
            self._settings_dialog.deleteLater()
            self._settings_dialog = None

    def open_log_folder(self) -> None:
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.paths.log_dir))):
            self.notify(
                self.tr("Impossible d'ouvrir le dossier. Il se trouve ici : {0}").replace(
                    "{0}", str(self.paths.log_dir)
                ),
                warning=True,
            )

    def show_about(self) -> None:
        QMessageBox.about(
            self.window,
            self.tr("À propos de Desktop-Mate"),
            self.tr(
                "<b>Desktop-Mate</b> {0}<br><br>Fait tourner le modèle de langue de votre avatar sur cet "
                "ordinateur, sans Internet.<br><br>Paramètres : {1}<br>Journaux : {2}"
            )
            .replace("{0}", __version__)
            .replace("{1}", str(self.paths.settings_file))
            .replace("{2}", str(self.paths.log_dir)),
        )

    def close(self) -> None:
        if self.tray is not None:
            self.tray.hide()
        if self._notice_box is not None:  # its own window: closing the main window leaves it up
            self._notice_box.close()
        if self.window is not None:
            self.window.close()
