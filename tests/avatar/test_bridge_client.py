"""``AvatarLink`` and the one-shot helpers against a fake avatar that reads like Unity, over real sockets."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.fake_unity_avatar import FakeUnityAvatar, read_like_unity, wait_until
from tray_app.avatar import protocol
from tray_app.avatar.bridge_client import (
    AvatarBusyError,
    AvatarLink,
    AvatarUnavailableError,
    LinkState,
    probe,
    send_once,
)

KIRA = r"C:\Users\Zoé\Mes modèles\kira v2.vrm"


def closed_port() -> int:
    """A port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StateLog:
    """Listener that records states and lets a test wait for one."""

    def __init__(self) -> None:
        self.states: list[LinkState] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, state: LinkState) -> None:
        with self._cond:
            self.states.append(state)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, state: LinkState, count: int = 1, timeout: float = 3.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.states.count(state) >= count, timeout)


@pytest.fixture
def avatar() -> Iterator[FakeUnityAvatar]:
    fake = FakeUnityAvatar().start()
    yield fake
    fake.stop()


def make_link(port: int) -> AvatarLink:
    return AvatarLink(
        "127.0.0.1",
        port,
        initial_backoff=0.02,
        max_backoff=0.1,
        greeting_timeout=0.3,
        poll_interval=0.02,
    )


@pytest.fixture
def link_factory() -> Iterator:
    links: list[AvatarLink] = []

    def factory(port: int) -> tuple[AvatarLink, StateLog]:
        link = make_link(port)
        states = StateLog()
        link.add_listener(states)
        links.append(link)
        link.start()
        return link, states

    yield factory
    for link in links:
        link.stop()


def test_commands_reach_the_avatar_as_intended(avatar: FakeUnityAvatar, link_factory) -> None:
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.CONNECTED)
    assert link.is_connected and states.threads == {"avatar-link"}
    assert link.load_model(KIRA)
    assert link.set_expression("joie", 0.75)
    assert link.set_expression("neutre")
    assert link.set_transition_speed(25)
    assert link.set_auto_blink(False)
    assert link.set_auto_head_movement(True, 2, 6, 4.5)
    assert link.unload_model()
    got = avatar.wait_for_commands(7)
    assert [(c.command, c.values) for c in got] == [
        ("load_model", {"path": KIRA}),
        ("set_expression", {"name": "joy", "value": 0.75}),
        ("reset_expressions", {}),
        ("set_transition_speed", {"speed": 10.0}),
        ("set_auto_blink", {"enabled": False}),
        (
            "set_auto_head_movement",
            {"enabled": True, "min_interval": 2.0, "max_interval": 6.0, "max_angle": 4.5},
        ),
        ("unload_model", {}),
    ]
    assert avatar.ignored == []  # our flushing blank line is skipped, as by Unity


def test_invalid_values_raise_french_errors_even_when_linked(avatar: FakeUnityAvatar, link_factory) -> None:
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.CONNECTED)
    with pytest.raises(protocol.ProtocolError, match="guillemet"):
        link.load_model('C:\\a"b.vrm')
    with pytest.raises(protocol.ProtocolError, match="inconnue"):
        link.set_expression("surprise", 1)


def test_garbage_from_the_avatar_is_ignored(avatar: FakeUnityAvatar, link_factory) -> None:
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.CONNECTED)
    for junk in (
        b"{}\n",
        b"\xff\xfe\x00garbage",
        b"half a li",
        b"ne\n\n\n",
        b"\xc3",
        b"\xa9\n",
        b"x" * 70000,
    ):
        avatar.send_to_client(junk)
    assert link.set_expression("fun", 0.4)
    got = avatar.wait_for_commands(1)
    assert (got[-1].command, got[-1].values) == (
        "set_expression",
        {"name": "fun", "value": pytest.approx(0.4)},
    )
    assert link.is_connected and states.states == [LinkState.CONNECTED]


def test_not_connected_sends_return_false(link_factory) -> None:
    link, states = link_factory(closed_port())
    assert states.wait_for(LinkState.WAITING)
    assert link.set_expression("joy", 1) is False
    assert link.reset_expressions() is False
    assert link.state is LinkState.WAITING


def test_waiting_is_quiet_and_retries(link_factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tray_app.avatar")
    link, states = link_factory(closed_port())
    assert wait_until(lambda: link.attempts >= 5, timeout=3)
    records = [r for r in caplog.records if r.name.startswith("tray_app.avatar")]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert "waiting" in records[0].getMessage()
    assert states.states == [LinkState.WAITING]


def test_backoff_grows_to_its_cap() -> None:
    link = AvatarLink("127.0.0.1", closed_port(), initial_backoff=0.01, max_backoff=0.04, poll_interval=0.01)
    link.start()
    try:
        assert wait_until(lambda: link.attempts >= 4, timeout=2)
        before = link.attempts
        threading.Event().wait(0.2)  # 0.2 s at a 0.04 s cap: about 5 more attempts, not 20
        assert 2 <= link.attempts - before <= 7
    finally:
        link.stop()


def test_reconnects_when_the_avatar_restarts(avatar: FakeUnityAvatar, link_factory) -> None:
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.CONNECTED)
    avatar.stop()
    assert states.wait_for(LinkState.WAITING)
    assert link.set_expression("joy", 1) is False
    avatar.start()  # same port
    assert states.wait_for(LinkState.CONNECTED, count=2)
    assert link.set_expression("sorrow", 0.6)
    got = avatar.wait_for_commands(1)
    assert (got[-1].command, got[-1].values["name"]) == ("set_expression", "sorrow")


