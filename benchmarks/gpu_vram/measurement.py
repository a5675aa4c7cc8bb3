"""One case measured: plan, fit, the real runner loaded, one answer streamed, NVML sampled meanwhile.

The runner's own VRAM is attributed by the project's one rule, ``tray_app.hardware.gpu.runner_vram``
(the gauges and « Optimiser » use it too): its pids (per process on Linux), else the process that appeared
(inside a PID namespace the driver's pids are not ours), else the whole card's increase since just
before the runner started; :attr:`~.results.Measurement.method` records which, and the table shows it.
The request goes through the project's streaming client (``tray_app.host.chat_probe``), which counts
tokens as the gateway does. A runner that dies of out-of-memory is a result (``OOM``), not a crash;
whatever else goes wrong in one case is that case's error, and the run goes on.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.gpu_vram import GIB, MIB
from benchmarks.gpu_vram.cuda_hold import VramHolder
from benchmarks.gpu_vram.fit_probe import run_fit_probe
from benchmarks.gpu_vram.models import model_path, plan_case, predict
from benchmarks.gpu_vram.prompts import answer_bias, build_prompt, end_token_ids
from benchmarks.gpu_vram.results import CaseResult, Measurement
from tray_app.hardware.gpu import runner_vram
from tray_app.hardware.llama_buffers import parse_buffer_sizes

if TYPE_CHECKING:
    from benchmarks.gpu_vram.cases import Case
    from tray_app.hardware.gpu import GpuReading, NvmlReader
    from tray_app.host.chat_probe import ChatProbeResult
    from tray_app.host.runner import RunnerEndpoint

# How directly runner_vram found the runner's VRAM, most direct first.
METHODS = ("pid", "new-process", "card-delta")


class PeakSampler(threading.Thread):
    """Reads NVML every ``interval`` seconds until stopped and keeps the peaks: the card's, and the
    runner's for each way :func:`runner_vram` found it. The runner's peak is the most direct way's
    (:data:`METHODS`), so a sample where the driver happens to list none of its pids cannot mix the
    card-wide estimate into a per-process peak."""

    def __init__(self, read: Callable[[], GpuReading], pids: Callable[[], list[int]], *,
                 pids_before: Collection[int], used_before: int | None, interval: float = 0.05) -> None:
        super().__init__(name="vram-peak", daemon=True)
        self._read, self._pids = read, pids
        self._pids_before, self._used_before = pids_before, used_before
        self._interval = interval
        self._stop_event = threading.Event()
        self.peaks: dict[str, int] = {}  # method -> the runner's peak found that way
        self.peak_card: int | None = None

    @property
    def method(self) -> str:
        return next((m for m in METHODS if m in self.peaks), "")

    @property
    def peak(self) -> int | None:
        return self.peaks.get(self.method)

    def sample(self) -> None:
        reading = self._read()
        if reading.memory_used is not None:
            self.peak_card = max(self.peak_card or 0, reading.memory_used)
        used, how = runner_vram(reading, self._pids(), pids_before=self._pids_before, used_before=self._used_before)
        if used is not None:
            self.peaks[how] = max(self.peaks.get(how, 0), used)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5.0)
        self.sample()


def tokenize(endpoint: RunnerEndpoint, text: str) -> list[int]:
    """The runner's tokens for ``text`` (llama-cpp-python's ``/extras/tokenize``, BOS included)."""
    from tray_app.host.chat_probe import post_json

    answer = post_json(endpoint.base_url, "/extras/tokenize", {"input": text}, headers=endpoint.headers)
    return [int(t) for t in answer["tokens"]]


def generate(endpoint: RunnerEndpoint, prompt: str, max_tokens: int, logit_bias: dict[str, float],
             timeout: float = 600.0) -> ChatProbeResult:
    """One streaming completion of the raw prompt (no chat template: its tokens are the ones counted);
    tokens/s between the first and the last token, as the gateway counts."""
    from tray_app.host.chat_probe import stream_completion

    return stream_completion(endpoint.base_url, prompt, max_tokens=max_tokens, temperature=0.0, timeout=timeout,
                             headers=endpoint.headers, extra={"logit_bias": logit_bias})


def read_runner_log(path: Path) -> str:
    parts = [path.with_name(path.name + ".1"), path]
    return "".join(p.read_text("utf-8", "replace") for p in parts if p.is_file())


def wait_card_back(read: Callable[[], GpuReading], used_before: int, timeout: float = 20.0) -> None:
    """Until the card's used memory is back near ``used_before`` (the runner's VRAM returned)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (read().memory_used or 0) > used_before + 64 * MIB:
        time.sleep(0.2)


