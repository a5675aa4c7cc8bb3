"""This card's driver overhead, learnt after each load and kept typed in the settings."""

from __future__ import annotations

from tray_app.format_fr import MIB
from tray_app.hardware.gpu_calibration import (
    OVERFLOW_STEP,
    CalibrationBook,
    card_key,
    default_overhead,
    overhead_for,
)
from tray_app.paths import app_paths
from tray_app.settings import Settings

KEY = card_key("NVIDIA GeForce RTX 4050 Laptop GPU", "566.36", "vulkan")


def test_a_higher_figure_is_taken_at_once_a_lower_one_halfway():
    book = CalibrationBook()
    assert book.learn_from_load(KEY, 3000 * MIB, 2800 * MIB, now=1.0).overhead == 200 * MIB
    assert book.learn_from_load(KEY, 3300 * MIB, 3000 * MIB, now=2.0).overhead == 300 * MIB
    entry = book.learn_from_load(KEY, 3100 * MIB, 3000 * MIB, now=3.0)
    assert (entry.overhead, entry.loads, entry.last_measured) == (200 * MIB, 3, 100 * MIB)


def test_a_load_that_went_over_raises_the_overhead():
    book = CalibrationBook()
    first = book.learn_from_overflow(KEY, default_overhead("vulkan"), now=1.0)
    assert first.overhead == default_overhead("vulkan") + OVERFLOW_STEP and first.overflows == 1
    assert book.learn_from_overflow(KEY, 0, at_least=500 * MIB, now=2.0).overhead == first.overhead + 500 * MIB


def test_kept_in_the_settings_per_card_driver_and_backend(settings: Settings):
    book = CalibrationBook()
    book.learn_from_load(KEY, 3000 * MIB, 2800 * MIB, now=1.0)
    book.save(settings)
    again = CalibrationBook.from_settings(Settings.load(app_paths().settings_file))
    assert again.get(KEY) == book.get(KEY)
    assert overhead_for(again, KEY, "vulkan") == (200 * MIB, again.get(KEY))
    other_driver = card_key("NVIDIA GeForce RTX 4050 Laptop GPU", "572.16", "vulkan")
    assert overhead_for(again, other_driver, "cuda") == (default_overhead("cuda"), None)
    text = again.get(KEY).describe_fr()
    assert text.startswith("200 Mo en plus des tampons du modèle (NVIDIA GeForce RTX 4050")
    assert "1 chargement mesuré" in text


def test_an_unreadable_calibration_starts_again():
    assert CalibrationBook.from_json("{not json").entries == {}
    assert CalibrationBook.from_json('{"k": {"overhead": -5}}').entries == {}
