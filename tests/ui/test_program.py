"""The whole tray program offscreen: host, monitor and avatar wired to the menu (real runner, tiny model)."""

import json
import urllib.request
from dataclasses import replace

import psutil
import pytest
from PySide6.QtWidgets import QPushButton

from tests.conftest import free_port
from tray_app.host.fallback import FallbackStep
from tray_app.host.host_state import HostState
from tray_app.monitoring.protection import (
    ProtectionAction,
    ProtectionReason,
    ProtectionRequest,
)
from tray_app.paths import app_paths
from tray_app.settings import Settings
from tray_app.ui.icons import IconState
from tray_app.ui.program import TrayProgram


@pytest.fixture
def program(qtbot, tiny_gguf):
    paths = app_paths()
    settings = Settings.load(paths.settings_file)
    settings.set("model_path", str(tiny_gguf))
    settings.set("api_port", free_port())
    settings.set("avatar_port", free_port())  # no avatar there: the link waits quietly
    program = TrayProgram(settings, paths, use_tray=False)
    qtbot.addWidget(program.tray.window)
    program.start()
    qtbot.waitUntil(program.host.started.is_set, timeout=30_000)  # planned off the UI thread
    yield program
    program.stop()


def buttons(program: TrayProgram) -> dict[str, QPushButton]:
    program.tray.rebuild_menu()
    return {b.text(): b for b in program.tray.window.findChildren(QPushButton)}


def test_menu_shows_the_model_the_api_and_loads_on_demand(program, qtbot):
    def menu_texts() -> list[str]:
        return [a.text() for a in program.tray.menu.actions()]

    qtbot.waitUntil(lambda: "Modèle : tiny random llama" in menu_texts(), timeout=5000)  # once planned
    api = next(t for t in menu_texts() if t.startswith("API : http://127.0.0.1:"))
    with urllib.request.urlopen(api.split(" : ", 1)[1] + "/models", timeout=10) as reply:
        assert json.load(reply)["data"][0]["id"]
    assert program.tray.status.icon is IconState.IDLE
    buttons(program)["Charger le modèle maintenant"].click()
    qtbot.waitUntil(lambda: program.host.state is HostState.READY, timeout=60_000)
    assert program.tray.status.icon is IconState.READY
    pid = program.host.host.supervisor.status().pid
    assert psutil.pid_exists(pid)
    buttons(program)["Décharger le modèle"].click()
    qtbot.waitUntil(lambda: program.host.state is HostState.IDLE, timeout=30_000)
    qtbot.waitUntil(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", timeout=5000)


def test_protection_unloads_when_idle_and_the_next_load_is_safer(program, qtbot):
    program.host.load_now()
    qtbot.waitUntil(lambda: program.host.state is HostState.READY, timeout=60_000)
    before = program.host.host.supervisor.base_config
    # On this CPU-only machine the plan has no safer rung; give it one (as a GPU plan would have).
    safer = before.with_changes(n_ctx=1024)
    program.host.plan = replace(program.host.plan, ladder=lambda base: [FallbackStep(safer, "plus prudent")])
    request = ProtectionRequest(
        actions=(ProtectionAction.NEXT_LOAD_SAFER, ProtectionAction.UNLOAD_WHEN_IDLE),
        reason=ProtectionReason.VRAM_CRITICAL, vram_used=6 << 30, vram_total=6 << 30, runner_pid=None,
        held_for_s=20, at=0, message_fr="test",
    )
    program.host.protect(request)
    qtbot.waitUntil(lambda: program.host.state is HostState.IDLE, timeout=30_000)
    qtbot.waitUntil(lambda: program.host.host.supervisor.base_config == safer, timeout=5000)
    assert program.host.host.supervisor.state is HostState.IDLE  # applied for the next load, not reloaded
    assert program.host.host.supervisor.keep_alive_s == 300  # the setting is back


def test_a_missing_model_file_is_told_in_french_and_nothing_crashes(qtbot, tmp_path):
    paths = app_paths()
    settings = Settings.load(paths.settings_file)
    settings.set("model_path", str(tmp_path / "absent.gguf"))
    settings.set("api_port", free_port())
    settings.set("avatar_port", free_port())
    program = TrayProgram(settings, paths, use_tray=False)
    qtbot.addWidget(program.tray.window)
    shown: list[str] = []
    program.tray.notify = lambda text, warning=False: shown.append(text)
    program.start()
    try:
        qtbot.waitUntil(lambda: program.tray.status.icon is IconState.ERROR and bool(shown), timeout=30_000)
        assert program.host.state is HostState.ERROR  # planned off the UI thread, told on it
        assert program.tray.status.icon is IconState.ERROR
        assert shown and "absent.gguf" in shown[0]
        assert "Réessayer de charger le modèle" in buttons(program)
    finally:
        program.stop()
