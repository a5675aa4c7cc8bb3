"""``desktop-mate-tray avatar …`` run as a real process against the fake avatar and a closed port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fake_unity_avatar import FakeUnityAvatar
from tray_app.cli import FrenchArgumentParser
from tray_app.commands import avatar as avatar_command


@pytest.fixture
def avatar() -> Iterator[FakeUnityAvatar]:
    fake = FakeUnityAvatar().start()
    yield fake
    fake.stop()


@pytest.fixture
def cli(tmp_path: Path):
    home = tmp_path / "home"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DESKTOP_MATE_HOME": str(home), "PYTHONIOENCODING": "utf-8"}
        return subprocess.run(
            [sys.executable, "-m", "tray_app", "avatar", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=30,
        )

    return run


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The same command through its parser, inside the test process (faster, for the many small cases)."""
    monkeypatch.setenv("DESKTOP_MATE_HOME", str(tmp_path / "home"))

    def run(*args: str) -> tuple[int, str, str]:
        parser = FrenchArgumentParser(prog="desktop-mate-tray")
        avatar_command.register(parser.add_subparsers(dest="command", parser_class=FrenchArgumentParser))
        parsed = parser.parse_args(["avatar", *args])
        code = parsed.func(parsed)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_ok_and_absent(cli, avatar: FakeUnityAvatar) -> None:
    ok = cli("--port", str(avatar.port), "status")
    assert ok.returncode == 0, ok.stderr
    assert "lancé et prêt" in ok.stdout
    absent = cli("status", "--port", str(closed_port()), "--json")  # options after the action too
    assert absent.returncode == 3
    doc = json.loads(absent.stdout)
    assert (doc["ok"], doc["state"]) == (False, "absent")
    assert "Lancez l'avatar" in doc["message"]
    assert "Traceback" not in absent.stderr


def test_load_a_model_with_accents_and_spaces(cli, avatar: FakeUnityAvatar, tmp_path: Path) -> None:
    folder = tmp_path / "Zoé" / "Mes modèles"
    folder.mkdir(parents=True)
    model = folder / "kira v2.vrm"
    model.write_bytes(b"glTF")
    result = cli("--port", str(avatar.port), "load", f'"{model}"')  # quotes kept by « Copier le chemin »
    assert result.returncode == 0, result.stderr
    expected = str(model.resolve()).replace("/", "\\")
    assert expected in result.stdout
    [command] = avatar.wait_for_commands(1)
    assert (command.command, command.values) == ("load_model", {"path": expected})


def test_load_refuses_a_missing_file_without_connecting(cli, avatar: FakeUnityAvatar, tmp_path: Path) -> None:
    result = cli("--port", str(avatar.port), "load", str(tmp_path / "absent.vrm"))
    assert result.returncode == 2
    assert "introuvable" in result.stderr
    not_vrm = tmp_path / "photo.png"
    not_vrm.write_bytes(b"x")
    result = cli("--port", str(avatar.port), "load", str(not_vrm))
    assert result.returncode == 2 and "pas un modèle VRM" in result.stderr
    assert avatar.accepted == 0 and avatar.commands == []


def test_expression_in_french_with_a_comma(cli, avatar: FakeUnityAvatar) -> None:
    result = cli("--port", str(avatar.port), "--json", "expression", "colère", "0,75")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["sent"] == [{"command": "set_expression", "name": "angry", "value": 0.75}]
    [command] = avatar.wait_for_commands(1)
    assert (command.command, command.values) == ("set_expression", {"name": "angry", "value": 0.75})


def test_switches_and_reset(cli, in_process, avatar: FakeUnityAvatar) -> None:
    port = str(avatar.port)
    assert cli("--port", port, "blink", "off").returncode == 0
    assert in_process("--port", port, "head", "on")[0] == 0
    assert in_process("--port", port, "expression", "neutre")[0] == 0
    assert in_process("--port", port, "speed", "0,05")[0] == 0
    got = avatar.wait_for_commands(4)
    assert [(c.command, c.values) for c in got] == [
        ("set_auto_blink", {"enabled": False}),
        (
            "set_auto_head_movement",
            {"enabled": True, "min_interval": 3.0, "max_interval": 7.0, "max_angle": 5.0},
        ),
        ("reset_expressions", {}),
        ("set_transition_speed", {"speed": pytest.approx(0.1)}),
    ]


def test_invalid_input_exit_codes(cli, in_process, avatar: FakeUnityAvatar) -> None:
    port = str(avatar.port)
    bad_name = cli("--port", port, "expression", "surprise", "1")
    assert bad_name.returncode == 2 and "Expression inconnue" in bad_name.stderr
    code, _out, err = in_process("--port", port, "expression", "joie", "beaucoup")
    assert code == 2 and "n'est pas un nombre" in err
    code, _out, err = in_process("--port", port, "blink", "peut-être")
    assert code == 2 and "on (activer)" in err
    code, out, _err = in_process("--port", port, "--json", "expression", "joie", "nan")
    assert code == 2 and json.loads(out)["state"] == "invalid"
    assert avatar.commands == []


def test_busy_avatar_and_closed_port(cli, avatar: FakeUnityAvatar) -> None:
    holder = socket.create_connection(("127.0.0.1", avatar.port))
    try:
        holder.recv(100)
        busy = cli("--port", str(avatar.port), "--timeout", "0.3", "reset")
        assert busy.returncode == 4
        assert "autre programme" in busy.stderr
    finally:
        holder.close()
    absent = cli("--port", str(closed_port()), "reset")
    assert absent.returncode == 3 and "ne répond pas" in absent.stderr
    assert avatar.commands == []


def test_port_comes_from_the_settings(cli, avatar: FakeUnityAvatar, tmp_path: Path) -> None:
    settings = tmp_path / "home" / "config" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(
        json.dumps({"version": 1, "settings": {"avatar_port": avatar.port}}), encoding="utf-8"
    )
    result = cli("status")
    assert result.returncode == 0, result.stderr
