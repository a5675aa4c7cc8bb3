"""Measuring one configuration for real: a runner process, a warm-up, repeated requests, peaks.

A configuration is measured in a runner process started for it, reused for the warm-up and every
repetition. After a stable measurement the runner is kept (:mod:`tray_app.benchmark.kept_runner`): the
next configuration, when it differs only in thread counts and is pinned the same way, is measured in it,
the counts changed inside the process (llama.cpp's ``llama_set_n_threads`` through the runner's private
route) instead of loading the model again; any other configuration stops it first and starts its own.
``Measurement.runner`` numbers the processes: equal numbers, one process in turn. A runner is never kept
after an unstable measurement, nor after :meth:`RunnerMeasurer.close`, which whoever makes a measurer
calls when done; the cancel event stops the runner at once, even in the middle of a request or while
it is kept between two measurements.

A configuration that crashes, runs out of memory, answers incompletely or leaves the graphics card too
full is returned as an *unstable* :class:`Measurement` and the run goes on. Failures that no other
setting can fix (missing engine, unreadable or unsupported model) raise :class:`BenchmarkError`.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from tray_app.benchmark.kept_runner import KeptRunner, RunnerWatch, stop_runner
from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.sampler import ResourceSampler
from tray_app.benchmark.search import BenchmarkCancelled
from tray_app.benchmark.space import Point, affinity_for, config_for
from tray_app.benchmark.workload import Workload, conversation, warmup_conversation
from tray_app.hardware.affinity import pin_processes
from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.gpu import NvmlReader
from tray_app.host.chat_probe import ChatProbeError, stream_chat
from tray_app.host.runner import Runner, RunnerEndpoint, check_model_file
from tray_app.host.runner_errors import FailureKind, RunnerError, classify_failure
from tray_app.planning.runner_config import RunnerConfig

log = logging.getLogger(__name__)

DEFAULT_LOAD_TIMEOUT_S = 300.0
# Failures no other configuration can fix: the whole benchmark stops with the runner's French message.
FATAL_KINDS = frozenset({FailureKind.MODEL_FILE, FailureKind.MODEL_UNSUPPORTED, FailureKind.ENGINE})
UNSAFE_VRAM_FR = (
    "Avec ces réglages, la carte graphique était presque pleine : l'avatar et les autres programmes "
    "risqueraient de ralentir."
)
INCOMPLETE_FR = "Le modèle n'a pas terminé sa réponse avec ces réglages."
SLOW_FR = "Beaucoup trop lent avec ces réglages : l'essai a été arrêté pour gagner du temps."
CONTEXT_TOO_SHORT_FR = (
    "La « Mémoire de conversation » réglée est trop courte pour la conversation d'essai. Réglez-la à "
    "2 048 jetons au moins dans les paramètres, puis relancez « Optimiser »."
)

DetailCallback = Callable[[str], None]


class BenchmarkError(Exception):
    """The benchmark cannot go on; ``message_fr`` tells the user why and what to do."""

    def __init__(self, message_fr: str, detail: str = "") -> None:
        super().__init__(detail or message_fr)
        self.message_fr = message_fr


class RunnerMeasurer:
    """Measures points (``measurer(point)``) or whole configurations (:meth:`measure_config`).

    ``on_detail`` receives short French phrases of the current sub-step (« Chargement du modèle »,
    « Mesure 2 sur 3 »), from the calling thread.
    """

    def __init__(
        self,
        base: RunnerConfig,
        workload: Workload,
        *,
        cpu: CpuInfo,
        n_layers: int,
        cancel: threading.Event | None = None,
        nvml: NvmlReader | None = None,
        vram_limit: int | None = None,
        log_file: Path | None = None,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
        on_detail: DetailCallback | None = None,
        hopeless_below: Callable[[], float | None] | None = None,
        request_limit: Callable[[], float | None] | None = None,
    ) -> None:
        self.base = base
        self.workload = workload
        self.cpu = cpu
        self.n_layers = n_layers
        self.cancel = cancel or threading.Event()
        self.nvml = nvml
        self.vram_limit = vram_limit  # bytes used on the whole card above which a configuration is unsafe
        self.log_file = log_file
        self.load_timeout_s = load_timeout_s
        self.on_detail = on_detail
        # Generation speed under which a configuration is not measured further after its first request
        # (clearly slower than the best so far: more requests would not change the verdict).
        self.hopeless_below = hopeless_below
        # Seconds one request may take before the configuration is declared far too slow and stopped
        # (None: no limit but ``workload.request_timeout_s``): one hopeless configuration on a busy
        # machine must not take minutes of the user's time.
        self.request_limit = request_limit
        self.prompt_tokens: dict[int, int] = {}  # variant → prompt tokens, counted once per model
        self.last_runner_pids: list[int] = []  # for tests: the last runner's processes
        self.runners = 0  # runner processes started: the last one's number (``Measurement.runner``)
        self.threads_read_back: tuple[int, int] | None = None  # llama.cpp's counts after the last change
        self._kept: KeptRunner | None = None  # the runner of the last stable measurement, still running

    def __call__(self, point: Point) -> Measurement:
        config = config_for(self.base, point, n_layers=self.n_layers)
        return self.measure_config(config, affinity_for(point, self.cpu))

    # -- one configuration ------------------------------------------------------------------------
    def measure_config(self, config: RunnerConfig, affinity: tuple[int, ...] = ()) -> Measurement:
        """Measure ``config`` in the kept runner (only its thread counts differ) or a new one; keep the
        runner after a stable measurement, else stop it. Raises BenchmarkCancelled, BenchmarkError."""
        if self.cancel.is_set():
            self.close()
            raise BenchmarkCancelled()
        started = time.monotonic()
        kept = self._reuse(config, affinity)
        if kept is not None:
            runner, watch, number, used_before = kept.runner, kept.watch, kept.number, kept.used_before
            self.last_runner_pids = runner.pids()
            self._detail("Modèle déjà chargé")
        else:
            runner = Runner(config, log_file=self.log_file)
            watch = RunnerWatch(self.cancel, runner)
            self.runners += 1
            number, used_before = self.runners, None
            self._detail("Chargement du modèle")
        sampler = ResourceSampler(runner.pids, self.nvml, used_before=used_before)
        try:
            measurement, endpoint = self._run(config, affinity, runner, kept, sampler, watch)
        except BaseException:
            stop_runner(runner, watch)
            raise
        if measurement.stable and self._unsafe(sampler):
            measurement = Measurement.failed("unsafe", UNSAFE_VRAM_FR)
        if measurement.stable and endpoint is not None and runner.alive and not self.cancel.is_set():
            self._kept = KeptRunner(runner, endpoint, number, config, affinity, watch, sampler.used_before)
        else:
            stop_runner(runner, watch)
        load_s = runner.load_seconds if kept is None else None  # a kept runner loaded nothing
        measurement = _with_figures(measurement, sampler, wall_s=time.monotonic() - started, load_s=load_s)
        return replace(measurement, runner=number if runner.pid is not None else None)

    def close(self) -> None:
        """Stop the runner kept from the last measurement, if any (idempotent)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.stop()

    def _reuse(self, config: RunnerConfig, affinity: tuple[int, ...]) -> KeptRunner | None:
        """The kept runner, given ``config``'s thread counts, when it can measure ``config``; otherwise
        None, the kept runner stopped first."""
        kept, self._kept = self._kept, None
        if kept is None:
            return None
        if not self.cancel.is_set() and kept.fits(config, affinity):
            self.threads_read_back = kept.switch_to(config)
            if self.threads_read_back is not None:
                return kept
        kept.stop()
        return None

    def _run(
        self,
        config: RunnerConfig,
        affinity: tuple[int, ...],
        runner: Runner,
        kept: KeptRunner | None,
        sampler: ResourceSampler,
        watch: RunnerWatch,
    ) -> tuple[Measurement, RunnerEndpoint | None]:
        """The measurement (unstable when the configuration failed) and the runner's endpoint if ready."""
        endpoint: RunnerEndpoint | None = kept.endpoint if kept is not None else None
        watch.too_slow = False
        try:
            sampler.start()
            if endpoint is None:
                endpoint = self._start(runner, affinity)
                self.last_runner_pids = runner.pids()
                watch.arm()
            elif self.cancel.is_set():  # the watch stopped the kept runner
                raise BenchmarkCancelled()
            return self._measure(config, runner, endpoint, sampler, affinity, watch), endpoint
        except RunnerError as exc:
            if exc.kind is FailureKind.CANCELLED or self.cancel.is_set():
                raise BenchmarkCancelled() from exc
            if exc.kind in FATAL_KINDS:
                raise BenchmarkError(exc.message_fr, exc.detail) from exc
            log.info("configuration unstable (%s): %s — %s", exc.kind.value, config.to_dict(), exc.detail)
            return Measurement.failed(exc.kind.value, exc.message_fr), endpoint
        except (ChatProbeError, OSError, http.client.HTTPException, ValueError) as exc:
            if self.cancel.is_set():
                raise BenchmarkCancelled() from exc
            if watch.too_slow:
                return Measurement.failed("slow", SLOW_FR), endpoint
            if isinstance(exc, ChatProbeError) and exc.status == 400 and "context length" in exc.message:
                raise BenchmarkError(CONTEXT_TOO_SHORT_FR, exc.message) from exc
            return self._failed_request(runner, config, exc), endpoint
        finally:
            watch.end_request()
            sampler.stop()

    def _start(self, runner: Runner, affinity: tuple[int, ...]) -> RunnerEndpoint:
        if not affinity:
            return runner.load(self.load_timeout_s, self.cancel)
        check_model_file(runner.config.model_path)
        for attempt in range(3):
            runner.start()
            pin_processes(runner.pids(), affinity)  # before llama.cpp starts its threads
            try:
                endpoint = runner.wait_ready(self.load_timeout_s, self.cancel)
            except RunnerError as exc:
                runner.stop()
                if exc.kind is not FailureKind.PORT or attempt == 2:
                    raise
                continue
            pin_processes(runner.pids(), affinity)
            return endpoint
        raise AssertionError("unreachable")

    def _measure(
        self,
        config: RunnerConfig,
        runner: Runner,
        endpoint: RunnerEndpoint,
        sampler: ResourceSampler,
        affinity: tuple[int, ...],
        watch: RunnerWatch,
    ) -> Measurement:
        w = self.workload
        self._detail("Échauffement")
        watch.start_request(self.request_limit() if self.request_limit is not None else None)
        stream_chat(
            endpoint.base_url,
            warmup_conversation(),
            headers=endpoint.headers,
            timeout=w.request_timeout_s,
            **_split(w.request_fields(w.warmup_tokens)),
        )
        watch.end_request()
        if affinity:
            pin_processes(runner.pids(), affinity)  # threads created by the first computation
        gen: list[float] = []
        ttft: list[float] = []
        prompt: list[float] = []
        text = ""
        with sampler.measuring():
            for i, variant in enumerate(w.variants, start=1):
                if self.cancel.is_set():
                    raise BenchmarkCancelled()
                self._detail(f"Mesure {i} sur {w.repetitions}")
                watch.start_request(self.request_limit() if self.request_limit is not None else None)
                result = stream_chat(
                    endpoint.base_url,
                    conversation(variant),
                    headers=endpoint.headers,
                    timeout=w.request_timeout_s,
                    **_split(w.request_fields(reuse_prompt=not w.reads_prompt(i))),
                )
                watch.end_request()
                if watch.too_slow:
                    return Measurement.failed("slow", SLOW_FR)
                short = result.tokens < w.max_tokens * 0.9
                if not result.complete or short or not result.tokens_per_s or result.ttft_s is None:
                    if self.cancel.is_set():
                        raise BenchmarkCancelled()
                    if result.tokens == 0 and runner.alive:
                        # An error event in the stream; the same request unstreamed says which (context?).
                        count_prompt_tokens(endpoint, conversation(variant), w.request_timeout_s)
                    return self._incomplete(runner, config, result.tokens, result.error)
                gen.append(result.tokens_per_s)
                if w.reads_prompt(i):
                    ttft.append(result.ttft_s)
                    reading = max(1e-3, result.ttft_s - 1.0 / result.tokens_per_s)
                    if variant not in self.prompt_tokens:  # same prompt again: read from the cache, ~free
                        messages = conversation(variant)
                        self.prompt_tokens[variant] = count_prompt_tokens(endpoint, messages, w.request_timeout_s)
                    prompt.append(self.prompt_tokens[variant] / reading)
                text = text or result.text
                floor = self.hopeless_below() if self.hopeless_below is not None else None
                if floor and result.tokens_per_s < floor:
                    log.info("%.1f tok/s, under %.1f: not measured further", result.tokens_per_s, floor)
                    break
        tokens = [self.prompt_tokens[v] for v in w.variants if v in self.prompt_tokens]
        return Measurement(
            stable=True,
            gen_samples=tuple(gen),
            ttft_samples=tuple(ttft),
            prompt_samples=tuple(prompt),
            prompt_tokens=round(sum(tokens) / len(tokens)),
            generated_tokens=w.max_tokens,
            text=text[:2000],
        )

    # -- failures ---------------------------------------------------------------------------------
    def _incomplete(self, runner: Runner, config: RunnerConfig, tokens: int, error: str = "") -> Measurement:
        if not runner.alive:
            return self._runner_died(runner, config, f"runner ended during a request ({tokens} tokens) {error}".strip())
        why = f": {error}" if error else ""
        log.info("incomplete answer (%d tokens%s) with %s", tokens, why, config.to_dict())
        return Measurement.failed("request", INCOMPLETE_FR)

    def _failed_request(self, runner: Runner, config: RunnerConfig, exc: Exception) -> Measurement:
        time.sleep(0.2)  # let a dying runner finish dying, so its exit status and last words are known
        if not runner.alive:
            return self._runner_died(runner, config, f"{type(exc).__name__}: {exc}")
        log.info("request failed with %s: %s", config.to_dict(), exc)
        return Measurement.failed("request", INCOMPLETE_FR)

    def _runner_died(self, runner: Runner, config: RunnerConfig, detail: str) -> Measurement:
        kind, why = classify_failure(runner.returncode, runner.output_tail(80))
        log.info("runner died while measuring %s (%s): %s; %s", config.to_dict(), kind.value, why, detail)
        return Measurement.failed(kind.value, RunnerError(kind).message_fr)

    def _unsafe(self, sampler: ResourceSampler) -> bool:
        return bool(self.vram_limit and sampler.peak_vram_device and sampler.peak_vram_device > self.vram_limit)

    def _detail(self, text_fr: str) -> None:
        if self.on_detail is not None:
            self.on_detail(text_fr)


