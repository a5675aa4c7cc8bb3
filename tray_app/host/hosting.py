"""From the settings to a running host: which model, which memory plan, supervisor and gateway together.

Used by ``serve``, ``self-test`` and the tray. The memory planner (``tray_app.planning.memory_plan``)
decides GPU layers, context and threads and gives the fallback ladder; when it cannot be used the model
runs on the CPU with the thread rule, and the planner-free ladder (:func:`default_ladder`) applies.
On top of either, the settings « Optimiser » measured and applied for this model file are used
(:func:`tray_app.planning.applied_tuning.tuned_config`; its rules keep the memory plan's safety).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tray_app.hardware.affinity import pin_processes
from tray_app.hardware.cpu import detect_cpu
from tray_app.hardware.gpu import NvmlReader
from tray_app.hardware.threads import recommend_threads
from tray_app.host.fallback import FallbackStep, Ladder, default_ladder, ladder_from_plans
from tray_app.host.gateway import DEFAULT_API_PORT, Gateway, GatewayOptions
from tray_app.host.host_state import EventKind, HostEvent, HostState
from tray_app.host.runner import model_id_for
from tray_app.host.supervisor import DEFAULT_KEEP_ALIVE_S, Supervisor
from tray_app.monitoring.history import OtherVramUse
from tray_app.paths import app_paths
from tray_app.planning.applied_tuning import load_tuning, tuned_config
from tray_app.planning.gpu_plan import CardView
from tray_app.planning.runner_config import RunnerConfig
from tray_app.settings import Settings

log = logging.getLogger(__name__)

RUNNER_LOG_NAME = "runner.log"


class ModelChoiceError(Exception):
    """The chosen model cannot be used; ``message_fr`` says why and what to do."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


@dataclass(frozen=True)
class HostPlan:
    model_path: Path
    config: RunnerConfig
    ladder: Ladder
    explanation_fr: str  # one or two French sentences: where the model runs and why
    planner: str  # "memory_plan" or "cpu_rule"
    plan: Any = None  # the MemoryPlan when the planner made it
    cpu_affinity: tuple[int, ...] = ()  # logical CPUs « Optimiser » pinned the runner to; () for none
    tuned: bool = False  # the configuration includes the settings « Optimiser » applied
    measured_gen_tps: float | None = None  # generation speed « Optimiser » measured with them


def choose_model(cli_value: str | None, settings: Settings) -> Path:
    """The model file: the command line's, else the « Fichier du modèle » setting, else the demo model."""
    choice = cli_value or settings.values.model_path
    from tray_app.models.discovery import resolve_model_path
    from tray_app.models.gguf_info import ModelFileError

    try:
        return resolve_model_path(choice)
    except ModelFileError as exc:
        raise ModelChoiceError(exc.message_fr) from exc


def plan_host(
    model_path: Path,
    settings: Settings,
    *,
    wanted_ctx: int | None = None,
    nvml: NvmlReader | None = None,
    others: OtherVramUse | None = None,
) -> HostPlan:
    """Read the model, measure the machine, make the plan. Raises :class:`ModelChoiceError`.

    ``nvml``: the program's shared reader (the monitor reads it too); without one, NVML is opened for this
    plan and closed. ``others``: what the other programs used on the card lately (the monitor's history;
    the margin is sized from it). Reads NVML and may run llama.cpp's dry run in a probe process (seconds
    the first time for a model and context, then cached): call it off the UI thread.
    """
    from tray_app.models.gguf_info import ModelFileError, read_model_info

    ctx = wanted_ctx or settings.values.context_size
    threads_override = settings.values.threads
    cores_left = settings.values.cores_left_for_avatar
    try:
        info = read_model_info(model_path)
    except ModelFileError as exc:
        raise ModelChoiceError(exc.message_fr) from exc
    cpu = detect_cpu()
    try:
        from tray_app.hardware.gpu_calibration import CalibrationBook
        from tray_app.hardware.llama_backend import detect_llama_backend
        from tray_app.planning.gpu_plan import default_cache, plan_on_this_machine
        from tray_app.planning.memory_plan import safer_plans

        card = read_card(nvml)
        free_vram = card.free
        backend = detect_llama_backend(ask_library=False)  # no llama_cpp import in this process
        plan, _timing = plan_on_this_machine(
            info,
            card=card,
            backend=backend,
            cpu=cpu,
            calibration=CalibrationBook.from_settings(settings),
            cache=default_cache(app_paths().cache_dir),
            wanted_ctx=ctx,
            cores_left_for_avatar=cores_left,
            threads_override=threads_override,
            others=others,
        )
    except Exception:  # the planner is a refinement: never fail hosting because of it
        log.exception("memory plan failed; running on the CPU")
    else:
        ladder_plans = safer_plans(plan)

        def ladder(base: RunnerConfig) -> list[FallbackStep]:
            return ladder_from_plans(ladder_plans, str(model_path), base)

        base = HostPlan(model_path, plan.to_runner_config(model_path), ladder, plan.explain_fr(), "memory_plan", plan)
        return _with_tuning(base, settings, free_vram)
    advice = recommend_threads(cpu, gpu_offload_fraction=0.0, cores_left_for_avatar=cores_left)
    threads = threads_override or advice.threads
    n_ctx = min(ctx, info.n_ctx_train) if getattr(info, "n_ctx_train", 0) else ctx
    config = RunnerConfig(
        model_path=str(model_path), n_gpu_layers=0, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads
    )
    base = HostPlan(
        model_path, config, default_ladder, f"Le modèle tourne sur le processeur ({threads} cœurs).", "cpu_rule"
    )
    return _with_tuning(base, settings, None)


