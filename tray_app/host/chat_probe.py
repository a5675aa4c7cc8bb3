"""A minimal streaming chat client (standard library): self-test, benchmarks and tests measure with it.

It measures exactly as the gateway does (:class:`StreamAccountant`): time to first token from the moment
the request is sent, tokens per second between the first and the last token.
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
    parts = urlsplit(base_url)
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
    body.update(extra or {})
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        if response.status != 200:
            data = response.read()
            try:
                payload = json.loads(data)
                message = payload["error"]["message"]
            except (ValueError, KeyError, TypeError):
                payload, message = None, data[:300].decode("utf-8", "replace")
            raise ChatProbeError(response.status, str(message), payload)
        acc = StreamAccountant(chat=True, started=started)
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
