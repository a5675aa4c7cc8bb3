"""Another computer's model: an OpenAI-compatible server of the house (Ollama, llama-server, LM Studio,
another Desktop-Mate) that the gateway relays to, so the avatar and chat clients keep the same address.

:func:`parse_remote_address` accepts what a person copies: ``192.168.1.20:11434``,
``http://pc-salon:8080/v1``, ``http://192.168.1.20:11436/v1`` (another Desktop-Mate's share).
:class:`RemoteServer` knows its models (``GET /v1/models``), whether it answers (checked at start, every
30 seconds and by every relayed request) and says so in French. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tray_app.host.runner import RunnerEndpoint

log = logging.getLogger(__name__)

CHECK_EVERY_S = 30.0
CHECK_TIMEOUT_S = 5.0


class RemoteAddressError(ValueError):
    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


@dataclass(frozen=True)
class RemoteAddress:
    host: str
    port: int
    prefix: str  # the path before /v1 ("" for the usual servers)

    @property
    def label(self) -> str:
        """« 192.168.1.20:11434 »: how the menu names the other computer."""
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}/v1"


def parse_remote_address(text: str) -> RemoteAddress:
    value = text.strip()
    if not value:
        raise RemoteAddressError("Indiquez l'adresse de l'autre ordinateur (par exemple http://192.168.1.20:11434) "
                                 "dans Paramètres → Modèle.")
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or parts.scheme != "http" or not parts.hostname:
        raise RemoteAddressError(f"« {text.strip()} » n'est pas une adresse utilisable. Écrivez-la comme "
                                 "http://192.168.1.20:11434 (adresse de l'ordinateur, deux-points, numéro de port).")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        prefix = prefix[: -len("/v1")]
    host = parts.hostname
    return RemoteAddress(f"[{host}]" if ":" in host else host, port or 80, prefix)


class RemoteServer:
    """One other computer's server. Thread-safe; ``on_change`` is called (from any thread) when it starts
    or stops answering, or its models change."""

    def __init__(self, address: RemoteAddress, key: str = "", wanted_model: str = "") -> None:
        self.address = address
        self.key = key
        self.wanted_model = wanted_model
        self.on_change: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._models: tuple[str, ...] = ()
        self._reachable: bool | None = None  # None: not checked yet
        self._problem_fr = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- facts --------------------------------------------------------------------------------------
    @property
    def reachable(self) -> bool | None:
        with self._lock:
            return self._reachable

    @property
    def models(self) -> tuple[str, ...]:
        with self._lock:
            return self._models

    @property
    def model_id(self) -> str:
        models = self.models
        if self.wanted_model and (not models or self.wanted_model in models):
            return self.wanted_model
        return models[0] if models else self.wanted_model

    @property
    def problem_fr(self) -> str:
        with self._lock:
            return self._problem_fr

    @property
    def unreachable_fr(self) -> str:
        return (f"L'autre ordinateur ({self.address.label}) ne répond pas : il est peut-être éteint, ou son "
                "programme de modèle est fermé. Réessayez plus tard, ou utilisez le modèle de cet ordinateur "
                "(menu de l'icône).")

    def endpoint(self) -> RunnerEndpoint:
        a = self.address
        return RunnerEndpoint(a.host.strip("[]"), a.port, self.key, self.model_id, a.prefix)

    # -- checks -----------------------------------------------------------------------------------------
    def check(self, timeout: float = CHECK_TIMEOUT_S) -> bool:
        """Ask its models (``GET /v1/models``); True when it answered with a list."""
        a = self.address
        conn = http.client.HTTPConnection(a.host.strip("[]"), a.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            conn.request("GET", f"{a.prefix}/v1/models", headers=headers)
            response = conn.getresponse()
            data = response.read(1 << 20)
        except (OSError, http.client.HTTPException) as exc:
            log.info("remote %s unreachable: %s", a.label, exc)
            self._set(False, (), self.unreachable_fr)
            return False
        finally:
            conn.close()
        if response.status in (401, 403):
            self._set(False, (), f"L'autre ordinateur ({a.label}) refuse la clé. Recopiez la clé qu'il affiche "
                                 "dans Paramètres → Modèle.")
            return False
        try:
            listed = json.loads(data)["data"]
            models = tuple(str(m["id"]) for m in listed if isinstance(m, dict) and "id" in m)
        except (ValueError, KeyError, TypeError):
            models = ()
        if response.status != 200 or not models:
            self._set(False, (), f"L'adresse {a.label} répond, mais ce n'est pas un serveur de modèle compatible "
                                 "OpenAI (ou il n'a aucun modèle). Vérifiez l'adresse et le port.")
            return False
        self._set(True, models, "")
        return True

    def mark(self, reachable: bool) -> None:
        """What a relayed request found (it answered, or it could not be reached)."""
        with self._lock:
            models = self._models
        self._set(reachable, models, "" if reachable else self.unreachable_fr)

    def _set(self, reachable: bool, models: tuple[str, ...], problem: str) -> None:
        with self._lock:
            changed = (reachable, models) != (self._reachable, self._models)
            self._reachable, self._problem_fr = reachable, problem
            if models or reachable:
                self._models = models or self._models
        if changed:
            log.info("remote %s: %s", self.address.label, "answers" if reachable else "does not answer")
            try:
                self.on_change()
            except Exception:
                log.exception("remote on_change failed")

    # -- watching ---------------------------------------------------------------------------------------
    def start_watching(self, every_s: float = CHECK_EVERY_S) -> None:
        if self._thread is not None:
            return

        def watch() -> None:
            while True:
                started = time.monotonic()
                self.check()
                if self._stop.wait(max(1.0, every_s - (time.monotonic() - started))):
                    return

        self._thread = threading.Thread(target=watch, name="remote-check", daemon=True)
        self._thread.start()

    def stop_watching(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(CHECK_TIMEOUT_S + 1)
