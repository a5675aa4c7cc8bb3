"""A minimal streaming client (standard library): self-test, benchmarks and tests measure with it.

It measures exactly as the gateway does (:class:`StreamAccountant`): time to first token from the moment
the request is sent, tokens per second between the first and the last token. :func:`stream_chat` is what
clients send (chat messages through the model's template); :func:`stream_completion` sends a raw prompt
to ``/v1/completions``, for a measurement that must know the exact tokens it sends (the GPU check's
prompt of a given length); :func:`post_json` is for the few plain requests around them (llama-cpp-python's
``/extras/tokenize``).
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tray_app.host.gateway_metrics import StreamAccountant


@dataclass(frozen=True)
class ChatProbeResult:
    text: str
    tokens: int
    ttft_s: float | None
    tokens_per_s: float | None
    total_s: float
    complete: bool  # the stream ended with [DONE] and no error event
    error: str = ""  # the error event's message when the stream carried one


class ChatProbeError(Exception):
    """The server answered with an error: ``status`` and its (French, from the gateway) message."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body


def stream_chat(
    base_url: str,
    messages: list[dict[str, str]],
    *,
    max_tokens: int = 64,
    temperature: float = 0.0,
    timeout: float = 300.0,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ChatProbeResult:
    """POST ``/v1/chat/completions`` with ``stream: true`` to ``base_url`` (``http://host:port``)."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
    body.update(extra or {})
    return _stream(base_url, "/v1/chat/completions", body, chat=True, timeout=timeout, headers=headers)


def stream_completion(
    base_url: str,
    prompt: str,
    *,
    max_tokens: int = 64,
    temperature: float = 0.0,
    timeout: float = 300.0,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ChatProbeResult:
    """POST ``/v1/completions`` with ``stream: true``: the prompt as it is, no chat template around it."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
    body.update(extra or {})
    return _stream(base_url, "/v1/completions", body, chat=False, timeout=timeout, headers=headers)


def post_json(
    base_url: str,
    path: str,
    body: dict[str, Any],
    *,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``body`` as JSON to ``base_url`` + ``path`` and return the decoded answer (not streamed)."""
    conn = _connection(base_url, timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode("utf-8"), headers=_json_headers(headers))
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise _error(response.status, data)
        return json.loads(data)
    finally:
        conn.close()


def _stream(
    base_url: str,
    path: str,
    body: dict[str, Any],
    *,
    chat: bool,
    timeout: float,
    headers: dict[str, str] | None,
) -> ChatProbeResult:
    conn = _connection(base_url, timeout)
    try:
        started = time.perf_counter()
        conn.request("POST", path, body=json.dumps(body).encode("utf-8"), headers=_json_headers(headers))
        response = conn.getresponse()
        if response.status != 200:
            raise _error(response.status, response.read())
        acc = StreamAccountant(chat=chat, started=started)
        while True:
            data = response.read1(65536)
            if not data:
                break
            acc.feed(data)
        total = time.perf_counter() - started
    finally:
        conn.close()
    return ChatProbeResult(
        acc.text, acc.tokens, acc.ttft_s, acc.tokens_per_s, total, acc.done and not acc.error, acc.error
    )


def _connection(base_url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)


def _json_headers(headers: dict[str, str] | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **(headers or {})}


def _error(status: int, data: bytes) -> ChatProbeError:
    """The OpenAI-style ``{"error": {"message": …}}`` of an error answer, else its first bytes."""
    try:
        payload = json.loads(data)
        message = payload["error"]["message"]
    except (ValueError, KeyError, TypeError):
        payload, message = None, data[:300].decode("utf-8", "replace")
    return ChatProbeError(status, str(message), payload)
