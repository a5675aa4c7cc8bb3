"""Canned benchmark objects for tests: a result, a machine summary and a fake engine for the wizard.

They live in ``benchmarks/fake_optimizer.py`` (the wizard's screenshot script uses them too, and a
benchmark never imports from ``tests/``); this module keeps the tests' imports short and unchanged.
"""

from __future__ import annotations

from benchmarks.fake_optimizer import (
    BEST,
    CPU,
    GPU,
    START,
    FakeEngine,
    identity,
    make_result,
    make_summary,
    measurement,
)

__all__ = ["BEST", "CPU", "GPU", "START", "FakeEngine", "identity", "make_result", "make_summary", "measurement"]
