"""« Optimiser » in the tray: the applied settings reach the runner, the menu entry and the wizard pause the
host while measuring, the first start proposes it once, a changed machine asks for it again."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from PySide6.QtWidgets import QMessageBox

from tests.bench_fakes import FakeEngine, make_result
from tests.conftest import free_port, wait_gone
from tests.host.test_gateway import call
from tray_app.benchmark.saved import apply_result
from tray_app.hardware.affinity import affinity_of
from tray_app.host.host_state import HostState
from tray_app.host.hosting import Host, plan_host
from tray_app.paths import app_paths
from tray_app.settings import Settings
from tray_app.ui.optimize_wizard import MACHINE, RESULT, OptimizeWizard
from tray_app.ui.program import TrayProgram

CPUS = os.cpu_count() or 1


def test_plan_without_optimisation_is_the_memory_plan(tiny_gguf: Path, settings: Settings):
    plan = plan_host(tiny_gguf, settings)
    assert not plan.tuned and plan.cpu_affinity == () and not plan.config.flash_attn
    assert plan.measured_gen_tps is None


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="thread affinity is read through Linux")
def test_the_host_runs_the_applied_settings_and_pins_the_runner(tiny_gguf: Path, settings: Settings):
    apply_result(replace(make_result(tiny_gguf), best_affinity=(0,)), settings, app_paths())
    plan = plan_host(tiny_gguf, settings)
    assert plan.tuned and plan.cpu_affinity == (0,)
    assert plan.measured_gen_tps == pytest.approx(62.5)  # the gauges tell a collapse from this speed
    assert plan.config.flash_attn and plan.config.n_threads == min(6, CPUS)
    assert plan.config.n_gpu_layers == 0  # measured with a GPU this machine has not: stays on the CPU
    assert plan.explanation_fr.endswith("Réglages mesurés par « Optimiser » appliqués.")
    host = Host(plan, port=free_port(), keep_alive_s=-1)
    host.start()
    try:
        host.supervisor.acquire(60)
        host.supervisor.release()
        pid = host.supervisor.status().pid

        def every_thread_pinned() -> bool:
            return all(os.sched_getaffinity(t.id) == {0} for t in psutil.Process(pid).threads())

        # The listener pins on the supervisor's event thread, just after « Prêt », one thread after the
        # other: wait until it is done with them all (a thread it missed fails here after 10 s).
        deadline = time.monotonic() + 10
        while not every_thread_pinned() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert affinity_of(pid) == [0] and every_thread_pinned()
    finally:
        host.close()


# -- the tray --------------------------------------------------------------------------------------
class WatchingEngine(FakeEngine):
    """Records whether the host's runner was still alive when the measuring began."""

    def __init__(self, model_path: Path, host_pid: int | None) -> None:
        super().__init__(model_path, pause_s=0.05, gpu=False)
        self.host_pid = host_pid
        self.host_runner_alive_at_start: bool | None = None

    def run(self, **kwargs):
        pid = self.host_pid
        self.host_runner_alive_at_start = bool(pid) and psutil.pid_exists(pid) and \
            psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        return super().run(**kwargs)


def start_program(qtbot, tiny_gguf: Path, settings: Settings) -> TrayProgram:
    settings.set("model_path", str(tiny_gguf))
    settings.set("api_port", free_port())
    settings.set("avatar_port", free_port())
    program = TrayProgram(settings, app_paths(), use_tray=False)
    qtbot.addWidget(program.tray.window)
    program.notes = []
    program.tray.notify = lambda text, warning=False: program.notes.append(text)
    program.start()
    qtbot.waitUntil(program.host.started.is_set, timeout=30_000)  # planned off the UI thread
    return program


def entry_texts(program: TrayProgram) -> list[str]:
    return [e.text for e in program.tray.entries()]


