"""Downloading a model file from the hub: resumable, verified, and never half-visible.

The transfer is ``huggingface_hub``'s (a maintained client: ``HF_ENDPOINT``, redirects to the file
servers, retries that resume with ``Range`` when the line is cut, the size checked), imported only when a
download starts so that the tray stays small. What this module adds:

* **Where**: the bytes go to ``<data>/downloads/<sha256>.part`` (with a ``.json`` note naming the
  repository and file), on the same disk as the models folder, never in it: the model list, LM Studio
  and the others never see a partial file. Only a complete, verified file is moved (renamed) into
  ``<data>/models``.
* **Before**: the hub's metadata (``get_hf_file_metadata``: size, sha256 — the hub's ETag of an LFS
  file —, commit) and the free disk space (what is left to fetch, plus 512 MiB).
* **Pause and resume**: :meth:`Download.pause` stops the transfer at the next block and keeps the
  ``.part``; running the same download again (even after the program was closed) resumes where it stopped.
  :meth:`Download.cancel` stops and deletes it.
* **After**: the size, the sha256 against the hub's, and the GGUF header are checked; a file that fails
  any of them is deleted and :class:`DownloadError` says so in French.

:meth:`Download.run` blocks (a worker thread or the command line) and reports :class:`DownloadProgress`
through ``on_progress`` (speed and time left smoothed over the last seconds).
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tray_app.format_fr import MIB, size_fr
from tray_app.models.gguf_info import ModelFileError, read_model_info
from tray_app.models.hub import hub_endpoint, resolve_url

log = logging.getLogger(__name__)

DISK_MARGIN = 512 * MIB
BLOCK = 1 << 20  # progress (and so pause) every MiB; huggingface_hub's default is 10 MB
SPEED_WINDOW_S = 5.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

PHASE_METADATA = "metadata"
PHASE_DOWNLOAD = "download"
PHASE_VERIFY = "verify"
PHASE_DONE = "done"


class DownloadError(Exception):
    """Kinds: ``unreachable``, ``not_found``, ``refused``, ``server``, ``disk_full``, ``corrupt``,
    ``truncated``, ``not_gguf``, ``in_use``. ``message_fr`` says what happened and what to do."""

    def __init__(self, kind: str, message_fr: str) -> None:
        super().__init__(message_fr)
        self.kind = kind
        self.message_fr = message_fr


class DownloadStopped(Exception):
    """The user paused (``cancelled`` False: the part is kept) or cancelled (the part is deleted)."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("cancelled" if cancelled else "paused")
        self.cancelled = cancelled


@dataclass(frozen=True)
class DownloadProgress:
    phase: str  # metadata, download, verify, done
    done: int  # bytes downloaded (or verified)
    total: int
    speed: float  # bytes per second over the last seconds (0 while unknown)
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "done": self.done, "total": self.total, "speed": round(self.speed),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1)}


@dataclass(frozen=True)
class PendingDownload:
    """A ``.part`` left by a paused or interrupted download."""

    repo: str
    file: str
    done: int
    total: int


def staging_dir_for(data_dir: Path) -> Path:
    return data_dir / "downloads"


