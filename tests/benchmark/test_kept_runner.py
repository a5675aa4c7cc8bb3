"""A runner kept between measurements: thread counts changed inside it, anything else a new process.

Real runner processes on the tiny random GGUF; no test depends on speed.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_all_gone
from tray_app.benchmark.engine import RunnerMeasurer
from tray_app.benchmark.search import BenchmarkCancelled
from tray_app.benchmark.workload import Workload
from tray_app.hardware.cpu import detect_cpu
from tray_app.planning.runner_config import RunnerConfig

SMALL = Workload(repetitions=2, max_tokens=8, warmup_tokens=2)
MakeMeasurer = Callable[..., RunnerMeasurer]


@pytest.fixture
def make_measurer(tiny_gguf: Path, tmp_path: Path) -> Iterator[MakeMeasurer]:
    made: list[RunnerMeasurer] = []

    def make(**kwargs) -> RunnerMeasurer:
        base = RunnerConfig(str(tiny_gguf), n_ctx=2048, n_threads=1, n_threads_batch=1)
        m = RunnerMeasurer(base, SMALL, cpu=detect_cpu(), n_layers=2, load_timeout_s=60,
                           log_file=tmp_path / "runner.log", **kwargs)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def alive(pids: list[int]) -> bool:
    return bool(pids) and all(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                              for p in pids)


def test_a_thread_change_is_measured_in_the_same_runner(make_measurer: MakeMeasurer, tmp_path: Path):
    m = make_measurer()
    first = m.measure_config(m.base)
    pids = list(m.last_runner_pids)
    details: list[str] = []
    m.on_detail = details.append
    second = m.measure_config(m.base.with_changes(n_threads=2, n_threads_batch=3))
    assert first.stable and second.stable, (first.failure_fr, second.failure_fr)
    assert first.runner == second.runner == 1 and m.runners == 1
    assert m.last_runner_pids == pids and alive(pids)  # the same process, still running
    assert m.threads_read_back == (2, 3)  # what llama.cpp answered after the change
    assert first.load_s and second.load_s is None  # nothing loaded the second time
    assert len(second.gen_samples) == 2 and second.peak_ram  # measured and sampled as usual
    assert details[0] == "Modèle déjà chargé" and "Chargement du modèle" not in details
    # llama.cpp itself logged the change, once, in the one runner's log.
    log = (tmp_path / "runner.log").read_text(encoding="utf-8", errors="replace")
    assert re.findall(r"set_n_threads: n_threads = (\d+), n_threads_batch = (\d+)", log) == [("2", "3")]
    assert log.count("runner port ") == 1  # one process started
    third = m.measure_config(m.base)  # and back
    assert third.stable and third.runner == 1 and m.threads_read_back == (1, 1)


def test_another_setting_or_pinning_starts_a_new_runner_and_ends_the_old(make_measurer: MakeMeasurer):
    m = make_measurer()
    first = m.measure_config(m.base)
    old = list(m.last_runner_pids)
    second = m.measure_config(m.base.with_changes(n_batch=256, n_ubatch=256, n_threads=2))
    assert first.stable and second.stable
    assert (first.runner, second.runner) == (1, 2)
    assert wait_all_gone(old) and set(m.last_runner_pids).isdisjoint(old)
    assert second.load_s  # loaded again
    assert m.threads_read_back is None  # no thread change was made
    before = list(m.last_runner_pids)
    third = m.measure_config(m.base.with_changes(n_batch=256, n_ubatch=256), affinity=(0,))
    assert third.stable and third.runner == 3  # only the threads differ, but pinned otherwise: a new process
    assert wait_all_gone(before)


def test_after_a_failed_measurement_the_runner_is_not_kept(make_measurer: MakeMeasurer):
    m = make_measurer()
    assert m.measure_config(m.base).stable
    pids = list(m.last_runner_pids)

    def kill_it(text: str) -> None:
        if text.startswith("Mesure 1"):
            for pid in pids:
                try:
                    psutil.Process(pid).kill()
                except psutil.NoSuchProcess:
                    pass

    m.on_detail = kill_it
    crashed = m.measure_config(m.base.with_changes(n_threads=2))
    assert not crashed.stable and crashed.failure_fr
    assert crashed.runner == 1  # it failed in the kept runner
    m.on_detail = None
    again = m.measure_config(m.base.with_changes(n_threads=2))
    assert again.stable and again.runner == 2 and again.load_s


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity checked with sched_getaffinity")
def test_a_pinned_runner_stays_pinned_after_a_thread_change(make_measurer: MakeMeasurer):
    m = make_measurer()
    seen: list[set[frozenset[int]]] = []

    def on_detail(text: str) -> None:
        if text.startswith("Mesure 2"):  # after the warm-up and a request with the new counts
            pid = m.last_runner_pids[-1]
            seen.append({frozenset(os.sched_getaffinity(t.id)) for t in psutil.Process(pid).threads()})

    m.on_detail = on_detail
    first = m.measure_config(m.base, affinity=(0,))
    second = m.measure_config(m.base.with_changes(n_threads=2, n_threads_batch=2), affinity=(0,))
    assert first.stable and second.stable and first.runner == second.runner
    assert seen == [{frozenset({0})}, {frozenset({0})}]


def test_close_and_cancel_leave_no_runner(make_measurer: MakeMeasurer):
    m = make_measurer()
    assert m.measure_config(m.base).stable
    pids = list(m.last_runner_pids)
    assert alive(pids)  # kept for the next configuration
    m.close()
    assert wait_all_gone(pids)
    m.close()  # idempotent

    cancel = threading.Event()
    m = make_measurer(cancel=cancel)
    assert m.measure_config(m.base).stable
    pids = list(m.last_runner_pids)
    assert alive(pids)
    cancel.set()  # between two measurements: the kept runner is stopped at once, without close()
    assert wait_all_gone(pids, timeout=5.0)
    with pytest.raises(BenchmarkCancelled):
        m.measure_config(m.base.with_changes(n_threads=2))
    assert m.runners == 1  # no new runner for a cancelled benchmark
