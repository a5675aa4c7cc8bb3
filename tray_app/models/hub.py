"""A model file on the Hugging Face hub, read without downloading it: its GGUF header, by HTTP ranges.

The header (metadata, tokenizer, tensor descriptions) is at the start of the file: a few MB of a 4 GB
file. :func:`read_remote_header` asks for it in ranges of 1 MiB over one kept-alive connection, parses it
with the same reader as local files (:mod:`gguf_header`), and builds the :class:`ModelInfo` the memory
planner needs, with the file's real size from ``Content-Range``. Headers already read are kept in the
cache folder (the bytes read, a valid start of the file), so the list opens instantly the next time.

The address is the hub's ``{endpoint}/{repo}/resolve/{revision}/{file}``; the endpoint is
``HF_ENDPOINT`` when set (a mirror, or the tests' loopback server), else ``https://huggingface.co``. The
hub answers with a redirect to its file servers, which honour ``Range``. Standard library only: the tray
stays small (huggingface_hub is loaded for downloads only).

Errors are :class:`HubError` with a French ``message_fr`` and a ``kind`` for programs.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import quote, urljoin, urlsplit

from tray_app.models.gguf_header import HeaderCorrupt, HeaderTruncated, NotGguf, UnsupportedVersion, read_header
from tray_app.models.gguf_info import ModelFileError, ModelInfo, model_info_from_header

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20
MAX_HEADER_BYTES = 64 << 20  # a header bigger than this is not a model we can run
MAX_REDIRECTS = 5
USER_AGENT = "desktop-mate-tray"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class HubError(Exception):
    """Kinds: ``unreachable``, ``not_found``, ``refused`` (gated or private), ``server``, ``not_gguf``."""

    def __init__(self, kind: str, message_fr: str) -> None:
        super().__init__(message_fr)
        self.kind = kind
        self.message_fr = message_fr


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def resolve_url(repo: str, file: str, revision: str = "main", endpoint: str | None = None) -> str:
    return f"{endpoint or hub_endpoint()}/{repo}/resolve/{quote(revision, safe='')}/{quote(file)}"


def _unreachable(detail: object) -> HubError:
    log.warning("hub unreachable: %s", detail)
    return HubError(
        "unreachable",
        "Impossible de joindre le site des modèles (Hugging Face). Vérifiez la connexion à Internet, "
        "puis réessayez.",
    )


class RangeFile:
    """The start of a remote file, read by HTTP ranges as a parser asks for it (``read``, ``seek``).

    Bytes are fetched contiguously from offset 0 (a forward seek fetches what it skips, so what was read
    is always a valid start of the file: :attr:`fetched`). One connection, kept alive, to the address the
    first redirect led to.
    """

    def __init__(self, url: str, *, timeout: float = 20.0, limit: int = MAX_HEADER_BYTES) -> None:
        self.url = url
        self.timeout = timeout
        self.limit = limit
        self.size = 0  # the whole file's size, known after the first answer
        self.etag = ""
        self.requests = 0
        self._data = bytearray()
        self._pos = 0
        self._conn: http.client.HTTPConnection | None = None
        self._conn_key: tuple[str, str, int] | None = None

    # -- a binary file, for the header reader ----------------------------------------------------
    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.size
        self._pos = max(0, offset)
        return self._pos

    def read(self, size: int) -> bytes:
        end = self._pos + size
        if self.size:
            end = min(end, self.size)
        if end > len(self._data):
            self.fetch_more(max(end - len(self._data), CHUNK))
        data = bytes(self._data[self._pos : end])
        self._pos += len(data)
        return data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def fetched(self) -> bytes:
        return bytes(self._data)

    # -- HTTP -------------------------------------------------------------------------------------
    def fetch_more(self, amount: int) -> None:
        start = len(self._data)
        if start + amount > self.limit:
            raise HubError("not_gguf", "Ce fichier ne ressemble pas à un modèle utilisable (en-tête trop grand).")
        stop = start + amount - 1
        if self.size:
            stop = min(stop, self.size - 1)
        if start > stop:
            return
        status, headers, body = self._get(f"bytes={start}-{stop}")
        if status == 200:  # the server ignored Range: it would send the whole file
            raise HubError("server", "Le serveur des modèles ne permet pas de lire le début d'un fichier seul. "
                                     "Réessayez plus tard.")
        match = _CONTENT_RANGE.match(headers.get("content-range", ""))
        if status != 206 or not match or int(match.group(1)) != start:
            raise HubError("server", "Le serveur des modèles a donné une réponse inattendue. Réessayez plus tard.")
        if match.group(3) != "*":
            self.size = int(match.group(3))
        self.etag = self.etag or headers.get("etag", "").strip('"')
        self._data += body

    def _get(self, byte_range: str) -> tuple[int, dict[str, str], bytes]:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HubError("server", "Le serveur des modèles a donné une adresse invalide.")
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"Range": byte_range, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more, new
                conn = self._connection(parts.scheme, parts.hostname, parts.port)
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    break
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    if attempt == 2:
                        raise _unreachable(exc) from None
            self.requests += 1
            status = response.status
            answer = {k.lower(): v for k, v in response.getheaders()}
            if response.will_close:
                self._drop()
            if status in (301, 302, 303, 307, 308) and "location" in answer:
                url = urljoin(url, answer["location"])
                self.url = url  # the next ranges go straight there
                continue
            if status in (200, 206):
                return status, answer, body
            raise _status_error(status)
        raise HubError("server", "Le serveur des modèles redirige sans fin. Réessayez plus tard.")

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        key = (scheme, host, port or (443 if scheme == "https" else 80))
        if self._conn is not None and self._conn_key == key:
            return self._conn
        self._drop()
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, key[2], timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, key[2], timeout=self.timeout)
        self._conn, self._conn_key = conn, key
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._conn_key = None


def _status_error(status: int) -> HubError:
    if status == 404:
        return HubError("not_found", "Ce modèle n'existe pas (ou plus) sur le site des modèles. "
                                     "Choisissez-en un autre dans la liste.")
    if status in (401, 403):
        return HubError("refused", "Ce modèle demande un compte Hugging Face et l'accord de ses auteurs : "
                                   "choisissez-en un autre dans la liste.")
    if status == 429:
        return HubError("server", "Le site des modèles reçoit trop de demandes. Réessayez dans quelques minutes.")
    return HubError("server", f"Le site des modèles a répondu par une erreur ({status}). Réessayez plus tard.")


@dataclass(frozen=True)
class RemoteHeader:
    info: ModelInfo
    file_size: int
    bytes_read: int  # over the network (0 when it came from the cache)
    requests: int
    seconds: float
    from_cache: bool = False


def read_remote_header(
    repo: str,
    file: str,
    *,
    revision: str = "main",
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    timeout: float = 20.0,
) -> RemoteHeader:
    """The model facts of ``repo``/``file`` from the first megabytes of the file. Raises :class:`HubError`."""
    started = time.perf_counter()
    name = f"{repo}/{file}"
    cached = _from_cache(cache_dir, name) if cache_dir is not None else None
    if cached is not None:
        data, size = cached
        info = _parse(name, io.BytesIO(data), size)
        return RemoteHeader(info, size, 0, 0, time.perf_counter() - started, from_cache=True)
    remote = RangeFile(resolve_url(repo, file, revision, endpoint), timeout=timeout)
    try:
        remote.fetch_more(CHUNK)  # the first range also tells the file's size
        info = _parse(name, cast(BinaryIO, remote), remote.size)
    finally:
        remote.close()
    if cache_dir is not None:
        _to_cache(cache_dir, name, remote.fetched, remote.size)
    return RemoteHeader(info, remote.size, len(remote.fetched), remote.requests, time.perf_counter() - started)


def _parse(name: str, f: BinaryIO, size: int) -> ModelInfo:
    label = name.rsplit("/", 1)[-1]
    try:
        header = read_header(f, size)
    except (NotGguf, UnsupportedVersion, HeaderCorrupt, HeaderTruncated) as exc:
        log.warning("remote header of %s unreadable: %s", name, exc)
        raise HubError("not_gguf", f"« {label} » n'est pas un modèle que ce programme sait lire. "
                                   "Choisissez un autre fichier.") from None
    try:
        return model_info_from_header(name, header, size)
    except ModelFileError as exc:
        raise HubError("not_gguf", exc.message_fr) from None


def _cache_paths(cache_dir: Path, name: str) -> tuple[Path, Path]:
    stem = hashlib.sha1(name.encode("utf-8")).hexdigest()[:20]
    return cache_dir / f"{stem}.json", cache_dir / f"{stem}.head"


def _from_cache(cache_dir: Path, name: str) -> tuple[bytes, int] | None:
    meta_path, data_path = _cache_paths(cache_dir, name)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data = data_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("name") != name or len(data) != meta.get("bytes"):
        return None
    return data, int(meta["size"])


def _to_cache(cache_dir: Path, name: str, data: bytes, size: int) -> None:
    meta_path, data_path = _cache_paths(cache_dir, name)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        data_path.write_bytes(data)
        meta = {"name": name, "size": size, "bytes": len(data), "saved": time.time()}
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
    except OSError as exc:  # a cache: never a reason to fail
        log.info("header cache not written: %s", exc)
