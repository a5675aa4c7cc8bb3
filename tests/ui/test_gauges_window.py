"""The gauges window with real widgets (offscreen), and the tray helpers (tooltip line, icon state)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PySide6.QtWidgets import QLabel

from tests.conftest import DATA, REPO, RTX4050_RECORDING
from tests.monitor_helpers import GIB
from tray_app.monitoring import (
    AlertSettings,
    AlertState,
    Monitor,
    ReplayMachine,
    VramLevel,
)
from tray_app.ui.icons import IconState
from tray_app.ui.monitor_status import icon_state, tooltip_summary


def replay_until(path, seconds, **kwargs):
    monitor = Monitor(ReplayMachine(path, start_at=0, **kwargs))
    tick = None
    for _ in range(seconds + 1):
        tick = monitor.tick() or tick
    return monitor, tick


def open_window(qtbot, monitor, tick, settings=None):
    from tray_app.ui.gauges_window import GaugesWindow

    window = GaugesWindow(monitor.history, settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.show_tick(tick)
    return window


def texts(window) -> str:
    return " | ".join(label.text() for label in window.findChildren(QLabel) if label.isVisible())


def test_pyqtgraph_waits_until_the_window_opens():
    code = (
        "import sys; import tray_app.ui.gauges_window, tray_app.ui.monitor_worker, tray_app.ui.monitor_status; "
        "print('pyqtgraph' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_at_rest_the_model_share_is_shown_apart_from_other_programs(qtbot):
    monitor, tick = replay_until(RTX4050_RECORDING, 120, runner_pid=5151)
    window = open_window(qtbot, monitor, tick)
    shown = texts(window)
    assert "NVIDIA GeForce RTX 4050 Laptop GPU" in shown
    assert "utilisés sur 6,0 Go" in window.vram_text.text()
    assert "Modèle : 3,7 Go (estimé)" in window.legend.text()
    assert "Autres programmes" in window.legend.text() and "Libre" in window.legend.text()
    assert "estimée" in window.legend.toolTip()
    assert window.status_line.text().startswith("Tout va bien")
    gauge = window.vram_gauge
    assert gauge.total == 6141 * 1024**2 and gauge.model == tick.sample.model_vram
    assert (gauge.warning_fraction, gauge.critical_fraction) == (0.90, 0.97)
    assert window.temperature.value.text().endswith("°C") and window.power.detail.text() == "sur 80 W au maximum"
    assert len(window.plots.history.window(600)["at"]) == 121


def test_warning_and_critical_are_said_in_words(qtbot):
    monitor, tick = replay_until(RTX4050_RECORDING, 170, runner_pid=5151)
    window = open_window(qtbot, monitor, tick)
    assert tick.state.vram_level is VramLevel.ATTENTION
    assert window.status_line.text().startswith("Attention : la mémoire graphique est presque pleine")
    monitor2, tick2 = replay_until(RTX4050_RECORDING, 205, runner_pid=5151)
    window.show_tick(tick2)
    assert window.status_line.text().startswith("Critique : la mémoire graphique est pleine")
    assert "Protection : le modèle sera retiré de la mémoire" in window.status_line.text()
    assert window.vram_gauge.level is VramLevel.CRITIQUE


def test_overflow_and_speed(qtbot):
    monitor, tick = replay_until(DATA / "rtx4050_overflow.json", 60)
    window = open_window(qtbot, monitor, tick)
    assert window.status_line.text().startswith("Le modèle ralentit : la mémoire graphique déborde")
    assert window.speed.value.text().endswith("jetons/s") and window.speed.detail.text() == "d'habitude : 26"
    # the model was already loaded when monitoring began: its share is unknown, not guessed
    assert "Utilisée (modèle et autres programmes)" in window.legend.text()


def test_without_gpu_a_french_explanation_and_cpu_ram_gauges(qtbot):
    recording = {"format": "desktop-mate-nvml-recording", "version": 1, "devices": [],
                 "samples": [{"t": float(t), "devices": [], "cpu_percent": 42.0, "ram_total": 16 * GIB,
                              "ram_used": 8 * GIB} for t in range(10)]}
    monitor, tick = replay_until(recording, 9)
    window = open_window(qtbot, monitor, tick)
    assert window.gpu_title.text() == "Pas de carte graphique NVIDIA"
    assert "le modèle fonctionne avec le processeur" in window.no_gpu_text.text()
    assert not window.vram_gauge.isVisible() and not window.gpu_load.isVisible()
    assert window.cpu.value.text() == "42 %" and window.cpu.bar.value() == 42
    assert window.ram.value.text() == "8,0 sur 16,0 Go"
    visible_plots = [p.widget for p in window.plots._plots if p.widget.isVisible()]
    assert len(visible_plots) == 3  # processor, memory, speed


def test_a_card_that_does_not_give_its_memory_shows_unknown_not_an_empty_gauge(qtbot):
    recording = json.loads(RTX4050_RECORDING.read_text(encoding="utf-8"))
    for row in recording["samples"]:
        row["devices"][0]["memory_used"] = None  # NVML: « not supported »
    monitor, tick = replay_until(recording, 30)
    window = open_window(qtbot, monitor, tick)
    assert window.vram_text.text() == "Mémoire utilisée : inconnue (le pilote ne la donne pas)"
    assert not window.vram_gauge.isVisible() and not window.legend.isVisible()
    assert window.temperature.isVisible() and window.temperature.value.text().endswith("°C")
    assert tick.state.vram_level is VramLevel.NO_GPU and tick.notifications == ()
    assert tooltip_summary(tick.sample, tick.state).startswith("Processeur ")  # not « 0,0 / 0,0 Go (0 %) »


def test_history_window_choice_and_record_button(qtbot):
    monitor, tick = replay_until(RTX4050_RECORDING, 240, runner_pid=5151)
    window = open_window(qtbot, monitor, tick)
    window.window_buttons.button(60).click()
    assert window.plots.window_s == 60
    x_range = window.plots._plots[0].widget.getPlotItem().viewRange()[0]
    assert -62 <= x_range[0] <= -58
    curve_x, _ = window.plots._plots[0].curve.getData()
    assert curve_x is not None and curve_x.min() >= -60.5
    window.window_buttons.button(3600).click()
    assert window.plots.window_s == 3600
    with qtbot.waitSignal(window.record_requested, timeout=1000):
        window.record_button.click()
    window.set_recording(275)
    assert window.record_button.text() == "Enregistrement en cours… encore 4 min 35 s"
    assert not window.record_button.isEnabled()
    window.set_recording(0)
    assert window.record_button.isEnabled()


def test_new_thresholds_move_the_marks(qtbot):
    monitor, tick = replay_until(RTX4050_RECORDING, 100, runner_pid=5151)
    window = open_window(qtbot, monitor, tick)
    window.set_settings(AlertSettings(warning_fraction=0.8, critical_fraction=0.9))
    assert (window.vram_gauge.warning_fraction, window.vram_gauge.critical_fraction) == (0.8, 0.9)
    assert window.plots._attention_line.value() == pytest.approx(6141 / 1024 * 0.8)


def test_tooltip_line_and_icon_state():
    _, rest = replay_until(DATA / "rtx4050_overflow.json", 20)
    line = tooltip_summary(rest.sample, rest.state)
    assert line.startswith("Mémoire graphique 5,1 / 6,0 Go (85 %)") and line.endswith("jetons/s")
    _, bad = replay_until(DATA / "rtx4050_overflow.json", 110)
    _, worst = replay_until(DATA / "rtx4050_overflow.json", 60)
    worst_state = AlertState(VramLevel.CRITIQUE, 0.99, True, True, True)
    line = tooltip_summary(worst.sample, worst_state)
    assert line.startswith("Mémoire graphique pleine : 5,9 / 6,0 Go (98 %)")
    assert "modèle ralenti (" in line and line.endswith("carte très chaude")
    assert len("Desktop-Mate — " + line) <= 127  # Windows cuts tray tooltips there
    assert icon_state(IconState.READY, rest.state) is IconState.READY
    assert icon_state(IconState.BUSY, worst_state) is IconState.WARNING
    assert icon_state(IconState.ERROR, worst_state) is IconState.ERROR
    assert icon_state(IconState.IDLE, bad.state) is IconState.WARNING  # hot GPU at 110 s
    assert tooltip_summary(None) == "Mesures en cours de démarrage…"
    no_gpu = replay_until({"format": "desktop-mate-nvml-recording", "devices": [],
                           "samples": [{"t": 0.0, "devices": [], "cpu_percent": 12.0, "ram_total": 16 * GIB,
                                        "ram_used": 4 * GIB}]}, 0)[1]
    assert tooltip_summary(no_gpu.sample, no_gpu.state) == "Processeur 12 % · mémoire 4,0 / 16,0 Go"
