"""The settings a runner process is started with: what the memory plan decides, what the wizard tunes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


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
