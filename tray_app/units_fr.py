"""Numbers as a French reader expects them: « 4,1 Go », « 512 Mo », « 8 192 »; and wrapped sentences that
never leave a « or a : alone at the start or end of a line."""

from __future__ import annotations

MIB = 1024 * 1024
GIB = 1024 * MIB


def size_fr(n_bytes: int | float) -> str:
    """Bytes in Go (one decimal, comma) from 1 000 Mo up, else whole Mo; binary units, like Windows."""
    if n_bytes >= 1000 * MIB:  # « 1,0 Go » reads better than « 1 010 Mo »
        return f"{n_bytes / GIB:.1f}".replace(".", ",") + " Go"
    mib = round(n_bytes / MIB)
    return f"{int_fr(mib if mib or not n_bytes else 1)} Mo"


def int_fr(n: int) -> str:
    """An integer with a space between thousands: 8192 gives « 8 192 »."""
    return f"{n:,}".replace(",", " ")


NBSP = "\u00a0"


def no_break_fr(text: str) -> str:
    """``text`` with no-break spaces where French typography puts a space: inside « », before : ; ? !.

    For texts that Qt wraps (notifications, message boxes), so « Optimiser » never breaks after the «.
    """
    for plain, kept in (("« ", "«" + NBSP), (" »", NBSP + "»"), (" :", NBSP + ":"), (" ;", NBSP + ";"),
                        (" ?", NBSP + "?"), (" !", NBSP + "!")):
        text = text.replace(plain, kept)
    return text
