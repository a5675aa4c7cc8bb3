"""Canned « Optimiser » figures and a fake engine: the wizard without measuring anything.

An RTX 4050 laptop's machine summary, a result of five trials, and :class:`FakeEngine`, which plays those
trials with short pauses and can be cancelled at any moment. ``benchmarks/optimize_wizard_screenshots.py``
shows the wizard with them; the tests use them too (through ``tests/bench_fakes.py``). It lives here, not
in ``tests/``, because benchmarks never import from the tests; tests may import from here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tray_app.benchmark.identity import MachineIdentity
from tray_app.benchmark.machine import MachineSummary
from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.objective import Thresholds
from tray_app.benchmark.progress import ProgressCallback, ProgressTracker
from tray_app.benchmark.result import OptimizationResult
from tray_app.benchmark.search import BenchmarkCancelled, Trial
from tray_app.benchmark.space import Point, config_for
from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.gpu import GpuReading
from tray_app.hardware.llama_backend import LlamaBackend
from tray_app.planning.runner_config import RunnerConfig

CPU = CpuInfo("Intel Core i7-13700H", 14, 20, 6, 8, tuple(range(12)), 16 << 30, "test")
GPU = GpuReading(0, "NVIDIA GeForce RTX 4050 Laptop GPU", "GPU-1", "560.94", 6 << 30, 1400 << 20,
                 (6 << 30) - (1400 << 20), 5, 45, 12.0, 80.0, 0, ())
START = Point.of(gpu_layers=33, threads=5, attention="f16", threads_batch=0, batch=512)
BEST = Point.of(gpu_layers=33, threads=6, attention="f16_fa", threads_batch=0, batch=512)


def identity(model: Path, **changes: object) -> MachineIdentity:
    values = dict(cpu_model=CPU.model, gpu_name=GPU.name, gpu_driver=GPU.driver_version,
                  model_path=str(model), model_size=model.stat().st_size, llama_cpp_version="0.3.36")
    values.update(changes)
    return MachineIdentity(**values)


def measurement(gen: float, ttft: float, *, stable: bool = True) -> Measurement:
    if not stable:
        return Measurement.failed("out_of_memory", "Le modèle n'a pas tenu en mémoire avec ces réglages.", wall_s=3.0)
    return Measurement(
        stable=True, gen_samples=(gen * 0.99, gen, gen * 1.01), ttft_samples=(ttft,) * 3,
        prompt_samples=(320 / ttft,) * 3, prompt_tokens=320, generated_tokens=64, wall_s=8.0,
        peak_ram=900 << 20, peak_vram=2100 << 20, text="Coucou ! Je vais très bien, merci de demander.",
    )


def make_result(model_path: Path, *, improved: bool = True) -> OptimizationResult:
    base = RunnerConfig(str(model_path), n_gpu_layers=-1, n_threads=5, n_threads_batch=5)
    best = BEST if improved else START
    trials = (
        Trial(1, START, measurement(51.0, 1.2)),
        Trial(2, START.with_value("threads", 6), measurement(56.0, 1.1)),
        Trial(3, BEST, measurement(63.0, 0.8)),
        Trial(4, BEST.with_value("attention", "q8_0_fa"), measurement(0, 0, stable=False)),
        Trial(5, best, measurement(62.0, 0.8) if improved else measurement(51.0, 1.2), control=True),
    )
    return OptimizationResult(
        strategy="coordinate", quick=True, identity=identity(model_path), model_name="Mistral 7B Instruct",
        n_layers=32, start_point=START, best_point=best, base_config=base,
        best_config=config_for(base, best, n_layers=32), best_affinity=(),
        before=measurement(51.0, 1.2), after=measurement(62.5, 0.8) if improved else measurement(51.0, 1.2),
        trials=trials, thresholds=Thresholds(0.03, 0.05), drift=-0.01, wall_s=41.0, words_per_token=0.65,
        notes_fr=("1 réglage a été écarté : le modèle s'y arrêtait, manquait de mémoire, chargeait trop la "
                  "carte graphique ou était beaucoup trop lent.",),
        free_vram=GPU.memory_free,
    )


def make_summary(model_path: Path, *, gpu: bool = True) -> MachineSummary:
    base = RunnerConfig(str(model_path), n_gpu_layers=-1 if gpu else 0, n_threads=5, n_threads_batch=5)
    return MachineSummary(
        cpu=CPU, gpu=GPU if gpu else None, gpu_note_fr="" if gpu else "pas de carte NVIDIA détectée",
        backend=LlamaBackend(True, "0.3.36", ("cpu", "cuda") if gpu else ("cpu",), gpu),
        model_path=model_path, model_name="Mistral 7B Instruct", model_size=4_370_000_000, n_layers=32,
        head_dim_k=128, base_config=base,
        plan_fr="Le modèle tient entièrement dans la carte graphique (4,6 Go sur 4,6 Go libres) : réponses rapides."
        if gpu else "Pas de carte graphique NVIDIA utilisable : le modèle tourne sur le processeur (5 cœurs), les "
        "réponses seront plus lentes.",
        identity=identity(model_path),
    )


class FakeEngine:
    """An engine that pretends to measure: a few trials with short pauses, cancellable at any moment."""

    def __init__(self, model_path: Path, *, pause_s: float = 0.02, fail: str = "", gpu: bool = True) -> None:
        self.model_path = model_path
        self.pause_s = pause_s
        self.fail = fail
        self.gpu = gpu
        self.runs = 0
        self.cancelled = threading.Event()
        self.running = threading.Event()

    def detect(self) -> MachineSummary:
        return make_summary(self.model_path, gpu=self.gpu)

    def estimate_seconds(self, *, quick: bool) -> float:
        return 45.0 if quick else 150.0

    def run(self, *, quick: bool, on_progress: ProgressCallback | None, cancel: threading.Event) -> OptimizationResult:
        from tray_app.benchmark.engine import BenchmarkError

        self.runs += 1
        self.running.set()
        result = make_result(self.model_path)
        tracker = ProgressTracker(on_progress, seconds_per_trial_guess=8.0)
        for trial in result.trials:
            tracker.on_step(trial.number, len(result.trials), trial.point, trial.control)
            for sub in ("Chargement du modèle", "Échauffement", "Mesure 1 sur 2"):
                tracker.on_detail(sub)
                deadline = time.monotonic() + self.pause_s
                while time.monotonic() < deadline:
                    if cancel.wait(0.005):
                        self.cancelled.set()
                        raise BenchmarkCancelled()
            tracker.on_trial(trial, len(result.trials))
            if self.fail and trial.number == 2:
                raise BenchmarkError(self.fail)
        tracker.finish()
        return result
