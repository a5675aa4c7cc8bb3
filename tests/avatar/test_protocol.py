"""Lines built by ``tray_app.avatar.protocol`` read back the way Unity's ``PythonBridge`` reads them."""

from __future__ import annotations

import json
import random

import pytest

from tests.fake_unity_avatar import read_like_unity
from tray_app.avatar import protocol
from tray_app.avatar.protocol import ProtocolError


def unity(line: str):
    assert line.endswith("\n") and line.count("\n") == 1
    seen = read_like_unity(line[:-1])
    assert seen is not None
    return seen


@pytest.mark.parametrize(
    ("path", "unity_path"),
    [
        (r"C:\Users\Zoé\Mes modèles\kira v2.vrm", r"C:\Users\Zoé\Mes modèles\kira v2.vrm"),
        ("C:/Users/Zoé/Mes modèles/kira v2.vrm", r"C:\Users\Zoé\Mes modèles\kira v2.vrm"),
        (r"D:\Avatars\Ñandú – 東京 🐱\model.VRM", r"D:\Avatars\Ñandú – 東京 🐱\model.VRM"),
        (r"\\serveur\partage\kira.vrm", r"\\serveur\partage\kira.vrm"),
        (r"C:\modèles\set_expression.vrm", r"C:\modèles\set_expression.vrm"),
        (
            r"C:\unload_model\reset_expressions\load_model.vrm",
            r"C:\unload_model\reset_expressions\load_model.vrm",
        ),
        (r"C:\data\path\value {x}, y: 1\command.vrm", r"C:\data\path\value {x}, y: 1\command.vrm"),
        ("/home/zoé/kira v2.vrm", r"\home\zoé\kira v2.vrm"),
    ],
)
def test_load_model_path_reaches_unity_exactly(path: str, unity_path: str) -> None:
    line = protocol.load_model_line(path)
    seen = unity(line)
    assert seen.command == "load_model"
    assert seen.values["path"] == unity_path == protocol.path_as_unity_reads_it(path)
    assert json.loads(line)["data"]["path"] == path.replace("\\", "/")  # still valid JSON
    assert "\\u" not in line and "\\" not in line  # raw UTF-8, no escapes, no backslashes


