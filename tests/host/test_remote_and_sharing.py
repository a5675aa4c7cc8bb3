"""Two computers on loopback: ``serve --share`` (the computer with the model) and ``serve --remote`` (the one
that uses it). Real processes, real sockets, a real runner."""

from __future__ import annotations

import pytest

from tests.commands.test_serve_cli import Serve
from tests.host.test_gateway import call, sse_events
from tray_app.host.remote import RemoteAddressError, parse_remote_address
from tray_app.host.sharing import key_matches, new_share_key

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Bonjour"}]


@pytest.fixture
def two_computers(tiny_gguf):
    sharing = Serve("--model", str(tiny_gguf), "--port", "0", "--share", "--share-port", "0", "--json")
    using = None
    try:
        local = sharing.next_json("listening")
        shared = sharing.next_json("sharing")
        using = Serve("--port", "0", "--remote", f"http://127.0.0.1:{shared['share_port']}",
                      "--remote-key", shared["key"], "--json")
        relay = using.next_json("listening")
        remote = using.next_json("remote")
        yield sharing, using, local["port"], shared, relay["port"], remote
    finally:
        if using is not None:
            using.stop()
        sharing.stop()


def test_the_other_computers_model_answers_at_the_same_local_address(two_computers):
    sharing, using, local_port, shared, relay_port, remote = two_computers
    assert remote["reachable"] and remote["model"] == "tiny-random-llama"
    status, _, models = call(relay_port, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny-random-llama"]
    status, headers, payload = call(relay_port, "POST", CHAT, {"model": "gpt-4o", "messages": HELLO, "max_tokens": 6,
                                                               "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(payload)
    assert events[-1] == "[DONE]" and any(e["choices"] and e["choices"][0]["delta"].get("content")
                                          for e in events[:-1] if isinstance(e, dict))
    status, _, plain = call(relay_port, "POST", CHAT, {"messages": HELLO, "max_tokens": 4})
    assert status == 200 and plain["model"] == "tiny-random-llama" and plain["choices"][0]["message"]["content"]
    using_request = using.next_json("request")
    assert using_request["status"] == 200 and using_request["completion_tokens"] > 0


def test_the_shared_port_wants_the_key_and_no_browser_while_loopback_keeps_its_rules(two_computers):
    sharing, using, local_port, shared, relay_port, remote = two_computers
    port, key = shared["share_port"], shared["key"]
    for headers in ({}, {"Authorization": "Bearer dm-pas-la-bonne"},
                    {"Authorization": f"Bearer {key}", "Origin": "http://192.168.1.30:3000"}):
        status, _, body = call(port, "GET", "/v1/models", headers=headers)
        assert status == 403 and body["error"]["type"] == "permission_error"
    status, _, body = call(port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})
    assert status == 403 and "Clé manquante ou incorrecte" in body["error"]["message"]
    assert call(port, "GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})[0] == 200
    assert call(local_port, "GET", "/v1/models")[0] == 200  # this computer's programs: no key
    evil = call(local_port, "GET", "/v1/models", headers={"Origin": "http://evil.example"})
    assert evil[0] == 403


def test_when_the_other_computer_stops_the_answer_says_so_in_french(two_computers):
    sharing, using, local_port, shared, relay_port, remote = two_computers
    assert sharing.stop() == 0
    status, _, body = call(relay_port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})
    assert status == 503 and "ne répond pas" in body["error"]["message"]
    assert "modèle de cet ordinateur" in body["error"]["message"]
    status, _, health = call(relay_port, "GET", "/health")
    assert status == 200 and health["state"] == "error" and "ne répond pas" in health["message"]


@pytest.mark.parametrize(("text", "expected"), [
    ("192.168.1.20:11434", "http://192.168.1.20:11434/v1"),
    ("http://pc-salon:8080/v1/", "http://pc-salon:8080/v1"),
    (" http://192.168.1.20:11436/v1 ", "http://192.168.1.20:11436/v1"),
    ("http://nas.local:5000/api/v1", "http://nas.local:5000/api/v1"),
])
def test_addresses_are_read_as_people_copy_them(text, expected):
    assert parse_remote_address(text).base_url == expected


@pytest.mark.parametrize("text", ["", "https://exemple.fr", "http://:80", "pc salon:abc"])
def test_unusable_addresses_are_explained_in_french(text):
    with pytest.raises(RemoteAddressError) as err:
        parse_remote_address(text)
    assert "http://192.168.1.20:11434" in err.value.message_fr


def test_the_key_is_long_random_and_compared_exactly():
    key = new_share_key()
    assert key.startswith("dm-") and len(key) >= 24 and key != new_share_key()
    assert key_matches(f"Bearer {key}", key) and key_matches(f"bearer  {key} ", key)
    assert not key_matches(f"Bearer {key[:-1]}", key) and not key_matches(None, key) and not key_matches(key, key)
