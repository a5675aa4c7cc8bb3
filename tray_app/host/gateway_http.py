"""HTTP pieces of the gateway: requests checked, OpenAI-shaped errors, who may call us, one-at-a-time turns.

Who may call: the gateway listens on 127.0.0.1 only, so only programs of this computer can connect. A web
page in the user's browser is also "on this computer", so:

* ``Host`` must be a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``, any port). A DNS-rebinding
  page (evil.example resolved to 127.0.0.1) sends ``Host: evil.example`` and is refused.
* ``Origin``, when present (browsers send it on every cross-site POST and on fetch), must be a loopback
  origin too; ``Origin: null`` (sandboxed frames, files) is refused. Programs (OpenAI SDK, curl, Unity)
  send no Origin and pass.
* CORS: no ``Access-Control-Allow-Origin: *``. A page served from this computer (a local chat page on
  ``http://localhost:…``) gets its own origin echoed back; any other page cannot read our answers, and
  its requests are refused before any work is done.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from tray_app.host.runner_engine_patches import INVALID_GRAMMAR

log = logging.getLogger(__name__)


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
RUNNER_UNREACHABLE_FR = "Le moteur du modèle ne répond pas. Réessayez dans quelques secondes."


def openai_error(message: str, *, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The body OpenAI clients understand: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:port
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_is_loopback(host_header: str | None) -> bool:
    """True for a missing Host (HTTP/1.0 programs) or a loopback name with or without a port."""
    if host_header is None:
        return True
    return _hostname(host_header) in LOOPBACK_NAMES


def origin_is_loopback(origin: str) -> bool:
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_NAMES


def client_is_loopback(address: str) -> bool:
    return address == "::1" or address.startswith("127.") or address == "::ffff:127.0.0.1"


class FifoTurn:
    """A lock handed to waiters in arrival order, with a timeout for each waiter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            if not self._held and not self._waiters:
                self._held = True
                return True
            ticket = threading.Event()
            self._waiters.append(ticket)
        if ticket.wait(max(0.0, timeout)):
            return True
        with self._lock:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
                return False
        return True  # handed to us just as we gave up: we hold it

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()  # ownership passes directly
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)


# -- requests and the runner's errors ---------------------------------------------------------------
def parse_json(body: bytes) -> tuple[Any, str]:
    """(the request's JSON, "") or (None, a French sentence that says what is wrong)."""
    try:
        return json.loads(body), ""
    except (ValueError, UnicodeDecodeError):
        return None, "Le corps de la requête n'est pas du JSON valide."
    except RecursionError:  # thousands of nested brackets
        return None, "Le corps de la requête est trop profondément imbriqué."


def runner_error(status: int, data: bytes, grammar_param: str | None = None) -> tuple[int, dict[str, Any]]:
    """The runner's error answer in OpenAI shape with a French message; its own words go in ``detail``.

    ``grammar_param``: the request's field a grammar came from (``grammar``, ``response_format``,
    ``tool_choice``), named when llama.cpp could not parse it.
    """
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    detail: Any = error.get("message") if isinstance(error, dict) else (
        payload.get("detail") if isinstance(payload, dict) else data[:500].decode("utf-8", "replace")
    )
    if isinstance(detail, str):
        detail = detail.split("\n\n  File ")[0].strip()  # the runner appends a traceback excerpt
    code = error.get("code") if isinstance(error, dict) else None
    param = None
    if code == "context_length_exceeded":
        message = ("La conversation est trop longue pour la mémoire du modèle. Commencez une nouvelle "
                   "conversation ou raccourcissez le message.")
        status, param = 400, "messages"
    elif INVALID_GRAMMAR in str(detail):
        what = {
            "response_format": "le schéma JSON de « response_format »",
            "tool_choice": "les paramètres de l'outil demandé",
        }.get(grammar_param or "", "la grammaire (« grammar »)")
        message = f"Le moteur du modèle ne peut pas lire {what} : vérifiez sa syntaxe."
        status, code, param = 400, "invalid_grammar", grammar_param or "grammar"
    elif status in (400, 422) or "validation error" in str(detail):  # the runner says 500 for these
        message = "La requête est invalide : un champ a une valeur incorrecte (voir « detail »)."
        status, code = 400, code or "invalid_request"
        param = _validation_param(detail)
    elif status == 401:
        message, status, code = RUNNER_UNREACHABLE_FR, 503, "runner_unreachable"
    else:
        message = "Le moteur du modèle a rencontré une erreur. Réessayez ; les détails sont dans le journal."
        status, code = 500, code or "runner_error"
    log.warning("gateway: runner answered HTTP %s: %s", status, str(detail)[:500])
    kind = "invalid_request_error" if status == 400 else "server_error"
    body = openai_error(message, kind=kind, code=code, param=param)
    body["error"]["detail"] = detail
    return status, body


def _validation_param(detail: Any) -> str | None:
    """« messages[0].content » from a pydantic error list (``loc``: ["body", "messages", 0, "content"])."""
    if not (isinstance(detail, list) and detail and isinstance(detail[0], dict)):
        return None
    loc = [part for part in detail[0].get("loc", ()) if part != "body"]
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None
