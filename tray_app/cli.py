"""Command line: no argument starts the tray; sub-commands serve headless use.

Each sub-command lives in ``tray_app/commands/<name>.py`` and exposes ``register(subparsers)`` which adds
its parser and sets ``func`` to a ``run(args) -> int``. Output is French for people; ``--json`` prints the
same facts for programs. An unexpected error is logged with its traceback and the user only reads a French
sentence that says where the log is.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
from typing import NoReturn

from tray_app import __version__
from tray_app.log_setup import setup_logging
from tray_app.paths import app_paths

log = logging.getLogger(__name__)

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = ("doctor", "avatar", "plan", "models", "serve", "self_test", "monitor", "bench")


class FrenchArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog} : option invalide ({message}). Essayez « {self.prog} --help ».\n")


def build_parser() -> argparse.ArgumentParser:
    parser = FrenchArgumentParser(
        prog="desktop-mate-tray",
        description="Héberge le modèle de langue de l'avatar Desktop-Mate. Sans argument : l'icône "
        "près de l'horloge.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true", help="journal détaillé, aussi sur la console")
    sub = parser.add_subparsers(dest="command", metavar="COMMANDE", parser_class=FrenchArgumentParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"tray_app.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a Windows console may not be UTF-8
        if isinstance(stream, io.TextIOWrapper):  # not when a test or a program replaced it
            try:
                stream.reconfigure(errors="replace")
            except ValueError:
                pass
    args = build_parser().parse_args(argv)
    paths = app_paths()
    setup_logging(paths.log_file, verbose=args.verbose)
    try:
        if args.command is None:
            from tray_app.ui.app import run_tray

            return run_tray(args)
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into a program that stopped reading (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        log.exception("unexpected error in %s", args.command or "tray")
        print(
            "Une erreur inattendue est survenue. Les détails sont dans le journal : "
            f"{paths.log_file}",
            file=sys.stderr,
        )
        return 1