def test_busy_avatar_is_detected_and_taken_over_when_free(avatar: FakeUnityAvatar, link_factory) -> None:
    holder = socket.create_connection(("127.0.0.1", avatar.port))
    assert holder.recv(100) == b"{}\n"  # another program holds the avatar
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.BUSY)
    assert link.set_expression("joy", 1) is False  # would run later, by surprise
    holder.close()
    assert states.wait_for(LinkState.CONNECTED)
    assert link.set_expression("angry", 0.9)
    got = avatar.wait_for_commands(1)
    assert [(c.command, c.values["name"]) for c in got] == [("set_expression", "angry")]


def test_half_line_left_by_a_dead_client_does_not_spoil_our_first_command(
    avatar: FakeUnityAvatar, link_factory
) -> None:
    leftover = '{"command": "load_model", "data": {"path": "C:/x'
    ours = protocol.set_expression_line("joy", 0.5)
    assert read_like_unity(leftover + ours).command == "load_model"  # the hazard, without our flush
    dead = socket.create_connection(("127.0.0.1", avatar.port))
    dead.recv(100)
    dead.sendall(leftover.encode())
    dead.close()
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.CONNECTED)
    assert link.send_line(ours)
    got = avatar.wait_for_commands(2)
    assert (got[-1].command, got[-1].values) == ("set_expression", {"name": "joy", "value": 0.5})


def test_listener_errors_do_not_break_the_link(avatar: FakeUnityAvatar, link_factory, caplog) -> None:
    link = make_link(avatar.port)
    link.add_listener(lambda state: 1 / 0)
    states = StateLog()
    remove = link.add_listener(states)
    link.start()
    try:
        assert states.wait_for(LinkState.CONNECTED)
        assert link.set_auto_blink(True)
        remove()
    finally:
        link.stop()
    assert LinkState.STOPPED not in states.states  # removed before the stop
    assert "listener failed" in caplog.text


def test_stop_is_clean_and_prompt(avatar: FakeUnityAvatar) -> None:
    link = make_link(avatar.port)
    states = StateLog()
    link.add_listener(states)
    link.start()
    assert states.wait_for(LinkState.CONNECTED)
    link.stop(timeout=2)
    assert link.state is LinkState.STOPPED and states.states[-1] is LinkState.STOPPED
    assert link._thread is not None and not link._thread.is_alive()
    assert link.set_expression("joy", 1) is False


def test_new_address_is_used(avatar: FakeUnityAvatar, link_factory) -> None:
    link, states = link_factory(closed_port())
    assert states.wait_for(LinkState.WAITING)
    link.set_address("127.0.0.1", avatar.port)
    assert states.wait_for(LinkState.CONNECTED)
    assert link.address == ("127.0.0.1", avatar.port)


def test_concurrent_senders_never_interleave_lines(avatar: FakeUnityAvatar, link_factory) -> None:
    link, states = link_factory(avatar.port)
    assert states.wait_for(LinkState.CONNECTED)

    def burst(name: str) -> None:
        for i in range(50):
            link.set_expression(name, i / 100)

    threads = [threading.Thread(target=burst, args=(n,)) for n in ("joy", "fun", "sorrow", "angry")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = avatar.wait_for_commands(200)
    assert len(got) == 200 and not avatar.ignored
    assert {c.values["name"] for c in got} == {"joy", "fun", "sorrow", "angry"}


# -- one-shot helpers ---------------------------------------------------------------------------------
def test_send_once_and_probe(avatar: FakeUnityAvatar) -> None:
    assert probe("127.0.0.1", avatar.port).ok
    send_once([protocol.load_model_line(KIRA), protocol.set_auto_blink_line(True)], "127.0.0.1", avatar.port)
    got = avatar.wait_for_commands(2)
    assert [(c.command, c.values) for c in got] == [
        ("load_model", {"path": KIRA}),
        ("set_auto_blink", {"enabled": True}),
    ]


def test_one_shot_against_a_closed_port() -> None:
    port = closed_port()
    result = probe("127.0.0.1", port, timeout=0.5)
    assert (result.ok, result.state) == (False, "absent")
    assert "Lancez l'avatar" in result.message
    with pytest.raises(AvatarUnavailableError, match="ne répond pas"):
        send_once([protocol.reset_expressions_line()], "127.0.0.1", port, timeout=0.5)


def test_one_shot_does_not_send_to_a_busy_avatar(avatar: FakeUnityAvatar) -> None:
    holder = socket.create_connection(("127.0.0.1", avatar.port))
    holder.recv(100)
    assert probe("127.0.0.1", avatar.port, timeout=0.3).state == "busy"
    with pytest.raises(AvatarBusyError, match="autre programme"):
        send_once([protocol.set_expression_line("joy", 1)], "127.0.0.1", avatar.port, timeout=0.3)
    holder.close()
    assert avatar.wait_for_accepts(3)  # the avatar later serves the abandoned connections...
    assert probe("127.0.0.1", avatar.port, timeout=1).ok
    assert avatar.commands == []  # ...and runs nothing from them