def measure_case(case: Case, args: argparse.Namespace, reader: NvmlReader) -> CaseResult:
    """Hold the budget, plan, probe the fit, load the runner, answer once while sampling, clean up."""
    from tray_app.host.runner import Runner, RunnerError
    from tray_app.host.runner_errors import FailureKind, classify_failure
    from tray_app.models.gguf_info import read_model_info

    def read() -> GpuReading:
        return reader.read()[0]

    first = read()
    result = CaseResult(case.id, case.model, case.model, case.ctx, case.budget_label, first.memory_total or 0)
    try:
        path = model_path(case.model, args.models_dir)
        info = read_model_info(path)
    except Exception as exc:  # noqa: BLE001  (a missing demo model is a skipped case, not the end of the run)
        result.error = f"model: {exc}"
        return result
    result.model_name = info.name
    holder: VramHolder | None = None
    runner = None
    try:
        budget = case.budget_bytes
        free_at_start = first.memory_free or 0
        if budget is not None and budget < free_at_start:
            holder = VramHolder(budget)
            result.holder = dict(holder.info)
        elif budget is not None:
            result.holder = {"note": f"budget ≥ free VRAM ({free_at_start / GIB:.1f} GiB): nothing held"}
        before = read()
        plan = plan_case(info, case, free_vram=before.memory_free or 0, card_total=before.memory_total or 0,
                         card_name=before.name, driver=before.driver_version)
        result.prediction = predict(plan)
        if not args.no_fit:
            result.fit = run_fit_probe(path, plan)
        before = read()
        pids_before = {p.pid for p in before.processes}
        measured = Measurement(card_used_before=before.memory_used)
        result.measured = measured
        log_file = args.logs_dir / f"{case.id}.log"
        for stale in (log_file, log_file.with_name(log_file.name + ".1")):
            stale.unlink(missing_ok=True)
        runner = Runner(plan.to_runner_config(), log_file=log_file)
        try:
            endpoint = runner.load(timeout=args.load_timeout)
        except RunnerError as exc:
            result.oom = exc.kind is FailureKind.OUT_OF_MEMORY
            result.error = f"load: {exc.kind.value}: {exc.detail}"[:300]
            measured.buffers = parse_buffer_sizes(read_runner_log(log_file))
            return result
        measured.load_s = runner.load_seconds
        time.sleep(0.5)
        after = read()
        measured.after_load, how = runner_vram(after, runner.pids(), pids_before=pids_before,
                                               used_before=before.memory_used)
        measured.card_after_load = after.memory_used
        sampler = PeakSampler(read, runner.pids, pids_before=pids_before, used_before=before.memory_used)
        sampler.start()
        try:
            target = min(args.prompt_tokens, plan.n_ctx - args.max_tokens - 16)
            prompt, n_prompt = build_prompt(lambda text: len(tokenize(endpoint, text)), target)
            bias = answer_bias(lambda text: tokenize(endpoint, text), end_token_ids(path))
            gen = generate(endpoint, prompt, args.max_tokens, bias)
            measured.prompt_tokens, measured.tokens = n_prompt, gen.tokens
            measured.tokens_per_s, measured.ttft_s = gen.tokens_per_s, gen.ttft_s
        except Exception as exc:  # noqa: BLE001  (the runner died while answering: OOM or a crash, both results)
            if not runner.alive:
                kind, detail = classify_failure(runner.returncode, runner.output_tail(80))
                result.oom = kind is FailureKind.OUT_OF_MEMORY
                result.error = f"generation: {kind.value}: {detail}"[:300]
            else:
                result.error = f"generation: {exc}"[:300]
        finally:
            sampler.stop()
        measured.peak, measured.method = sampler.peak, sampler.method or how
        if measured.peak is not None:
            measured.peak = max(measured.peak, measured.after_load or 0)
        measured.card_peak = sampler.peak_card
        measured.buffers = parse_buffer_sizes(read_runner_log(log_file))
        return result
    except Exception as exc:  # noqa: BLE001  (whatever fails in one case is that case's error; the run goes on)
        result.error = f"{type(exc).__name__}: {exc}"[:300]
        return result
    finally:
        if runner is not None:
            runner.stop()
            runner.close_log()
            wait_card_back(read, (result.measured.card_used_before if result.measured else None)
                           or first.memory_used or 0)
        if holder is not None:
            holder.close()
            wait_card_back(read, first.memory_used or 0)


def dry_run_case(case: Case, args: argparse.Namespace, card_total: int, card_free: int) -> CaseResult:
    """The plan and its predicted figures only (``--dry-run``): no GPU, nothing loaded."""
    from tray_app.models.gguf_info import read_model_info

    result = CaseResult(case.id, case.model, case.model, case.ctx, case.budget_label, card_total)
    try:
        info = read_model_info(model_path(case.model, args.models_dir))
    except Exception as exc:  # noqa: BLE001  (a missing model is that case's error, as in a measured run)
        result.error = f"model: {exc}"
        return result
    result.model_name = info.name
    free = card_free if case.budget_bytes is None else min(card_free, case.budget_bytes)
    result.prediction = predict(plan_case(info, case, free_vram=free, card_total=card_total))
    return result
