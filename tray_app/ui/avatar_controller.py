"""The tray's side of the avatar link: a Qt adapter over :class:`~tray_app.avatar.AvatarLink`.

It keeps the link running, re-emits its state on the UI thread, offers the « Avatar » submenu, and
owns the emotion relay that shows each reply's emotion on the avatar.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog

from tray_app.avatar import AvatarLink, EmotionRelay, LinkState, ProtocolError
from tray_app.settings import Settings
from tray_app.ui.menu_entries import MenuEntry

log = logging.getLogger(__name__)

AVATAR_HOST = "127.0.0.1"  # Unity's PythonBridge only listens on loopback


class AvatarController(QObject):
    """Signals:
    state_changed(LinkState): the link's state changed (emitted on the UI thread).
    """

    state_changed = Signal(object)
    _state_from_link = Signal(object)

    EXPRESSIONS = (("joy", "Joie"), ("angry", "Colère"), ("sorrow", "Tristesse"), ("fun", "Amusement"))

    def __init__(self, settings: Settings, notify: Callable[[str], None]) -> None:
        super().__init__()
        self.settings = settings
        self.notify = notify
        self.link = AvatarLink(AVATAR_HOST, settings.values.avatar_port)
        self.relay = EmotionRelay(self.link, enabled=settings.values.avatar_emotions)
        self.auto_blink = True  # what we last asked; the avatar does not report it
        self.head_movement = True
        self._state_from_link.connect(self.state_changed.emit, Qt.ConnectionType.QueuedConnection)
        self._remove_listener = self.link.add_listener(self._state_from_link.emit)

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self._remove_listener()
        self.relay.close()
        self.link.stop()

    def apply_settings(self) -> None:
        if self.link.address[1] != self.settings.values.avatar_port:
            self.link.set_address(AVATAR_HOST, self.settings.values.avatar_port)
        self.relay.enabled = self.settings.values.avatar_emotions

    def on_assistant_reply(self, text: str) -> None:
        """Called (from any thread) with each complete reply that went through the gateway."""
        self.relay.on_assistant_reply(text)

    # -- menu ------------------------------------------------------------------------------------
    def status_line(self) -> str:
        return self.link.state.label

    def entries(self) -> list[MenuEntry]:
        linked = self.link.state is LinkState.CONNECTED
        children = [
            MenuEntry(self.tr("Charger un avatar (fichier VRM)…"), self.choose_vrm, enabled=linked),
            MenuEntry(self.tr("Retirer l'avatar"), lambda: self._send(self.link.unload_model), enabled=linked),
        ]
        for i, (name, label) in enumerate(self.EXPRESSIONS):
            children.append(
                MenuEntry(label, functools.partial(self._send, self.link.set_expression, name, 1.0),
                          enabled=linked, separator_before=i == 0)
            )
        children.append(MenuEntry(self.tr("Revenir à neutre"), lambda: self._send(self.link.reset_expressions),
                                  enabled=linked))
        children.append(MenuEntry(self.tr("Clignement automatique"), self.toggle_blink, enabled=linked,
                                  separator_before=True, checked=self.auto_blink))
        children.append(MenuEntry(self.tr("Mouvements de la tête"), self.toggle_head, enabled=linked,
                                  checked=self.head_movement))
        return [
            MenuEntry(self.status_line()),
            MenuEntry(self.tr("Avatar"), children=tuple(children)),
        ]

    # -- actions ---------------------------------------------------------------------------------
    def choose_vrm(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            None, self.tr("Choisir un avatar"), str(Path.home()), self.tr("Avatars VRM (*.vrm)")
        )
        if path:
            self._send(self.link.load_model, path)

    def toggle_blink(self) -> None:
        if self._send(self.link.set_auto_blink, not self.auto_blink):
            self.auto_blink = not self.auto_blink

    def toggle_head(self) -> None:
        if self._send(self.link.set_auto_head_movement, not self.head_movement):
            self.head_movement = not self.head_movement

    def _send(self, method: Callable[..., bool], *args: object) -> bool:
        try:
            if method(*args):
                return True
            self.notify(self.tr("L'avatar n'est pas relié : lancez Desktop-Mate, puis réessayez."))
        except ProtocolError as exc:
            self.notify(str(exc))
        return False