def test_first_start_proposes_optimiser_once_then_the_wizard_pauses_the_host(qtbot, tiny_gguf, settings):
    program = start_program(qtbot, tiny_gguf, settings)
    try:
        assert "Optimiser…" in entry_texts(program)
        qtbot.waitUntil(lambda: program.optimize.offer_box is not None, timeout=5000)
        box = program.optimize.offer_box
        assert "Lancer «\u00a0Optimiser\u00a0» maintenant\u00a0?" in box.text()  # never split after «
        assert Settings.load(app_paths().settings_file).get("optimize_offered") is True  # asked once
        program.host.load_now()
        qtbot.waitUntil(lambda: program.host.state is HostState.READY, timeout=60_000)
        runner_pid = program.host.host.supervisor.status().pid
        engine = WatchingEngine(tiny_gguf, runner_pid)
        program.optimize.wizard_factory = lambda s, p, **kw: OptimizeWizard(s, p, engine_factory=lambda: engine, **kw)
        go = next(b for b in box.buttons() if b.text() == "Optimiser…")
        go.click()  # « Optimiser… » in the question opens the wizard
        wizard = program.optimize.wizard
        assert wizard is not None and wizard.isVisible()
        qtbot.waitUntil(lambda: wizard.machine.isComplete(), timeout=5000)
        wizard.next()
        assert wizard.currentId() == MACHINE
        port = program.host.host.gateway.port
        with qtbot.waitSignal(wizard.measuring_ended, timeout=30_000):
            wizard.next()  # « Commencer les mesures »
            assert program.host.status_line() == "Optimisation en cours…"
            status, headers, body = call(port, "POST", "/v1/chat/completions",
                                         {"messages": [{"role": "user", "content": "Bonjour"}]})
            assert status == 503 and headers.get("retry-after") == "30"
            assert "« Optimiser »" in body["error"]["message"]
        assert engine.host_runner_alive_at_start is False  # its memory was returned before measuring
        assert wait_gone(runner_pid)
        assert program.host.status_line() != "Optimisation en cours…"  # the host may load again
        qtbot.waitUntil(lambda: wizard.currentId() == RESULT, timeout=5000)
        wizard.accept()  # « Appliquer »
        qtbot.waitUntil(lambda: program.host.host.supervisor.base_config.flash_attn, timeout=5000)
        config = program.host.host.supervisor.base_config
        assert config.n_threads == min(6, CPUS) and config.model_path == str(tiny_gguf)
        assert program.host.plan.tuned
        assert program.host.host_metrics().baseline_tokens_per_second == pytest.approx(62.5)
        assert any("Réglages optimisés appliqués" in n for n in program.notes)
        qtbot.waitUntil(lambda: program.optimize.wizard is None, timeout=5000)
        status, _, body = call(port, "POST", "/v1/chat/completions",
                               {"messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 4})
        assert status == 200 and body["choices"]
    finally:
        program.stop()
    again = start_program(qtbot, tiny_gguf, Settings.load(app_paths().settings_file))
    try:
        qtbot.wait(2000)
        assert again.optimize.offer_box is None  # never proposed twice
    finally:
        again.stop()


def test_cancelling_the_measuring_leaves_the_host_as_it_was(qtbot, tiny_gguf, settings):
    settings.set("optimize_offered", True)
    program = start_program(qtbot, tiny_gguf, settings)
    try:
        engine = FakeEngine(tiny_gguf, pause_s=2.0, gpu=False)
        program.optimize.wizard_factory = lambda s, p, **kw: OptimizeWizard(s, p, engine_factory=lambda: engine, **kw)
        before = program.host.host.supervisor.base_config
        program.optimize.open()
        wizard = program.optimize.wizard
        qtbot.waitUntil(lambda: wizard.machine.isComplete(), timeout=5000)
        wizard.next()
        wizard.next()
        qtbot.waitUntil(engine.running.is_set, timeout=5000)
        assert program.host.host.supervisor.paused
        with qtbot.waitSignal(wizard.measuring_ended, timeout=10_000):
            wizard.reject()  # « Annuler »
        qtbot.waitUntil(lambda: program.optimize.wizard is None, timeout=5000)
        assert not program.host.host.supervisor.paused
        assert program.host.host.supervisor.base_config == before
        assert Settings.load(app_paths().settings_file).get("optimized_config") == ""
    finally:
        program.stop()


def test_a_changed_machine_asks_to_optimise_again(qtbot, tiny_gguf, settings):
    apply_result(make_result(tiny_gguf), settings, app_paths())  # measured on an i7-13700H + RTX 4050
    program = start_program(qtbot, tiny_gguf, settings)
    try:
        qtbot.waitUntil(lambda: program.optimize.reason_fr is not None, timeout=10_000)
        assert "Optimiser… (conseillé)" in entry_texts(program)
        assert any(n.startswith("Depuis la dernière optimisation") and "Relancez « Optimiser »" in n
                   for n in program.notes)
        assert program.optimize.offer_box is None  # not the first start
    finally:
        program.stop()


def test_the_offer_can_be_declined(qtbot, tiny_gguf, settings):
    program = start_program(qtbot, tiny_gguf, settings)
    try:
        qtbot.waitUntil(lambda: program.optimize.offer_box is not None, timeout=5000)
        box: QMessageBox = program.optimize.offer_box
        later = next(b for b in box.buttons() if b.text() == "Plus tard")
        later.click()
        qtbot.waitUntil(lambda: program.optimize.offer_box is None, timeout=5000)
        assert program.optimize.wizard is None
        assert Settings.load(app_paths().settings_file).get("optimize_offered") is True
    finally:
        program.stop()


def test_the_measuring_engine_loads_with_the_wizard_not_at_start_up():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; import tray_app.ui.program; "
        "print(sorted(m for m in ('tray_app.benchmark.engine', 'tray_app.benchmark.search', "
        "'tray_app.benchmark.result', 'tray_app.ui.optimize_wizard') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
