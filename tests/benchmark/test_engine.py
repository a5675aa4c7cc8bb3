"""The real measuring engine: runner processes on the tiny random GGUF, a crash, a cancel, pinning.

A runner kept between measurements: ``test_kept_runner.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_all_gone
from tray_app.benchmark.engine import BenchmarkError, RunnerMeasurer
from tray_app.benchmark.search import BenchmarkCancelled, grid_search
from tray_app.benchmark.space import Dimension, Point, SearchSpace, config_for
from tray_app.benchmark.workload import Workload, conversation
from tray_app.hardware.affinity import affinity_of
from tray_app.hardware.cpu import detect_cpu
from tray_app.planning.runner_config import RunnerConfig

SMALL = Workload(repetitions=2, max_tokens=16, warmup_tokens=4)
_made: list[RunnerMeasurer] = []


@pytest.fixture(autouse=True)
def _close_measurers():
    """Every measurer made by a test is closed after it (a stable measurement keeps its runner)."""
    yield
    while _made:
        _made.pop().close()


def measurer(model: Path, **kwargs) -> RunnerMeasurer:
    base = RunnerConfig(str(model), n_ctx=2048, n_threads=1, n_threads_batch=1)
    workload = kwargs.pop("workload", SMALL)
    made = RunnerMeasurer(base, workload, cpu=detect_cpu(), n_layers=2, load_timeout_s=60, **kwargs)
    _made.append(made)
    return made


def test_workload_variants_differ_from_their_first_line():
    firsts = {conversation(v)[0]["content"][:30] for v in SMALL.variants}
    assert len(firsts) == SMALL.repetitions  # no prefix-cache hit between repetitions
    assert SMALL.request_fields() == {"max_tokens": 16, "min_tokens": 16, "temperature": 0.0, "seed": 42}
    with pytest.raises(ValueError):
        Workload(repetitions=0)


def test_one_configuration_measured_in_its_own_runner(tiny_gguf: Path):
    details: list[str] = []
    m = measurer(tiny_gguf, on_detail=details.append)
    result = m.measure_config(m.base)
    assert result.stable, result.failure_fr
    assert len(result.gen_samples) == len(result.ttft_samples) == len(result.prompt_samples) == 2
    assert result.generated_tokens == 16  # min_tokens = max_tokens: always the same count
    assert result.gen_tps > 0 and result.ttft_s > 0 and result.prompt_tps > 0
    assert result.prompt_tokens > 100  # the whole Kira conversation was read
    assert result.peak_ram and result.peak_ram > 10 * 1024 * 1024
    assert result.peak_vram is None  # no GPU here
    assert result.load_s and result.wall_s > result.load_s
    assert details[0] == "Chargement du modèle" and details[-1] == "Mesure 2 sur 2"
    assert result.runner == 1
    m.close()  # the runner was kept for a next configuration
    assert wait_all_gone(m.last_runner_pids)


def test_a_crashing_configuration_is_unstable_and_the_run_goes_on(tiny_gguf: Path):
    # The tiny model's heads are 16 wide: a q8_0 cache (blocks of 32) makes llama.cpp refuse the context.
    m = measurer(tiny_gguf)
    space = SearchSpace(
        (Dimension("attention", ("f16", "q8_0_fa"), ordered=False),), Point.of(attention="f16")
    )
    outcome = grid_search(space, lambda p: m.measure_config(config_for(m.base, p, n_layers=2)))
    crashed = [t for t in outcome.trials if t.point.get("attention") == "q8_0_fa"]
    assert len(crashed) == 1 and not crashed[0].measurement.stable
    assert crashed[0].measurement.failure_fr  # French, for the details table
    assert outcome.best.point.get("attention") == "f16" and outcome.best_measurement.stable
    assert outcome.trials[-1].control  # measured on after the crash
    m.close()
    assert wait_all_gone(m.last_runner_pids)


def test_cancel_during_a_request_stops_the_runner(tiny_gguf: Path):
    cancel = threading.Event()
    m = measurer(tiny_gguf, cancel=cancel)

    def on_detail(text: str) -> None:
        if text.startswith("Mesure 1"):
            cancel.set()

    m.on_detail = on_detail
    started = time.monotonic()
    with pytest.raises(BenchmarkCancelled):
        m.measure_config(m.base)
    assert time.monotonic() - started < 30
    assert m.last_runner_pids and wait_all_gone(m.last_runner_pids, timeout=1.0)


def test_cancel_while_loading_stops_the_runner(tiny_gguf: Path):
    cancel = threading.Event()
    m = measurer(tiny_gguf, cancel=cancel)
    pids: list[int] = []
    runner_start = __import__("tray_app.host.runner", fromlist=["Runner"]).Runner.start

    def start_and_cancel(self, port=None):
        runner_start(self, port)
        pids.extend(self.pids())
        cancel.set()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tray_app.host.runner.Runner.start", start_and_cancel)
        with pytest.raises(BenchmarkCancelled):
            m.measure_config(m.base)
    assert pids and wait_all_gone(pids, timeout=1.0)


def test_a_truncated_model_stops_the_whole_benchmark_in_french(tiny_gguf: Path, tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    data = tiny_gguf.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    m = measurer(broken)
    with pytest.raises(BenchmarkError) as info:
        m.measure_config(m.base)
    assert "modèle" in info.value.message_fr
    assert wait_all_gone(m.last_runner_pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity checked with sched_getaffinity")
def test_pinning_keeps_every_runner_thread_on_the_chosen_cpus(tiny_gguf: Path):
    seen: dict[str, object] = {}
    m = measurer(tiny_gguf)

    def on_detail(text: str) -> None:
        if text.startswith("Mesure 1") and m.last_runner_pids:
            pid = m.last_runner_pids[-1]
            seen["process"] = affinity_of(pid)
            seen["threads"] = {frozenset(os.sched_getaffinity(t.id)) for t in psutil.Process(pid).threads()}

    m.on_detail = on_detail
    result = m.measure_config(m.base, affinity=(0,))
    assert result.stable
    assert seen["process"] == [0]
    assert seen["threads"] == {frozenset({0})}


def test_copying_the_model_is_not_needed_for_a_different_path(tiny_gguf: Path, tmp_path: Path):
    # A model elsewhere (another folder, spaces in the name) is measured the same way.
    other = tmp_path / "mon modèle.gguf"
    shutil.copy(tiny_gguf, other)
    m = measurer(other, workload=Workload(repetitions=1, max_tokens=8, warmup_tokens=2))
    assert m.measure_config(m.base).stable


def test_a_context_too_short_for_the_conversation_stops_in_french(tiny_gguf: Path):
    m = measurer(tiny_gguf)
    m.base = m.base.with_changes(n_ctx=256)  # the Kira conversation does not fit
    with pytest.raises(BenchmarkError) as info:
        m.measure_config(m.base)
    assert "Mémoire de conversation" in info.value.message_fr
    assert wait_all_gone(m.last_runner_pids)


def test_a_clearly_slower_configuration_is_not_measured_further(tiny_gguf: Path):
    m = measurer(tiny_gguf, workload=Workload(repetitions=3, max_tokens=16, warmup_tokens=2))
    m.hopeless_below = lambda: 1e9  # anything is « less than half the best so far »
    result = m.measure_config(m.base)
    assert result.stable and len(result.gen_samples) == 1


def test_a_request_past_its_time_limit_stops_the_configuration(tiny_gguf: Path):
    m = measurer(tiny_gguf, workload=Workload(repetitions=2, max_tokens=400, warmup_tokens=2))
    m.request_limit = lambda: 0.05  # far less than 400 tokens take
    started = time.monotonic()
    result = m.measure_config(m.base)
    assert not result.stable and result.failure_kind == "slow"
    assert "trop lent" in result.failure_fr
    assert time.monotonic() - started < 20
    assert wait_all_gone(m.last_runner_pids)


def test_the_quick_workload_times_the_prompt_once_and_the_generation_every_time(tiny_gguf: Path, tmp_path: Path):
    quick = Workload(repetitions=2, max_tokens=16, warmup_tokens=4, prompt_once=True)
    assert quick.variants == (1, 1) and [quick.reads_prompt(i) for i in (1, 2)] == [True, False]
    assert "seed" in quick.request_fields() and "seed" not in quick.request_fields(reuse_prompt=True)
    m = measurer(tiny_gguf, workload=quick, log_file=tmp_path / "runner.log")
    result = m.measure_config(m.base)
    assert result.stable, result.failure_fr
    assert len(result.gen_samples) == 2 and len(result.ttft_samples) == len(result.prompt_samples) == 1
    assert result.prompt_tokens > 100  # the first request read the whole Kira conversation
    # ...and the second did not read it again: llama.cpp evaluated the whole conversation only once.
    log = (tmp_path / "runner.log").read_text(encoding="utf-8", errors="replace")
    evaluated = [int(n) for n in re.findall(r"prompt eval time = .*/ *(\d+) tokens", log)]
    assert evaluated.count(result.prompt_tokens) == 1 and len(evaluated) >= 3  # warm-up, reading, cached
