"""A stand-in for the Unity avatar's ``PythonBridge`` that reads lines exactly the way the C# script does.

It is a port of ``PythonBridge.cs`` (Desktop-Mate, ``unity/DesktopMateUnity/Assets/Scripts/IPC/``), not a
JSON reader, so a test that passes here proves what the real avatar will understand:

* one client at a time: the next connection waits in the backlog, unseen and not greeted, until the
  current client leaves (``ListenForConnections``);
* on accept it writes one greeting line (``{}``: what ``JsonUtility.ToJson`` makes of an anonymous object);
* it reads 4096 bytes at a time and decodes **each chunk on its own** (``Encoding.UTF8.GetString``, bad
  bytes become U+FFFD); its line buffer is kept across clients, as in Unity (``messageBuffer``);
* a line is a command only if it contains ``"command"``; the command is the first of
  :data:`UNITY_ORDER` whose quoted name the line contains;
* values are cut out by position (``ExtractPathFromJson``, ``ExtractStringValue``, ``ExtractFloatValue``,
  ``ExtractBoolValue``); ``load_model`` turns ``/`` into ``\\``; a float is read as C#'s
  ``float.TryParse(NumberStyles.Float, InvariantCulture)`` would, else 0;
* it answers ``{}`` after each command.

Differences that cannot be reproduced: C#'s ``IndexOf`` is culture-sensitive (ours is ordinal; the
protocol refuses the invisible characters where that could matter), and replies that Unity sends later
from its main thread are sent at once here.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

UNITY_ORDER = (
    "load_model",
    "unload_model",
    "set_expression",
    "reset_expressions",
    "set_transition_speed",
    "set_auto_blink",
    "set_auto_head_movement",
)
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class ReceivedCommand:
    command: str
    values: dict[str, Any] = field(default_factory=dict)
    line: str = ""


# -- the C# extraction functions, one for one --------------------------------------------------------
def extract_path(line: str) -> str:
    start = line.find('"path"')
    if start == -1:
        return ""
    value_start = line.find('"', start + 6)
    if value_start == -1:
        return ""
    value_end = line.find('"', value_start + 1)
    if value_end == -1:
        return ""
    return line[value_start + 1 : value_end].replace("/", "\\")


def extract_string(line: str, key: str) -> str:
    search = f'"{key}"'
    start = line.find(search)
    if start == -1:
        return ""
    value_start = line.find('"', start + len(search) + 1)
    if value_start == -1:
        return ""
    value_end = line.find('"', value_start + 1)
    if value_end == -1:
        return ""
    return line[value_start + 1 : value_end]


def _raw_scalar(line: str, key: str) -> str | None:
    start = line.find(f'"{key}"')
    if start == -1:
        return None
    colon = line.find(":", start)
    if colon == -1:
        return None
    i = colon + 1
    while i < len(line) and line[i] in " \t":
        i += 1
    end = i
    while end < len(line) and line[end] not in ",}\n":
        end += 1
    return line[i:end].strip()


def extract_float(line: str, key: str) -> float:
    text = _raw_scalar(line, key)
    if text is None:
        return 0.0
    if text in ("NaN", "Infinity", "-Infinity", "+Infinity"):
        return float(text.replace("Infinity", "inf"))
    if not _FLOAT.fullmatch(text):
        return 0.0
    return float(struct.unpack("f", struct.pack("f", float(text)))[0])  # C# float is 32-bit


def extract_bool(line: str, key: str) -> bool:
    text = _raw_scalar(line, key)
    return text is not None and text.lower() == "true"


def read_like_unity(line: str) -> ReceivedCommand | None:
    """``HandleMessage``: what the avatar does with one line (``None``: ignored)."""
    if '"command"' not in line:
        return None
    for name in UNITY_ORDER:
        if f'"{name}"' in line:
            break
    else:
        return None
    values: dict[str, Any] = {}
    if name == "load_model":
        values = {"path": extract_path(line)}
    elif name == "set_expression":
        values = {"name": extract_string(line, "name"), "value": extract_float(line, "value")}
    elif name == "set_transition_speed":
        values = {"speed": extract_float(line, "speed")}
    elif name == "set_auto_blink":
        values = {"enabled": extract_bool(line, "enabled")}
    elif name == "set_auto_head_movement":
        values = {
            "enabled": extract_bool(line, "enabled"),
            "min_interval": extract_float(line, "min_interval"),
            "max_interval": extract_float(line, "max_interval"),
            "max_angle": extract_float(line, "max_angle"),
        }
    return ReceivedCommand(name, values, line)


# -- the server ------------------------------------------------------------------------------------
class FakeUnityAvatar:
    """``start()`` listens on an ephemeral port (kept by ``restart()``); ``stop()`` is Unity quitting."""

    def __init__(self, greeting: bytes | None = b"{}\n", reply: bytes | None = b"{}\n") -> None:
        self.greeting = greeting
        self.reply = reply
        self.port = 0
        self.commands: list[ReceivedCommand] = []
        self.ignored: list[str] = []
        self.accepted = 0
        self.message_buffer = ""  # like Unity's field: survives from one client to the next
        self._cond = threading.Condition()
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._running = False
        self._thread: threading.Thread | None = None

    # life cycle
    def start(self) -> FakeUnityAvatar:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(5)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running = True
        self._thread = threading.Thread(target=self._listen, name="fake-unity", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        client, self._client = self._client, None
        if client is not None:
            _close(client)
        if self._thread is not None:
            self._thread.join(2)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # helpers for tests
    def wait_for_commands(self, count: int, timeout: float = 3.0) -> list[ReceivedCommand]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.commands) >= count, timeout)
            return list(self.commands)

    def wait_for_accepts(self, count: int, timeout: float = 3.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.accepted >= count, timeout)

    def send_to_client(self, data: bytes) -> None:
        """Write raw bytes to the current client (garbage, half lines, invalid UTF-8…)."""
        if self._client is not None:
            self._client.sendall(data)

    # Unity's threads
    def _listen(self) -> None:
        while self._running:
            try:
                client, _addr = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self._client = client
            with self._cond:
                self.accepted += 1
                self._cond.notify_all()
            try:
                if self.greeting is not None:
                    client.sendall(self.greeting)
                self._receive(client)
            except OSError:
                pass
            finally:
                _close(client)
                self._client = None

    def _receive(self, client: socket.socket) -> None:
        client.settimeout(0.05)
        while self._running:
            try:
                chunk = client.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return
            self.message_buffer += chunk.decode("utf-8", "replace")  # each chunk decoded alone
            while "\n" in self.message_buffer:
                message, self.message_buffer = self.message_buffer.split("\n", 1)
                if message.strip():
                    self._handle(message, client)

    def _handle(self, message: str, client: socket.socket) -> None:
        command = read_like_unity(message)
        with self._cond:
            if command is None:
                self.ignored.append(message)
            else:
                self.commands.append(command)
            self._cond.notify_all()
        if command is not None and self.reply is not None:
            client.sendall(self.reply)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def wait_until(predicate: Any, timeout: float = 3.0, step: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
