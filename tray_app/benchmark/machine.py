"""What the benchmark starts from: the detected machine, the model and today's settings (the memory plan).

One call (:func:`detect_machine`), off the UI thread: it reads the CPU topology, NVML and the model's
header, and asks the host for the configuration it would use now (``plan_host``: the memory plan, the
user's settings and any applied optimisation). The wizard's second page shows this summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tray_app.benchmark.identity import MachineIdentity, current_identity
from tray_app.hardware.cpu import CpuInfo, detect_cpu
from tray_app.hardware.gpu import NO_NVIDIA_GPU, GpuReading, NvmlReader
from tray_app.hardware.llama_backend import LlamaBackend, detect_llama_backend
from tray_app.planning.runner_config import RunnerConfig
from tray_app.planning.vram_estimate import safety_margin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MachineSummary:
    cpu: CpuInfo
    gpu: GpuReading | None  # the first NVIDIA GPU, None without one
    gpu_note_fr: str  # why no GPU is used (« pas de carte NVIDIA détectée »…), "" when it is
    backend: LlamaBackend
    model_path: Path
    model_name: str
    model_size: int
    n_layers: int
    head_dim_k: int
    base_config: RunnerConfig  # what the program uses today: the search starts here
    plan_fr: str  # the plan's explanation, in French
    identity: MachineIdentity

    @property
    def gpu_usable(self) -> bool:
        """A GPU to measure on: there is one, the engine can use it, and its free memory is known."""
        return self.gpu is not None and self.backend.gpu_offload and self.gpu.memory_free is not None

    @property
    def vram_limit(self) -> int | None:
        """Bytes used on the whole card above which a configuration counts as unsafe."""
        if self.gpu is None or not self.gpu.memory_total or self.gpu.memory_free is None:
            return None
        return self.gpu.memory_total - safety_margin(self.gpu.memory_free, self.gpu.memory_total)

    @property
    def quantized_kv_ok(self) -> bool:
        """q8_0 cache blocks (32 values) must divide a head's width, or llama.cpp refuses the context."""
        return self.head_dim_k > 0 and self.head_dim_k % 32 == 0

    def to_dict(self) -> dict[str, Any]:
        cpu = self.cpu
        return {
            "cpu": {
                "model": cpu.model,
                "physical_cores": cpu.physical_cores,
                "logical_cpus": cpu.logical_cpus,
                "performance_cores": cpu.performance_cores,
                "efficiency_cores": cpu.efficiency_cores,
                "ram_total": cpu.ram_total,
            },
            "gpu": None
            if self.gpu is None
            else {
                "name": self.gpu.name,
                "driver": self.gpu.driver_version,
                "memory_total": self.gpu.memory_total,
                "memory_free": self.gpu.memory_free,
            },
            "gpu_usable": self.gpu_usable,
            "gpu_note": self.gpu_note_fr,
            "engine": self.backend.summary,
            "model": {"path": str(self.model_path), "name": self.model_name, "size": self.model_size,
                      "n_layers": self.n_layers},
            "base_config": self.base_config.to_dict(),
            "plan": self.plan_fr,
            "identity": self.identity.to_dict(),
        }


def detect_machine(model_path: Path, settings: Any, *, nvml: NvmlReader | None = None) -> MachineSummary:
    """Detect everything the benchmark needs. Raises ``ModelChoiceError`` (French) for an unusable model."""
    from tray_app.host.hosting import ModelChoiceError, plan_host
    from tray_app.models.gguf_info import ModelFileError, read_model_info

    try:
        info = read_model_info(model_path)
    except ModelFileError as exc:
        raise ModelChoiceError(exc.message_fr) from exc
    host_plan = plan_host(model_path, settings)
    cpu = detect_cpu()
    reader = nvml or NvmlReader()
    try:
        readings = reader.read()
    except Exception:  # a broken driver: measure on the processor, say why in the log
        log.exception("reading the GPU failed")
        readings = ()
    gpu = readings[0] if readings else None
    backend = detect_llama_backend(ask_library=False)
    if gpu is None:
        note = reader.unavailable_reason or NO_NVIDIA_GPU
    elif not backend.gpu_offload:
        note = "le moteur installé ne sait pas utiliser la carte graphique"
    elif gpu.memory_free is None:
        note = "la carte ne dit pas combien de mémoire est libre : le modèle reste sur le processeur"
    else:
        note = ""
    identity = current_identity(model_path, cpu_model=cpu.model, nvml=reader, llama_cpp_version=backend.version)
    if nvml is None:
        reader.close()
    return MachineSummary(
        cpu=cpu,
        gpu=gpu,
        gpu_note_fr=note,
        backend=backend,
        model_path=Path(model_path),
        model_name=info.name,
        model_size=info.file_size,
        n_layers=info.n_layers,
        head_dim_k=info.head_dim_k,
        base_config=host_plan.config,
        plan_fr=host_plan.explanation_fr,
        identity=identity,
    )
