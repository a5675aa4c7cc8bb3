"""The most layers that fit, with as few questions as possible: each question may cost a dry run.

:func:`most_that_fit` starts where a cheap estimate (our formula) says, gallops away from it (1, 2, 4…
layers) until the answer is bracketed, then halves the bracket. Like llama.cpp's own fit, it assumes
memory grows with the layer count. A formula within a layer or two of the truth costs two or three
questions; a wrong one costs about 2·log2(distance) more.
"""

from __future__ import annotations

from collections.abc import Callable


def most_that_fit(fits: Callable[[int], bool], lowest: int, highest: int, hint: int) -> int | None:
    """The largest ``n`` in ``lowest..highest`` with ``fits(n)``, or None when even ``lowest`` does not fit."""
    if highest < lowest:
        return None
    hint = min(max(hint, lowest), highest)
    step = 1
    if fits(hint):
        good = hint
        while True:
            if good == highest:
                return good
            candidate = min(highest, good + step)
            if not fits(candidate):
                bad = candidate
                break
            good, step = candidate, step * 2
    else:
        bad = hint
        while True:
            if bad == lowest:
                return None
            candidate = max(lowest, bad - step)
            if fits(candidate):
                good = candidate
                break
            bad, step = candidate, step * 2
    while bad - good > 1:  # fits(good), not fits(bad)
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good
