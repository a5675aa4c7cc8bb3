"""``desktop-mate-tray avatar …``: check the Unity avatar and send it one command, without the tray.

Exit status: 0 done, 2 invalid input (unknown expression, missing .vrm file…), 3 the avatar does not
answer (not running, wrong port), 4 the avatar is linked to another program (usually the tray itself:
Unity serves one program at a time). Nothing is sent unless the avatar greeted this connection.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tray_app.avatar import protocol
from tray_app.avatar.bridge_client import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    AvatarBusyError,
    AvatarUnavailableError,
    probe,
    send_once,
)
from tray_app.paths import app_paths
from tray_app.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_ABSENT = 3
EXIT_BUSY = 4

_ON = {"on", "oui", "activer", "active", "activé", "true", "1"}
_OFF = {"off", "non", "desactiver", "désactiver", "desactive", "désactivé", "false", "0"}


@dataclass
class Outcome:
    """What happened, for the French text and for ``--json``."""

    ok: bool
    state: str  # connected, absent, busy, invalid
    message: str
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"connected": EXIT_OK, "absent": EXIT_ABSENT, "busy": EXIT_BUSY}.get(self.state, EXIT_INVALID)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "avatar",
        help="vérifier l'avatar Unity et lui envoyer une commande",
        description="Vérifie que l'avatar Desktop-Mate est lancé et lui envoie une commande. "
        "Codes de sortie : 0 réussi, 2 demande invalide, 3 avatar absent, 4 avatar relié à un "
        "autre programme.",
    )
    _common_options(p, defaults=True)
    actions = p.add_subparsers(dest="avatar_action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    _action(actions, "status", "l'avatar est-il lancé et prêt ?")
    load = _action(actions, "load", "afficher un modèle .vrm")
    load.add_argument("path", metavar="FICHIER", help="le fichier .vrm du modèle")
    _action(actions, "unload", "retirer le modèle affiché")
    expr = _action(actions, "expression", "montrer une expression")
    expr.add_argument(
        "name", metavar="NOM", help="joie, colère, tristesse, amusement, clignement, neutre (ou joy, angry…)"
    )
    expr.add_argument(
        "value", metavar="INTENSITÉ", nargs="?", default="1", help="de 0 à 1 (0,75 ou 75 %% acceptés)"
    )
    _action(actions, "reset", "revenir à une expression neutre")
    speed = _action(actions, "speed", "vitesse des changements d'expression")
    speed.add_argument("speed", metavar="VITESSE", help="de 0,1 (lent) à 10 (rapide)")
    blink = _action(actions, "blink", "clignement automatique des yeux")
    blink.add_argument("switch", metavar="on|off")
    head = _action(actions, "head", "mouvements de tête automatiques")
    head.add_argument("switch", metavar="on|off")
    p.set_defaults(func=run)


def _action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help_text, description=help_text[:1].upper() + help_text[1:]
    )
    _common_options(parser, defaults=False)  # options accepted after the action too
    return parser


def _common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--host``, ``--port``, ``--timeout``, ``--json``; on an action parser they default to "not given"."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--host", default=default(DEFAULT_HOST), help="adresse de l'avatar (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=default(None), help="port de l'avatar (paramètres : 5555)"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=default(2.0),
        help="secondes d'attente de la réponse de l'avatar (2)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="sortie JSON pour les programmes"
    )


def _seconds(text: str) -> float:
    try:
        seconds = float(text.replace(",", "."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"« {text} » n'est pas un nombre de secondes") from None
    if not 0.1 <= seconds <= 60:
        raise argparse.ArgumentTypeError("le délai doit être entre 0,1 et 60 secondes")
    return seconds


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"« {text} » n'est pas un numéro de port") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("le port doit être entre 1 et 65535")
    return port


def run(args: argparse.Namespace) -> int:
    host = args.host
    port = args.port if args.port is not None else _port_from_settings()
    try:
        outcome = _perform(args, host, port)
    except protocol.ProtocolError as exc:
        outcome = Outcome(False, "invalid", str(exc))
    if args.json:
        document = {
            "ok": outcome.ok,
            "action": args.avatar_action,
            "state": outcome.state,
            "host": host,
            "port": port,
            "message": outcome.message,
            "sent": outcome.sent,
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif outcome.ok:
        print(outcome.message)
    else:
        print(outcome.message, file=sys.stderr)
    return outcome.exit_code


def _port_from_settings() -> int:
    settings = Settings.load(app_paths().settings_file)
    try:
        return int(settings.values.avatar_port)
    except KeyError:  # the setting is not declared in this build
        return DEFAULT_PORT


def _perform(args: argparse.Namespace, host: str, port: int) -> Outcome:
    action = args.avatar_action
    if action == "status":
        result = probe(host, port, args.timeout)
        return Outcome(result.ok, result.state, result.message)

    lines: list[str]
    sent: list[dict[str, Any]]
    if action == "load":
        path = _existing_vrm(args.path)
        lines = [protocol.load_model_line(path)]
        shown = protocol.path_as_unity_reads_it(path)
        sent = [{"command": "load_model", "path": shown}]
        done = f"Modèle envoyé à l'avatar : {shown}. Il s'affiche dans quelques secondes."
    elif action == "unload":
        lines, sent = [protocol.unload_model_line()], [{"command": "unload_model"}]
        done = "Le modèle a été retiré de l'avatar."
    elif action == "expression":
        name = protocol.normalize_expression(args.name)
        if name == protocol.NEUTRAL:
            lines, sent = [protocol.reset_expressions_line()], [{"command": "reset_expressions"}]
            done = "L'avatar revient à une expression neutre."
        else:
            value = protocol.clamp(_number(args.value, percent=True), protocol.VALUE_RANGE, "L'intensité")
            lines = [protocol.set_expression_line(name, value)]
            shown_value = float(protocol.format_number(value))
            sent = [{"command": "set_expression", "name": name, "value": shown_value}]
            done = (
                f"Expression « {protocol.FRENCH_LABELS[name]} » envoyée à l'avatar "
                f"(intensité {round(value * 100)} %)."
            )
    elif action == "reset":
        lines, sent = [protocol.reset_expressions_line()], [{"command": "reset_expressions"}]
        done = "L'avatar revient à une expression neutre."
    elif action == "speed":
        speed = protocol.clamp(_number(args.speed), protocol.SPEED_RANGE, "La vitesse")
        lines = [protocol.set_transition_speed_line(speed)]
        sent = [{"command": "set_transition_speed", "speed": float(protocol.format_number(speed))}]
        french_speed = protocol.format_number(speed).replace(".", ",")
        done = f"Vitesse des changements d'expression réglée à {french_speed}."
    elif action in ("blink", "head"):
        enabled = _switch(args.switch)
        if action == "blink":
            lines = [protocol.set_auto_blink_line(enabled)]
            sent = [{"command": "set_auto_blink", "enabled": enabled}]
            done = f"Clignement automatique des yeux {'activé' if enabled else 'désactivé'}."
        else:
            lines = [protocol.set_auto_head_movement_line(enabled)]
            sent = [{"command": "set_auto_head_movement", "enabled": enabled}]
            done = f"Mouvements de tête automatiques {'activés' if enabled else 'désactivés'}."
    else:  # pragma: no cover - argparse only lets known actions through
        raise protocol.ProtocolError(f"Action inconnue : {action}.")

    try:
        send_once(lines, host, port, args.timeout)
    except AvatarBusyError as exc:
        return Outcome(False, "busy", str(exc))
    except AvatarUnavailableError as exc:
        return Outcome(False, "absent", str(exc))
    return Outcome(True, "connected", done, sent)


def _existing_vrm(text: str) -> Path:
    """The absolute path of an existing file; quotes pasted with « Copier en tant que chemin » removed."""
    cleaned = text.strip().strip('"').strip()
    path = Path(cleaned).expanduser()
    if not path.exists():
        raise protocol.ProtocolError(
            f"Le fichier « {cleaned} » est introuvable. Vérifiez le chemin (dans l'Explorateur : Maj + "
            "clic droit sur le fichier, « Copier en tant que chemin d'accès »), puis réessayez."
        )
    if path.is_dir():
        raise protocol.ProtocolError(
            f"« {cleaned} » est un dossier. Indiquez le fichier .vrm du modèle qui s'y trouve."
        )
    return path.resolve()


def _number(text: str, *, percent: bool = False) -> float:
    """A number typed by a person: ``0.75``, ``0,75`` or (when ``percent``) ``75 %``."""
    cleaned = text.strip().replace(",", ".").replace("\u00a0", "").replace(" ", "")
    scale = 1.0
    if percent and cleaned.endswith("%"):
        cleaned, scale = cleaned[:-1], 0.01
    try:
        return float(cleaned) * scale
    except ValueError:
        raise protocol.ProtocolError(
            f"« {text} » n'est pas un nombre. Écrivez par exemple 0,75 (ou 75 %)."
        ) from None


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise protocol.ProtocolError(f"« {text} » : écrivez on (activer) ou off (désactiver).")
