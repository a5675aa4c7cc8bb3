"""What one case gives: the plan's prediction, llama.cpp's fit, the measurement, and the error.

Plain dataclasses, written to the JSON as they are (:meth:`CaseResult.to_dict`) and read back for
``--resume`` (:meth:`CaseResult.from_dict`), so that a run cut by a time limit loses nothing. The derived
figures (error, tolerance) are properties, recomputed rather than stored as truth. llama.cpp's own buffer
sizes come from its log (:func:`tray_app.hardware.llama_buffers.parse_buffer_sizes`): what the engine
allocated, beside what NVML saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from benchmarks.gpu_vram import MIB

TOLERANCE_FRACTION = 0.05
TOLERANCE_BYTES = 256 * MIB


@dataclass
class Prediction:
    """The plan: what it puts on the GPU and what it predicts the runner takes there (bytes)."""

    mode: str  # gpu, partial, cpu
    n_layers: int
    offloaded: int  # llama.cpp's count: repeating layers on the GPU + 1 for the output layer
    n_gpu_layers: int  # what the runner is started with (-1 = all)
    threads: int
    n_ubatch: int
    free_vram: int  # what make_plan was given
    total_vram: int  # the card size make_plan was told
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    margin: int
    dry_run: int | None = None  # llama.cpp's dry run: device bytes at the plan's layers (None: formula plan)
    source: str = ""  # where the weights/KV/compute above come from: "llama.cpp" (dry run) or "formule"

    @property
    def used(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


@dataclass
class FitResult:
    """llama.cpp's own fit for the same free memory, and our emulation of it (:mod:`.fit_probe`)."""

    offloaded: int = 0  # llama.cpp's n_gpu_layers answer, 0..n_layers+1 (``method`` says whose)
    method: str = ""  # common_fit_params (llama.cpp's own, called) or emulated (when it cannot be called)
    emulated: int = 0  # the emulation's answer, for comparison with llama.cpp's own
    free_seen: int = 0  # free VRAM as llama.cpp sees it in its own process (after its CUDA context)
    free_source: str = ""  # ggml_backend_dev_memory, or nvml when that call is not available
    target: int = 0  # free_seen − 1 GiB
    projected: int = 0  # device memory the emulation projects for its answer
    dry_runs: int = 0
    at_plan: dict[str, int] = field(default_factory=dict)  # model/kv/compute at the plan's layers
    note: str = ""  # why llama.cpp's own fit could not be called
    error: str = ""


@dataclass
class Measurement:
    """NVML and llama.cpp's log while the runner ran (bytes; None where not measured)."""

    method: str = ""  # pid, new-process, card-delta: how the runner's own VRAM was found (runner_vram's "how")
    after_load: int | None = None  # the runner's VRAM once loaded
    peak: int | None = None  # its peak while answering
    card_used_before: int | None = None  # the whole card before the runner started
    card_after_load: int | None = None
    card_peak: int | None = None
    buffers: dict[str, dict[str, int]] = field(default_factory=dict)  # llama.cpp: name -> kind -> bytes
    load_s: float | None = None
    prompt_tokens: int | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    ttft_s: float | None = None


@dataclass
class CaseResult:
    case: str
    model: str
    model_name: str
    ctx: int
    budget: str
    card_total: int
    holder: dict[str, Any] = field(default_factory=dict)
    prediction: Prediction | None = None
    fit: FitResult | None = None
    measured: Measurement | None = None
    oom: bool = False
    error: str = ""

    # -- derived ----------------------------------------------------------------------------------
    @property
    def measured_bytes(self) -> int | None:
        return self.measured.peak if self.measured is not None else None

    @property
    def error_bytes(self) -> int | None:
        if self.prediction is None or self.measured_bytes is None:
            return None
        return self.prediction.used - self.measured_bytes

    @property
    def error_fraction(self) -> float | None:
        err, measured = self.error_bytes, self.measured_bytes
        if err is None or not measured:
            return None
        return err / measured

    @property
    def within_tolerance(self) -> bool | None:
        if self.error_bytes is None or self.measured_bytes is None:
            return None
        return within_tolerance(self.prediction.used if self.prediction else 0, self.measured_bytes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        """Back from :meth:`to_dict` (``--resume``); derived figures are recomputed, not read."""

        def build(kind: type, value: Any) -> Any:
            if value is None:
                return None
            names = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in value.items() if k in names})

        result = cls(**{k: data[k] for k in ("case", "model", "model_name", "ctx", "budget", "card_total")})
        result.holder = dict(data.get("holder") or {})
        result.prediction = build(Prediction, data.get("prediction"))
        result.fit = build(FitResult, data.get("fit"))
        result.measured = build(Measurement, data.get("measured"))
        result.oom, result.error = bool(data.get("oom")), str(data.get("error") or "")
        return result

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.prediction is not None:
            data["prediction"]["used"] = self.prediction.used
        data["error_bytes"] = self.error_bytes
        data["error_fraction"] = self.error_fraction
        data["within_tolerance"] = self.within_tolerance
        return data


def within_tolerance(predicted: int, measured: int) -> bool:
    """Within ±5 % of the measurement or ±256 MiB, whichever is larger."""
    return abs(predicted - measured) <= max(TOLERANCE_BYTES, TOLERANCE_FRACTION * measured)

