"""The settings a runner process is started with: what the memory plan decides, what the wizard tunes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# ggml_type numbers (ggml.h) for the KV cache types a plan may choose: the runner's command line and the
# dry-run probe pass them as such.
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30, "iq4_nl": 20}


@dataclass(frozen=True)
class RunnerConfig:
    model_path: str
    n_gpu_layers: int = 0  # -1 = every layer
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int = 4
    n_threads_batch: int = 4
    type_k: str = "f16"  # KV cache type: f16, q8_0, q4_0
    type_v: str = "f16"
    flash_attn: bool = False

    def with_changes(self, **changes: Any) -> RunnerConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
