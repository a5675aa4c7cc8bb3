"""Rotating log files, bounded in size. Tracebacks go here, never to the user."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
HANDLER_NAME = "desktop-mate"  # our handlers: set up once, whoever calls first


def setup_logging(log_file: Path, *, verbose: bool = False) -> None:
    """Send every record to a rotating file (1 MB x 4 at most); warnings also to stderr when verbose."""
    root = logging.getLogger()
    if any(h.get_name() == HANDLER_NAME for h in root.handlers):
        return
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(_FORMAT))
        console.set_name(HANDLER_NAME)
        root.addHandler(console)
