"""A streamed answer between the runner and the client: cut into events, put in OpenAI's shape.

The runner (llama-cpp-python's server) streams server-sent events that differ from OpenAI's in two ways
clients notice; :class:`StreamRewriter` mends them event by event, without holding anything back:

* **Tool calls.** OpenAI sends a tool call's ``id``, ``type`` and function ``name`` once, in the first
  chunk of that call, then only pieces of ``arguments``; the runner repeats all of them in every chunk
  and adds ``"tool_calls": null`` where there is none. The official SDK's stream helper concatenates
  what it receives, and built the name « meteometeo… ».
* **Token counts.** The runner ends every stream with a ``{"choices": [], "usage": …}`` chunk (see
  ``runner_engine_patches``); OpenAI sends it only when ``stream_options.include_usage`` asks for it.

Only events that may need it are parsed (tool calls asked, or the usage chunk): a plain chat stream is
passed on as it came.
"""

from __future__ import annotations

import json
from typing import Any

_SEPARATORS = (b"\r\n\r\n", b"\n\n")


class EventSplitter:
    """Cuts a byte stream into whole server-sent events (each with its blank-line separator)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        events: list[bytes] = []
        while True:
            cuts = [(i, sep) for sep in _SEPARATORS if (i := self._buffer.find(sep)) >= 0]
            if not cuts:
                return events
            index, sep = min(cuts)
            events.append(self._buffer[: index + len(sep)])
            self._buffer = self._buffer[index + len(sep) :]

    @property
    def rest(self) -> bytes:
        """Bytes after the last whole event (an event cut off by the end of the stream)."""
        return self._buffer


class StreamRewriter:
    def __init__(self, *, include_usage: bool, tools: bool) -> None:
        self.include_usage = include_usage
        self.tools = tools
        self._seen_calls: set[tuple[int, int]] = set()  # (choice index, tool call index) already named

    def rewrite(self, event: bytes) -> bytes | None:
        """The event to send (``event`` itself when unchanged), or None to leave it out."""
        if not event.startswith(b"data:"):
            return event  # a comment (the runner's pings) or an empty line
        if not (self.tools or b'"usage"' in event):
            return event
        body = event.rstrip(b"\r\n")
        separator = event[len(body) :]
        payload = body[5:].strip()
        try:
            chunk = json.loads(payload)
        except ValueError:
            return event  # [DONE], or not ours to judge
        if not isinstance(chunk, dict):
            return event
        choices = chunk.get("choices")
        if choices == [] and isinstance(chunk.get("usage"), dict):
            return event if self.include_usage else None
        if not self.tools or not isinstance(choices, list):
            return event
        changed = False
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                changed |= self._mend_delta(choice.get("index", 0), choice["delta"])
        if not changed:
            return event
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode("utf-8") + separator

    def _mend_delta(self, choice_index: Any, delta: dict[str, Any]) -> bool:
        changed = False
        for key in ("tool_calls", "function_call"):
            if key in delta and delta[key] is None:
                del delta[key]
                changed = True
        calls = delta.get("tool_calls")
        if not isinstance(calls, list):
            return changed
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                continue
            index = call.get("index", position)
            seen = (choice_index if isinstance(choice_index, int) else 0, index if isinstance(index, int) else position)
            if seen not in self._seen_calls:
                self._seen_calls.add(seen)
                continue
            for field in ("id", "type"):
                if field in call:
                    del call[field]
                    changed = True
            function = call.get("function")
            if isinstance(function, dict) and "name" in function:
                del function["name"]
                changed = True
        return changed
