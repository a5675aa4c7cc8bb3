"""``doctor`` never crashes on what it cannot learn about the system (issue 16: wine's WMI).

Python's ``platform`` failing is simulated here; on Windows the program does not use it at all
(``sys.getwindowsversion()`` instead), which ``windows_description`` checks with recorded versions.
"""

from __future__ import annotations

import json
import logging
import platform
from types import SimpleNamespace

import pytest

from tray_app import cli
from tray_app.doctor import build_report, render_text
from tray_app.hardware import cpu, system_info
from tray_app.hardware.system_info import describe_system, windows_description
from tray_app.log_setup import HANDLER_NAME
from tray_app.settings import Settings


def _broken(*_args, **_kwargs):
    raise OSError("WMI: not supported")


@pytest.fixture
def broken_platform(monkeypatch):
    for name in ("system", "release", "machine", "processor", "uname", "version", "win32_ver"):
        monkeypatch.setattr(platform, name, _broken)


@pytest.fixture(autouse=True)
def _reset_logging():
    """cli.main() sets up the program's log handlers once per process: remove them for the next tests."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()


def test_system_unknown_when_platform_fails(broken_platform):
    assert describe_system() == "inconnu"


def test_cpu_name_unknown_when_platform_fails(broken_platform, monkeypatch, tmp_path):
    monkeypatch.setattr(cpu, "Path", lambda *_a: tmp_path / "no-cpuinfo")
    assert cpu.cpu_model_name() == "processeur inconnu"


def test_doctor_reports_unknown_instead_of_crashing(broken_platform, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DESKTOP_MATE_HOME", str(tmp_path))
    report = build_report(Settings.load(tmp_path / "settings.json"))
    assert report.system == "inconnu"
    assert "Système : inconnu" in render_text(report)

    assert cli.main(["doctor"]) == 0
    assert "Système : inconnu" in capsys.readouterr().out
    assert cli.main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["system"] == "inconnu"


def test_windows_without_wmi():
    win10 = SimpleNamespace(major=10, minor=0, build=19045, platform_version=(10, 0, 19045))
    assert windows_description(win10, {"PROCESSOR_ARCHITECTURE": "AMD64"}) == "Windows 10 (build 19045, AMD64)"
    win11 = SimpleNamespace(major=10, minor=0, build=22631, platform_version=(10, 0, 22631))
    assert windows_description(win11, {"PROCESSOR_ARCHITECTURE": "x86", "PROCESSOR_ARCHITEW6432": "AMD64"}) == (
        "Windows 11 (build 22631, AMD64)"
    )
    assert windows_description(win10, {}) == "Windows 10 (build 19045, inconnu)"
    assert windows_description(None, {}) == "Windows inconnu"


def test_windows_path_never_calls_platform(broken_platform, monkeypatch):
    monkeypatch.setattr(system_info.sys, "platform", "win32")
    monkeypatch.setattr(system_info, "_windows_version",
                        lambda: SimpleNamespace(major=10, minor=0, build=19043, platform_version=(10, 0, 19043)))
    monkeypatch.setattr(system_info, "wine_version", lambda: "8.0")
    monkeypatch.setenv("PROCESSOR_ARCHITECTURE", "AMD64")
    assert describe_system() == "Windows 10 (build 19043, AMD64), sous wine 8.0"
