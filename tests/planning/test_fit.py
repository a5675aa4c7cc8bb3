"""The download list's badges and the one recommended file (planning/fit.py), and the catalogue's data."""

from __future__ import annotations

import re

import pytest

from tray_app.format_fr import GIB, MIB
from tray_app.hardware.cpu import CpuInfo
from tray_app.models.catalogue import catalogue
from tray_app.models.gguf_info import model_info_from_shape
from tray_app.planning.fit import Machine, fit_badge, recommend
from tray_app.planning.memory_plan import assumed_free_vram, make_plan

CPU = CpuInfo("test", 8, 16, 8, 0, tuple(range(16)), 16 * GIB, "test")


def _model(billions: float, name: str = "m"):
    layers = 32
    per_layer = int(billions * 0.56e9 / layers)  # about 4,5 bits per weight
    return model_info_from_shape(
        name=name, n_layers=layers, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=32768,
        layer_bytes=per_layer, input_bytes=70 * MIB, output_bytes=105 * MIB,
    )


def _laptop(card_gib: int | None) -> Machine:
    if card_gib is None:
        return Machine(None, None, False, CPU)
    total = card_gib * GIB
    return Machine(assumed_free_vram(total), total, True, CPU)


def test_the_badge_is_the_memory_plan_in_words():
    small, seven, huge = _model(1.5), _model(7), _model(40)
    assert fit_badge(small, _laptop(6)).text_fr == "tient entièrement sur la carte graphique"
    partial = fit_badge(seven, _laptop(6))
    assert partial.kind == "partial" and re.fullmatch(
        r"tient en partie sur la carte graphique \(environ \d+ mots/seconde\)", partial.text_fr)
    same = make_plan(seven, free_vram=assumed_free_vram(6 * GIB), total_vram=6 * GIB, cpu=CPU)
    assert partial.plan.gpu_layers == same.gpu_layers
    cpu_only = fit_badge(seven, _laptop(None))
    assert cpu_only.kind == "cpu" and cpu_only.text_fr.startswith("sur le processeur seulement (environ ")
    assert fit_badge(huge, _laptop(6)).text_fr == "trop gros pour cet ordinateur"
    assert cpu_only.words_per_second < partial.words_per_second < fit_badge(seven, _laptop(12)).words_per_second


def test_one_file_is_recommended_the_best_that_runs_comfortably():
    small, seven = _model(1.5), _model(7)
    on_6gb = [("small", 2.0, fit_badge(small, _laptop(6))), ("seven", 6.0, fit_badge(seven, _laptop(6)))]
    on_12gb = [("small", 2.0, fit_badge(small, _laptop(12))), ("seven", 6.0, fit_badge(seven, _laptop(12)))]
    assert recommend(on_12gb) == "seven"  # all on the card: the better model
    expected = "seven" if on_6gb[1][2].words_per_second >= 8 else "small"
    assert recommend(on_6gb) == expected
    nothing = [("huge", 9.0, fit_badge(_model(40), _laptop(6)))]
    assert recommend(nothing) is None


@pytest.mark.parametrize("entry", catalogue(), ids=lambda e: e.file)
def test_every_catalogue_file_names_a_real_looking_hub_file_in_french(entry):
    assert re.fullmatch(r"[\w.-]+/[\w.-]+-GGUF", entry.repo)
    assert entry.file.endswith(".gguf") and entry.quant in entry.file
    assert 1.0e9 <= entry.size <= 11e9  # from 2B to 14B parameters, quantised
    assert entry.licence and entry.description_fr.endswith(".") and " " in entry.description_fr


def test_the_catalogue_goes_from_about_two_to_fifteen_billion_parameters():
    names = {e.model_name for e in catalogue()}
    assert len(names) >= 5 and any("14B" in n for n in names) and any("2B" in n or "3B" in n for n in names)
