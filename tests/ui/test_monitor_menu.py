"""The tray menu entries of the monitor: gauges, recording, notifications ticked on or off."""

from __future__ import annotations

from PySide6.QtWidgets import QMenu

from tray_app.monitoring import AlertSettings, NotificationKind
from tray_app.paths import app_paths
from tray_app.settings import Settings
from tray_app.settings_schema import SETTINGS
from tray_app.ui.menu_entries import fill_menu
from tray_app.ui.monitor_menu import monitor_entries


def entries(settings, seconds_left=0, calls=None):
    calls = calls if calls is not None else []
    return monitor_entries(
        settings,
        open_gauges=lambda: calls.append("gauges"),
        start_recording=lambda: calls.append("record"),
        seconds_left_to_record=seconds_left,
        on_settings_changed=lambda: calls.append(AlertSettings.from_settings(settings)),
    )


def test_entries_in_a_real_menu(qtbot):
    settings = Settings.load(app_paths().settings_file)
    menu = QMenu()
    fill_menu(menu, entries(settings))
    texts = [a.text() for a in menu.actions()]
    assert texts == ["Jauges de la mémoire graphique…", "Enregistrer 5 minutes de mesures", "Notifications"]
    sub = menu.actions()[2].menu()
    assert [a.text() for a in sub.actions()][0] == "Mémoire graphique presque pleine"
    assert all(a.isCheckable() and a.isChecked() for a in sub.actions())
    assert len(sub.actions()) == 6  # every kind but the protection, which reports an action taken


def test_switching_a_notification_off_is_saved_and_applied():
    settings = Settings.load(app_paths().settings_file)
    calls = []
    hot = next(e for e in entries(settings, calls=calls)[2].children if e.text == "Carte graphique trop chaude")
    hot.on_click()
    assert Settings.load(app_paths().settings_file).get("notify_gpu_hot") is False
    assert calls[-1].muted == frozenset({NotificationKind.GPU_HOT})
    again = next(e for e in entries(settings)[2].children if e.text == "Carte graphique trop chaude")
    assert again.checked is False


def test_recording_entry_shows_the_time_left():
    settings = Settings.load(app_paths().settings_file)
    record = entries(settings, seconds_left=185)[1]
    assert record.text == "Enregistrement des mesures… encore 3 min 05 s" and not record.enabled


def test_the_parameters_dialog_shows_thresholds_and_protection_only():
    shown = [s.key for s in SETTINGS if s.label]
    assert {"vram_warning_percent", "vram_critical_percent", "vram_protection"} <= set(shown)
    assert not any(key.startswith("notify_") or key == "vram_protection_delay_s" for key in shown)
