"""The alert engine, pure: levels with hysteresis and minimum durations, rate limits, muting, overflow,
temperature, protection and host events."""

from __future__ import annotations

import pytest

from tests.monitor_helpers import host, kinds, run, sample
from tray_app.monitoring import (
    AlertEngine,
    AlertSettings,
    HostNotice,
    HostNoticeKind,
    NotificationKind,
    ProtectionAction,
    VramLevel,
    alert_messages,
)
from tray_app.monitoring.throttle_fr import (
    HW_THERMAL,
    SW_POWER_CAP,
    throttle_reasons_fr,
)
from tray_app.settings import Settings


def levels(updates) -> list[str]:
    return [u.state.vram_level.value for u in updates]


def test_attention_needs_the_minimum_duration():
    engine = AlertEngine()
    updates = run(engine, [0.5, 0.92, 0.92, 0.92, 0.92, 0.5, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92])
    # 4 s above 90 % is not enough (warning_after_s = 5): a short spike never alerts
    assert levels(updates)[:6] == ["normal"] * 6
    assert levels(updates)[-1] == "attention"
    assert kinds(updates) == ["vram_warning"]


def test_hysteresis_keeps_the_level_while_noise_crosses_the_threshold():
    engine = AlertEngine()
    noisy = [0.91, 0.89, 0.91, 0.895, 0.905] * 6  # around 90 %, never below 87 %
    updates = run(engine, [0.92] * 6 + noisy)
    assert levels(updates)[6:] == ["attention"] * len(noisy)
    assert kinds(updates) == ["vram_warning"]


def test_a_level_is_left_only_after_the_calm_delay_below_the_hysteresis():
    engine = AlertEngine()
    updates = run(engine, [0.92] * 6 + [0.86] * 9 + [0.92] + [0.86] * 11)
    assert levels(updates)[14] == "attention"  # 9 s below: not yet
    assert levels(updates)[15] == "attention"  # back above: the calm delay starts again
    assert levels(updates)[-1] == "normal"
    assert "attention" not in levels(updates)[-1:]


def test_critique_then_back_notifies_each_level_once():
    engine = AlertEngine(AlertSettings(protection_enabled=False))
    updates = run(engine, [0.8] * 5 + [0.93] * 10 + [0.98] * 10 + [0.95] * 20 + [0.5] * 20)
    assert kinds(updates) == ["vram_warning", "vram_critical"]
    assert "critique" in levels(updates)
    assert levels(updates)[30] == "critique"  # 95 % is above 97 − 3: still critique
    assert levels(updates)[-1] == "normal"


def test_a_jump_to_critique_skips_the_warning():
    engine = AlertEngine(AlertSettings(protection_enabled=False))
    updates = run(engine, [0.5] * 3 + [0.99] * 10 + [0.92] * 30)
    assert kinds(updates) == ["vram_critical"]  # no « presque pleine » after « pleine »


def test_cooldown_stops_a_flapping_level_from_flooding():
    engine = AlertEngine()
    cycle = [0.93] * 8 + [0.5] * 12  # enter, leave, enter… every 20 s for 10 minutes
    updates = run(engine, cycle * 30)
    assert kinds(updates) == ["vram_warning"]
    later = run(engine, cycle * 2, start=len(cycle) * 30 + 10)  # after the 10 min cooldown
    assert kinds(later) == ["vram_warning"]


def test_global_cap_limits_notifications_of_different_kinds():
    settings = AlertSettings(max_notifications=2, per_window_s=600, protection_enabled=False)
    engine = AlertEngine(settings)
    updates = run(engine, [0.93] * 6 + [0.99] * 5, temp=95)  # warning, critical, then hot at 10 s
    assert kinds(updates) == ["vram_warning", "vram_critical"]
    assert updates[-1].state.gpu_hot  # the state still says it: only the balloon was held back


