"""Applying an optimisation, the host's view of it, re-optimisation proposals, the first-run offer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.bench_fakes import BEST, START, identity, make_result
from tray_app.benchmark.identity import changes_fr
from tray_app.benchmark.report_fr import (
    describe_change_fr,
    describe_point_fr,
    first_word_fr,
    headline_fr,
    notes_fr,
)
from tray_app.benchmark.saved import (
    apply_result,
    mark_optimization_offered,
    needs_reoptimization,
    results_path,
    should_offer_optimization,
    tuning_from_result,
)
from tray_app.format_fr import seconds_fr
from tray_app.paths import app_paths
from tray_app.planning.applied_tuning import (
    Tuning,
    apply_tuning,
    load_tuning,
    tuned_config,
)
from tray_app.planning.runner_config import RunnerConfig
from tray_app.settings import Settings


def test_apply_saves_settings_and_the_results_file(model: Path, settings: Settings):
    settings.set("threads", 3)  # set by hand before: « Appliquer » gives it back to the measurement
    result = make_result(model)
    tuning = apply_result(result, settings, app_paths())
    reloaded = Settings.load(app_paths().settings_file)
    assert reloaded.get("threads") == 0 and reloaded.get("optimize_offered") is True
    saved = load_tuning(reloaded, model)
    assert saved == tuning
    assert (saved.n_threads, saved.flash_attn, saved.n_gpu_layers) == (6, True, -1)
    document = json.loads(results_path(app_paths()).read_text(encoding="utf-8"))
    assert document["identity"]["gpu_driver"] == "560.94"
    assert document["result"]["best_point"] == BEST.to_dict()
    assert len(document["result"]["trials"]) == 5


def test_the_host_gets_the_tuned_configuration_for_that_model_only(model: Path, settings: Settings, tmp_path: Path):
    apply_result(make_result(model), settings, app_paths())
    plan = RunnerConfig(str(model), n_gpu_layers=-1, n_ctx=4096, n_threads=5, n_threads_batch=5)
    tuned = tuned_config(plan, settings, model, free_vram=5 << 30)
    assert (tuned.flash_attn, tuned.n_gpu_layers, tuned.n_ctx) == (True, -1, 4096)
    assert tuned.n_threads == min(6, os.cpu_count() or 1)  # never more than this machine has
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + bytes(10))
    other_plan = plan.with_changes(model_path=str(other))
    assert tuned_config(other_plan, settings, other) == other_plan
    model.write_bytes(b"GGUF" + bytes(2000))  # same name, another file: not the measured one
    assert tuned_config(plan, settings, model) == plan
    settings.set("threads", 4)  # set by hand after the optimisation: the hand wins
    model.write_bytes(b"GGUF" + bytes(1000))
    assert tuned_config(plan, settings, model).n_threads == 4


def test_gpu_layers_rules(model: Path):
    tuning = tuning_from_result(make_result(model))
    base = RunnerConfig(str(model), n_gpu_layers=20, n_ctx=2048)
    fewer = Tuning(**{**tuning.__dict__, "n_gpu_layers": 10})
    assert apply_tuning(base, fewer).n_gpu_layers == 10  # fewer layers: measured faster and safe
    assert apply_tuning(base, tuning, free_vram=None).n_gpu_layers == 20  # more: only with as much free VRAM
    assert apply_tuning(base, tuning, free_vram=tuning.free_vram).n_gpu_layers == -1
    assert apply_tuning(base, tuning, free_vram=tuning.free_vram - (1 << 30)).n_gpu_layers == 20
    assert apply_tuning(base.with_changes(n_gpu_layers=0), tuning, free_vram=8 << 30).n_gpu_layers == 0
    big_batch = Tuning(**{**tuning.__dict__, "n_batch": 4096, "n_ubatch": 4096, "n_threads": 64})
    applied = apply_tuning(base, big_batch, logical_cpus=8)
    assert applied.n_batch == applied.n_ubatch == 2048 and applied.n_threads == 8


def measured_33_layers_at_4096(model: Path) -> Tuning:
    """A tuning whose 33 GPU layers were measured with a 4096-token context and 4 GiB free."""
    from dataclasses import replace

    return replace(tuning_from_result(make_result(model)), n_gpu_layers=33, n_ctx=4096, free_vram=4 << 30)


def test_a_longer_context_than_measured_keeps_the_plans_gpu_layers(model: Path, settings: Settings):
    tuning = measured_33_layers_at_4096(model)
    assert tuning_from_result(make_result(model)).n_ctx == 4096  # recorded from the measured configuration
    as_measured = RunnerConfig(str(model), n_gpu_layers=28, n_ctx=4096)
    assert apply_tuning(as_measured, tuning, free_vram=4 << 30).n_gpu_layers == 33
    # « Mémoire de conversation » raised to 8192 since: the plan fits 28 layers with the bigger KV cache
    longer = apply_tuning(as_measured.with_changes(n_ctx=8192), tuning, free_vram=4 << 30)
    assert (longer.n_gpu_layers, longer.n_ctx) == (28, 8192)
    settings.set("optimized_config", tuning.to_json())  # the host's call, with the plan's context
    assert tuned_config(as_measured.with_changes(n_ctx=8192), settings, model, free_vram=4 << 30).n_gpu_layers == 28


def test_a_bigger_kv_cache_per_token_than_measured_is_not_given_more_layers(model: Path):
    from dataclasses import replace

    from tray_app.planning.applied_tuning import _fits_as_measured

    compact = replace(measured_33_layers_at_4096(model), type_k="q8_0", type_v="q8_0", flash_attn=True)
    run = RunnerConfig(str(model), n_gpu_layers=28, n_ctx=4096, type_k="q8_0", type_v="q8_0", flash_attn=True)
    assert _fits_as_measured(run, compact, 4 << 30)
    assert not _fits_as_measured(run.with_changes(type_k="f16"), compact, 4 << 30)
    assert not _fits_as_measured(run.with_changes(type_v="f16"), compact, 4 << 30)
    assert _fits_as_measured(run.with_changes(type_k="q4_0", type_v="q4_0"), compact, 4 << 30)


def test_less_free_graphics_memory_than_measured_keeps_the_plans_gpu_layers(model: Path):
    tuning = measured_33_layers_at_4096(model)
    plan = RunnerConfig(str(model), n_gpu_layers=28, n_ctx=4096)
    assert apply_tuning(plan, tuning, free_vram=(4 << 30) - (100 << 20)).n_gpu_layers == 28
    assert apply_tuning(plan, tuning, free_vram=(4 << 30) + (100 << 20)).n_gpu_layers == 33


def test_a_tuning_saved_without_its_context_never_gives_more_layers_than_the_plan(model: Path):
    data = json.loads(measured_33_layers_at_4096(model).to_json())
    del data["n_ctx"]  # saved by an older version
    old = Tuning.from_json(json.dumps(data))
    assert old is not None and old.n_ctx is None and old.n_threads == 6
    plan = RunnerConfig(str(model), n_gpu_layers=28, n_ctx=2048)
    assert apply_tuning(plan, old, free_vram=8 << 30).n_gpu_layers == 28
    assert apply_tuning(plan.with_changes(n_gpu_layers=40), old, free_vram=8 << 30).n_gpu_layers == 33  # fewer: safe
    assert Tuning.from_json(json.dumps({**data, "n_ctx": 0})) is None


@pytest.mark.parametrize(
    "text",
    ["", "{", "[]", '{"model_path": "x"}', None],
)
def test_a_damaged_setting_is_ignored(text, model: Path):
    assert Tuning.from_json(text or "") is None


def test_an_impossible_tuning_is_refused(model: Path):
    tuning = tuning_from_result(make_result(model))
    data = json.loads(tuning.to_json())
    assert Tuning.from_json(json.dumps(data)) == tuning
    for bad in ({"type_v": "q8_0", "flash_attn": False}, {"n_threads": 0}, {"type_k": "q2_k"}, {"n_batch": "512"}):
        assert Tuning.from_json(json.dumps({**data, **bad})) is None


# -- re-optimisation and first start ----------------------------------------------------------------------
def test_identity_changes_are_told_in_french(model: Path):
    now = identity(model)
    assert changes_fr(now, now) == []
    assert changes_fr(now, identity(model, gpu_driver="566.03")) == ["le pilote de la carte graphique a été mis à jour"]
    no_gpu = identity(model, gpu_name="", gpu_driver="")
    assert changes_fr(now, no_gpu) == ["la carte graphique NVIDIA n'est plus détectée"]
    assert changes_fr(now, identity(model, model_size=5)) == ["le fichier du modèle a changé"]
    assert changes_fr(now, identity(model, model_path="/autre.gguf")) == ["vous utilisez un autre modèle"]
    assert changes_fr(now, identity(model, llama_cpp_version="0.3.40", cpu_model="AMD Ryzen 7")) == [
        "le processeur a changé",
        "le moteur du modèle a été mis à jour",
    ]


def test_needs_reoptimization(model: Path, settings: Settings):
    paths = app_paths()
    assert needs_reoptimization(settings, paths, identity=identity(model)) is None  # never optimised
    apply_result(make_result(model), settings, paths)
    assert needs_reoptimization(settings, paths, identity=identity(model)) is None
    reason = needs_reoptimization(settings, paths, identity=identity(model, gpu_driver="566.03"))
    assert reason is not None and "pilote" in reason and "« Optimiser »" in reason
    results_path(paths).unlink()
    assert "introuvables" in needs_reoptimization(settings, paths, identity=identity(model))


def test_needs_reoptimization_reads_this_machine_when_not_told(model: Path, settings: Settings):
    settings.set("model_path", str(model))
    apply_result(make_result(model), settings, app_paths())
    reason = needs_reoptimization(settings, app_paths())  # this machine: no RTX 4050, another CPU
    assert reason is not None and reason.startswith("Depuis la dernière optimisation")


def test_first_start_offers_once(model: Path, settings: Settings):
    assert should_offer_optimization(settings)
    mark_optimization_offered(settings)
    assert not should_offer_optimization(Settings.load(app_paths().settings_file))
    fresh = Settings(settings.path.with_name("other.json"))
    fresh.set("optimized_config", tuning_from_result(make_result(model)).to_json())
    assert not should_offer_optimization(fresh)  # already optimised (settings copied from elsewhere)


# -- French wording ---------------------------------------------------------------------------------------
def test_headline_in_plain_words(model: Path):
    result = make_result(model)
    assert headline_fr(result) == "Réponses 23 % plus rapides : 41 mots/seconde au lieu de 33."
    same = make_result(model, improved=False)
    assert headline_fr(same).startswith("Vos réglages actuels sont déjà les meilleurs")


def test_configurations_in_words():
    assert describe_point_fr(BEST, 32) == (
        "tout le modèle sur la carte graphique · 6 cœurs · attention rapide · lecture par blocs de 512"
    )
    assert describe_change_fr(BEST, START, 32) == "6 cœurs · attention rapide"
    assert describe_change_fr(START, START, 32) == "réglages actuels"


def test_notes_tell_what_disturbed_the_measurements(model: Path):
    from dataclasses import replace

    result = make_result(model)
    busy = [replace(t, measurement=replace(t.measurement, other_cpu_percent=60.0, cpu_mhz=3000 - 500 * i))
            for i, t in enumerate(result.trials)]
    notes = notes_fr(busy, drift=-0.12, control_failed=False)
    assert any("60 % du processeur" in n for n in notes)
    assert any("baissé de 12 %" in n for n in notes)
    assert any("ralenti" in n and "chargeur" in n for n in notes)
    assert any("écarté" in n for n in notes)
    assert notes_fr(result.trials[:3], drift=0.0, control_failed=False) == ()


def test_every_headline_story(model: Path):
    from dataclasses import replace

    from tests.bench_fakes import measurement

    result = make_result(model)
    sooner = replace(result, after=measurement(51.5, 0.6))
    assert headline_fr(sooner) == (
        "Réponses qui commencent 50 % plus tôt : premier mot après 600 ms au lieu de 1,20 s."
    )
    small = replace(result, after=measurement(52.0, 1.2))
    assert headline_fr(small).startswith("Vos réglages actuels sont déjà les bons")
    lighter = replace(small, after=replace(measurement(52.0, 1.2), peak_vram=1500 << 20))
    assert headline_fr(lighter).endswith("avec des réglages qui prennent moins de mémoire.")
    failed = replace(result, start_failed=True, before=result.after)
    assert headline_fr(failed).startswith("Vos réglages actuels ne fonctionnaient pas")


def test_first_words_tens_of_milliseconds_apart_read_differently(model: Path):
    from dataclasses import replace

    from tests.bench_fakes import measurement

    result = make_result(model)
    sooner = replace(result, before=measurement(51.0, 0.045), after=measurement(51.5, 0.030))
    assert headline_fr(sooner) == "Réponses qui commencent 33 % plus tôt : premier mot après 30 ms au lieu de 45 ms."
    faster = replace(result, before=measurement(51.0, 0.045), after=measurement(62.5, 0.030))
    assert first_word_fr(faster) == (
        "Premier mot après 30 ms au lieu de 45 ms pour une conversation comme celle de l'essai."
    )
    assert [seconds_fr(s) for s in (0.0004, 0.85, 1.0, 1.254, 9.99, 42.0)] == [
        "0 ms", "850 ms", "1,00 s", "1,25 s", "9,99 s", "42 s"
    ]


def test_a_gain_within_the_noise_or_that_prints_the_same_is_not_announced(model: Path):
    from dataclasses import replace

    from tests.bench_fakes import measurement

    result = make_result(model)  # noise thresholds: 3 % for generation, 5 % for the first word
    within_noise = replace(result, before=measurement(51.0, 1.2), after=measurement(52.0, 1.16))
    same_print = replace(result, before=measurement(51.0, 0.0004), after=measurement(51.0, 0.0003))
    same_words = replace(result, before=measurement(1.0, 1.2), after=measurement(1.2, 1.2))  # 0,65 → 0,78 words/s
    for story in (within_noise, same_print, same_words):
        headline = headline_fr(story)
        assert headline.startswith("Vos réglages actuels sont déjà les bons"), headline
        assert "plus tôt" not in headline and "plus rapides" not in headline


def test_a_first_word_that_prints_the_same_keeps_todays_settings(model: Path, settings: Settings):
    from tests.bench_fakes import make_summary, measurement
    from tray_app.benchmark.optimizer import KEPT_FR, Optimizer
    from tray_app.benchmark.search import SearchOutcome, Trial

    engine = Optimizer(model, settings)
    engine._summary = make_summary(model)
    start, moved = Trial(1, START, measurement(50.0, 0.0004)), Trial(2, BEST, measurement(50.0, 0.0003))
    outcome = SearchOutcome("coordinate", START, [start, moved], best=moved, best_measurement=moved.measurement,
                            start_measurement=start.measurement)
    result = engine._result(engine._summary, outcome, "coordinate", quick=True)  # 25 % sooner: « 0 ms » both
    assert result.best_point == START and not result.improved and KEPT_FR in result.notes_fr
    assert headline_fr(result).startswith("Vos réglages actuels sont déjà les meilleurs")


def test_a_winner_not_clearly_better_once_measured_again_is_not_applied(model: Path, settings: Settings):
    from tests.bench_fakes import make_summary, measurement
    from tray_app.benchmark.optimizer import KEPT_FR, Optimizer
    from tray_app.benchmark.search import SearchOutcome, Trial

    engine = Optimizer(model, settings)
    engine._summary = make_summary(model)
    start, moved = Trial(1, START, measurement(50.0, 1.2)), Trial(2, BEST, measurement(56.0, 1.2))
    lucky = SearchOutcome("coordinate", START, [start, moved], best=moved, best_measurement=measurement(51.0, 1.2),
                          start_measurement=start.measurement)
    result = engine._result(engine._summary, lucky, "coordinate", quick=True)
    assert result.best_point == START and not result.improved and KEPT_FR in result.notes_fr
    assert headline_fr(result).startswith("Vos réglages actuels sont déjà les meilleurs")
    clear = SearchOutcome("coordinate", START, [start, moved], best=moved, best_measurement=measurement(56.0, 1.2),
                          start_measurement=start.measurement)
    assert engine._result(engine._summary, clear, "coordinate", quick=True).best_point == BEST
    # First word sooner, but generation 14 % slower once measured again beside today's settings: not applied.
    sooner_but_slower = SearchOutcome("coordinate", START, [start, moved], best=moved,
                                      best_measurement=measurement(43.0, 0.8), start_measurement=start.measurement)
    assert engine._result(engine._summary, sooner_but_slower, "coordinate", quick=True).best_point == START


# -- the racing search's story: its interleaved final check decides and gives the interval ---------------
def _racing_outcome(trials, best, kept: str, check, start=START):
    from tray_app.benchmark.paired import Comparison
    from tray_app.benchmark.racing_search import RACING
    from tray_app.benchmark.search import SearchOutcome

    comparison = Comparison(*check) if check is not None else None
    best_trial = next(t for t in reversed(trials) if t.point == best)
    start_trial = next(t for t in trials if t.point == start)
    return SearchOutcome(RACING, start, trials, best=best_trial, best_measurement=best_trial.measurement,
                         start_measurement=start_trial.measurement, final_check=comparison, kept_because=kept)


def test_a_faster_winner_is_told_with_the_interval_of_the_final_check(model: Path, settings: Settings):
    from tests.bench_fakes import make_summary, measurement
    from tray_app.benchmark.optimizer import KEPT_FR, Optimizer
    from tray_app.benchmark.search import Trial

    engine = Optimizer(model, settings)
    engine._summary = make_summary(model)
    trials = [Trial(1, START, measurement(50.0, 1.2)), Trial(2, BEST, measurement(62.0, 1.1)),
              Trial(3, START, measurement(51.0, 1.2), control=True), Trial(4, BEST, measurement(61.0, 1.1), True)]
    outcome = _racing_outcome(trials, BEST, "faster", (0.21, 0.12, 0.31, 2, 0.04))
    result = engine._result(engine._summary, outcome, "racing", quick=True)
    assert result.best_point == BEST and result.improved and KEPT_FR not in result.notes_fr
    assert headline_fr(result) == (
        "Réponses 21 % plus rapides (entre +12\u00a0% et +31\u00a0% selon les mesures) : "
        "40 mots/seconde au lieu de 32."
    )
    assert result.to_dict()["final_check"]["verdict"] == "better"


def test_more_of_the_model_on_the_card_is_kept_without_claiming_a_gain(model: Path, settings: Settings):
    from tests.bench_fakes import make_summary, measurement
    from tray_app.benchmark.optimizer import Optimizer
    from tray_app.benchmark.search import Trial

    start = START.with_value("gpu_layers", 20)
    engine = Optimizer(model, settings)
    engine._summary = make_summary(model)
    more = start.with_value("gpu_layers", 22)
    trials = [Trial(1, start, measurement(30.0, 1.2)), Trial(2, more, measurement(31.0, 1.2)),
              Trial(3, start, measurement(30.5, 1.2), control=True), Trial(4, more, measurement(30.8, 1.2), True)]
    outcome = _racing_outcome(trials, more, "more_on_gpu", (0.02, -0.09, 0.14, 2, 0.05), start=start)
    result = engine._result(engine._summary, outcome, "racing", quick=True)
    headline = headline_fr(result)
    assert result.best_point == more
    assert headline.startswith("Une plus grande partie du modèle tient maintenant sur la carte graphique")
    assert "trop petit pour être mesuré" in headline and "entre −9\u00a0% et +14\u00a0%" in headline
    assert "plus rapides" not in headline


def test_no_measurable_gain_keeps_todays_settings_and_says_so(model: Path, settings: Settings):
    from tests.bench_fakes import make_summary, measurement
    from tray_app.benchmark.optimizer import KEPT_FR, Optimizer
    from tray_app.benchmark.search import Trial

    engine = Optimizer(model, settings)
    engine._summary = make_summary(model)
    trials = [Trial(1, START, measurement(50.0, 1.2)), Trial(2, BEST, measurement(58.0, 1.2)),
              Trial(3, START, measurement(51.0, 1.2), control=True), Trial(4, BEST, measurement(50.5, 1.2), True)]
    outcome = _racing_outcome(trials, START, "", (0.01, -0.12, 0.15, 2, 0.06))
    result = engine._result(engine._summary, outcome, "racing", quick=True)
    assert result.best_point == START and not result.improved and KEPT_FR in result.notes_fr
    assert headline_fr(result).startswith("Vos réglages actuels sont déjà les bons")


def test_the_quick_run_is_limited_to_the_duration_it_announced(model: Path, settings: Settings):
    from tests.bench_fakes import make_summary
    from tray_app.benchmark.optimizer import GRID, QUICK_TIME_MARGIN, Optimizer

    engine = Optimizer(model, settings)
    engine._summary = make_summary(model)
    announced = engine.estimate_seconds(quick=True)
    assert announced > 0
    assert engine.time_limit_s(quick=True) == pytest.approx(QUICK_TIME_MARGIN * announced)
    assert engine.time_limit_s(quick=False) is None  # the precise run takes the time it needs
    assert engine.time_limit_s(quick=True, strategy=GRID) is None
