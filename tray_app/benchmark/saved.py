"""« Appliquer », the results file, and when to propose « Optimiser » (first start, machine changed).

* :func:`apply_result` saves the tuning in the settings (``optimized_config``; the hand-set
  « Cœurs du processeur » goes back to « Automatique » so the measured value is used) and the whole
  result, with the machine's identity, in ``<data_dir>/optimisation.json``. Nothing else writes either.
* :func:`needs_reoptimization` says, in French, why the applied optimisation may be out of date (other
  CPU, GPU, driver, model file or engine version), or None.
* :func:`should_offer_optimization` / :func:`mark_optimization_offered`: the very first start proposes
  « Optimiser » once (setting ``optimize_offered``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tray_app.benchmark.identity import MachineIdentity, changes_fr, current_identity
from tray_app.hardware.gpu import NvmlReader
from tray_app.paths import AppPaths
from tray_app.planning.applied_tuning import SETTING_KEY, Tuning, load_tuning
from tray_app.settings import Settings

if TYPE_CHECKING:  # the tray imports this module at start-up; the results' classes load with the wizard
    from tray_app.benchmark.result import OptimizationResult

log = logging.getLogger(__name__)

# What the tray says at the very first start (a notification or a question with « Optimiser… »).
FIRST_RUN_OFFER_FR = (
    "Desktop-Mate peut mesurer cet ordinateur et choisir les réglages qui font répondre votre avatar le "
    "plus vite (environ une minute). Lancer « Optimiser » maintenant ?"
)
RESULTS_FILE = "optimisation.json"
RESULTS_VERSION = 1
OFFERED_KEY = "optimize_offered"


def results_path(paths: AppPaths) -> Path:
    return paths.data_dir / RESULTS_FILE


def apply_result(result: OptimizationResult, settings: Settings, paths: AppPaths) -> Tuning:
    """Save ``result`` as the settings the host uses from its next load. Raises OSError (disk full…)."""
    tuning = tuning_from_result(result)
    document = {
        "version": RESULTS_VERSION,
        "identity": result.identity.to_dict(),
        "tuning": json.loads(tuning.to_json()),
        "result": result.to_dict(),
    }
    path = results_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    settings.set(SETTING_KEY, tuning.to_json())
    settings.set("threads", 0)  # « Automatique »: the measured value applies
    settings.set(OFFERED_KEY, True)
    settings.save()
    log.info("optimisation applied: %s", tuning.to_json())
    return tuning


def load_saved_identity(paths: AppPaths) -> MachineIdentity | None:
    """The identity saved with the applied result; None when the file is missing or damaged."""
    try:
        document = json.loads(results_path(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return MachineIdentity.from_dict(document.get("identity") if isinstance(document, dict) else None)


def needs_reoptimization(
    settings: Settings, paths: AppPaths, *, identity: MachineIdentity | None = None, nvml: NvmlReader | None = None
) -> str | None:
    """Why « Optimiser » should run again (one French sentence), or None.

    None when nothing was ever applied (the first-start proposal covers that) or nothing changed.
    ``identity`` is this machine now; when omitted it is read (NVML: call off the UI thread).
    """
    tuning = load_tuning(settings)
    if tuning is None:
        return None
    saved = load_saved_identity(paths)
    if identity is None:
        from tray_app.host.hosting import ModelChoiceError, choose_model

        try:
            model = choose_model(None, settings)
        except ModelChoiceError:
            return None  # no usable model: that problem is told elsewhere
        identity = current_identity(model, nvml=nvml)
    if saved is None:
        return (
            "Les mesures de la dernière optimisation sont introuvables : relancez « Optimiser » pour "
            "retrouver les meilleurs réglages."
        )
    changes = changes_fr(saved, identity)
    if not changes:
        return None
    what = ", ".join(changes)
    return (
        f"Depuis la dernière optimisation, {what}. Relancez « Optimiser » pour retrouver les réglages "
        "les plus rapides."
    )


def should_offer_optimization(settings: Settings) -> bool:
    """True at the very first start: never proposed, never applied."""
    return not settings.values.optimize_offered and not settings.values.optimized_config


def mark_optimization_offered(settings: Settings) -> None:
    """Remember the proposal was made (whatever the answer), so it is never made again."""
    settings.set(OFFERED_KEY, True)
    settings.save()


def tuning_from_result(result: Any) -> Tuning:
    """The tuning « Appliquer » saves for an :class:`~tray_app.benchmark.result.OptimizationResult`."""
    c = result.best_config
    gpu = result.best_point.get("gpu_layers") is not None
    return Tuning(
        model_path=result.identity.model_path,
        model_size=result.identity.model_size,
        n_threads=c.n_threads,
        n_threads_batch=c.n_threads_batch,
        n_batch=c.n_batch,
        n_ubatch=c.n_ubatch,
        n_ctx=c.n_ctx,
        type_k=c.type_k,
        type_v=c.type_v,
        flash_attn=c.flash_attn,
        n_gpu_layers=c.n_gpu_layers if gpu else None,
        free_vram=result.free_vram if gpu else None,
        cpu_affinity=tuple(result.best_affinity),
        gen_tps=float(result.after.gen_tps or 0.0),
        measured_at=float(result.finished_at),
    )