def test_muted_kinds_change_the_state_but_show_nothing():
    engine = AlertEngine(AlertSettings(muted=frozenset({NotificationKind.VRAM_WARNING})))
    updates = run(engine, [0.93] * 10)
    assert kinds(updates) == [] and updates[-1].state.vram_level is VramLevel.ATTENTION


def test_overflow_is_detected_from_speed_against_the_baseline():
    engine = AlertEngine(AlertSettings(protection_enabled=False))
    fast = [engine.update(sample(t, 0.85, host_metrics=host(25.0))) for t in range(10)]
    slow = [engine.update(sample(10 + t, 0.96, host_metrics=host(4.0))) for t in range(8)]
    assert not any(u.state.overflow_suspected for u in fast)
    assert [u.state.overflow_suspected for u in slow] == [False] * 5 + [True] * 3  # after 5 s
    notes = [n for u in slow for n in u.notifications]
    assert [n.kind for n in notes] == [NotificationKind.VRAM_OVERFLOW, NotificationKind.VRAM_WARNING] or [
        n.kind for n in notes
    ] == [NotificationKind.VRAM_WARNING, NotificationKind.VRAM_OVERFLOW]
    overflow = next(n for n in notes if n.kind is NotificationKind.VRAM_OVERFLOW)
    assert "6 fois plus lentement" in overflow.text and "Optimiser" in overflow.text


def test_overflow_needs_both_full_vram_and_a_collapse():
    engine = AlertEngine()
    slow_but_room = [engine.update(sample(t, 0.80, host_metrics=host(4.0))) for t in range(20)]
    full_but_fast = [engine.update(sample(20 + t, 0.96, host_metrics=host(20.0))) for t in range(20)]
    assert not any(u.state.overflow_suspected for u in slow_but_room + full_but_fast)
    assert "vram_overflow" not in kinds(slow_but_room + full_but_fast)


def test_without_a_measured_baseline_the_best_recent_speed_is_used():
    engine = AlertEngine(AlertSettings(protection_enabled=False))
    for t in range(5):
        engine.update(sample(t, 0.85, host_metrics=host(30.0, baseline=None)))
    slow = [engine.update(sample(5 + t, 0.97, host_metrics=host(5.0, baseline=None))) for t in range(8)]
    assert slow[-1].state.overflow_suspected
    # a new runner (other pid) forgets the speed learned with the previous one
    fresh = [engine.update(sample(20 + t, 0.975, host_metrics=host(5.0, baseline=None, pid=9))) for t in range(12)]
    assert not fresh[-1].state.overflow_suspected  # cleared after the calm delay, not raised again


def test_gpu_hot_by_temperature_or_thermal_bits():
    engine = AlertEngine()
    updates = run(engine, [0.5] * 12, temp=88)
    assert kinds(updates) == ["gpu_hot"] and updates[-1].state.gpu_hot
    assert "88 °C" in updates[10].notifications[0].text
    engine = AlertEngine()
    updates = run(engine, [0.5] * 12, temp=80, throttle=HW_THERMAL)
    assert kinds(updates) == ["gpu_hot"] and "ralentit pour se protéger" in updates[10].notifications[0].text
    engine = AlertEngine()
    assert kinds(run(engine, [0.5] * 30, temp=80, throttle=SW_POWER_CAP)) == []  # power cap is not heat


def test_protection_once_per_episode_and_only_with_a_model_loaded():
    engine = AlertEngine()
    updates = [engine.update(sample(t, 0.99, host_metrics=host())) for t in range(60)]
    requests = [u.protection for u in updates if u.protection]
    assert len(requests) == 1
    request = requests[0]
    assert request.actions == (ProtectionAction.NEXT_LOAD_SAFER, ProtectionAction.UNLOAD_WHEN_IDLE)
    assert request.runner_pid == 5151 and request.held_for_s == 20
    assert request.at == 3 + 20  # critique after 3 s, then 20 s
    assert "protection" in kinds(updates) and request.message_fr.count(".") == 1  # one sentence
    assert updates[-1].state.protection_requested

    no_model = AlertEngine()
    updates = [no_model.update(sample(t, 0.99, host_metrics=host(loaded=False))) for t in range(60)]
    assert not any(u.protection for u in updates)

    disabled = AlertEngine(AlertSettings(protection_enabled=False))
    updates = [disabled.update(sample(t, 0.99, host_metrics=host())) for t in range(60)]
    assert not any(u.protection for u in updates)
    assert "retiré de la mémoire" not in updates[3].notifications[0].text  # no promise of protection


