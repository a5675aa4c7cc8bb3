"""The operating system in one line, for ``doctor``: « Windows 11 (build 22631, AMD64) ».

Never through Python's ``platform`` module on Windows: since Python 3.12 it asks WMI, which can take a
second on a busy PC, and which under wine 8 ends the whole process (an unimplemented
``propsys.VariantToString``: no exception to catch). Windows gives the same facts without WMI:
``sys.getwindowsversion()`` (the version of kernel32.dll) and the ``PROCESSOR_ARCHITECTURE`` variable.
Elsewhere ``platform`` is used, and what it cannot tell reads « inconnu ».
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

UNKNOWN = "inconnu"
WINDOWS_11_FIRST_BUILD = 22000  # Windows 11 still says 10.0; its builds start here


def _ask(what: Callable[[], str]) -> str:
    try:
        return str(what()).strip() or UNKNOWN
    except Exception:  # platform may fail in many ways (WMI, missing tools): the fact is unknown
        log.debug("system information unavailable", exc_info=True)
        return UNKNOWN


def windows_description(version: Any, environ: dict[str, str] | os._Environ[str]) -> str:
    """From ``sys.getwindowsversion()`` and the environment; the parts missing read « inconnu »."""
    try:
        build = int(version.platform_version[2] if getattr(version, "platform_version", None) else version.build)
        major = int(version.major)
    except (AttributeError, IndexError, TypeError, ValueError):
        return f"Windows {UNKNOWN}"
    name = "11" if major == 10 and build >= WINDOWS_11_FIRST_BUILD else str(major)
    machine = environ.get("PROCESSOR_ARCHITEW6432") or environ.get("PROCESSOR_ARCHITECTURE") or UNKNOWN
    return f"Windows {name} (build {build}, {machine})"


def wine_version() -> str | None:
    """Wine's version when this Windows is wine (its ntdll exports ``wine_get_version``), else None."""
    if sys.platform != "win32":
        return None
    try:
        import ctypes

        get = ctypes.WinDLL("ntdll").wine_get_version  # AttributeError on a real Windows
        get.restype = ctypes.c_char_p
        return get().decode("ascii", "replace")
    except (AttributeError, OSError):  # no such export (a real Windows), or no ntdll to load
        return None


def describe_system() -> str:
    if sys.platform == "win32":
        text = windows_description(_windows_version(), os.environ)
        wine = wine_version()
        return f"{text}, sous wine {wine}" if wine else text
    import platform

    system = _ask(platform.system)
    release = _ask(platform.release)
    machine = _ask(platform.machine)
    if system == UNKNOWN and release == UNKNOWN and machine == UNKNOWN:
        return UNKNOWN
    return f"{system} {release} ({machine})"


def _windows_version() -> Any:
    if sys.platform != "win32":
        return None
    try:
        return sys.getwindowsversion()
    except OSError:  # wine or a damaged system that cannot say its version: the text says « Windows »
        return None
