"""The gateway: the stable local address clients use (``http://127.0.0.1:11435/v1``), OpenAI-compatible.

It lives in the tray process, so it is standard library only (``ThreadingHTTPServer`` + ``http.client``;
no FastAPI, uvicorn or llama_cpp import here: the tray must stay small). Requests are relayed to the
runner as they come, byte for byte; streamed answers are forwarded chunk by chunk as soon as they arrive
(TCP_NODELAY both ways), so clients see the runner's speed.

Routes: ``GET /health`` and ``GET /v1/models`` (answered here, they never load the model),
``POST /v1/chat/completions`` and ``POST /v1/completions`` (streaming or not, relayed).

Behaviour:

* **Port**: 11435 by default (next to Ollama's 11434, away from the 8000/8080/5000 that web tools use).
  When it is taken the next free port (up to +10) is used and :attr:`Gateway.port_notice` says so in
  French; with ``allow_other_port=False`` :class:`PortUnavailable` is raised instead. On Windows the
  socket is bound with ``SO_EXCLUSIVEADDRUSE`` (``SO_REUSEADDR`` there would let two programs share it).
* **Lazy loading** on the first request, **idle unload** by the supervisor (keep-alive).
* **Bounded waiting**: at most ``max_pending`` requests at once (loading, queued or generating); one
  answer is generated at a time, in arrival order; beyond the limit, or after ``wait_s``, an
  OpenAI-shaped 503 with a French message and ``Retry-After``.
* **Errors** are OpenAI-shaped JSON (``{"error": {"message", "type", "param", "code"}}``), in French.
* **Security**: loopback clients, loopback ``Host`` and ``Origin`` only (see :mod:`gateway_http`).
  It listens on 127.0.0.1 and, when possible, on [::1] with the same port (« localhost » on Windows).
  **Sharing** (:meth:`Gateway.start_sharing`, off unless the user turns it on) adds a listener on every
  network interface, on its own port, where every request must carry the key
  (``Authorization: Bearer KEY``) and browsers (an ``Origin``) are refused; the loopback port keeps its
  rules and never answers the network.
* **Another computer's model** (:attr:`Gateway.remote`, a :class:`~tray_app.host.remote.RemoteServer`):
  requests are relayed there as they came (its own server checks them; ``model`` is set to one of its
  models), ``/v1/models`` lists its models, ``/health`` says whether it answers; the local runner is
  not used.
* **Figures**: every relayed request adds a :class:`RequestMetrics` to :attr:`Gateway.metrics` (bounded).
* **Hooks**: ``reply_hooks`` get each finished assistant reply text (the avatar's emotion relay);
  ``request_hooks`` get each :class:`RequestMetrics`. Both are called on the request's thread once the
  whole answer is known, just before its last bytes are sent (so a client that has its answer also sees
  the figures); they must be quick (hand the work to another thread); exceptions are logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tray_app.host.gateway_http import (
    RUNNER_UNREACHABLE_FR,
    FifoTurn,
    client_is_loopback,
    host_is_loopback,
    openai_error,
    origin_is_loopback,
    parse_json,
    runner_error,
)
from tray_app.host.gateway_metrics import MetricsHistory, RequestMetrics, StreamAccountant, reply_of
from tray_app.host.gateway_stream import EventSplitter, StreamRewriter
from tray_app.host.host_state import HostState, HostUnavailable
from tray_app.host.openai_request import Refusal, RunnerRequest, translate
from tray_app.host.remote import RemoteServer
from tray_app.host.runner import RunnerEndpoint, model_id_for
from tray_app.host.sharing import key_matches
from tray_app.host.supervisor import Supervisor
from tray_app.settings_schema import SettingValues

log = logging.getLogger(__name__)

DEFAULT_API_PORT = SettingValues().api_port  # the setting's default
PORT_SEARCH_SPAN = 10
SERVICE_NAME = "desktop-mate-tray"

CHAT_ROUTE = "/v1/chat/completions"
COMPLETION_ROUTE = "/v1/completions"
POST_ROUTES = (CHAT_ROUTE, COMPLETION_ROUTE)
GET_ROUTES = ("/health", "/v1/models")

STREAM_BROKEN_FR = (
    "Le moteur du modèle s'est arrêté pendant la réponse ; il redémarre. Réessayez dans quelques secondes."
)


@dataclass(frozen=True)
class GatewayOptions:
    port: int = DEFAULT_API_PORT  # 0 = any free port (tests, self-test)
    host: str = "127.0.0.1"
    allow_other_port: bool = True
    max_pending: int = 8
    wait_s: float = 300.0  # longest wait for the model to load, then for its turn
    upstream_timeout_s: float = 300.0  # longest silence from the runner during an answer
    history: int = 200
    max_body_bytes: int = 8 * 1024 * 1024


class PortUnavailable(Exception):
    def __init__(self, port: int, message_fr: str) -> None:
        super().__init__(message_fr)
        self.port = port
        self.message_fr = message_fr


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    allow_reuse_address = os.name != "nt"

    def __init__(self, address: tuple[str, int], gateway: Gateway, share_key: str = "") -> None:
        self.gateway = gateway
        self.share_key = share_key  # not empty: the network listener, where the key is required
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request (reset, timeout): the log, never stderr."""
        log.debug("gateway: connection from %s ended abruptly", client_address, exc_info=True)

    def server_bind(self) -> None:
        if os.name == "nt" and hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        # Not HTTPServer.server_bind: it calls socket.getfqdn(), a DNS lookup that can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class Gateway:
    """Loopback OpenAI-compatible HTTP server in front of the :class:`Supervisor`'s runner."""

    def __init__(
        self, supervisor: Supervisor, options: GatewayOptions | None = None, *, model_id: str | None = None
    ) -> None:
        self.supervisor = supervisor
        self.options = options or GatewayOptions()
        self.model_id = model_id or model_id_for(supervisor.base_config.model_path)
        self.metrics = MetricsHistory(self.options.history)
        self.reply_hooks: list[Callable[[str], None]] = []
        self.request_hooks: list[Callable[[RequestMetrics], None]] = []
        self.port_notice = ""  # French, set when another port than the wanted one had to be used
        self._server: _Server | None = None
        self._server6: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._turn = FifoTurn()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._vocab: tuple[str, int] | None = None  # (model file, its vocabulary size)
        self.remote: RemoteServer | None = None  # another computer's model, when the user chose one
        self._share_server: _Server | None = None
        self._share_thread: threading.Thread | None = None

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> str:
        """Bind and serve on a background thread; returns the base URL. Raises :class:`PortUnavailable`."""
        wanted = self.options.port
        candidates = [wanted]
        if wanted and self.options.allow_other_port:
            candidates += [p for p in range(wanted + 1, wanted + 1 + PORT_SEARCH_SPAN) if p <= 65535]
        for port in candidates:
            try:
                self._server = _Server((self.options.host, port), self)
                break
            except OSError as exc:
                log.info("gateway: port %s unavailable (%s)", port, exc)
        if self._server is None:
            raise PortUnavailable(wanted, self._port_taken_message(wanted))
        if wanted and self.port != wanted:
            self.port_notice = (
                f"Le port {wanted} est déjà utilisé par un autre programme : le modèle répond donc à "
                f"l'adresse {self.api_base}. Indiquez cette adresse à vos programmes, ou libérez le port "
                f"{wanted} puis relancez."
            )
            log.warning("gateway: port %s taken, using %s", wanted, self.port)
        servers = [self._server]
        if self.options.host == "127.0.0.1" and socket.has_ipv6:
            # Windows resolves « localhost » to ::1 first, and a refused loopback connection costs a
            # client about 2 s there before it tries 127.0.0.1: answer on [::1] too (best effort).
            try:
                self._server6 = _Server6(("::1", self.port), self)
                servers.append(self._server6)
            except OSError as exc:
                log.info("gateway: no IPv6 loopback listener on port %s (%s)", self.port, exc)
        for server in servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway-http", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info("gateway listening on %s", self.url)
        return self.url

    def start_sharing(self, port: int, key: str) -> int:
        """Also listen on the local network (every interface) on ``port`` (or the next free one, up to +10;
        0: any), answering only requests with ``key``. Returns the port. Raises :class:`PortUnavailable`."""
        self.stop_sharing()
        candidates = [port] + ([p for p in range(port + 1, port + 1 + PORT_SEARCH_SPAN) if p <= 65535] if port else [])
        for candidate in candidates:
            try:
                self._share_server = _Server(("0.0.0.0", candidate), self, share_key=key)
                break
            except OSError as exc:
                log.info("gateway: sharing port %s unavailable (%s)", candidate, exc)
        if self._share_server is None:
            raise PortUnavailable(port, f"Le port {port} du partage est déjà utilisé par un autre programme : le "
                                        "modèle n'est pas partagé. Fermez ce programme, puis réactivez le partage.")
        self._share_thread = threading.Thread(target=self._share_server.serve_forever, kwargs={"poll_interval": 0.2},
                                              name="gateway-share", daemon=True)
        self._share_thread.start()
        log.warning("gateway: sharing the model on the local network, port %s", self.share_port)
        return self.share_port

    def stop_sharing(self) -> None:
        server, self._share_server = self._share_server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            log.info("gateway: sharing stopped")
        if self._share_thread is not None:
            self._share_thread.join(5.0)
            self._share_thread = None

    @property
    def sharing_key(self) -> str:
        return self._share_server.share_key if self._share_server is not None else ""

    @property
    def share_port(self) -> int:
        """The network listener's port; 0 when the model is not shared."""
        return int(self._share_server.server_address[1]) if self._share_server is not None else 0

    def close(self) -> None:
        """Stop accepting requests (the supervisor is closed by its owner)."""
        self.stop_sharing()
        for server in (self._server, self._server6):
            if server is not None:
                server.shutdown()
                server.server_close()
        self._server = self._server6 = None
        for thread in self._threads:
            thread.join(5.0)
        self._threads = []

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server is not None else 0

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What OpenAI clients take as ``base_url``."""
        return self.url + "/v1"

    def _port_taken_message(self, port: int) -> str:
        if _is_our_gateway(self.options.host, port):
            return (
                f"Desktop-Mate héberge déjà un modèle sur le port {port} : le programme est sans doute déjà "
                "ouvert (icône près de l'horloge). Utilisez-le, ou fermez-le avant de recommencer."
            )
        return (
            f"Le port {port} est déjà utilisé par un autre programme. Fermez ce programme, ou choisissez un "
            "autre port (option --port, ou « Port de l'API locale » dans les paramètres)."
        )

    # -- requests (called on the handler's thread) ------------------------------------------------
    def handle(self, h: _Handler, method: str) -> None:
        origin = h.headers.get("Origin")
        if h.server.share_key:  # the network listener: the key, and no browser
            if not key_matches(h.headers.get("Authorization"), h.server.share_key):
                self._refuse(h, "Clé manquante ou incorrecte : recopiez la clé affichée par Desktop-Mate sur "
                                "l'ordinateur qui partage son modèle.")
                return
            if origin is not None:
                self._refuse(h, "Les pages web ne peuvent pas utiliser le modèle partagé de Desktop-Mate.")
                return
        else:
            if not client_is_loopback(h.client_address[0]) or not host_is_loopback(h.headers.get("Host")):
                self._refuse(h, "Cette adresse n'accepte que les programmes de cet ordinateur.")
                return
            if origin is not None and not origin_is_loopback(origin):
                self._refuse(h, "Les pages web ne peuvent pas utiliser le modèle local de Desktop-Mate.")
                return
        path = h.path.split("?", 1)[0].rstrip("/") or "/"
        if not (method == "POST" and path in POST_ROUTES) and self._read_body(h) is None:
            # A GET or OPTIONS may carry a body: read past it, or the next request on this keep-alive
            # connection would be read from its middle. Chunked or too big: answered, connection closed.
            return
        remote = self.remote
        if remote is not None and method in ("GET", "POST") and (path in GET_ROUTES or path in POST_ROUTES):
            self._remote_route(h, method, path, remote)
            return
        if method == "OPTIONS":
            self._preflight(h, origin)
        elif method == "GET" and path == "/health":
            self._send_json(h, 200, self._health())
        elif method == "GET" and path == "/v1/models":
            self._send_json(h, 200, {"object": "list", "data": [self._model_card()]})
        elif method == "GET" and path.startswith("/v1/models/"):
            if path[len("/v1/models/") :] == self.model_id:
                self._send_json(h, 200, self._model_card())
            else:
                self._error(h, 404, f"Modèle inconnu. Le seul modèle disponible est « {self.model_id} ».",
                            "invalid_request_error", "model_not_found", "model")
        elif method == "POST" and path in POST_ROUTES:
            self._relay(h, path)
        elif path in POST_ROUTES or path in GET_ROUTES:
            self._error(h, 405, f"Méthode {method} non prise en charge pour {path}.", "invalid_request_error",
                        "method_not_allowed", close=True)
        else:
            self._error(h, 404, f"Adresse inconnue : {path}. Utilisez /v1/chat/completions ou /v1/models.",
                        "invalid_request_error", "unknown_url", close=True)

    def _health(self) -> dict[str, Any]:
        status = self.supervisor.status()
        return {
            "status": "ok",
            "service": SERVICE_NAME,
            "model": self.model_id,
            "state": status.state.value,
            "state_label": status.state.label,
            "message": status.message,
        }

    def _model_card(self) -> dict[str, Any]:
        try:
            created = int(os.path.getmtime(self.supervisor.base_config.model_path))
        except OSError:
            created = 0
        return {"id": self.model_id, "object": "model", "created": created, "owned_by": "desktop-mate"}

    def _relay(self, h: _Handler, route: str) -> None:
        chat = route == CHAT_ROUTE
        raw = self._read_body(h)
        if raw is None:
            return
        parsed, problem = parse_json(raw)
        request = translate(parsed, chat=chat, n_vocab=self._n_vocab()) if not problem else Refusal(problem, None)
        if isinstance(request, Refusal):
            self._error(h, request.status, request.message_fr, "invalid_request_error", request.code, request.param)
            return
        stream = request.stream
        # Whatever name the client used ("gpt-4o"…), answers carry our model's name: the runner would
        # otherwise echo that name, or without one the model file's full path.
        request.body["model"] = self.model_id
        body = json.dumps(request.body, ensure_ascii=False).encode("utf-8")
        with self._pending_lock:
            if self._pending >= self.options.max_pending:
                refused = True
            else:
                refused = False
                self._pending += 1
        if refused:
            self._error(h, 503, "Trop de demandes attendent déjà le modèle. Réessayez dans quelques secondes.",
                        "server_error", "too_many_requests", retry_after=5)
            return
        arrived = time.perf_counter()
        deadline = time.monotonic() + self.options.wait_s
        loaded_for_it = self.supervisor.state not in (HostState.READY, HostState.BUSY)
        try:
            for attempt in (1, 2):  # a second time only when the runner was found dead before answering
                try:
                    endpoint = self.supervisor.acquire(max(0.0, deadline - time.monotonic()))
                except HostUnavailable as exc:
                    code = "model_unavailable" if exc.retry_after_s is None else "model_loading"
                    self._error(h, 503, exc.message_fr, "server_error", code, retry_after=exc.retry_after_s)
                    self._record(route, stream, 503, arrived, None, None, StreamAccountant(chat, 0.0),
                                 loaded_for_it, exc.message_fr)
                    return
                try:
                    if not self._turn.acquire(deadline - time.monotonic()):
                        message = ("Le modèle est occupé par d'autres demandes depuis trop longtemps. "
                                   "Réessayez plus tard.")
                        self._error(h, 503, message, "server_error", "model_busy", retry_after=10)
                        return
                    try:
                        with self.supervisor.generating():
                            sent = self._forward(h, endpoint, route, body, request, arrived, loaded_for_it,
                                                 last_attempt=attempt == 2)
                    finally:
                        self._turn.release()
                finally:
                    self.supervisor.release()
                if sent:
                    return
                self.supervisor.report_unreachable(endpoint)
                loaded_for_it = True
        finally:
            with self._pending_lock:
                self._pending -= 1

    # -- another computer's model ------------------------------------------------------------------
    def _remote_route(self, h: _Handler, method: str, path: str, remote: RemoteServer) -> None:
        if method == "GET" and path == "/health":
            if remote.reachable is None:
                remote.check()
            answers = bool(remote.reachable)
            self._send_json(h, 200, {
                "status": "ok", "service": SERVICE_NAME, "model": remote.model_id, "remote": remote.address.base_url,
                "state": "ready" if answers else "error", "state_label": "Prêt" if answers else "Erreur",
                "message": "" if answers else remote.problem_fr,
            })
        elif method == "GET" and path == "/v1/models":
            remote.check()
            models = remote.models
            self._send_json(h, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": remote.address.label} for m in models]})
        elif method == "POST" and path in POST_ROUTES:
            self._relay_remote(h, path, remote)
        else:
            self._error(h, 405, f"Méthode {method} non prise en charge pour {path}.", "invalid_request_error",
                        "method_not_allowed", close=True)

    def _relay_remote(self, h: _Handler, route: str, remote: RemoteServer) -> None:
        """The request as it came, to the other computer's server (which checks it itself), ``model`` set to
        one of its models; its answer relayed chunk by chunk and measured."""
        raw = self._read_body(h)
        if raw is None:
            return
        parsed, problem = parse_json(raw)
        if problem or not isinstance(parsed, dict):
            self._error(h, 400, problem or "Le corps de la requête doit être un objet JSON.", "invalid_request_error",
                        "invalid_json")
            return
        if remote.reachable is None:
            remote.check()
        if parsed.get("model") not in remote.models:
            parsed["model"] = remote.model_id
        body = json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        request = RunnerRequest(parsed, bool(parsed.get("stream")), True, False, None)
        with self._pending_lock:
            refused = self._pending >= self.options.max_pending
            if not refused:
                self._pending += 1
        if refused:
            self._error(h, 503, "Trop de demandes attendent déjà le modèle. Réessayez dans quelques secondes.",
                        "server_error", "too_many_requests", retry_after=5)
            return
        try:
            self._forward(h, remote.endpoint(), route, body, request, time.perf_counter(), False, remote=remote)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _forward(
        self, h: _Handler, endpoint: RunnerEndpoint, route: str, body: bytes, request: RunnerRequest,
        arrived: float, loaded_for_it: bool, *, last_attempt: bool = True, remote: RemoteServer | None = None,
    ) -> bool:
        """Relay one request; False (nothing sent to the client) when the runner could not be reached."""
        chat, stream = route == CHAT_ROUTE, request.stream
        sent_at = time.perf_counter()
        acc = StreamAccountant(chat, sent_at)

        def unreachable() -> bool:
            if not last_attempt:
                return False
            message = RUNNER_UNREACHABLE_FR if remote is None else remote.unreachable_fr
            if remote is not None:
                remote.mark(False)
            self._error(h, 503, message, "server_error", "runner_unreachable", retry_after=5)
            self._record(route, stream, 503, arrived, sent_at, None, acc, loaded_for_it, message)
            return True

        def runner_refused(status: int, data: bytes) -> bool:
            if remote is not None:
                status, error = remote_error(status, data, remote.address.label)
            else:
                status, error = runner_error(status, data, request.grammar_param)
            self._send_json(h, status, error)
            self._record(route, stream, status, arrived, sent_at, None, acc, loaded_for_it, error["error"]["message"])
            return True

        conn = self._runner_connection(endpoint)
        try:
            try:
                response = self._post(conn, endpoint, route, body)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("gateway: runner unreachable: %s", exc)
                return unreachable()
            content_type = response.getheader("Content-Type", "")
            if remote is not None:
                remote.mark(True)
            if response.status != 200:
                return runner_refused(response.status, _read_all(response))

            finished: list[bool] = []

            def finish() -> None:
                """Figures and hooks (once), just before the client gets the very end of the answer."""
                if finished:
                    return
                finished.append(True)
                complete = acc.done or not stream
                error = "" if complete else (acc.error or STREAM_BROKEN_FR)
                self._record(route, stream, 200, arrived, sent_at, time.perf_counter(), acc, loaded_for_it, error)
                if chat and complete and acc.text:
                    self._call_hooks(self.reply_hooks, acc.text)

            if stream and content_type.startswith("text/event-stream"):
                splitter = EventSplitter()
                first = self._first_events(response, splitter)
                if not first:
                    # The stream ended before its first event: nothing is sent yet, so the client can
                    # still get the right status. The same request, plain and one token long, says why.
                    probe = self._probe_failure(endpoint, route, request)
                    if probe is None:
                        return unreachable()
                    return runner_refused(*probe)
                rewriter = StreamRewriter(include_usage=request.include_usage, tools=request.tools)
                self._relay_stream(h, response, first, splitter, rewriter, acc, finish)
            else:
                data = _read_all(response)
                try:
                    text, tokens = reply_of(json.loads(data), chat)
                except ValueError:
                    text, tokens = "", 0
                acc.set_whole(text, tokens)
                stream = False
                finish()
                self._send_bytes(h, 200, data, "application/json")
            return True
        finally:
            conn.close()

    def _runner_connection(self, endpoint: RunnerEndpoint) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.options.upstream_timeout_s)

    @staticmethod
    def _post(conn: http.client.HTTPConnection, endpoint: RunnerEndpoint, route: str, body: bytes
              ) -> http.client.HTTPResponse:
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.request("POST", endpoint.path_prefix + route, body=body,
                     headers={"Content-Type": "application/json", **endpoint.headers})
        return conn.getresponse()

    @staticmethod
    def _first_events(response: http.client.HTTPResponse, splitter: EventSplitter) -> list[bytes]:
        """Read until the runner's first whole event; [] when the stream ends (or breaks) before it."""
        while True:
            try:
                data = response.read1(65536)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("gateway: runner stream broken before its first event: %s", exc)
                return []
            if not data:
                return []
            events = [e for e in splitter.feed(data) if e.strip()]
            if events:
                return events

    def _probe_failure(self, endpoint: RunnerEndpoint, route: str, request: RunnerRequest
                       ) -> tuple[int, bytes] | None:
        """(status, body) of the same request sent plain with one token; None when the runner is gone."""
        body = dict(request.body, stream=False, max_tokens=1)
        body.pop("min_tokens", None)
        conn = self._runner_connection(endpoint)
        try:
            response = self._post(conn, endpoint, route, json.dumps(body, ensure_ascii=False).encode("utf-8"))
            data = _read_all(response)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("gateway: runner gone after a stream that did not start: %s", exc)
            return None
        finally:
            conn.close()
        if response.status == 200:  # plain works: the stream itself failed (the runner's log says why)
            return 500, b""
        return response.status, data

    def _relay_stream(
        self, h: _Handler, response: http.client.HTTPResponse, first: list[bytes], splitter: EventSplitter,
        rewriter: StreamRewriter, acc: StreamAccountant, finish: Callable[[], None],
    ) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("X-Accel-Buffering", "no")
        self._cors_headers(h)
        h.end_headers()
        write = h.wfile.write

        def send(events: list[bytes]) -> None:
            now = time.perf_counter()
            out = b"".join(e for e in map(rewriter.rewrite, events) if e is not None)
            if out:
                write(b"%X\r\n%s\r\n" % (len(out), out))
            for event in events:
                acc.feed(event, now)

        try:
            send(first)
            while True:
                try:
                    data = response.read1(65536)
                except (OSError, http.client.HTTPException) as exc:
                    log.warning("gateway: runner stream broken: %s", exc)
                    break
                if not data:
                    break
                events = splitter.feed(data)
                if events:
                    send(events)
            if not acc.done:
                event = b"data: " + json.dumps(
                    openai_error(STREAM_BROKEN_FR, kind="server_error", code="runner_stopped"), ensure_ascii=False
                ).encode("utf-8") + b"\n\ndata: [DONE]\n\n"
                write(b"%X\r\n%s\r\n" % (len(event), event))
            finish()
            write(b"0\r\n\r\n")
        except OSError:
            log.info("gateway: client left during a streamed answer; generation stopped")
            h.close_connection = True
            acc.error = acc.error or "Le programme qui a posé la question est parti avant la fin de la réponse."
            finish()

    def _n_vocab(self) -> int | None:
        """The model's vocabulary size (its file's header, read once per file), to check ``logit_bias``."""
        path = self.supervisor.base_config.model_path
        if self._vocab is None or self._vocab[0] != path:
            from tray_app.models.gguf_info import ModelFileError, read_model_info

            try:
                self._vocab = (path, read_model_info(path).n_vocab or 0)
            except (ModelFileError, OSError):
                self._vocab = (path, 0)
        return self._vocab[1] or None

    # -- helpers ------------------------------------------------------------------------------------
    def _record(
        self, route: str, stream: bool, status: int, arrived: float, sent_at: float | None,
        finished: float | None, acc: StreamAccountant, loaded_for_it: bool, error: str,
    ) -> None:
        end = finished or time.perf_counter()
        total = end - sent_at if sent_at is not None else 0.0
        if stream:
            rate = acc.tokens_per_s
        else:
            rate = acc.tokens / total if acc.tokens and total > 0 else None
        item = RequestMetrics(
            finished_at=time.time(),
            route=route,
            stream=stream,
            status=status,
            queue_s=(sent_at or end) - arrived,
            ttft_s=acc.ttft_s if stream else None,
            total_s=total,
            completion_tokens=acc.tokens,
            tokens_per_s=rate,
            loaded_for_it=loaded_for_it,
            error=error,
        )
        self.metrics.add(item)
        self._call_hooks(self.request_hooks, item)

    @staticmethod
    def _call_hooks(hooks: list[Callable[[Any], None]], value: Any) -> None:
        for hook in list(hooks):
            try:
                hook(value)
            except Exception:
                log.exception("gateway hook %r failed", hook)

    def _read_body(self, h: _Handler) -> bytes | None:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            self._error(h, 411, "Envoyez la requête avec un en-tête Content-Length.", "invalid_request_error",
                        "length_required", close=True)
            return None
        try:
            length = int(h.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > self.options.max_body_bytes:
            self._error(h, 413, "La requête est trop grosse.", "invalid_request_error", "request_too_large",
                        close=True)
            return None
        try:
            return h.rfile.read(length) if length else b""
        except OSError:
            h.close_connection = True
            return None

    def _preflight(self, h: _Handler, origin: str | None) -> None:
        h.send_response(204)
        self._cors_headers(h)
        if origin is not None:
            h.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            h.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            h.send_header("Access-Control-Max-Age", "600")
        h.send_header("Content-Length", "0")
        h.end_headers()

    @staticmethod
    def _cors_headers(h: _Handler) -> None:
        origin = h.headers.get("Origin")
        if origin is not None and origin_is_loopback(origin):  # only loopback origins get here
            h.send_header("Access-Control-Allow-Origin", origin)
            h.send_header("Vary", "Origin")

    def _refuse(self, h: _Handler, message: str) -> None:
        log.warning("gateway: refused %s %s from %s (Host=%r, Origin=%r)", h.command, h.path,
                    h.client_address[0], h.headers.get("Host"), h.headers.get("Origin"))
        body = json.dumps(openai_error(message, kind="permission_error", code="forbidden"), ensure_ascii=False)
        h.send_response(403)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body.encode("utf-8"))))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body.encode("utf-8"))
        h.close_connection = True

    def _error(
        self, h: _Handler, status: int, message: str, kind: str, code: str, param: str | None = None, *,
        retry_after: float | None = None, close: bool = False,
    ) -> None:
        headers = {"Retry-After": str(int(retry_after))} if retry_after else {}
        if close:
            headers["Connection"] = "close"
            h.close_connection = True
        self._send_json(h, status, openai_error(message, kind=kind, code=code, param=param), headers)

    def _send_json(self, h: _Handler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_bytes(h, status, data, "application/json", headers)

    def _send_bytes(
        self, h: _Handler, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", f"{content_type}; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            self._cors_headers(h)
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            h.close_connection = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DesktopMate"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _dispatch(self) -> None:
        try:
            self.server.gateway.handle(self, self.command)
        except Exception:
            log.exception("gateway: unexpected error on %s %s", self.command, self.path)
            self.close_connection = True

    do_GET = do_POST = do_OPTIONS = do_PUT = do_DELETE = do_PATCH = _dispatch

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (before routing): still an OpenAI-shaped French error."""
        body = json.dumps(
            openai_error("Requête HTTP invalide.", kind="invalid_request_error", code=f"http_{code}"),
            ensure_ascii=False,
        ).encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("gateway %s - " + format, self.client_address[0], *args)


# -- module helpers ---------------------------------------------------------------------------------
def remote_error(status: int, data: bytes, label: str) -> tuple[int, dict[str, Any]]:
    """Another computer's refusal, in OpenAI's shape with a French message; its own words in ``detail``."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    detail: Any = error.get("message") if isinstance(error, dict) else data[:500].decode("utf-8", "replace")
    if status in (401, 403):
        message = (f"L'autre ordinateur ({label}) refuse la clé. Recopiez la clé qu'il affiche dans "
                   "Paramètres → Modèle.")
        status = 502
    elif 400 <= status < 500:
        message = f"L'autre ordinateur ({label}) a refusé la demande (voir « detail »)."
    else:
        message = f"Le modèle de l'autre ordinateur ({label}) a rencontré une erreur. Réessayez ; voir « detail »."
    log.warning("gateway: remote %s answered HTTP %s: %s", label, status, str(detail)[:500])
    body = openai_error(message, kind="invalid_request_error" if status == 400 else "server_error",
                        code=error.get("code") if isinstance(error, dict) else None)
    body["error"]["detail"] = detail
    return status, body

def _read_all(response: http.client.HTTPResponse) -> bytes:
    try:
        return response.read()
    except (OSError, http.client.HTTPException):
        return b""


def _is_our_gateway(host: str, port: int) -> bool:
    """True when another Desktop-Mate gateway answers on ``port`` (the program is already open)."""
    conn = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        conn.request("GET", "/health", headers={"Host": f"127.0.0.1:{port}"})
        data = json.loads(conn.getresponse().read(4096))
        return isinstance(data, dict) and data.get("service") == SERVICE_NAME
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        conn.close()
