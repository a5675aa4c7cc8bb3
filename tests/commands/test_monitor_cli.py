"""``desktop-mate-tray monitor`` in a real subprocess: replay with alerts, French lines, recording."""

from __future__ import annotations

import collections
import json
import time

from tests.conftest import DATA, RTX4050_RECORDING, run_cli


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_replay_json_prints_every_snapshot_and_each_notification():
    result = run_cli("monitor", "--replay", str(RTX4050_RECORDING), "--runner-pid", "5151", "--json", "--fast")
    assert result.returncode == 0, result.stderr
    records = json_lines(result.stdout)
    by_type = collections.Counter(r["type"] for r in records)
    assert by_type == {"sample": 240, "notification": 3, "protection": 1, "summary": 1}
    samples = [r for r in records if r["type"] == "sample"]
    levels = [s["level"] for s in samples]
    assert levels[0] == "normal" and "attention" in levels and "critique" in levels and levels[-1] == "normal"
    assert levels.index("attention") < levels.index("critique")
    assert samples[100]["model_vram_estimated"] is True and samples[100]["vram_total"] == 6141 * 1024**2
    notes = [r for r in records if r["type"] == "notification"]
    assert [n["kind"] for n in notes] == ["vram_warning", "vram_critical", "protection"]
    assert all(n["warning"] and n["text"] for n in notes)
    (protection,) = [r for r in records if r["type"] == "protection"]
    assert protection["actions"] == ["next_load_safer", "unload_when_idle"]
    assert records[-1] == {"type": "summary", "samples": 240, "protections": 1, "recorded_to": None,
                           "notifications": {"vram_warning": 1, "vram_critical": 1, "protection": 1}}


def test_replay_in_french_for_people():
    result = run_cli("monitor", "--replay", str(DATA / "rtx4050_overflow.json"), "--fast")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[00:00] mémoire graphique 5,1 Go / 6,0 Go (85 %)")
    assert any("— critique" in line for line in lines)
    assert any(line.startswith("    → Notification : Le modèle répond environ") for line in lines)
    assert any(line.startswith("    → Protection : La mémoire graphique est restée pleine") for line in lines)
    assert lines[-1] == "Fin : 130 mesures, 5 notifications, 1 protection déclenchée."
    assert "Traceback" not in result.stderr


def test_speed_plays_faster_than_real_time_but_not_instantly(tmp_path):
    document = json.loads(RTX4050_RECORDING.read_text(encoding="utf-8"))
    document["samples"] = document["samples"][:11]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(document), encoding="utf-8")
    started = time.monotonic()
    result = run_cli("monitor", "--replay", str(short), "--json", "--speed", "20")
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and len(json_lines(result.stdout)) == 12
    assert elapsed >= 0.5  # 10 intervals of 1/20 s, plus start-up


def test_settings_mute_and_move_thresholds():
    from tray_app.paths import app_paths
    from tray_app.settings import Settings

    settings = Settings.load(app_paths().settings_file)
    settings.set("notify_vram_warning", False)
    settings.set("vram_protection", False)
    settings.save()
    result = run_cli("monitor", "--replay", str(RTX4050_RECORDING), "--runner-pid", "5151", "--json", "--fast")
    summary = json_lines(result.stdout)[-1]
    assert summary["notifications"] == {"vram_critical": 1} and summary["protections"] == 0


def test_record_live_measurements_then_replay_them(tmp_path):
    target = tmp_path / "mesures.json"
    env = {"DESKTOP_MATE_NVML_REPLAY": str(DATA / "rtx4050_overflow.json")}
    result = run_cli("monitor", "--record", str(target), "--seconds", "3", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[-1]["recorded_to"] == str(target)
    document = json.loads(target.read_text(encoding="utf-8"))
    assert len(document["samples"]) == 3 and document["devices"][0]["name"].endswith("Laptop GPU")
    replay = run_cli("monitor", "--replay", str(target), "--json", "--fast")
    assert [r["type"] for r in json_lines(replay.stdout)] == ["sample"] * 3 + ["summary"]


def test_unreadable_recordings_are_explained_in_french(tmp_path):
    missing = run_cli("monitor", "--replay", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "Fichier introuvable" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    result = run_cli("monitor", "--replay", str(bad))
    assert result.returncode == 2 and "n'est pas un enregistrement de mesures lisible" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_cli("monitor", "--replay", str(bad), "--speed", "0").returncode == 2
