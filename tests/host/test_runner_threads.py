"""The runner's private thread route (runner_engine_patches): a real runner on the tiny random GGUF."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tray_app.host.runner import Runner, RunnerEndpoint
from tray_app.host.runner_engine_patches import THREADS_ASKED, THREADS_ROUTE
from tray_app.host.runner_threads import ThreadChangeError, read_threads, set_threads
from tray_app.planning.runner_config import RunnerConfig

NO_EOS = {"2": -100}  # the tiny model's end token never comes: answers last max_tokens
WORD_PIECE = 3 + 256  # the tiny model's first word piece, « ▁a » (tray_app.models.synthetic_gguf)


@pytest.fixture(scope="module")
def running(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runner, RunnerEndpoint]]:
    log_file = tmp_path_factory.mktemp("threads") / "runner.log"
    runner = Runner(RunnerConfig(str(tiny_gguf), n_ctx=2048, n_threads=1, n_threads_batch=1), log_file=log_file)
    endpoint = runner.load(60)
    yield runner, endpoint
    runner.stop()
    runner.close_log()


def request(endpoint: RunnerEndpoint, method: str, path: str, body: bytes | None, headers: dict[str, str]):
    """(status, parsed JSON answer)."""
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_route_sets_the_counts_and_answers_what_llama_cpp_reads_back(running):
    runner, endpoint = running
    assert read_threads(endpoint) == (1, 1)  # as started
    assert set_threads(endpoint, 2, 3) == (2, 3)
    assert read_threads(endpoint) == (2, 3)
    status, answer = request(endpoint, "POST", "/v1/chat/completions",
                             json.dumps({"messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 4,
                                         "logit_bias": NO_EOS}).encode(), endpoint.headers)
    assert status == 200 and answer["usage"]["completion_tokens"] == 4  # the model answers with them
    assert set_threads(endpoint, 1, 1) == (1, 1)
    assert runner.alive


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[2, 2]",
        b'{"n_threads": 2}',
        b'{"n_threads": 0, "n_threads_batch": 2}',
        b'{"n_threads": 2, "n_threads_batch": -1}',
        b'{"n_threads": "2", "n_threads_batch": 2}',
        b'{"n_threads": 2.0, "n_threads_batch": 2}',
        b'{"n_threads": true, "n_threads_batch": 2}',
        b'{"n_threads": 513, "n_threads_batch": 2}',
        b'{"n_threads": 2, "n_threads_batch": 2, "n_gpu_layers": 3}',
    ],
)
def test_a_bad_body_is_a_400_with_a_json_error_and_changes_nothing(running, raw):
    _, endpoint = running
    status, answer = request(endpoint, "POST", THREADS_ROUTE, raw, endpoint.headers)
    assert status == 400 and answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error"
    assert read_threads(endpoint) == (1, 1)
    with pytest.raises(ThreadChangeError, match="HTTP 400"):
        set_threads(endpoint, 0, 1)


def test_the_route_needs_the_key_as_the_other_routes_do(running):
    _, endpoint = running
    body = json.dumps({"n_threads": 2, "n_threads_batch": 2}).encode()
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        refused, _ = request(endpoint, "GET", "/v1/models", None, headers)
        assert refused in (401, 403)
        assert request(endpoint, "POST", THREADS_ROUTE, body, headers)[0] == refused
        assert request(endpoint, "GET", THREADS_ROUTE, None, headers)[0] == refused
    assert read_threads(endpoint) == (1, 1)
    other = RunnerEndpoint(endpoint.host, endpoint.port, "not-the-key", endpoint.model_id)
    with pytest.raises(ThreadChangeError):
        set_threads(other, 2, 2)


def test_a_change_asked_during_an_answer_waits_for_its_end(running):
    """Under the server's lock: asked while the answer runs, the change is logged by llama.cpp only after
    the timings that end the answer."""
    runner, endpoint = running
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=60)
    # A long answer (seconds), of one word piece repeated: text that decodes as it comes (random byte
    # tokens make llama-cpp-python's streaming decode slower and slower, cubic in the answer's length).
    body = {"messages": [{"role": "user", "content": "Raconte"}], "max_tokens": 1000, "stream": True,
            "logit_bias": {**NO_EOS, str(WORD_PIECE): 100}}
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json", **endpoint.headers})
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")  # the answer has begun
    changed: list[tuple[int, int]] = []
    change = threading.Thread(target=lambda: changed.append(set_threads(endpoint, 2, 2)))
    change.start()
    rest = response.read()
    conn.close()
    change.join(60)
    assert b"[DONE]" in rest and changed == [(2, 2)]
    change_line = "set_n_threads: n_threads = 2, n_threads_batch = 2"
    deadline = time.monotonic() + 10
    while not any(change_line in line for line in runner.output_tail(400)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the runner's output is read on a thread of its own
    lines = runner.output_tail(400)
    asked = [i for i, line in enumerate(lines) if f"{THREADS_ASKED}: n_threads = 2, n_threads_batch = 2" in line]
    changes = [i for i, line in enumerate(lines) if change_line in line]
    timings = [i for i, line in enumerate(lines) if "eval time =" in line]
    assert asked and changes and timings, "\n".join(lines[-40:])
    assert asked[-1] < max(timings) < changes[-1], "\n".join(lines[-40:])  # asked, answer ended, then changed
    assert set_threads(endpoint, 1, 1) == (1, 1)