def _with_tuning(base: HostPlan, settings: Settings, free_vram: int | None) -> HostPlan:
    """``base`` with the settings « Optimiser » applied for this model file, when there are some."""
    tuning = load_tuning(settings, base.model_path)
    if tuning is None:
        return base
    config = tuned_config(base.config, settings, base.model_path, free_vram=free_vram)
    log.info("optimised settings applied: %s", config.to_dict())
    return replace(
        base,
        config=config,
        explanation_fr=f"{base.explanation_fr} Réglages mesurés par « Optimiser » appliqués.",
        cpu_affinity=tuning.cpu_affinity,
        tuned=True,
        measured_gen_tps=tuning.gen_tps if tuning.gen_tps > 0 else None,
    )


def read_card(nvml: NvmlReader | None) -> CardView:
    """The first NVIDIA card as NVML sees it now (free memory None: no usable card)."""
    reader = nvml or NvmlReader()
    try:
        gpus = reader.read()
    finally:
        if nvml is None:
            reader.close()
    if not gpus:
        return CardView(None, None)
    gpu = gpus[0]
    return CardView(gpu.memory_free, gpu.memory_total, gpu.name, gpu.driver_version)


def keep_alive_from(settings: Settings) -> float:
    """« Garder le modèle en mémoire » in seconds (−1: always)."""
    return float(int(settings.values.keep_alive))  # one of the setting's choices: a number


class Host:
    """A supervisor and its gateway, started and closed together."""

    def __init__(
        self,
        plan: HostPlan,
        *,
        port: int = DEFAULT_API_PORT,
        allow_other_port: bool = True,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        load_timeout_s: float = 300.0,
        log_file: Path | None = None,
    ) -> None:
        self.plan = plan
        self.supervisor = Supervisor(
            plan.config,
            ladder=plan.ladder,
            keep_alive_s=keep_alive_s,
            load_timeout_s=load_timeout_s,
            log_file=log_file or app_paths().log_dir / RUNNER_LOG_NAME,
        )
        self.gateway = Gateway(self.supervisor, GatewayOptions(port=port, allow_other_port=allow_other_port))
        self.supervisor.add_listener(self._pin_when_ready)

    def use_plan(self, plan: HostPlan) -> None:
        """Another model or configuration: used from the next load (at once when the model is loaded)."""
        self.plan = plan
        self.gateway.model_id = model_id_for(plan.model_path)
        self.supervisor.configure(plan.config, plan.ladder)

    def _pin_when_ready(self, event: HostEvent) -> None:
        """The runner is ready: pin it to the CPUs « Optimiser » chose (its threads exist by now; on Linux
        the ones created later inherit the mask, on Windows the process mask covers them all)."""
        affinity = self.plan.cpu_affinity
        ready = event.kind is EventKind.STATE and event.state is HostState.READY
        if affinity and ready and pin_processes(self.supervisor.status().pids, affinity):
            log.info("runner pinned to logical CPUs %s", list(affinity))

    def start(self) -> str:
        """Start listening (the model loads on the first request). Raises ``PortUnavailable``."""
        try:
            return self.gateway.start()
        except Exception:
            self.supervisor.close()
            raise

    def close(self) -> None:
        self.gateway.close()
        self.supervisor.close()