def test_accents_travel_as_raw_utf8() -> None:
    data = protocol.encode_line(protocol.load_model_line(r"C:\Zoé\modèle.vrm"))
    assert "Zoé".encode() in data and b"\\u00e9" not in data


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ('C:\\mes "modèles"\\kira.vrm', "guillemet"),
        ("C:\\a\nb.vrm", "invisible"),
        ("C:\\a\rb.vrm", "invisible"),
        ("C:\\a\tb.vrm", "invisible"),
        ("C:\\so\u00adft.vrm", "invisible"),
        ("C:\\zw\u200dj.vrm", "invisible"),
        ("C:\\bad\udcff.vrm", "invisible"),
        ("modeles\\kira.vrm", "pas complet"),
        ("C:\\kira.glb", "pas un modèle VRM"),
        ("", "Aucun fichier"),
        ("C:\\" + "é" * 2100 + ".vrm", "trop long"),
    ],
)
def test_paths_unity_cannot_read_are_refused_in_french(path: str, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        protocol.load_model_line(path)


def test_longest_accepted_line_fits_unity_read() -> None:
    path = "C:\\" + "é" * 1990 + ".vrm"
    data = protocol.encode_line(protocol.load_model_line(path))
    assert len(data) <= protocol.MAX_LINE_BYTES
    assert unity(data.decode()).values["path"] == path


def test_random_paths_are_either_refused_or_read_exactly() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ09 _-.,:;{}[]()\"\\/\n\t\u00ad\u200déèàçœ東🐱'`$%&=+!?#@~^"
    accepted = 0
    for _ in range(3000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        path = "C:\\" + body + ".vrm"
        try:
            line = protocol.load_model_line(path)
        except ProtocolError:
            continue
        accepted += 1
        seen = unity(line)
        assert (seen.command, seen.values["path"]) == ("load_model", path.replace("/", "\\"))
    assert accepted > 300


@pytest.mark.parametrize(
    ("name", "value", "expected_name", "expected_value"),
    [
        ("joy", 0.75, "joy", 0.75),
        ("joie", 1, "joy", 1.0),
        ("Colère", 0.5, "angry", 0.5),
        ("colere", 0.333, "angry", 0.333),
        ("tristesse", 2.0, "sorrow", 1.0),
        ("amusement", -3, "fun", 0.0),
        ("blink_l", 0.1, "blink_l", 0.1),
        ("clin droit", 1e-7, "blink_r", 0.0),
    ],
)
def test_set_expression_name_and_value(
    name: str, value: float, expected_name: str, expected_value: float
) -> None:
    seen = unity(protocol.set_expression_line(name, value))
    assert seen.command == "set_expression"
    assert seen.values["name"] == expected_name
    assert seen.values["value"] == pytest.approx(expected_value, abs=1e-6)


def test_numbers_use_a_point_and_no_exponent() -> None:
    line = protocol.set_expression_line("joy", 0.75)
    assert '"value": 0.75}' in line
    assert protocol.format_number(1.0) == "1.0"
    assert protocol.format_number(-0.0) == "0.0"
    assert protocol.format_number(1e-7) == "0.0"
    assert protocol.format_number(10.0) == "10.0"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.5", None])
def test_values_that_are_not_finite_numbers_are_refused(bad: object) -> None:
    with pytest.raises(ProtocolError):
        protocol.set_expression_line("joy", bad)


def test_unknown_or_neutral_expression() -> None:
    with pytest.raises(ProtocolError, match=r"Expression inconnue.*joie"):
        protocol.set_expression_line("load_model", 1.0)
    with pytest.raises(ProtocolError, match="reset"):
        protocol.set_expression_line("neutre", 1.0)
    assert protocol.normalize_expression(" Neutre ") == protocol.NEUTRAL
    assert protocol.normalize_expression("TRISTESSE") == "sorrow"


@pytest.mark.parametrize(("speed", "expected"), [(2.5, 2.5), (0.01, 0.1), (50, 10.0), (3, 3.0)])
def test_transition_speed_is_clamped(speed: float, expected: float) -> None:
    seen = unity(protocol.set_transition_speed_line(speed))
    assert seen.command == "set_transition_speed"
    assert seen.values["speed"] == pytest.approx(expected)


@pytest.mark.parametrize("enabled", [True, False])
def test_booleans(enabled: bool) -> None:
    blink = unity(protocol.set_auto_blink_line(enabled))
    assert (blink.command, blink.values) == ("set_auto_blink", {"enabled": enabled})
    head = unity(protocol.set_auto_head_movement_line(enabled, 2.5, 8, 12.25))
    assert head.command == "set_auto_head_movement"
    assert head.values == {"enabled": enabled, "min_interval": 2.5, "max_interval": 8.0, "max_angle": 12.25}


def test_head_movement_defaults_and_checks() -> None:
    head = unity(protocol.set_auto_head_movement_line(True))
    assert head.values == {"enabled": True, "min_interval": 3.0, "max_interval": 7.0, "max_angle": 5.0}
    with pytest.raises(ProtocolError, match="plus petit"):
        protocol.set_auto_head_movement_line(True, 9, 4)
    with pytest.raises(ProtocolError):
        protocol.set_auto_blink_line("yes")


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (protocol.unload_model_line(), "unload_model"),
        (protocol.reset_expressions_line(), "reset_expressions"),
        (protocol.set_transition_speed_line(1), "set_transition_speed"),
        (protocol.set_auto_blink_line(True), "set_auto_blink"),
        (protocol.set_auto_head_movement_line(False), "set_auto_head_movement"),
    ],
)
def test_every_command_is_recognised_as_itself(line: str, command: str) -> None:
    assert unity(line).command == command == protocol.command_seen_by_unity(line)
    assert json.loads(line)["command"] == command