def pending_downloads(staging_dir: Path) -> list[PendingDownload]:
    found: list[PendingDownload] = []
    for note in sorted(staging_dir.glob("*.json")):
        try:
            meta = json.loads(note.read_text(encoding="utf-8"))
            part = note.with_suffix(".part")
            found.append(PendingDownload(str(meta["repo"]), str(meta["file"]),
                                         part.stat().st_size if part.exists() else 0, int(meta["size"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def delete_pending(staging_dir: Path, repo: str, file: str) -> None:
    """Forget a paused download of ``repo``/``file``: its part and its note."""
    for note in staging_dir.glob("*.json"):
        try:
            meta = json.loads(note.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("repo") == repo and meta.get("file") == file:
            _remove(note.with_suffix(".part"))
            _remove(note)


class _Meter:
    """Speed and time left over a sliding window."""

    def __init__(self) -> None:
        self._points: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, done: int, total: int, phase: str) -> DownloadProgress:
        now = time.monotonic()
        self._points.append((now, done))
        while len(self._points) > 2 and now - self._points[0][0] > SPEED_WINDOW_S:
            self._points.popleft()
        first_t, first_done = self._points[0]
        speed = (done - first_done) / (now - first_t) if now > first_t else 0.0
        eta = (total - done) / speed if speed > 0 else None
        return DownloadProgress(phase, done, total, max(0.0, speed), eta)


class Download:
    """One file of the hub into the models folder; :meth:`run` in a worker thread or a command."""

    def __init__(
        self,
        repo: str,
        file: str,
        *,
        models_dir: Path,
        staging_dir: Path,
        endpoint: str | None = None,
        revision: str = "main",
        on_progress: Callable[[DownloadProgress], None] = lambda progress: None,
    ) -> None:
        self.repo = repo
        self.file = file
        self.models_dir = models_dir
        self.staging_dir = staging_dir
        self.endpoint = endpoint or hub_endpoint()
        self.revision = revision
        self.on_progress = on_progress
        self.target = models_dir / Path(file).name
        self._stop: bool | None = None  # None: go on; False: pause; True: cancel
        self._lock = threading.Lock()
        self._meter = _Meter()
        self._part: Path | None = None

    # -- control (any thread) ---------------------------------------------------------------------
    def pause(self) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = False

    def cancel(self) -> None:
        with self._lock:
            self._stop = True
        part = self._part
        if part is not None and not self._running:
            _remove(part)

    _running = False

    def _check_stop(self) -> None:
        with self._lock:
            stop = self._stop
        if stop is not None:
            raise DownloadStopped(cancelled=stop)

    # -- the work (blocking) --------------------------------------------------------------------------
    def run(self) -> Path:
        """Download, verify and move; returns the model's path. Raises DownloadError or DownloadStopped."""
        self._running = True
        try:
            return self._run()
        except DownloadStopped as stop:
            if stop.cancelled and self._part is not None:
                _remove(self._part)
            raise
        finally:
            self._running = False

    def _run(self) -> Path:
        self.on_progress(DownloadProgress(PHASE_METADATA, 0, 0, 0.0, None))
        hf = _hub_client()
        url = resolve_url(self.repo, self.file, self.revision, self.endpoint)
        try:
            meta = hf.get_hf_file_metadata(url, endpoint=self.endpoint, retry_on_errors=True)
        except Exception as exc:  # noqa: BLE001  # the client raises its own classes (httpx2, hub): sorted by _hub_error
            raise _hub_error(exc) from None
        size = int(meta.size or 0)
        sha = (meta.etag or "").lower()
        if size <= 0:
            raise DownloadError("server", "Le site des modèles n'indique pas la taille du fichier. "
                                          "Réessayez plus tard.")
        if self.target.is_file() and self.target.stat().st_size == size:
            log.info("download: %s already in %s", self.file, self.models_dir)
            self.on_progress(DownloadProgress(PHASE_DONE, size, size, 0.0, 0.0))
            return self.target
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        key = sha if _SHA256.match(sha) else hashlib.sha256(f"{self.repo}/{self.file}/{sha}".encode()).hexdigest()
        part = self._part = self.staging_dir / f"{key}.part"
        note = part.with_suffix(".json")
        self._forget_other_parts(key)
        note.write_text(json.dumps({"repo": self.repo, "file": self.file, "size": size, "sha256": sha,
                                    "commit": meta.commit_hash}), encoding="utf-8")
        done = part.stat().st_size if part.exists() else 0
        if done > size:
            _remove(part)
            done = 0
        self._check_disk(size - done)
        self._check_stop()
        self._transfer(hf, meta.location or url, part, done, size)
        self._verify(part, size, sha)
        return self._move(part, note)

    def _check_disk(self, left: int) -> None:
        try:
            free = shutil.disk_usage(self.staging_dir).free
        except OSError:
            return
        if free < left + DISK_MARGIN:
            missing = left + DISK_MARGIN - free
            raise DownloadError(
                "disk_full", f"Il manque {size_fr(missing)} sur le disque pour télécharger ce modèle "
                f"({size_fr(left)} à télécharger, {size_fr(free)} libres). Libérez de la place (videz la "
                "corbeille, supprimez d'anciens modèles), puis réessayez."
            )

    def _transfer(self, hf: Any, url: str, part: Path, done: int, size: int) -> None:
        download = self

        class Progress:
            """What huggingface_hub takes as a progress bar; raises to pause or cancel between blocks."""

            def __init__(self, **kwargs: Any) -> None:
                self.n = int(kwargs.get("initial") or 0)

            def __enter__(self) -> Progress:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def update(self, n: int) -> None:
                self.n += n
                download.on_progress(download._meter.add(self.n, size, PHASE_DOWNLOAD))
                download._check_stop()

        self.on_progress(self._meter.add(done, size, PHASE_DOWNLOAD))
        hf.constants.DOWNLOAD_CHUNK_SIZE = BLOCK
        try:
            with open(part, "ab") as f:
                hf.http_get(url, f, resume_size=done, headers=hf.build_hf_headers(token=False),
                            expected_size=size, tqdm_class=Progress)
        except DownloadStopped:
            raise
        except OSError as exc:
            if "Consistency check failed" in str(exc):
                _remove(part)
                raise DownloadError(
                    "truncated", "Le fichier reçu est incomplet : il a été supprimé. Relancez le "
                    "téléchargement ; s'il échoue encore, choisissez un autre modèle."
                ) from None
            if exc.errno == errno.ENOSPC:
                raise DownloadError("disk_full", "Le disque est plein. Libérez de la place, puis reprenez "
                                                 "le téléchargement là où il s'est arrêté.") from None
            raise _hub_error(exc) from None
        except Exception as exc:  # noqa: BLE001  # the client raises its own network classes: sorted by _hub_error
            raise _hub_error(exc) from None

    def _verify(self, part: Path, size: int, sha: str) -> None:
        actual = part.stat().st_size
        if actual != size:
            _remove(part)
            raise DownloadError("truncated", f"Le fichier reçu est incomplet ({size_fr(actual)} sur "
                                             f"{size_fr(size)}) : il a été supprimé. Relancez le téléchargement.")
        if _SHA256.match(sha):
            digest = hashlib.sha256()
            checked = 0
            meter = _Meter()
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(8 * MIB), b""):
                    digest.update(block)
                    checked += len(block)
                    self.on_progress(meter.add(checked, size, PHASE_VERIFY))
                    self._check_stop()
            if digest.hexdigest() != sha:
                log.warning("download: sha256 %s, hub says %s", digest.hexdigest(), sha)
                _remove(part)
                _remove(part.with_suffix(".json"))
                raise DownloadError(
                    "corrupt", "Le fichier reçu est abîmé (son empreinte ne correspond pas à celle du site) : "
                    "il a été supprimé. Relancez le téléchargement ; s'il échoue encore, choisissez un autre "
                    "modèle."
                )
        else:
            log.warning("download: no sha256 from the hub for %s (ETag %r): size checked only", self.file, sha)
        try:
            read_model_info(part)
        except ModelFileError as exc:
            log.warning("download: %s is not a usable model: %s", self.file, exc.kind)
            _remove(part)
            _remove(part.with_suffix(".json"))
            raise DownloadError("not_gguf", f"« {self.file} » n'est pas un modèle que ce programme sait utiliser : "
                                            "il a été supprimé. Choisissez un autre modèle.") from None

    def _move(self, part: Path, note: Path) -> Path:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(part, self.target)
        except OSError as exc:
            log.warning("download: cannot move into %s: %s", self.target, exc)
            raise DownloadError(
                "in_use", f"Le modèle est téléchargé mais n'a pas pu être rangé dans {self.models_dir} "
                "(un fichier du même nom est peut-être utilisé). Fermez les programmes qui l'utilisent, puis "
                "relancez le téléchargement : il reprendra sans tout retélécharger."
            ) from None
        _remove(note)
        size = self.target.stat().st_size
        self.on_progress(DownloadProgress(PHASE_DONE, size, size, 0.0, 0.0))
        log.info("download: %s/%s → %s", self.repo, self.file, self.target)
        return self.target

    def _forget_other_parts(self, key: str) -> None:
        """An older version of the same file (the repository was updated): its part cannot be resumed."""
        for note in self.staging_dir.glob("*.json"):
            if note.stem == key:
                continue
            try:
                meta = json.loads(note.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("repo") == self.repo and meta.get("file") == self.file:
                _remove(note.with_suffix(".part"))
                _remove(note)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot delete %s: %s", path, exc)


def _hub_client() -> Any:
    """huggingface_hub's download functions, loaded now (never at the tray's start-up)."""
    import huggingface_hub.constants as constants
    from huggingface_hub.file_download import get_hf_file_metadata, http_get
    from huggingface_hub.utils import build_hf_headers

    class Client:
        pass

    client: Any = Client()
    client.constants = constants
    client.get_hf_file_metadata = get_hf_file_metadata
    client.http_get = http_get
    client.build_hf_headers = build_hf_headers
    return client


def _hub_error(exc: BaseException) -> DownloadError:
    """A French error for what huggingface_hub or its HTTP library raised."""
    from huggingface_hub import errors

    log.warning("download failed: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, errors.GatedRepoError):
        return DownloadError("refused", "Ce modèle demande un compte Hugging Face et l'accord de ses auteurs : "
                                        "choisissez-en un autre dans la liste.")
    if isinstance(exc, (errors.RepositoryNotFoundError, errors.EntryNotFoundError, errors.RevisionNotFoundError)):
        return DownloadError("not_found", "Ce modèle n'existe pas (ou plus) sur le site des modèles. "
                                          "Choisissez-en un autre dans la liste.")
    if isinstance(exc, errors.HfHubHTTPError):
        return DownloadError("server", "Le site des modèles a répondu par une erreur. Réessayez plus tard ; "
                                       "le téléchargement reprendra là où il s'est arrêté.")
    return DownloadError("unreachable", "La connexion au site des modèles a été perdue. Vérifiez Internet, puis "
                                        "reprenez : le téléchargement repartira là où il s'est arrêté.")