def test_no_gpu_is_a_state_not_an_error():
    engine = AlertEngine()
    updates = run(engine, [None] * 5)
    assert levels(updates) == ["no_gpu"] * 5 and kinds(updates) == []
    assert not updates[-1].state.needs_attention


def test_host_events_are_told_and_rate_limited():
    engine = AlertEngine()
    unloaded = HostNotice(HostNoticeKind.MODEL_UNLOADED_IDLE, idle_seconds=300, at=100.0)
    (note,) = engine.host_event(unloaded)
    assert note.kind is NotificationKind.MODEL_UNLOADED and not note.kind.is_warning
    assert "après 5 minutes sans question" in note.text and "rechargera tout seul" in note.text
    assert engine.host_event(HostNotice(HostNoticeKind.MODEL_UNLOADED_IDLE, at=110.0)) == ()
    restarted = HostNotice(HostNoticeKind.RUNNER_RESTARTED_SAFER, detail_fr="20 couches sur la carte au lieu de 33",
                          at=120.0)
    (note,) = engine.host_event(restarted)
    assert "réglages plus prudents (20 couches sur la carte au lieu de 33)" in note.text
    crashed = HostNotice(HostNoticeKind.RUNNER_RESTARTED, detail_fr="Le moteur du modèle s'est arrêté ; il redémarre.",
                        at=160.0)
    (note,) = engine.host_event(crashed)  # the same settings again: one plain sentence, nothing about a plan
    assert note.kind is NotificationKind.RUNNER_RESTARTED and note.text == crashed.detail_fr


def test_every_message_fits_a_windows_balloon():
    texts = [
        alert_messages.vram_warning(0.999),
        alert_messages.vram_critical(1.0, protection_follows=True),
        alert_messages.vram_overflow(99.0),
        alert_messages.gpu_hot(105, True),
        alert_messages.model_unloaded(86400),
        alert_messages.runner_restarted("x" * 500),
        alert_messages.protection_critical(3600),
        alert_messages.protection_overflow(3600),
    ]
    for text in texts:
        assert len(text) <= alert_messages.MAX_BALLOON_CHARS, text
        assert text.endswith((".", "»", "…")), text
    assert len(alert_messages.fit_balloon("mot " * 100)) <= 255


def test_throttle_reasons_in_french():
    assert throttle_reasons_fr(0) == () and throttle_reasons_fr(None) == ()
    assert throttle_reasons_fr(1) == ()  # idle is not a slowdown
    assert throttle_reasons_fr(SW_POWER_CAP | HW_THERMAL) == (
        "trop chaude, la carte se ralentit",
        "limite de puissance atteinte",
    )


def test_settings_feed_the_engine(isolated_home):
    from tray_app.paths import app_paths

    settings = Settings.load(app_paths().settings_file)
    a = AlertSettings.from_settings(settings)
    assert (a.warning_fraction, a.critical_fraction, a.protection_enabled, a.muted) == (0.90, 0.97, True, frozenset())
    settings.set("vram_warning_percent", 95)
    settings.set("vram_critical_percent", 92)  # inconsistent: corrected, not refused
    settings.set("notify_gpu_hot", False)
    settings.set("vram_protection", False)
    a = AlertSettings.from_settings(settings)
    assert a.warning_fraction < a.critical_fraction == 0.92
    assert a.muted == frozenset({NotificationKind.GPU_HOT}) and not a.protection_enabled


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_mutable_kind_has_a_setting(kind):
    from tray_app.settings_schema import spec

    if kind.setting_key is not None:
        assert spec(kind.setting_key).default is True
