"""``desktop-mate-tray serve``: the local OpenAI-compatible API without the tray icon, until Ctrl+C.

Exit status: 0 after Ctrl+C (or SIGTERM), 2 when the model cannot be used, 3 when the port is taken.
With ``--json`` every line of output is one JSON object (``event``: listening, state, fallback,
request, stopped, error).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from tray_app.format_fr import duration_fr, seconds_fr
from tray_app.host.gateway import DEFAULT_API_PORT, PortUnavailable
from tray_app.host.gateway_metrics import RequestMetrics
from tray_app.host.host_control import HostControl, HostOptions
from tray_app.host.host_state import EventKind, HostEvent
from tray_app.host.hosting import Host, ModelChoiceError
from tray_app.paths import app_paths
from tray_app.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="sert le modèle aux autres programmes, sans l'icône (Ctrl+C pour arrêter)")
    p.add_argument("--model", metavar="FICHIER", help="fichier .gguf (par défaut : celui des paramètres, "
                   "sinon le modèle de démonstration)")
    p.add_argument("--port", type=int, metavar="N", help=f"port de l'API locale (par défaut : {DEFAULT_API_PORT} "
                   "ou celui des paramètres ; 0 = un port libre au hasard)")
    p.add_argument("--keep-alive", type=int, metavar="SECONDES", help="secondes sans demande avant de libérer "
                   "la mémoire (0 : après chaque réponse, -1 : jamais ; par défaut : les paramètres, 5 min)")
    p.add_argument("--ctx", type=int, metavar="JETONS", help="mémoire de conversation, en jetons")
    p.add_argument("--load-now", action="store_true", help="charger le modèle tout de suite, sans attendre "
                   "la première demande")
    p.add_argument("--remote", metavar="ADRESSE", help="utiliser le modèle d'un autre ordinateur (serveur compatible "
                   "OpenAI : Ollama, LM Studio, llama-server, un autre Desktop-Mate), par exemple http://192.168.1.20:11434")
    p.add_argument("--remote-key", metavar="CLE", help="la clé que demande l'autre ordinateur")
    p.add_argument("--remote-model", metavar="NOM", help="le modèle de l'autre ordinateur à utiliser (par défaut : le "
                   "premier qu'il annonce)")
    p.add_argument("--share", action="store_true", help="partager ce modèle avec les autres ordinateurs de la "
                   "maison (clé obligatoire, affichée au démarrage)")
    p.add_argument("--share-port", type=int, metavar="N", help="port du partage (par défaut : celui des paramètres, "
                   "11436 ; 0 = un port libre au hasard)")
    p.add_argument("--json", action="store_true", help="sortie JSON (une ligne par événement) pour les programmes")
    p.set_defaults(func=run)


class _Printer:
    """Prints events as French lines or JSON lines, from any thread."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._lock = threading.Lock()

    def say(self, text: str, **data: Any) -> None:
        with self._lock:
            if self.as_json:
                print(json.dumps(data, ensure_ascii=False), flush=True)
            else:
                print(text, flush=True)

    def on_event(self, event: HostEvent) -> None:
        if event.kind is EventKind.PROGRESS:
            return
        self.say(
            f"[{event.state.label}] {event.message}",
            event=event.kind.value,
            state=event.state.value,
            label=event.state.label,
            message=event.message,
            pid=event.pid,
            failure=event.failure.value if event.failure else None,
            config=event.config.to_dict() if event.config else None,
        )

    def on_request(self, m: RequestMetrics) -> None:
        if m.error:
            text = f"Demande terminée avec une erreur : {m.error}"
        else:
            rate = f", {m.tokens_per_s:.0f} jetons/s".replace(".", ",") if m.tokens_per_s else ""
            first = f", premier jeton en {seconds_fr(m.ttft_s)}" if m.ttft_s is not None else ""
            text = f"Réponse envoyée : {m.completion_tokens} jetons{rate}{first}."
        self.say(text, event="request", **m.to_dict())


