"""The supervisor: state machine, fallback ladder, crash handling, idle unload.

The ladder's logic runs with a scripted stand-in runner (no process); loading, crashing and unloading run
real runner processes on the tiny random GGUF.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from tests.conftest import wait_gone
from tray_app.host.fallback import (
    FallbackStep,
    default_ladder,
    describe_change,
    ladder_from_plans,
)
from tray_app.host.host_state import EventKind, HostEvent, HostState, HostUnavailable
from tray_app.host.runner import RunnerEndpoint
from tray_app.host.runner_errors import FailureKind, RunnerError
from tray_app.host.supervisor import Supervisor
from tray_app.planning.runner_config import RunnerConfig


class Recorder:
    def __init__(self) -> None:
        self.events: list[HostEvent] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: HostEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)

    def of(self, kind: EventKind) -> list[HostEvent]:
        with self._lock:
            return [e for e in self.events if e.kind is kind]

    def states(self) -> list[HostState]:
        return [e.state for e in self.of(EventKind.STATE)]

    def wait_for(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out; events: {[(e.kind.value, e.state.value, e.message) for e in self.events]}")


class ScriptedRunner:
    """Stands in for :class:`Runner`: fails with the error the script gives for its configuration."""

    loads: list[RunnerConfig] = []
    instances: list[ScriptedRunner] = []

    def __init__(self, config, *, script, **_callbacks) -> None:
        self.config = config
        self._error = script(config)
        self.load_seconds = 0.01
        self.pid = None
        self.returncode = None
        self.alive = False
        self.tail: list[str] = []
        self.engine_buffers: dict[str, dict[str, int]] = {}
        ScriptedRunner.instances.append(self)

    def load(self, timeout, cancel=None):
        ScriptedRunner.loads.append(self.config)
        if self._error is not None:
            raise self._error
        self.alive = True
        return RunnerEndpoint("127.0.0.1", 1, "key", "model")

    def stop(self, grace_s: float = 3.0) -> None:
        self.alive = False

    def close_log(self) -> None:
        pass

    def pids(self):
        return []

    def output_tail(self, lines: int = 40):
        return self.tail[-lines:]


def scripted(script):
    ScriptedRunner.loads = []
    ScriptedRunner.instances = []
    return lambda config, **kw: ScriptedRunner(config, script=script, **kw)


GPU = RunnerConfig("/m.gguf", n_gpu_layers=32, n_ctx=4096)


# -- the ladder (no process) -----------------------------------------------------------------------
def test_default_ladder_goes_fewer_layers_then_shorter_context_then_cpu():
    steps = default_ladder(GPU)
    assert [(s.config.n_gpu_layers, s.config.n_ctx) for s in steps] == [(16, 4096), (16, 2048), (0, 2048)]
    assert "moins du modèle sur la carte graphique" in steps[0].reason_fr
    assert "mémoire de conversation plus courte" in steps[1].reason_fr
    assert "processeur seul" in steps[2].reason_fr
    cpu_steps = default_ladder(RunnerConfig("/m.gguf", n_gpu_layers=0, n_ctx=1024))
    assert cpu_steps == []  # nothing safer than a short CPU context


def test_plans_become_steps_with_their_own_sentence():
    class Plan:
        def __init__(self, layers, step_fr=""):
            self.layers, self.step_fr = layers, step_fr

        def to_runner_config(self, path):
            return RunnerConfig(path, n_gpu_layers=self.layers)

    base = RunnerConfig("/m.gguf", n_gpu_layers=20)
    steps = ladder_from_plans([Plan(20), Plan(10, "Moins de couches."), Plan(0)], "/m.gguf", base)
    assert [s.config.n_gpu_layers for s in steps] == [10, 0]  # the base itself is skipped
    assert steps[0].reason_fr == "Moins de couches."
    assert steps[1].reason_fr == describe_change(steps[0].config, steps[1].config)


def test_a_failing_load_walks_the_ladder_once_each_and_ends_in_french_error():
    oom = RunnerError(FailureKind.OUT_OF_MEMORY, detail="cudaMalloc failed")
    rec = Recorder()
    sup = Supervisor(GPU, keep_alive_s=-1, runner_factory=scripted(lambda c: oom))
    sup.add_listener(rec)
    try:
        sup.load()
        assert sup.wait_for(HostState.ERROR, 5) is HostState.ERROR
        tried = [(c.n_gpu_layers, c.n_ctx) for c in ScriptedRunner.loads]
        assert tried == [(32, 4096), (16, 4096), (16, 2048), (0, 2048)]  # each once, in order
        rec.wait_for(lambda r: HostState.ERROR in r.states())
        fallbacks = rec.of(EventKind.FALLBACK)
        assert len(fallbacks) == 3
        assert fallbacks[0].message.startswith("Le modèle n'a pas tenu en mémoire")
        assert "moins du modèle sur la carte graphique" in fallbacks[0].message
        status = sup.status()
        assert status.failure is FailureKind.OUT_OF_MEMORY and len(status.failed_configs) == 4
        assert "Réessayer" in status.message
        # a request now gets the French reason at once, and nothing is tried again
        with pytest.raises(HostUnavailable) as refused:
            sup.acquire(timeout=1)
        assert "Réessayer" in refused.value.message_fr
        assert len(ScriptedRunner.loads) == 4
    finally:
        sup.close()


def test_the_first_safer_step_that_works_is_kept():
    sup = Supervisor(GPU, keep_alive_s=-1, runner_factory=scripted(
        lambda c: RunnerError(FailureKind.CRASHED) if c.n_gpu_layers == 32 else None))
    try:
        endpoint = sup.acquire(timeout=5)
        sup.release()
        assert endpoint.port == 1
        status = sup.status()
        assert status.state is HostState.READY and status.config.n_gpu_layers == 16
        assert status.failed_configs == (GPU,)
    finally:
        sup.close()


def test_a_bad_model_file_is_not_retried_with_smaller_plans():
    bad = RunnerError(FailureKind.MODEL_FILE)
    sup = Supervisor(GPU, runner_factory=scripted(lambda c: bad))
    try:
        with pytest.raises(HostUnavailable) as refused:
            sup.acquire(timeout=5)
        assert "abîmé" in refused.value.message_fr and refused.value.failure is FailureKind.MODEL_FILE
        assert len(ScriptedRunner.loads) == 1 and sup.state is HostState.ERROR
    finally:
        sup.close()


def test_retry_forgets_the_failures_after_a_user_action():
    attempts = {"n": 0}

    def script(config):
        attempts["n"] += 1
        return RunnerError(FailureKind.OUT_OF_MEMORY) if attempts["n"] <= 4 else None

    sup = Supervisor(GPU, runner_factory=scripted(script))
    try:
        sup.load()
        assert sup.wait_for(HostState.ERROR, 5) is HostState.ERROR
        sup.retry()
        assert sup.wait_for(HostState.READY, 5) is HostState.READY
        assert sup.status().config == GPU and sup.status().failed_configs == ()
    finally:
        sup.close()


def test_a_listener_that_raises_does_not_stop_the_others():
    rec = Recorder()
    sup = Supervisor(GPU, runner_factory=scripted(lambda c: None))
    sup.add_listener(lambda e: 1 / 0)
    sup.add_listener(rec)
    try:
        sup.load()
        rec.wait_for(lambda r: HostState.READY in r.states())
        assert rec.threads == {"runner-supervisor-events"}  # never the caller's thread
    finally:
        sup.close()


# -- real runners ----------------------------------------------------------------------------------
@pytest.fixture
def tiny_config(tiny_gguf) -> RunnerConfig:
    return RunnerConfig(str(tiny_gguf), n_ctx=2048, n_threads=1, n_threads_batch=1)


def test_nothing_loads_until_asked_then_states_follow_the_machine(tiny_config, tmp_path):
    rec = Recorder()
    sup = Supervisor(tiny_config, keep_alive_s=-1, log_file=tmp_path / "runner.log")
    sup.add_listener(rec)
    try:
        time.sleep(0.2)
        assert sup.state is HostState.IDLE and sup.status().pid is None  # lazy
        endpoint = sup.acquire(timeout=60)
        try:
            with sup.generating():
                assert sup.state is HostState.BUSY
        finally:
            sup.release()
        rec.wait_for(lambda r: r.states()[-1:] == [HostState.READY] and HostState.BUSY in r.states())
        assert rec.states() == [HostState.LOADING, HostState.READY, HostState.BUSY, HostState.READY]
        assert [e.state.label for e in rec.of(EventKind.STATE)] == ["Chargement…", "Prêt", "Occupé", "Prêt"]
        progress = [e.progress for e in rec.of(EventKind.PROGRESS)]
        assert progress == sorted(progress) and progress[-1] == 1.0
        status = sup.status()
        assert status.pid in status.pids and status.endpoint == endpoint and status.load_seconds
        assert "chargé en" in rec.of(EventKind.STATE)[1].message
    finally:
        sup.close()
    assert wait_gone(status.pid)
    assert rec.states()[-1] is HostState.IDLE


def test_a_runner_killed_while_ready_restarts_with_the_same_settings_at_the_next_request(tiny_config):
    rec = Recorder()
    sup = Supervisor(tiny_config, keep_alive_s=300)
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=60)
        sup.release()
        first_pid = sup.status().pid
        started = time.monotonic()
        os.kill(first_pid, signal.SIGKILL)
        rec.wait_for(lambda r: len(r.of(EventKind.RESTART)) == 1, timeout=10)
        noticed = time.monotonic() - started
        restart = rec.of(EventKind.RESTART)[0]
        assert restart.message == "Le moteur du modèle s'est arrêté ; il redémarre."
        assert restart.failure is FailureKind.CRASHED and restart.config == tiny_config
        assert sup.wait_for(HostState.IDLE, 5) is HostState.IDLE
        status = sup.status()
        assert status.message == "Le moteur du modèle s'est arrêté ; il redémarrera à la prochaine demande."
        assert status.failed_configs == () and status.pid is None
        assert rec.of(EventKind.FALLBACK) == []  # nothing safer was tried: one kill proves nothing
        # the next request starts the same settings again
        sup.acquire(timeout=60)
        sup.release()
        back = time.monotonic() - started
        status = sup.status()
        assert status.state is HostState.READY and status.config == tiny_config
        assert status.pid != first_pid and psutil.pid_exists(status.pid)
        print(f"crash noticed in {noticed:.2f} s, answering again {back:.2f} s after the kill")
    finally:
        sup.close()


def test_a_runner_killed_while_a_request_waits_restarts_at_once(tiny_config):
    rec = Recorder()
    sup = Supervisor(tiny_config, keep_alive_s=300)
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=60)  # held: a request is using the model
        first_pid = sup.status().pid
        os.kill(first_pid, signal.SIGKILL)
        rec.wait_for(lambda r: len(r.of(EventKind.RESTART)) == 1, timeout=10)
        rec.wait_for(lambda r: r.states()[-1:] == [HostState.READY], timeout=60)  # no new acquire needed
        status = sup.status()
        assert status.config == tiny_config and status.pid not in (None, first_pid)
        sup.release()
    finally:
        sup.close()


def test_repeated_kills_walk_the_ladder_then_end_in_error(tiny_config):
    """Three crashes of one configuration within ten minutes: a safer one; three more: « Erreur »."""
    rec = Recorder()
    sup = Supervisor(tiny_config, keep_alive_s=-1)  # kept in memory for good: restarted at once
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=60)
        sup.release()
        for n in range(1, 4):
            os.kill(sup.status().pid, signal.SIGKILL)
            if n < 3:
                rec.wait_for(lambda r, n=n: len(r.of(EventKind.RESTART)) == n, timeout=10)
                rec.wait_for(lambda r, n=n: r.states().count(HostState.READY) == n + 1, timeout=60)
                assert sup.status().config == tiny_config
        rec.wait_for(lambda r: len(r.of(EventKind.FALLBACK)) == 1, timeout=10)
        fallback = rec.of(EventKind.FALLBACK)[0]
        assert fallback.message.startswith("Le moteur du modèle s'est arrêté plusieurs fois en quelques minutes.")
        assert "mémoire de conversation plus courte" in fallback.message
        rec.wait_for(lambda r: r.states().count(HostState.READY) == 4, timeout=60)  # the safer one is ready
        status = sup.status()
        assert status.config.n_ctx == 1024 and status.failed_configs == (tiny_config,)
        # the safer one crashes three times too: nothing safer is left, « Erreur », no endless restarts
        for n in range(3):
            os.kill(sup.status().pid, signal.SIGKILL)
            if n < 2:
                rec.wait_for(lambda r, n=n: r.states().count(HostState.READY) == 5 + n, timeout=60)
        assert sup.wait_for(HostState.ERROR, 10) is HostState.ERROR
        assert "Réessayer" in sup.status().message and sup.status().pid is None
    finally:
        sup.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crash_serving_runner(sup: Supervisor) -> None:
    """The scripted runner in use dies as if killed (SIGKILL), and a client notices it."""
    runner = ScriptedRunner.instances[-1]
    runner.alive, runner.returncode = False, -9
    sup.report_unreachable(RunnerEndpoint("127.0.0.1", 1, "key", "model"))


def test_crashes_further_apart_than_the_window_never_step_down():
    clock = Clock()
    rec = Recorder()
    sup = Supervisor(GPU, keep_alive_s=-1, runner_factory=scripted(lambda c: None), clock=clock)
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=5)
        sup.release()
        for n in range(1, 6):
            clock.now += 301  # two crashes within ten minutes at most
            crash_serving_runner(sup)
            rec.wait_for(lambda r, n=n: len(r.of(EventKind.RESTART)) == n
                         and r.states().count(HostState.READY) == n + 1)
        assert rec.of(EventKind.FALLBACK) == [] and sup.status().config == GPU
        assert [c.n_gpu_layers for c in ScriptedRunner.loads] == [32] * 6
        # the third within ten minutes steps down
        clock.now += 1
        crash_serving_runner(sup)
        rec.wait_for(lambda r: len(r.of(EventKind.FALLBACK)) == 1 and r.states().count(HostState.READY) == 7)
        assert sup.status().config.n_gpu_layers == 16 and sup.status().failed_configs == (GPU,)
    finally:
        sup.close()


def test_crashes_that_exhaust_the_ladder_are_retried_after_ten_minutes():
    """Nothing safer than a short CPU context: repeated crashes give « Erreur », but not for good."""
    clock = Clock()
    cpu = RunnerConfig("/m.gguf", n_gpu_layers=0, n_ctx=1024)
    rec = Recorder()
    sup = Supervisor(cpu, keep_alive_s=-1, runner_factory=scripted(lambda c: None), clock=clock)
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=5)
        sup.release()
        for n in range(3):
            clock.now += 1
            crash_serving_runner(sup)
            if n < 2:
                rec.wait_for(lambda r, n=n: r.states().count(HostState.READY) == n + 2)
        assert sup.wait_for(HostState.ERROR, 5) is HostState.ERROR
        assert "Il réessaiera tout seul à la première demande après 10 minutes." in sup.status().message
        clock.now += 599
        with pytest.raises(HostUnavailable):
            sup.acquire(timeout=1)
        assert len(ScriptedRunner.loads) == 3
        clock.now += 2  # ten minutes after the last crash: the next request loads again
        sup.acquire(timeout=5)
        sup.release()
        assert sup.state is HostState.READY and len(ScriptedRunner.loads) == 4 and sup.status().failed_configs == ()
    finally:
        sup.close()


def test_an_out_of_memory_death_steps_down_at_once():
    rec = Recorder()
    sup = Supervisor(GPU, keep_alive_s=-1, runner_factory=scripted(lambda c: None))
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=5)
        sup.release()
        oom = "ggml_backend_cuda_buffer_type_alloc_buffer: cudaMalloc failed: out of memory"
        ScriptedRunner.instances[-1].tail = [oom]
        crash_serving_runner(sup)
        rec.wait_for(lambda r: len(r.of(EventKind.FALLBACK)) == 1 and r.states().count(HostState.READY) == 2)
        assert rec.of(EventKind.FALLBACK)[0].failure is FailureKind.OUT_OF_MEMORY
        assert rec.of(EventKind.RESTART) == [] and sup.status().config.n_gpu_layers == 16
    finally:
        sup.close()


def test_a_crash_while_loading_tries_the_same_settings_again_then_steps_down():
    crashes = {"n": 0}

    def script(config):
        if config.n_gpu_layers == 32 and crashes["n"] < 1:
            crashes["n"] += 1
            return RunnerError(FailureKind.CRASHED, detail="exit status -9")
        return None

    rec = Recorder()
    sup = Supervisor(GPU, keep_alive_s=-1, runner_factory=scripted(script))
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=5)
        sup.release()
        assert [c.n_gpu_layers for c in ScriptedRunner.loads] == [32, 32]  # killed once while loading
        assert sup.status().config == GPU and sup.status().failed_configs == ()
        rec.wait_for(lambda r: len(r.of(EventKind.RESTART)) == 1)
    finally:
        sup.close()
    always = Supervisor(GPU, keep_alive_s=-1, runner_factory=scripted(
        lambda c: RunnerError(FailureKind.CRASHED, detail="exit status -11") if c.n_gpu_layers == 32 else None))
    try:
        always.acquire(timeout=5)
        always.release()
        assert [c.n_gpu_layers for c in ScriptedRunner.loads] == [32, 32, 32, 16]
        assert always.status().failed_configs == (GPU,)
    finally:
        always.close()


def test_idle_unload_ends_the_runner_and_returns_its_memory(tiny_config):
    rec = Recorder()
    sup = Supervisor(tiny_config, keep_alive_s=0.5)
    sup.add_listener(rec)
    try:
        sup.acquire(timeout=60)
        pid = sup.status().pid
        rss = psutil.Process(pid).memory_info().rss
        time.sleep(0.8)
        assert psutil.pid_exists(pid), "unloaded while a request still held it"
        sup.release()
        released = time.monotonic()
        assert sup.wait_for(HostState.IDLE, 5) is HostState.IDLE
        assert wait_gone(pid)
        print(f"runner RSS {rss / 2**20:.0f} MiB returned {time.monotonic() - released:.2f} s after release")
        assert "quitté la mémoire après 500 ms" in sup.status().message
        # the next request loads it again
        sup.acquire(timeout=60)
        sup.release()
        assert sup.status().pid not in (None, pid)
    finally:
        sup.close()


def test_keep_alive_minus_one_never_unloads(tiny_config):
    sup = Supervisor(tiny_config, keep_alive_s=-1)
    try:
        sup.acquire(timeout=60)
        sup.release()
        time.sleep(1.2)
        assert sup.state is HostState.READY
    finally:
        sup.close()


def test_a_truncated_model_goes_to_error_without_the_ladder(tiny_gguf, tmp_path):
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[:50_000])
    rec = Recorder()
    sup = Supervisor(RunnerConfig(str(truncated), n_gpu_layers=8, n_ctx=4096))
    sup.add_listener(rec)
    try:
        with pytest.raises(HostUnavailable) as refused:
            sup.acquire(timeout=60)
        assert refused.value.failure is FailureKind.MODEL_FILE
        assert "Téléchargez-le à nouveau" in refused.value.message_fr
        assert rec.of(EventKind.FALLBACK) == []
    finally:
        sup.close()


def test_unload_and_configure_on_request(tiny_config, tiny_gguf):
    sup = Supervisor(tiny_config, keep_alive_s=-1)
    try:
        sup.load()
        assert sup.wait_for(HostState.READY, 60) is HostState.READY
        pid = sup.status().pid
        sup.unload(wait=True)
        assert sup.state is HostState.IDLE and wait_gone(pid)
        sup.configure(tiny_config.with_changes(n_ctx=1024))
        time.sleep(0.2)
        assert sup.state is HostState.IDLE  # not loaded before: stays unloaded
        assert sup.base_config.n_ctx == 1024
    finally:
        sup.close()


def test_steps_are_never_repeated_even_when_the_ladder_repeats_itself():
    twice = RunnerConfig("/m.gguf", n_gpu_layers=0, n_ctx=1024)
    sup = Supervisor(GPU, ladder=lambda c: [FallbackStep(twice, "a"), FallbackStep(twice, "b"), FallbackStep(GPU, "c")],
                     runner_factory=scripted(lambda c: RunnerError(FailureKind.OUT_OF_MEMORY)))
    try:
        sup.load()
        assert sup.wait_for(HostState.ERROR, 5) is HostState.ERROR
        assert ScriptedRunner.loads == [GPU, twice]
    finally:
        sup.close()


def test_pause_unloads_refuses_requests_in_french_and_resume_loads_again(tiny_config):
    sup = Supervisor(tiny_config, keep_alive_s=-1)
    waiting: list[BaseException] = []
    try:
        sup.acquire(timeout=60)
        sup.release()
        pid = sup.status().pid
        sup.pause("Mesures en cours : réessayez dans une minute.", wait=True)
        assert sup.paused and sup.state is HostState.IDLE and wait_gone(pid)
        with pytest.raises(HostUnavailable) as refused:
            sup.acquire(timeout=5)
        assert refused.value.message_fr == "Mesures en cours : réessayez dans une minute."
        assert refused.value.retry_after_s == 30
        sup.load()
        time.sleep(0.5)
        assert sup.state is HostState.IDLE and sup.status().pid is None  # nothing loads while paused
        sup.resume()
        sup.acquire(timeout=60)
        sup.release()
        assert sup.state is HostState.READY and sup.status().pid not in (None, pid)
        # a request already waiting for a load when the pause starts gets the pause's message
        sup.unload(wait=True)

        def request() -> None:
            try:
                sup.acquire(timeout=60)
                sup.release()
            except HostUnavailable as exc:
                waiting.append(exc)

        thread = threading.Thread(target=request)
        thread.start()
        sup.wait_for(HostState.LOADING, 10)
        sup.pause("Pause.", wait=True)
        thread.join(10)
        assert [e.message_fr for e in waiting] == ["Pause."]
        assert sup.status().pid is None
    finally:
        sup.close()


def test_a_pause_lets_the_answer_being_written_end_before_unloading(tiny_config):
    sup = Supervisor(tiny_config, keep_alive_s=-1)
    ended: list[float] = []
    try:
        sup.acquire(timeout=60)
        pid = sup.status().pid
        answering = threading.Event()

        def answer() -> None:
            with sup.generating():
                answering.set()
                time.sleep(1.5)  # the answer still streaming when the pause comes
                ended.append(time.monotonic())
            sup.release()

        thread = threading.Thread(target=answer)
        thread.start()
        answering.wait(5)
        sup.pause("Pause.", wait=True)
        gone_at = time.monotonic()
        thread.join(5)
        assert ended and ended[0] <= gone_at  # unloaded only after the answer ended
        assert wait_gone(pid) and sup.status().pid is None
    finally:
        sup.close()
