"""The « Optimiser » wizard offscreen: pages, cancel changes nothing, « Appliquer » saves."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtWidgets import QWizard

from tests.bench_fakes import FakeEngine
from tray_app.benchmark.report_fr import first_word_fr, headline_fr
from tray_app.benchmark.saved import results_path, tuning_from_result
from tray_app.paths import app_paths
from tray_app.planning.applied_tuning import load_tuning
from tray_app.settings import Settings
from tray_app.ui.optimize_wizard import INTRO, MACHINE, PROGRESS, RESULT, OptimizeWizard


def open_wizard(qtbot, settings: Settings, engine) -> OptimizeWizard:
    wizard = OptimizeWizard(settings, app_paths(), engine_factory=lambda: engine)
    qtbot.addWidget(wizard)
    wizard.show()
    qtbot.waitUntil(lambda: wizard.machine.isComplete(), timeout=5000)
    return wizard


def nothing_saved(settings_path: Path) -> bool:
    on_disk = Settings.load(settings_path)
    return on_disk.get("optimized_config") == "" and not results_path(app_paths()).exists()


def test_pages_then_apply_saves_the_settings(qtbot, model: Path, settings: Settings):
    settings.set("threads", 3)
    engine = FakeEngine(model)
    wizard = open_wizard(qtbot, settings, engine)
    assert wizard.currentId() == INTRO
    assert "environ 45 secondes" in wizard.intro.quick.text()
    assert "environ 2 minutes" in wizard.intro.precise.text()
    wizard.next()
    assert wizard.currentId() == MACHINE
    fields = {k: v.text() for k, v in wizard.machine.fields.items()}
    assert fields["cpu"] == "Intel Core i7-13700H — 6 cœurs rapides et 8 cœurs économes (20 fils)"
    assert fields["gpu"] == "NVIDIA GeForce RTX 4050 Laptop GPU — 6,0 Go, dont 4,6 Go libres"
    assert fields["model"].startswith("Mistral 7B Instruct (4,1 Go)")
    assert wizard.buttonText(QWizard.WizardButton.CommitButton) == "Commencer les mesures"
    with qtbot.waitSignal(wizard.measuring_started, timeout=1000):
        wizard.next()
    assert wizard.currentId() == PROGRESS
    with qtbot.waitSignal(wizard.measuring_ended, timeout=10000):
        pass
    qtbot.waitUntil(lambda: wizard.currentId() == RESULT, timeout=10000)
    page = wizard.result_page
    assert page.headline.text() == "Réponses 23 % plus rapides : 41 mots/seconde au lieu de 33."
    assert page.first_word.text().startswith("Premier mot après 800 ms au lieu de 1,20 s")
    assert "repassera en « Automatique »" in page.apply_hint.text()
    assert page.table.rowCount() == 5
    assert page.table.item(3, 5).text() == "écarté : mémoire insuffisante"
    assert page.table.item(3, 5).toolTip().startswith("Le modèle n'a pas tenu en mémoire")
    assert page.table.item(2, 5).text() == "retenu" and page.table.item(4, 5).text() == "mesuré à nouveau"
    assert page.table.item(0, 1).text() == "réglages actuels"
    assert page.table.item(2, 1).text() == "6 cœurs · attention rapide"
    assert not page.table.isVisible()
    page.toggle.click()
    assert page.table.isVisible()
    assert wizard.buttonText(QWizard.WizardButton.FinishButton) == "Appliquer"
    with qtbot.waitSignal(wizard.applied, timeout=2000) as applied:
        wizard.button(QWizard.WizardButton.FinishButton).click()
    assert applied.args[0].n_threads == 6
    saved = Settings.load(app_paths().settings_file)
    assert saved.get("threads") == 0 and '"n_threads":6' in saved.get("optimized_config")
    assert results_path(app_paths()).exists()
    assert not wizard.isVisible() and not wizard.job.worker_thread.isRunning()


def test_the_benchmark_runs_off_the_ui_thread(qtbot, model: Path, settings: Settings):
    threads: list[threading.Thread] = []

    class Recording(FakeEngine):
        def run(self, **kwargs):
            threads.append(threading.current_thread())
            return super().run(**kwargs)

    wizard = open_wizard(qtbot, settings, Recording(model))
    wizard.next()
    wizard.next()
    qtbot.waitUntil(lambda: wizard.currentId() == RESULT, timeout=10000)
    assert threads and threads[0] is not threading.main_thread()
    wizard.reject()


def test_cancel_while_measuring_stops_and_changes_nothing(qtbot, model: Path, settings: Settings):
    engine = FakeEngine(model, pause_s=0.5)
    wizard = open_wizard(qtbot, settings, engine)
    wizard.next()
    wizard.next()
    assert engine.running.wait(5)
    qtbot.waitUntil(lambda: wizard.progress_page.step.text().startswith("Essai 1 sur environ 5"), timeout=5000)
    with qtbot.waitSignal(wizard.measuring_ended, timeout=5000):
        wizard.button(QWizard.WizardButton.CancelButton).click()
        assert wizard.progress_page.step.text() == "Arrêt des mesures…"  # waits for the runner to stop
    qtbot.waitUntil(lambda: not wizard.isVisible(), timeout=5000)
    assert engine.cancelled.is_set()
    assert wizard.result() == QWizard.DialogCode.Rejected
    assert nothing_saved(settings.path)


def test_cancel_on_the_result_page_changes_nothing(qtbot, model: Path, settings: Settings):
    wizard = open_wizard(qtbot, settings, FakeEngine(model))
    wizard.next()
    wizard.next()
    qtbot.waitUntil(lambda: wizard.currentId() == RESULT, timeout=10000)
    wizard.button(QWizard.WizardButton.CancelButton).click()
    assert not wizard.isVisible()
    assert nothing_saved(settings.path)


def test_cancel_on_the_first_page(qtbot, model: Path, settings: Settings):
    engine = FakeEngine(model)
    wizard = open_wizard(qtbot, settings, engine)
    wizard.reject()
    assert not wizard.isVisible() and engine.runs == 0
    assert nothing_saved(settings.path)


def test_a_failed_benchmark_says_why_and_offers_to_close(qtbot, model: Path, settings: Settings):
    message = "Aucun réglage n'a permis au modèle de fonctionner sur cet ordinateur."
    wizard = open_wizard(qtbot, settings, FakeEngine(model, fail=message))
    wizard.next()
    wizard.next()
    qtbot.waitUntil(lambda: wizard.progress_page.error.isVisible(), timeout=5000)
    assert wizard.progress_page.error.text() == message + " Rien n'a été changé."
    assert wizard.buttonText(QWizard.WizardButton.CancelButton) == "Fermer"
    wizard.button(QWizard.WizardButton.CancelButton).click()
    assert not wizard.isVisible()
    assert nothing_saved(settings.path)


def test_without_a_gpu_the_machine_page_says_so(qtbot, model: Path, settings: Settings):
    wizard = open_wizard(qtbot, settings, FakeEngine(model, gpu=False))
    wizard.next()
    assert wizard.machine.fields["gpu"].text() == "Pas de carte NVIDIA détectée"
    wizard.reject()


def test_an_unusable_model_stops_on_the_machine_page(qtbot, settings: Settings):
    from tray_app.host.hosting import ModelChoiceError

    def factory():
        raise ModelChoiceError("Le modèle de démonstration n'est pas installé. Réinstallez Desktop-Mate.")

    wizard = OptimizeWizard(settings, app_paths(), engine_factory=factory)
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.next()
    qtbot.waitUntil(lambda: "n'est pas installé" in wizard.machine.status.text(), timeout=5000)
    assert not wizard.machine.isComplete()
    wizard.reject()


def test_the_real_engine_on_the_tiny_model(qtbot, tiny_gguf: Path, settings: Settings):
    """End to end with real runner processes (a short workload)."""
    from tray_app.benchmark.optimizer import Optimizer
    from tray_app.benchmark.workload import Workload

    small = Workload(repetitions=2, max_tokens=12, warmup_tokens=2)
    engine = Optimizer(tiny_gguf, settings, workloads=(small, small), load_timeout_s=60)
    wizard = open_wizard(qtbot, settings, engine)
    assert wizard.machine.fields["gpu"].text() == "Pas de carte NVIDIA détectée"
    wizard.next()
    wizard.next()
    qtbot.waitUntil(lambda: wizard.currentId() == RESULT, timeout=120000)
    result = wizard.outcome
    assert result is not None and result.trials[0].measurement.stable
    assert result.after.gen_tps and result.after.gen_tps > 0 and result.before.gen_tps
    # Which story the page tells (faster, first word sooner, already good…) depends on what this machine
    # measured: check that it tells the one the report computes for this result, whatever it is.
    headline = wizard.result_page.headline.text()
    assert headline == headline_fr(result) and headline.endswith(".")
    assert wizard.result_page.first_word.text() == first_word_fr(result)
    with qtbot.waitSignal(wizard.applied, timeout=2000):
        wizard.accept()
    saved = load_tuning(Settings.load(app_paths().settings_file), tiny_gguf)
    assert saved == tuning_from_result(result)
    assert (saved.n_threads, saved.n_batch, saved.n_ctx) == (
        result.best_config.n_threads, result.best_config.n_batch, result.best_config.n_ctx
    )