def run(args: argparse.Namespace) -> int:
    out = _Printer(args.json)
    if args.port is not None and not 0 <= args.port <= 65535:
        message = "Le port doit être un nombre entre 0 et 65535 (0 : un port libre au hasard)."
        out.say(message, event="error", message=message)
        return 2
    if args.keep_alive is not None and args.keep_alive < -1:
        message = "--keep-alive : donnez un nombre de secondes, 0 (après chaque réponse) ou -1 (jamais)."
        out.say(message, event="error", message=message)
        return 2
    paths = app_paths()
    settings = Settings.load(paths.settings_file)
    if settings.notice and not args.json:
        print(settings.notice)
    keep_alive = float(args.keep_alive) if args.keep_alive is not None else None
    options = HostOptions(model=args.model, ctx=args.ctx, port=args.port, keep_alive_s=keep_alive,
                          remote_address=args.remote, remote_key=args.remote_key, remote_model=args.remote_model,
                          share=True if args.share else None, share_port=args.share_port)
    # Everything the host says is printed by the event listener below: no separate notices here.
    control = HostControl(settings, paths, notify=lambda text, warning: None, options=options)
    control.start()
    error = control.start_error
    if isinstance(error, ModelChoiceError):
        out.say(error.message_fr, event="error", message=error.message_fr)
        return 2
    if isinstance(error, PortUnavailable):
        out.say(error.message_fr, event="error", message=error.message_fr, port=error.port)
        return 3
    host = control.host
    assert host is not None  # started: no error
    host.supervisor.add_listener(out.on_event)
    host.gateway.request_hooks.append(out.on_request)
    keep_alive = control.keep_alive_s
    stop = threading.Event()
    _stop_on_sigterm(stop)
    _announce(out, host, keep_alive)
    if control.remote is not None:
        remote = control.remote
        remote.check()
        answers = bool(remote.reachable)
        text = (f"Les demandes sont relayées au modèle « {remote.model_id} » de l'autre ordinateur "
                f"({remote.address.base_url})." if answers else remote.problem_fr)
        out.say(text, event="remote", remote=remote.address.base_url, reachable=answers, model=remote.model_id,
                models=list(remote.models))
    if host.gateway.share_port:
        out.say(f"Modèle partagé avec les ordinateurs de la maison. {control.share_note}", event="sharing",
                share_port=host.gateway.share_port, key=host.gateway.sharing_key)
    if args.load_now:
        host.supervisor.load()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        out.say("Arrêt : le modèle quitte la mémoire…", event="stopping")
        control.stop()
        out.say("Arrêté.", event="stopped")
    return 0


def _announce(out: _Printer, host: Host, keep_alive: float) -> None:
    gw = host.gateway
    if keep_alive < 0:
        keep = "il reste en mémoire jusqu'à l'arrêt"
    elif keep_alive == 0:
        keep = "il quitte la mémoire après chaque réponse"
    else:
        keep = f"il quitte la mémoire après {duration_fr(keep_alive)} sans demande"
    lines = []
    if gw.port_notice:
        lines.append(gw.port_notice)
    lines += [
        f"Le modèle « {gw.model_id} » est disponible à l'adresse {gw.api_base} (compatible OpenAI).",
        host.plan.explanation_fr,
        f"Il se charge à la première demande ; {keep}.",
        "Appuyez sur Ctrl+C pour arrêter.",
    ]
    out.say(
        "\n".join(lines),
        event="listening",
        url=gw.url,
        api_base=gw.api_base,
        port=gw.port,
        port_notice=gw.port_notice,
        model=gw.model_id,
        model_path=str(host.plan.model_path),
        keep_alive_s=keep_alive,
        config=host.plan.config.to_dict(),
        plan=host.plan.explanation_fr,
    )


def _stop_on_sigterm(stop: threading.Event) -> None:
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
