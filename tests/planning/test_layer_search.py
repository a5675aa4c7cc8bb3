"""The layer search asks as few questions as it can and always finds the most layers that fit."""

from __future__ import annotations

import pytest

from tray_app.planning.layer_search import most_that_fit


@pytest.mark.parametrize("limit", [-5, 0, 1, 2, 7, 16, 32, 33, 40])
@pytest.mark.parametrize("hint", [1, 5, 16, 30, 33])
def test_finds_the_largest_count_that_fits_from_any_hint(limit: int, hint: int):
    asked: list[int] = []

    def fits(n: int) -> bool:
        asked.append(n)
        return n <= limit

    expected = None if limit < 1 else min(limit, 33)
    assert most_that_fit(fits, 1, 33, hint) == expected
    assert len(asked) == len(set(asked))  # never the same question twice
    assert len(asked) <= 12  # about 2·log2(33): a dry run each


def test_a_good_hint_costs_two_questions():
    asked: list[int] = []

    def fits(n: int) -> bool:
        asked.append(n)
        return n <= 20

    assert most_that_fit(fits, 1, 33, 20) == 20
    assert asked == [20, 21]


def test_empty_range():
    assert most_that_fit(lambda n: True, 5, 4, 5) is None
