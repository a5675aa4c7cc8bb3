import json
import logging

import pytest

from tests.conftest import RTX4050_RECORDING, run_cli
from tray_app import cli
from tray_app.paths import app_paths


def test_doctor_prints_a_french_summary():
    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr
    assert "Processeur" in result.stdout and "Recommandation" in result.stdout
    assert "Cœurs du processeur pour le modèle" in result.stdout
    assert "Traceback" not in result.stderr


def test_doctor_json_is_for_programs():
    result = run_cli("doctor", "--json")
    data = json.loads(result.stdout)
    assert data["cpu"]["physical_cores"] >= 1
    assert data["threads"]["threads"] >= 1
    assert data["llama"]["installed"] is True
    assert data["gpu"] is None and data["gpu_unavailable_reason"] == "pas de carte NVIDIA détectée"


def test_doctor_with_a_recorded_rtx4050():
    result = run_cli("doctor", "--json", env={"DESKTOP_MATE_NVML_REPLAY": str(RTX4050_RECORDING)})
    data = json.loads(result.stdout)
    assert data["gpu"]["name"] == "NVIDIA GeForce RTX 4050 Laptop GPU"
    text = run_cli("doctor", env={"DESKTOP_MATE_NVML_REPLAY": str(RTX4050_RECORDING)}).stdout
    assert "RTX 4050" in text and "Mémoire graphique" in text


def test_threads_chosen_by_hand_win_over_the_rule():
    from tray_app.settings import Settings

    s = Settings.load(app_paths().settings_file)
    s.set("threads", 3)
    s.save()
    data = json.loads(run_cli("doctor", "--json").stdout)
    assert data["threads"]["threads"] == 3 and data["threads_overridden"] is True


def test_a_bad_option_is_explained_in_french():
    result = run_cli("doctor", "--nope")
    assert result.returncode == 2
    assert "option invalide" in result.stderr


def test_an_unexpected_error_reaches_the_log_not_the_user(monkeypatch, capsys):
    def boom(settings, nvml=None):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("tray_app.commands.doctor.build_report", boom)
    code = cli.main(["doctor"])
    err = capsys.readouterr().err
    assert code == 1
    assert "erreur inattendue" in err and "journal" in err
    assert "Traceback" not in err and "secret internal detail" not in err
    for handler in logging.getLogger().handlers:
        handler.flush()
    log_text = app_paths().log_file.read_text(encoding="utf-8")
    assert "secret internal detail" in log_text and "Traceback" in log_text


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_desktop_mate", False):
            root.removeHandler(handler)
            handler.close()


def test_doctor_says_what_was_measured_on_this_card():
    from tray_app.hardware.gpu_calibration import CalibrationBook, card_key
    from tray_app.hardware.llama_backend import detect_llama_backend
    from tray_app.settings import Settings

    settings = Settings.load(app_paths().settings_file)
    key = card_key("NVIDIA GeForce RTX 4050 Laptop GPU", "566.36", detect_llama_backend(ask_library=False).gpu_backend)
    book = CalibrationBook()
    book.learn_from_load(key, 900 << 20, 600 << 20)
    book.save(settings)
    text = run_cli("doctor", env={"DESKTOP_MATE_NVML_REPLAY": str(RTX4050_RECORDING)}).stdout
    assert "Le plan mémoire est fait pour ce moteur : processeur." in text
    assert "Pilote, mesuré sur cette carte : 300 Mo en plus des tampons du modèle" in text
    data = json.loads(run_cli("doctor", "--json", env={"DESKTOP_MATE_NVML_REPLAY": str(RTX4050_RECORDING)}).stdout)
    assert data["calibration"]["overhead"] == 300 << 20
