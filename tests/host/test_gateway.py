"""The gateway: real sockets, real runner processes on the tiny random GGUF (and the demo model once)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest

from tests.conftest import wait_gone
from tray_app.host.gateway import Gateway, GatewayOptions, PortUnavailable
from tray_app.host.host_state import HostState
from tray_app.host.runner_engine_patches import THREADS_ROUTE
from tray_app.host.runner_threads import read_threads
from tray_app.host.supervisor import Supervisor
from tray_app.planning.runner_config import RunnerConfig

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Bonjour"}]
NO_EOS = {"2": -100}  # the tiny model's end token never comes: answers last max_tokens
# Also no byte tokens: random bytes make broken UTF-8, which llama-cpp-python holds back until the end of
# the answer instead of streaming it. Word pieces only: one event per token, as with a real model.
WORDS_ONLY = {str(i): -100 for i in range(2, 259)}


def call(port, method, path, body=None, headers=None, raw: bytes | None = None):
    """(status, headers dict, parsed JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        payload = response.read()
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = payload
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


def sse_events(payload: bytes) -> list:
    events = []
    for line in payload.split(b"\n"):
        if line.startswith(b"data: "):
            data = line[6:].strip()
            events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


@pytest.fixture
def make_gateway(tiny_gguf):
    made: list[tuple[Gateway, Supervisor]] = []

    def make(keep_alive_s: float = -1, config: RunnerConfig | None = None, **options) -> Gateway:
        sup = Supervisor(config or RunnerConfig(str(tiny_gguf), n_ctx=2048, n_threads=1, n_threads_batch=1),
                         keep_alive_s=keep_alive_s)
        gw = Gateway(sup, GatewayOptions(**{"port": 0, **options}))
        made.append((gw, sup))
        gw.start()
        return gw

    yield make
    for gw, sup in made:
        gw.close()
        sup.close()


@pytest.fixture(scope="module")
def cold_gateway(tiny_gguf):
    """A gateway whose model is never loaded: the tests using it must not trigger a load."""
    sup = Supervisor(RunnerConfig(str(tiny_gguf), n_ctx=2048), keep_alive_s=-1)
    gw = Gateway(sup, GatewayOptions(port=0, max_body_bytes=64 * 1024))
    gw.start()
    yield gw
    assert sup.status().pid is None, "a test loaded the model of the cold gateway"
    gw.close()
    sup.close()


# -- answered by the gateway itself ------------------------------------------------------------------
def test_health_and_models_answer_without_loading_the_model(cold_gateway):
    status, _, health = call(cold_gateway.port, "GET", "/health")
    assert status == 200 and health["service"] == "desktop-mate-tray"
    assert health["state"] == "idle" and health["state_label"] == "En veille"
    status, _, models = call(cold_gateway.port, "GET", "/v1/models")
    assert status == 200 and models["data"][0]["id"] == "tiny-random-llama"
    assert call(cold_gateway.port, "GET", "/v1/models/tiny-random-llama")[0] == 200
    assert call(cold_gateway.port, "GET", "/v1/models/gpt-4")[0] == 404


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "words"),
    [
        ("POST", CHAT, b"{not json", 400, "pas du JSON valide"),
        ("POST", CHAT, b"[1, 2]", 400, "objet JSON"),
        ("POST", CHAT, b'{"model": "x"}', 400, "« messages » est obligatoire"),
        ("POST", CHAT, b'{"messages": []}', 400, "« messages » est obligatoire"),
        ("POST", CHAT, b'{"messages": [{"content": "salut"}]}', 400, "« messages[0].role » est obligatoire"),
        ("POST", CHAT, b'{"messages": [{"role": "user", "content": "x"}], "stream": "oui"}', 400, "« stream »"),
        ("POST", "/v1/completions", b'{"max_tokens": 3}', 400, "« prompt » est obligatoire"),
        ("POST", "/v1/embeddings", b"{}", 404, "Adresse inconnue"),
        ("GET", CHAT, None, 405, "Méthode GET non prise en charge"),
        ("POST", CHAT, b"x" * (65 * 1024), 413, "trop grosse"),
    ],
)
def test_bad_requests_get_openai_shaped_french_errors(cold_gateway, method, path, raw, status, words):
    got, headers, body = call(cold_gateway.port, method, path, raw=raw)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert words in error["message"]


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, str | None, bytes]:
    """Send one raw request on ``sock`` and read its whole answer, the connection left open:
    (status, Connection header, body)."""
    sock.sendall(request)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.getheader("Connection"), response.read()


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/v1/models", 200), ("OPTIONS", CHAT, 204)])
def test_a_body_on_a_get_or_options_does_not_spoil_the_next_request_on_the_connection(
    cold_gateway, method, path, status
):
    port = cold_gateway.port
    stray = b'{"stray": "body"}'
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        first = _exchange(sock, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                f"Content-Length: {len(stray)}\r\n\r\n".encode() + stray)
        second = _exchange(sock, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert first[0] == status
    if status == 200:
        assert json.loads(first[2])["data"][0]["id"] == "tiny-random-llama"
    assert first[1] != "close"  # kept alive: the second request went on the same connection
    assert second[0] == 200 and json.loads(second[2])["service"] == "desktop-mate-tray"


def test_web_pages_and_rebound_dns_names_are_refused(cold_gateway):
    port = cold_gateway.port
    body = {"messages": HELLO}
    for headers in ({"Host": f"evil.example:{port}"}, {"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": "http://127.0.0.1.evil.example"}):
        status, response_headers, error = call(port, "POST", CHAT, body, headers)
        assert status == 403, headers
        assert error["error"]["type"] == "permission_error"
        assert "access-control-allow-origin" not in response_headers
    status, headers, _ = call(port, "OPTIONS", CHAT, headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "POST"})
    assert status == 403 and "access-control-allow-origin" not in headers
    # a page served by this computer gets its own origin back, never "*"
    status, headers, _ = call(port, "GET", "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:3000"
    status, headers, _ = call(port, "OPTIONS", CHAT, headers={"Origin": "http://127.0.0.1:8000"})
    assert status == 204 and headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    assert call(port, "GET", "/health", headers={"Host": "[::1]:80"})[0] == 200


def test_localhost_over_ipv6_is_answered_too(cold_gateway):
    if not socket.has_ipv6 or cold_gateway._server6 is None:
        pytest.skip("no IPv6 loopback on this machine")
    conn = http.client.HTTPConnection("::1", cold_gateway.port, timeout=5)
    conn.request("GET", "/health", headers={"Host": f"localhost:{cold_gateway.port}"})
    assert conn.getresponse().status == 200
    conn.close()


def test_the_tray_side_never_imports_the_engine():
    """The gateway and supervisor live in the tray process (idle RSS ≤ 120 MB): no llama_cpp, no FastAPI."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; import tray_app.host.gateway, tray_app.host.supervisor, tray_app.host.chat_probe; "
        "print(sorted(m for m in ('llama_cpp', 'fastapi', 'uvicorn', 'starlette', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- relayed to the runner -------------------------------------------------------------------------
def test_first_request_loads_the_model_streams_and_is_measured(make_gateway):
    gw = make_gateway(history=3)
    replies: list[str] = []
    gw.reply_hooks.append(replies.append)
    assert gw.supervisor.status().pid is None
    status, headers, payload = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 12, "stream": True,
                                                             "logit_bias": NO_EOS})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(payload)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if "content" in e["choices"][0]["delta"]]
    text = "".join(e["choices"][0]["delta"]["content"] for e in chunks)
    assert events[0]["model"] == "tiny-random-llama"
    first = gw.metrics.last()
    assert first.loaded_for_it and first.stream and first.status == 200 and first.error == ""
    assert first.completion_tokens == len(chunks) == 12
    assert first.ttft_s is not None and 0 < first.ttft_s < first.total_s
    assert first.tokens_per_s and first.tokens_per_s > 0
    assert first.queue_s > 0  # it waited for the load
    assert replies == [text]
    for _ in range(4):
        call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})
    history = gw.metrics.snapshot()
    assert len(history) == 3 == gw.metrics.maxlen  # bounded
    assert not history[-1].loaded_for_it and history[-1].ttft_s is None and history[-1].completion_tokens > 0


def test_non_streaming_chat_and_completions(make_gateway):
    gw = make_gateway()
    replies: list[str] = []
    gw.reply_hooks.append(replies.append)
    status, _, body = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 5, "logit_bias": NO_EOS})
    assert status == 200 and body["object"] == "chat.completion"
    assert replies == [body["choices"][0]["message"]["content"]]
    status, _, body = call(gw.port, "POST", "/v1/completions", {"prompt": "Il était une fois", "max_tokens": 4})
    assert status == 200 and body["object"] == "text_completion"
    status, _, payload = call(gw.port, "POST", "/v1/completions", {"prompt": "Il était", "max_tokens": 4,
                                                                   "stream": True, "logit_bias": NO_EOS})
    assert status == 200 and sse_events(payload)[-1] == "[DONE]"
    assert gw.metrics.last().route == "/v1/completions" and gw.metrics.last().completion_tokens == 4
    assert len(replies) == 1  # completions are not assistant replies
    # a wrong value is refused before the runner, OpenAI-shaped, in French, naming the field
    status, _, body = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": "beaucoup"})
    assert status == 400 and body["error"]["message"] == "Le champ « max_tokens » doit être un nombre entier."
    assert body["error"]["param"] == "max_tokens" and body["error"]["code"] == "invalid_type"


def test_the_runners_private_thread_route_is_never_relayed(make_gateway):
    gw = make_gateway()
    assert call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})[0] == 200  # the runner is up
    endpoint = gw.supervisor.status().endpoint
    assert endpoint is not None
    for headers in ({}, endpoint.headers):  # even with the runner's own key
        for method, body in (("POST", {"n_threads": 2, "n_threads_batch": 2}), ("GET", None)):
            status, _, answer = call(gw.port, method, THREADS_ROUTE, body, headers=headers)
            assert status == 404 and "Adresse inconnue" in answer["error"]["message"]
    assert read_threads(endpoint) == (1, 1)  # the runner has the route, and nothing reached it


def test_requests_while_loading_wait_in_a_bounded_queue(make_gateway):
    gw = make_gateway(max_pending=2)
    results: list[tuple[int, dict, object]] = []
    lock = threading.Lock()

    def ask():
        answer = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 3})
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 200, 503, 503]
    refused = [r for r in results if r[0] == 503]
    for _, headers, body in refused:
        assert "Trop de demandes" in body["error"]["message"] and headers["retry-after"] == "5"
    assert gw.supervisor.wait_for(HostState.READY, 5) is HostState.READY


def test_a_request_does_not_wait_for_the_load_beyond_the_limit(make_gateway):
    gw = make_gateway(wait_s=0.2)
    status, headers, body = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})
    assert status == 503 and "encore en cours de chargement" in body["error"]["message"]
    assert body["error"]["code"] == "model_loading" and headers["retry-after"] == "5"
    assert gw.supervisor.wait_for(HostState.READY, 60) is HostState.READY  # the load went on
    assert call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})[0] == 200


def test_keep_alive_zero_unloads_after_each_answer(make_gateway):
    gw = make_gateway(keep_alive_s=0)
    pids: list[int] = []
    gw.request_hooks.append(lambda m: pids.append(gw.supervisor.status().pid))
    assert call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})[0] == 200
    assert gw.supervisor.wait_for(HostState.IDLE, 5) is HostState.IDLE
    assert wait_gone(pids[0])
    assert call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})[0] == 200
    assert pids[1] != pids[0]


def test_a_runner_killed_mid_answer_gives_an_error_event_then_the_same_settings_again(make_gateway):
    gw = make_gateway()
    before = gw.supervisor.status().config or gw.supervisor.base_config
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    body = {"messages": HELLO, "max_tokens": 1500, "stream": True, "logit_bias": WORDS_ONLY}
    conn.request("POST", CHAT, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    received = response.read1(65536)
    os.kill(gw.supervisor.status().pid, signal.SIGKILL)
    while True:
        data = response.read1(65536)
        if not data:
            break
        received += data
    assert response.isclosed()  # the chunked body ended with its last chunk (else IncompleteRead above)
    conn.close()
    events = sse_events(received)
    assert events[-1] == "[DONE]"  # a clean end, after an OpenAI-shaped error event
    error = events[-2]["error"]
    assert error["message"] == ("Le moteur du modèle s'est arrêté pendant la réponse ; il redémarre. "
                                "Réessayez dans quelques secondes.")
    assert error["type"] == "server_error" and error["code"] == "runner_stopped" and "param" in error
    assert gw.metrics.last().error
    # the very next request is answered, with the same settings (one kill proves nothing against them)
    answer = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})
    assert answer[0] == 200, answer
    status = gw.supervisor.status()
    assert status.config == before and status.failed_configs == ()


def test_a_client_leaving_mid_answer_frees_the_model(make_gateway):
    gw = make_gateway()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    body = {"messages": HELLO, "max_tokens": 1500, "stream": True, "logit_bias": WORDS_ONLY}
    conn.request("POST", CHAT, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read1(100)
    left = time.monotonic()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert gw.supervisor.wait_for(HostState.READY, 10) is HostState.READY
    assert time.monotonic() - left < 2
    assert "parti avant la fin" in gw.metrics.last().error
    status, _, answer = call(gw.port, "POST", CHAT, {"messages": HELLO, "max_tokens": 2})
    assert status == 200 and answer["usage"]["completion_tokens"] == 2


# -- the port ----------------------------------------------------------------------------------------
def test_a_taken_port_is_reported_in_french(tiny_gguf):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    sup = Supervisor(RunnerConfig(str(tiny_gguf)))
    try:
        strict = Gateway(sup, GatewayOptions(port=taken, allow_other_port=False))
        with pytest.raises(PortUnavailable) as refused:
            strict.start()
        assert f"Le port {taken} est déjà utilisé par un autre programme" in refused.value.message_fr
        flexible = Gateway(sup, GatewayOptions(port=taken))
        flexible.start()
        try:
            assert flexible.port != taken and flexible.port > taken
            assert f"Le port {taken} est déjà utilisé" in flexible.port_notice
            assert flexible.api_base in flexible.port_notice
            # a second Desktop-Mate on the same port is recognised
            twin = Gateway(sup, GatewayOptions(port=flexible.port, allow_other_port=False))
            with pytest.raises(PortUnavailable) as again:
                twin.start()
            assert "Desktop-Mate héberge déjà un modèle" in again.value.message_fr
        finally:
            flexible.close()
    finally:
        squatter.close()
        sup.close()


# -- real text --------------------------------------------------------------------------------------
@pytest.mark.heavy
def test_the_demo_model_answers_in_french_through_the_gateway(demo_gguf):
    from tray_app.host.chat_probe import stream_chat

    sup = Supervisor(RunnerConfig(str(demo_gguf), n_ctx=2048, n_threads=1, n_threads_batch=1), keep_alive_s=-1)
    gw = Gateway(sup, GatewayOptions(port=0))
    gw.start()
    try:
        result = stream_chat(gw.url, [{"role": "user", "content": "Dis bonjour en français."}], max_tokens=24)
        assert result.complete and result.tokens >= 3
        assert "Bonjour" in result.text  # greedy decoding: SmolLM2 answers « Bonjour en français. »
        metrics = gw.metrics.last()
        assert metrics.loaded_for_it and metrics.tokens_per_s and metrics.ttft_s
    finally:
        gw.close()
        sup.close()
