"""The tray's « Avatar » submenu against the fake Unity avatar (real sockets, real Qt widgets)."""

import pytest

from tests.fake_unity_avatar import FakeUnityAvatar
from tray_app.avatar import LinkState
from tray_app.paths import app_paths
from tray_app.settings import Settings
from tray_app.ui.avatar_controller import AvatarController


@pytest.fixture
def avatar():
    fake = FakeUnityAvatar().start()
    yield fake
    fake.stop()


def make_controller(port: int, messages: list[str]) -> AvatarController:
    settings = Settings.load(app_paths().settings_file)
    settings.set("avatar_port", port)
    return AvatarController(settings, messages.append)


def submenu(controller: AvatarController):
    status, menu = controller.entries()
    return status, {child.text: child for child in menu.children}


def test_submenu_drives_the_avatar(qtbot, avatar):
    messages: list[str] = []
    controller = make_controller(avatar.port, messages)
    controller.start()
    try:
        qtbot.waitUntil(lambda: controller.link.state is LinkState.CONNECTED, timeout=5000)
        status, children = submenu(controller)
        assert status.text == "Avatar : relié"
        assert all(c.enabled for c in children.values())
        children["Colère"].on_click()
        children["Clignement automatique"].on_click()
        commands = avatar.wait_for_commands(2)
        assert [c.command for c in commands] == ["set_expression", "set_auto_blink"]
        assert commands[0].values == {"name": "angry", "value": 1.0}
        assert commands[1].values == {"enabled": False}
        assert submenu(controller)[1]["Clignement automatique"].checked is False
        assert messages == []
    finally:
        controller.stop()


def test_without_the_avatar_the_menu_waits_and_says_so(qtbot):
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    messages: list[str] = []
    controller = make_controller(free_port, messages)
    controller.start()
    try:
        qtbot.waitUntil(lambda: controller.link.state is LinkState.WAITING, timeout=5000)
        status, children = submenu(controller)
        assert status.text.startswith("Avatar : en attente")
        assert not any(c.enabled for c in children.values())
        controller._send(controller.link.reset_expressions)
        assert messages and "pas relié" in messages[0]
    finally:
        controller.stop()


def test_emotions_of_a_reply_reach_the_avatar(qtbot, avatar):
    controller = make_controller(avatar.port, [])
    controller.start()
    try:
        qtbot.waitUntil(lambda: controller.link.state is LinkState.CONNECTED, timeout=5000)
        controller.on_assistant_reply("Haha, c'est trop drôle ! 😂")
        commands = avatar.wait_for_commands(1)
        assert commands[-1].command == "set_expression" and commands[-1].values["name"] == "fun"
        controller.settings.set("avatar_emotions", False)
        controller.apply_settings()
        assert controller.relay.enabled is False
    finally:
        controller.stop()