def count_prompt_tokens(endpoint: RunnerEndpoint, messages: list[dict[str, str]], timeout: float) -> int:
    """Prompt tokens of ``messages`` as the server counts them (a one-token, non-streamed request)."""
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        body = {"messages": messages, "max_tokens": 1, "temperature": 0.0, "stream": False}
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", **endpoint.headers},
        )
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise ChatProbeError(response.status, data[:300].decode("utf-8", "replace"))
        usage = json.loads(data).get("usage") or {}
        return int(usage.get("prompt_tokens") or 0)
    finally:
        conn.close()


class _ChatArguments(TypedDict):
    max_tokens: int
    temperature: float
    extra: dict[str, Any]


def _split(fields: dict[str, object]) -> _ChatArguments:
    """``stream_chat`` keyword arguments from the request fields."""
    rest: dict[str, Any] = dict(fields)
    return {"max_tokens": int(rest.pop("max_tokens")), "temperature": float(rest.pop("temperature")), "extra": rest}


def _with_figures(m: Measurement, sampler: ResourceSampler, wall_s: float, load_s: float | None) -> Measurement:
    return replace(
        m,
        wall_s=wall_s,
        load_s=load_s,
        peak_ram=sampler.peak_ram,
        peak_vram=sampler.peak_vram,
        peak_vram_device=sampler.peak_vram_device,
        other_cpu_percent=sampler.other_cpu_percent,
        cpu_mhz=sampler.cpu_mhz,
        gpu_throttle=sampler.gpu_throttle,
    )
