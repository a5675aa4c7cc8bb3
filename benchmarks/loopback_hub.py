"""A stand-in for the Hugging Face hub on loopback: real GGUF files served with what clients rely on.

What ``huggingface_hub`` (``get_hf_file_metadata``, ``http_get``) and our header reader ask, answered as
the hub does:

* ``HEAD`` or ``GET /{repo}/resolve/{revision}/{file}`` → ``302`` to the file server, carrying
  ``X-Repo-Commit`` (40 hex), ``X-Linked-Etag`` (the file's sha256, quoted: the hub's ETag of an LFS
  file), ``X-Linked-Size`` and ``ETag``. The file server is ``localhost`` while the hub is
  ``127.0.0.1``: another host, so huggingface_hub stops at the redirect and reads the metadata there, as
  with the hub's CDN.
* ``GET``/``HEAD /cdn/{sha256}`` → the bytes, ``Accept-Ranges: bytes``, ``ETag``, ``Content-Length``;
  with ``Range: bytes=a-b`` (or ``a-``): ``206`` and ``Content-Range: bytes a-b/size``.
* A missing file: ``404`` with ``X-Error-Code: EntryNotFound``.

Faults, to test what a real network does: :attr:`LoopbackHub.cut_after` (the next answers of the file
server stop after so many bytes and close the connection: a cut line), ``corrupt`` (served bytes differ
from the announced sha256), ``short_by`` (the file server has fewer bytes than the hub announces: a
truncated result), ``delay_s`` (a pause between 64 KiB blocks, for screenshots of a download in progress).

Counts every byte of file data sent (:attr:`bytes_sent`) and logs each request (:attr:`requests`).
Used by the tests (``tests/models``) and the benchmarks; nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BLOCK = 64 * 1024


@dataclass
class HostedFile:
    path: Path
    size: int
    sha256: str
    corrupt: bool = False  # serve other bytes than the announced sha256
    short_by: int = 0  # the file server has this many bytes fewer than announced
    announced: int = 0  # the size the hub announces (X-Linked-Size), when not the file's


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class LoopbackHub:
    files: dict[tuple[str, str], HostedFile] = field(default_factory=dict)
    cut_after: list[int] = field(default_factory=list)  # per next file-server answer: bytes before cutting
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    bytes_sent: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: str, file: str, path: Path, *, sha256: str | None = None, corrupt: bool = False,
            short_by: int = 0, announced: int = 0) -> HostedFile:
        """Serve ``path`` as ``repo``/``file``; ``sha256`` is computed when not given (sparse files: give it)."""
        digest = sha256 or _sha256(path)
        hosted = HostedFile(path, path.stat().st_size, digest, corrupt, short_by, announced)
        self.files[(repo, file)] = hosted
        return hosted

    def start(self) -> str:
        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]  # the handler finds its hub here
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self.endpoint

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_sent = 0

    def _by_sha(self, sha: str) -> HostedFile | None:
        return next((f for f in self.files.values() if f.sha256 == sha), None)

    def _take_cut(self) -> int | None:
        with self._lock:
            return self.cut_after.pop(0) if self.cut_after else None

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a paused download): nothing to report."""


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def hub(self) -> LoopbackHub:
        return self.server.hub

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        from urllib.parse import unquote

        path = unquote(self.path.split("?", 1)[0])
        with self.hub._lock:
            self.hub.requests.append(Request(self.command, path, self.headers.get("Range")))
        m = _RESOLVE.match(path)
        if m:
            hosted = self.hub.files.get((m.group("repo"), m.group("file")))
            if hosted is None:
                self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT, "Content-Length": "0"})
                return
            self._send(302, {
                "Location": f"http://localhost:{self.server.server_address[1]}/cdn/{hosted.sha256}",
                "X-Repo-Commit": COMMIT,
                "X-Linked-Etag": f'"{hosted.sha256}"',
                "X-Linked-Size": str(hosted.announced or hosted.size),
                "ETag": f'"{hosted.sha256[:40]}"',
                "Content-Length": "0",
            })
            return
        if path.startswith("/cdn/"):
            hosted = self.hub._by_sha(path[len("/cdn/"):])
            if hosted is None:
                self._send(404, {"Content-Length": "0"})
                return
            self._serve_file(hosted, body)
            return
        self._send(404, {"Content-Length": "0"})

    def _serve_file(self, hosted: HostedFile, body: bool) -> None:
        size = hosted.size - hosted.short_by
        start, stop = 0, size - 1
        wanted = self.headers.get("Range")
        partial = False
        if wanted:
            m = _RANGE.match(wanted.strip())
            if m:
                start = int(m.group(1))
                stop = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                partial = True
            if start >= size:
                self._send(416, {"Content-Range": f"bytes */{size}", "Content-Length": "0"})
                return
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{hosted.sha256}"',
            "Content-Length": str(stop - start + 1),
            "Content-Type": "application/octet-stream",
        }
        if partial:
            headers["Content-Range"] = f"bytes {start}-{stop}/{size}"
        self._send(206 if partial else 200, headers)
        if not body:
            return
        cut = self.hub._take_cut()
        sent = 0
        with open(hosted.path, "rb") as f:
            f.seek(start)
            left = stop - start + 1
            while left > 0:
                block = f.read(min(BLOCK, left))
                if not block:
                    break
                if hosted.corrupt:
                    block = bytes(b ^ 0x5A for b in block)
                if cut is not None and sent + len(block) > cut:
                    block = block[: max(0, cut - sent)]
                    self._write(block)
                    self.hub._count(len(block))
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._write(block)
                self.hub._count(len(block))
                sent += len(block)
                left -= len(block)
                if self.hub.delay_s:
                    time.sleep(self.hub.delay_s)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _send(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
