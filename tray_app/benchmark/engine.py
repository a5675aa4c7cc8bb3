"""Measuring one configuration for real: its own runner process, a warm-up, repeated requests, peaks.

Each configuration runs in a fresh runner (``llama_cpp.server`` reads ``n_threads`` and every other
setting only at start-up, so even a thread count change needs a new process), reused for the warm-up
and every repetition. The runner is always stopped before :meth:`RunnerMeasurer.measure_config`
returns — or raises: the cancel event stops it at once, even in the middle of a request.

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

    def __call__(self, point: Point) -> Measurement:
        config = config_for(self.base, point, n_layers=self.n_layers)
        return self.measure_config(config, affinity_for(point, self.cpu))

    # -- one configuration ------------------------------------------------------------------------
    def measure_config(self, config: RunnerConfig, affinity: tuple[int, ...] = ()) -> Measurement:
        """Start a runner with ``config``, measure it, stop it. Raises BenchmarkCancelled, BenchmarkError."""
        started = time.monotonic()
        runner = Runner(config, log_file=self.log_file)
        sampler = ResourceSampler(runner.pids, self.nvml)
        watch = _RunnerWatch(self.cancel, runner)
        self._detail("Chargement du modèle")
        try:
            sampler.start()
            endpoint = self._start(runner, affinity)
            self.last_runner_pids = runner.pids()
            watch.arm()
            measurement = self._measure(runner, endpoint, sampler, affinity, watch)
        except RunnerError as exc:
            if exc.kind is FailureKind.CANCELLED or self.cancel.is_set():
                raise BenchmarkCancelled() from exc
            if exc.kind in FATAL_KINDS:
                raise BenchmarkError(exc.message_fr, exc.detail) from exc
            log.info("configuration unstable (%s): %s — %s", exc.kind.value, config.to_dict(), exc.detail)
            measurement = Measurement.failed(exc.kind.value, exc.message_fr)
        except (ChatProbeError, OSError, http.client.HTTPException, ValueError) as exc:
            if self.cancel.is_set():
                raise BenchmarkCancelled() from exc
            if watch.too_slow:
                measurement = Measurement.failed("slow", SLOW_FR)
            elif isinstance(exc, ChatProbeError) and exc.status == 400 and "context length" in exc.message:
                raise BenchmarkError(CONTEXT_TOO_SHORT_FR, exc.message) from exc
            else:
                measurement = self._failed_request(runner, exc)
        finally:
            watch.close()
            sampler.stop()
            runner.stop()
            runner.close_log()
        measurement = _with_figures(measurement, sampler, wall_s=time.monotonic() - started, load_s=runner.load_seconds)
        if measurement.stable and self._unsafe(sampler):
            unsafe = Measurement.failed("unsafe", UNSAFE_VRAM_FR)
            measurement = _with_figures(unsafe, sampler, measurement.wall_s, runner.load_seconds)
        return measurement

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
        runner: Runner,
        endpoint: RunnerEndpoint,
        sampler: ResourceSampler,
        affinity: tuple[int, ...],
        watch: _RunnerWatch,
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
                    return self._incomplete(runner, result.tokens, result.error)
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
    def _incomplete(self, runner: Runner, tokens: int, error: str = "") -> Measurement:
        if not runner.alive:
            return self._runner_died(runner, f"runner ended during a request ({tokens} tokens) {error}".strip())
        why = f": {error}" if error else ""
        log.info("incomplete answer (%d tokens%s) with %s", tokens, why, runner.config.to_dict())
        return Measurement.failed("request", INCOMPLETE_FR)

    def _failed_request(self, runner: Runner, exc: Exception) -> Measurement:
        time.sleep(0.2)  # let a dying runner finish dying, so its exit status and last words are known
        if not runner.alive:
            return self._runner_died(runner, f"{type(exc).__name__}: {exc}")
        log.info("request failed with %s: %s", runner.config.to_dict(), exc)
        return Measurement.failed("request", INCOMPLETE_FR)

    def _runner_died(self, runner: Runner, detail: str) -> Measurement:
        kind, why = classify_failure(runner.returncode, runner.output_tail(80))
        log.info("runner died while measuring %s (%s): %s; %s", runner.config.to_dict(), kind.value, why, detail)
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


class _RunnerWatch:
    """Stops the runner as soon as the cancel event is set, or when a request runs past its limit.

    Armed once the runner is ready (:meth:`arm`); while loading, :meth:`Runner.wait_ready` watches the
    cancel event itself. ``too_slow`` tells a stop for the time limit from a crash.
    """

    def __init__(self, cancel: threading.Event, runner: Runner) -> None:
        self._cancel = cancel
        self._runner = runner
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None
        self.too_slow = False

    def arm(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="bench-watch", daemon=True)
        self._thread.start()

    def start_request(self, limit_s: float | None) -> None:
        self._deadline = time.monotonic() + limit_s if limit_s else None

    def end_request(self) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._cancel.wait(0.05):
                if not self._done.is_set():
                    log.info("benchmark cancelled: stopping runner %s", self._runner.pid)
                    self._runner.stop(grace_s=0.5)
                return
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline and not self._done.is_set():
                log.info("request past its time limit: stopping runner %s", self._runner.pid)
                self.too_slow = True
                self._runner.stop(grace_s=0.5)
                return

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(10.0)
