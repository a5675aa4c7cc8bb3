"""Numbers, sizes, speeds and delays as a French reader expects them, and French typography.

The one home of French formatting: « 4,1 Go », « 512 Mo », « 8 192 », « 93 % », « 24 jetons/s »,
« 45 ms », « 1,25 s », « 5 minutes », « environ 40 secondes »; and wrapped sentences that never leave a
« or a : alone at the start or end of a line. Byte sizes use binary units, like Windows.
"""

from __future__ import annotations

MIB = 1024 * 1024
GIB = 1024 * MIB
NBSP = "\u00a0"


def int_fr(n: int) -> str:
    """An integer with a space between thousands: 8192 gives « 8 192 »."""
    return f"{n:,}".replace(",", " ")


def decimal_fr(value: float, digits: int = 1) -> str:
    """``4.25`` → « 4,3 » (comma as the decimal separator); ``digits=0`` rounds to a whole number."""
    return f"{value:.{digits}f}".replace(".", ",")


def size_fr(n_bytes: int | float) -> str:
    """Bytes in Go (one decimal) from 1 000 Mo up, else whole Mo: « 4,1 Go », « 512 Mo »."""
    if n_bytes >= 1000 * MIB:  # « 1,0 Go » reads better than « 1 010 Mo »
        return f"{decimal_fr(n_bytes / GIB)} Go"
    mib = round(n_bytes / MIB)
    return f"{int_fr(mib if mib or not n_bytes else 1)} Mo"


def gib_fr(n_bytes: float) -> str:
    """Bytes in Go with one decimal, always (gauges read better with a fixed unit): « 5,8 Go »."""
    return f"{decimal_fr(n_bytes / GIB)} Go"


def percent_fr(fraction: float) -> str:
    """``0.934`` → « 93 % »."""
    return f"{round(fraction * 100)} %"


def speed_fr(tokens_per_second: float) -> str:
    """« 24 jetons/s » (one decimal below 10)."""
    if tokens_per_second < 10:
        return f"{decimal_fr(tokens_per_second)} jetons/s"
    return f"{round(tokens_per_second)} jetons/s"


def seconds_fr(seconds: float) -> str:
    """A measured delay, with enough digits that two different delays read differently: « 45 ms »,
    « 1,25 s », « 40 s », « 5 min », « 2 h »."""
    milliseconds = round(seconds * 1000)
    if milliseconds < 1000:
        return f"{max(0, milliseconds)} ms"
    if seconds < 10:
        return f"{decimal_fr(seconds, 2)} s"
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{decimal_fr(seconds / 3600).removesuffix(',0')} h"


def duration_fr(seconds: float) -> str:
    """A delay in words, for sentences: « 45 secondes », « 5 minutes », « 1 heure » (« 500 ms » below a
    second)."""
    if seconds < 1:
        return seconds_fr(seconds)
    if seconds < 90:
        n = round(seconds)
        return f"{n} seconde{'s' if n > 1 else ''}"
    if seconds < 5400:
        n = round(seconds / 60)
        return f"{n} minute{'s' if n > 1 else ''}"
    n = round(seconds / 3600)
    return f"{n} heure{'s' if n > 1 else ''}"


def about_duration_fr(seconds: float) -> str:
    """A time still to come, rounded: « environ 40 secondes », « environ 3 minutes »."""
    if seconds < 55:
        return f"environ {max(5, round(seconds / 5) * 5)} secondes"
    minutes = max(1, round(seconds / 60))
    return f"environ {minutes} minute{'s' if minutes > 1 else ''}"


def no_break_fr(text: str) -> str:
    """``text`` with no-break spaces where French typography puts a space: inside « », before : ; ? !.

    For texts that Qt wraps (notifications, message boxes), so « Optimiser » never breaks after the «.
    """
    for plain, kept in (("« ", "«" + NBSP), (" »", NBSP + "»"), (" :", NBSP + ":"), (" ;", NBSP + ";"),
                        (" ?", NBSP + "?"), (" !", NBSP + "!")):
        text = text.replace(plain, kept)
    return text
