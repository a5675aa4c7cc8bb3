"""What one configuration measured: per-request figures, their median and spread, memory peaks, failure.

A :class:`Measurement` is frozen and JSON-friendly (:meth:`to_dict` / :meth:`from_dict`): results files,
``bench --json`` and the wizard's details table all read the same object.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def relative_spread(values: Sequence[float]) -> float | None:
    """(max − min) / median: 0.05 means the runs differed by 5 %. None with fewer than two values."""
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid > 0 else None


@dataclass(frozen=True)
class Measurement:
    """Figures of one configuration; ``stable`` is False when it crashed, ran out of memory or was unsafe.

    Speeds are medians over the measured requests; ``*_samples`` keep each request's value.
    ``failure_fr`` says in French why an unstable configuration was rejected; ``failure_kind`` is the
    runner's :class:`~tray_app.host.runner_errors.FailureKind` value (or ``"unsafe"``, ``"request"``).
    """

    stable: bool
    gen_samples: tuple[float, ...] = ()  # generated tokens per second, one per request
    ttft_samples: tuple[float, ...] = ()  # seconds from sending the request to the first token
    prompt_samples: tuple[float, ...] = ()  # prompt tokens read per second
    prompt_tokens: int = 0  # of the measured conversations (mean)
    generated_tokens: int = 0  # per measured request
    load_s: float | None = None  # runner start to ready
    wall_s: float = 0.0  # everything for this configuration, start to stop
    peak_ram: int | None = None  # bytes, RSS of the runner's process tree
    peak_vram: int | None = None  # bytes used by the runner on the GPU; None without GPU
    peak_vram_device: int | None = None  # bytes used on the whole card at the peak
    other_cpu_percent: float | None = None  # CPU used by other programs during the requests (0-100)
    cpu_mhz: float | None = None  # median CPU frequency during the requests, where the OS says
    gpu_throttle: int = 0  # NVML clocks-event bits seen during the requests (idle excluded)
    runner: int | None = None  # which runner process measured it: equal numbers, the same process in turn
    text: str = field(default="", repr=False)  # one generated answer (for the words-per-token ratio)
    failure_kind: str = ""
    failure_fr: str = ""

    # -- summaries --------------------------------------------------------------------------------
    @property
    def gen_tps(self) -> float | None:
        return median(self.gen_samples)

    @property
    def ttft_s(self) -> float | None:
        return median(self.ttft_samples)

    @property
    def prompt_tps(self) -> float | None:
        return median(self.prompt_samples)

    @property
    def gen_spread(self) -> float | None:
        return relative_spread(self.gen_samples)

    @property
    def ttft_spread(self) -> float | None:
        return relative_spread(self.ttft_samples)

    @property
    def drift(self) -> float | None:
        """Relative change from the first to the last measured request (negative: slowing down)."""
        g = self.gen_samples
        return (g[-1] - g[0]) / g[0] if len(g) >= 2 and g[0] > 0 else None

    @classmethod
    def failed(cls, kind: str, message_fr: str, **figures: Any) -> Measurement:
        return cls(stable=False, failure_kind=kind, failure_fr=message_fr, **figures)

    def pooled_with(self, other: Measurement) -> Measurement:
        """This measurement and a later one of the same configuration as one (samples put together)."""
        if not (self.stable and other.stable):
            return self if self.stable else other
        return Measurement(
            stable=True,
            gen_samples=self.gen_samples + other.gen_samples,
            ttft_samples=self.ttft_samples + other.ttft_samples,
            prompt_samples=self.prompt_samples + other.prompt_samples,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
            load_s=self.load_s,
            wall_s=self.wall_s + other.wall_s,
            peak_ram=_max(self.peak_ram, other.peak_ram),
            peak_vram=_max(self.peak_vram, other.peak_vram),
            peak_vram_device=_max(self.peak_vram_device, other.peak_vram_device),
            other_cpu_percent=_max(self.other_cpu_percent, other.other_cpu_percent),
            cpu_mhz=other.cpu_mhz if other.cpu_mhz is not None else self.cpu_mhz,
            gpu_throttle=self.gpu_throttle | other.gpu_throttle,
            runner=self.runner if self.runner == other.runner else None,
            text=self.text,
        )

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("gen_samples", "ttft_samples", "prompt_samples"):
            data[key] = list(data[key])
        data.update(
            gen_tps=self.gen_tps, ttft_s=self.ttft_s, prompt_tps=self.prompt_tps, gen_spread=self.gen_spread,
            drift=self.drift,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("gen_samples", "ttft_samples", "prompt_samples"):
            values[key] = tuple(float(x) for x in values.get(key, ()))
        return cls(**values)


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
