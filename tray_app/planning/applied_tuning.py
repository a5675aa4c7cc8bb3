"""The applied optimisation: what « Appliquer » saved, and how the plan uses it at the next load.

Stored as JSON in the ``optimized_config`` setting (empty = never optimised), for one model file. The
host's plan calls :func:`tuned_config` on the configuration the memory plan gives it (``benchmark.saved``
makes a :class:`Tuning` from a measurement)::

    config = plan.to_runner_config(model_path)
    config = tuned_config(config, settings, model_path, free_vram=free_vram)   # ← the one line to add
    # after starting the runner, when tuning.cpu_affinity: pin_processes(runner.pids(), tuning.cpu_affinity)

Rules (safety first):

* The tuning is used only for the model file it was measured with (same path and size).
* Threads, prompt threads, batch size, KV cache type and flash attention are taken as measured; the
  « Cœurs du processeur » setting, when set by hand (not 0), still wins for threads. Thread counts are
  capped to this machine's logical CPUs.
* GPU layers: fewer layers than the plan are always taken (measured faster, and safe); more layers than
  the plan only when each layer needs no more graphics memory than when they were measured (a context
  no longer than the measured one, a KV cache no bigger per token) and at least as much graphics memory
  is free now as then: after the user raises « Mémoire de conversation », the old layer count with a
  bigger KV cache would run out of memory, or on Windows silently spill into shared memory. A tuning
  saved before the context was recorded never gives more layers than the plan. When the plan runs on
  the processor only (no GPU, or a fallback), it stays so.
* The batch size never exceeds the context.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tray_app.planning.runner_config import RunnerConfig
from tray_app.planning.vram_estimate import KV_TYPES as KV_BYTES
from tray_app.settings import Settings

log = logging.getLogger(__name__)

SETTING_KEY = "optimized_config"  # the setting « Appliquer » writes (SettingValues.optimized_config)
KV_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class Tuning:
    model_path: str
    model_size: int
    n_threads: int
    n_threads_batch: int
    n_batch: int
    n_ubatch: int
    n_ctx: int | None  # the context the GPU layers were measured with; None in tunings saved before it was kept
    type_k: str
    type_v: str
    flash_attn: bool
    n_gpu_layers: int | None  # llama.cpp's value (−1 = all); None when measured without a GPU
    free_vram: int | None  # free graphics memory when the GPU layers were measured
    cpu_affinity: tuple[int, ...]  # logical CPUs to pin the runner to; () for none
    gen_tps: float  # measured generation speed: the gauges can tell a collapse (VRAM overflow) from it
    measured_at: float  # time.time()

    def to_json(self) -> str:
        data = asdict(self)
        data["cpu_affinity"] = list(self.cpu_affinity)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Tuning | None:
        """The tuning in ``text``, or None (logged) when it is empty or not a valid tuning."""
        if not text:
            return None
        try:
            data = json.loads(text)
            values = {f.name: data[f.name] for f in fields(cls) if f.name != "n_ctx"}
            values["n_ctx"] = data.get("n_ctx")  # absent from older saves: unknown
            values["cpu_affinity"] = tuple(int(c) for c in values["cpu_affinity"])
            tuning = cls(**values)
            tuning.check()
            return tuning
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("optimized_config setting ignored (%s)", exc)
            return None

    def check(self) -> None:
        """Raise ValueError when a value could not come from a measurement."""
        ints = (self.model_size, self.n_threads, self.n_threads_batch, self.n_batch, self.n_ubatch)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise ValueError("integer fields expected")
        if min(self.n_threads, self.n_threads_batch, self.n_batch, self.n_ubatch) < 1:
            raise ValueError("counts must be positive")
        n_ctx = self.n_ctx
        if n_ctx is not None and (not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 1):
            raise ValueError("bad n_ctx")
        if self.type_k not in KV_TYPES or self.type_v not in KV_TYPES or not isinstance(self.flash_attn, bool):
            raise ValueError("unknown KV cache type")
        if self.type_v != "f16" and not self.flash_attn:
            raise ValueError("a quantised V cache needs flash attention")
        if self.n_gpu_layers is not None and (not isinstance(self.n_gpu_layers, int) or self.n_gpu_layers < -1):
            raise ValueError("bad n_gpu_layers")
        if not isinstance(self.model_path, str) or not isinstance(self.gen_tps, (int, float)):
            raise ValueError("bad model path or speed")

    def matches_model(self, model_path: Path | str) -> bool:
        try:
            same = Path(self.model_path).resolve() == Path(model_path).resolve()
            return same and os.path.getsize(model_path) == self.model_size
        except OSError:
            return False


def load_tuning(settings: Settings, model_path: Path | str | None = None) -> Tuning | None:
    """The applied tuning, if any (and, with ``model_path``, only when it was measured for that file)."""
    tuning = Tuning.from_json(settings.values.optimized_config)
    if tuning is not None and model_path is not None and not tuning.matches_model(model_path):
        log.info("optimisation measured for %s, not %s: not used", tuning.model_path, model_path)
        return None
    return tuning


def apply_tuning(
    base: RunnerConfig,
    tuning: Tuning | None,
    *,
    free_vram: int | None = None,
    manual_threads: int = 0,
    logical_cpus: int | None = None,
) -> RunnerConfig:
    """``base`` (the memory plan's configuration) with the measured settings (see the module rules)."""
    if tuning is None:
        return base
    cap = logical_cpus or os.cpu_count() or 1
    threads = manual_threads if manual_threads > 0 else min(tuning.n_threads, cap)
    threads_batch = max(threads, min(tuning.n_threads_batch, cap)) if manual_threads <= 0 else manual_threads
    batch = min(tuning.n_batch, base.n_ctx)
    changes: dict[str, Any] = dict(
        n_threads=threads,
        n_threads_batch=threads_batch,
        n_batch=batch,
        n_ubatch=min(tuning.n_ubatch, batch),
        type_k=tuning.type_k,
        type_v=tuning.type_v,
        flash_attn=tuning.flash_attn,
    )
    config = base.with_changes(**changes)
    layers = _gpu_layers(base.n_gpu_layers, config, tuning, free_vram)
    return config if layers is None else config.with_changes(n_gpu_layers=layers)


def _gpu_layers(planned: int, config: RunnerConfig, tuning: Tuning, free_vram: int | None) -> int | None:
    """The measured layer count when it is safe with ``config`` (what will run), else None (the plan's)."""
    tuned = tuning.n_gpu_layers
    if tuned is None or planned == 0:
        return None  # measured without a GPU, or the plan keeps the card free: unchanged
    big = 1 << 30

    def as_count(n: int) -> int:
        return big if n < 0 else n  # −1 = every layer

    if as_count(tuned) <= as_count(planned):
        return tuned
    if _fits_as_measured(config, tuning, free_vram):
        return tuned
    log.info("optimised GPU layers (%s) not used: more than the plan (%s) and not measured in these conditions",
             tuned, planned)
    return None


def _fits_as_measured(config: RunnerConfig, tuning: Tuning, free_vram: int | None) -> bool:
    """True when ``config`` needs no more graphics memory than when ``tuning``'s layers were measured."""
    if free_vram is None or tuning.free_vram is None or tuning.n_ctx is None:
        return False  # something unknown: no more layers than the plan
    if config.n_ctx > tuning.n_ctx:
        return False  # a longer conversation: a bigger KV cache per layer
    if not (_kv_not_bigger(config.type_k, tuning.type_k) and _kv_not_bigger(config.type_v, tuning.type_v)):
        return False
    return free_vram >= tuning.free_vram


def _kv_not_bigger(now: str, measured: str) -> bool:
    """True when a KV cache element of type ``now`` takes no more bytes than one of type ``measured``."""
    if now not in KV_BYTES or measured not in KV_BYTES:
        return now == measured
    (n_bytes, n_per), (m_bytes, m_per) = KV_BYTES[now], KV_BYTES[measured]
    return n_bytes * m_per <= m_bytes * n_per


def tuned_config(
    base: RunnerConfig, settings: Settings, model_path: Path | str, *, free_vram: int | None = None
) -> RunnerConfig:
    """The host's one call: the applied tuning for ``model_path`` on top of ``base``, if there is one."""
    manual = settings.values.threads
    return apply_tuning(base, load_tuning(settings, model_path), free_vram=free_vram, manual_threads=manual)
