"""French emotion detection and the relay that shows it on the avatar."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.fake_unity_avatar import FakeUnityAvatar, wait_until
from tray_app.avatar.bridge_client import AvatarLink, LinkState
from tray_app.avatar.emotions import Emotion, EmotionRelay, detect_emotion


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("Je suis très contente de te voir !", "joy"),
        ("C'est génial, bravo !", "joy"),
        ("GÉNIAL", "joy"),
        ("Trop bien :)", "joy"),
        ("Je t'aime ❤️", "joy"),
        ("Haha, c'est trop drôle 😂", "fun"),
        ("mdr, tu es marrant", "fun"),
        ("Quelle tristesse... je suis déçue 😢", "sorrow"),
        ("Je suis vraiment désolée, c'est dommage.", "sorrow"),
        ("J'en ai marre, c'est insupportable !", "angry"),
        ("Grrr, ça m'énerve !", "angry"),
    ],
)
def test_clear_emotions_pass_the_relay_threshold(text: str, expression: str) -> None:
    emotion = detect_emotion(text)
    assert emotion.expression == expression
    assert emotion.confidence >= 0.5


@pytest.mark.parametrize(
    "text",
    [
        "Bonjour, comment puis-je t'aider ?",
        "Je ne suis pas contente.",
        "Ce n’est pas drôle.",
        "Je n'aime pas ça.",
        "Je ne suis jamais triste",
        "Voici le code :\n```python\nsuper_genial = 'haha'\n```",
        "",
    ],
)
def test_neutral_and_negated_texts(text: str) -> None:
    assert detect_emotion(text) == Emotion("neutral", 0.0)


def test_weak_and_mixed_evidence_stays_under_the_threshold() -> None:
    assert detect_emotion("Désolée, je n'ai pas compris.").confidence < 0.5  # a lone polite « désolée »
    assert detect_emotion("Merci.").confidence < 0.5
    mixed = detect_emotion("Je suis contente mais un peu triste aussi")
    assert mixed.confidence < 0.5


def test_intensity_raises_confidence() -> None:
    plain = detect_emotion("Je suis contente.")
    strong = detect_emotion("Je suis vraiment très contente !!!")
    assert plain.expression == strong.expression == "joy"
    assert strong.confidence > plain.confidence


def test_result_unpacks_as_a_pair() -> None:
    expression, confidence = detect_emotion("Youpi !")
    assert expression == "joy" and 0 < confidence <= 1


# -- relay ---------------------------------------------------------------------------------------------
class RecordingSink:
    """Stands in for the link: records what the relay asks for (the wire is tested elsewhere)."""

    def __init__(self, connected: bool = True) -> None:
        self.connected = connected
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def set_expression(self, name: str, value: float = 1.0) -> bool:
        with self.lock:
            self.calls.append(("set", name, value))
        return self.connected

    def reset_expressions(self) -> bool:
        with self.lock:
            self.calls.append(("reset",))
        return self.connected


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def test_relay_shows_then_returns_to_neutral(sink: RecordingSink) -> None:
    relay = EmotionRelay(sink, hold_seconds=0.05)
    emotion = relay.on_assistant_reply("Je suis très contente !")
    assert emotion is not None and emotion.expression == "joy"
    assert sink.calls[0][:2] == ("set", "joy") and 0.5 < sink.calls[0][2] <= 1.0
    assert relay.current == "joy"
    assert wait_until(lambda: ("reset",) in sink.calls, timeout=2)
    assert relay.current == "neutral"


def test_relay_switches_expression_with_a_reset_first(sink: RecordingSink) -> None:
    relay = EmotionRelay(sink, hold_seconds=10)
    relay.on_assistant_reply("Haha, trop drôle !")
    relay.on_assistant_reply("Haha, encore plus drôle !")  # same expression: only a new level
    relay.on_assistant_reply("Je suis vraiment triste...")
    relay.close()
    kinds = [c[0] if c[0] == "reset" else c[1] for c in sink.calls]
    assert kinds == ["fun", "fun", "reset", "sorrow"]


def test_relay_neutral_reply_resets_at_once(sink: RecordingSink) -> None:
    relay = EmotionRelay(sink, hold_seconds=10)
    relay.on_assistant_reply("Grrr, c'est inadmissible !")
    relay.on_assistant_reply("Voici la liste demandée.")
    relay.on_assistant_reply("Voici une autre liste.")  # already neutral: nothing more
    relay.close()
    assert [c[0] for c in sink.calls] == ["set", "reset"]


def test_relay_new_reply_restarts_the_hold(sink: RecordingSink) -> None:
    relay = EmotionRelay(sink, hold_seconds=0.2)
    relay.on_assistant_reply("Youpi !")
    threading.Event().wait(0.12)
    relay.on_assistant_reply("Youpi, bravo !")
    threading.Event().wait(0.12)  # 0.24 s after the first reply, 0.12 s after the second
    assert ("reset",) not in sink.calls
    assert wait_until(lambda: ("reset",) in sink.calls, timeout=2)
    assert sink.calls.count(("reset",)) == 1


def test_relay_disabled_or_unlinked(sink: RecordingSink) -> None:
    relay = EmotionRelay(sink, hold_seconds=10)
    relay.on_assistant_reply("Youpi !")
    relay.enabled = False  # setting switched off: back to neutral, then silence
    assert relay.on_assistant_reply("Haha !") is None
    assert [c[0] for c in sink.calls] == ["set", "reset"]

    offline = RecordingSink(connected=False)
    relay2 = EmotionRelay(offline, hold_seconds=10)
    relay2.on_assistant_reply("Youpi !")
    assert relay2.current == "neutral"  # nothing shown, nothing to undo
    relay2.on_assistant_reply("Rien de spécial.")
    assert offline.calls == [("set", "joy", offline.calls[0][2])]


@pytest.fixture
def avatar() -> Iterator[FakeUnityAvatar]:
    fake = FakeUnityAvatar().start()
    yield fake
    fake.stop()


def test_relay_through_the_real_link(avatar: FakeUnityAvatar) -> None:
    link = AvatarLink("127.0.0.1", avatar.port, initial_backoff=0.02, poll_interval=0.02)
    connected = threading.Event()
    link.add_listener(lambda s: s is LinkState.CONNECTED and connected.set())
    link.start()
    try:
        assert connected.wait(3)
        relay = EmotionRelay(link, hold_seconds=0.05)
        relay.on_assistant_reply("Je suis tellement heureuse !")
        got = avatar.wait_for_commands(2)
        assert [c.command for c in got] == ["set_expression", "reset_expressions"]
        assert got[0].values["name"] == "joy" and 0.5 < got[0].values["value"] <= 1.0
    finally:
        link.stop()
