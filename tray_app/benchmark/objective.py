"""Which configuration is better: generation speed first, then time to first token, then graphics memory.

What the avatar's user feels is how fast the answer is written (generated tokens per second): that
comes first. Two configurations whose generation speeds differ by less than the measured noise are a
tie; the tie is broken by the time to first token (prompt reading), then, on a GPU, by the graphics
memory left to the avatar. An unstable configuration (crash, out of memory, too close to a full card)
never wins.

The noise threshold
-------------------
A gain counts only when it is larger than the run-to-run noise of this machine: the median relative
spread ((max − min) / median) of the repeated requests of every configuration measured so far, never
below :data:`MIN_GAIN` (5 %) and never above :data:`MAX_GAIN` (15 %). A busy or throttling machine has
a larger threshold: the search then moves only for clear gains. The floor is there because each
configuration runs in a new process: two processes of the same configuration differ more (about ±4 %
measured on the demo model) than the requests within one process.

Settings that only change how the prompt is read (batch size, prompt threads) cannot change the
generation speed; a difference there is noise. They are judged on the time to first token alone
(``prompt_only``), provided generation does not get slower than the threshold.

A tie-break may cost at most half the threshold in generation speed (generation comes first), and to
keep tie-breaks from drifting (each accepted tie a little slower than the last), a configuration is
only accepted when its generation speed stays within the threshold of the fastest one seen so far.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from tray_app.benchmark.measurement import Measurement

MIN_GAIN = 0.05
MAX_GAIN = 0.15
MIN_TTFT_GAIN = 0.05
VRAM_GAIN = 0.05


@dataclass(frozen=True)
class Thresholds:
    gen: float = MIN_GAIN  # relative
    ttft: float = MIN_TTFT_GAIN

    @classmethod
    def from_noise(cls, measurements: Iterable[Measurement]) -> Thresholds:
        gen = [m.gen_spread for m in measurements if m.stable and m.gen_spread is not None]
        ttft = [m.ttft_spread for m in measurements if m.stable and m.ttft_spread is not None]
        return cls(
            gen=_clamp(statistics.median(gen), MIN_GAIN, MAX_GAIN) if gen else MIN_GAIN,
            ttft=_clamp(statistics.median(ttft), MIN_TTFT_GAIN, 2 * MAX_GAIN) if ttft else MIN_TTFT_GAIN,
        )


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def better(
    candidate: Measurement,
    incumbent: Measurement,
    thresholds: Thresholds,
    *,
    fastest_gen: float | None = None,
    prompt_only: bool = False,
) -> bool:
    """True when ``candidate`` is clearly better than ``incumbent`` (see the module docstring)."""
    if not candidate.stable or candidate.gen_tps is None:
        return False
    if not incumbent.stable or incumbent.gen_tps is None:
        return True
    a, b = candidate.gen_tps, incumbent.gen_tps
    if a > b * (1 + thresholds.gen) and not prompt_only:
        return True
    if a < b * (1 - thresholds.gen / 2):
        return False  # a tie may cost at most half the noise in generation speed: generation comes first
    if fastest_gen is not None and a < fastest_gen * (1 - thresholds.gen):
        return False
    ta, tb = candidate.ttft_s, incumbent.ttft_s
    if ta is not None and tb is not None:
        if ta < tb * (1 - thresholds.ttft):
            return True
        if ta > tb * (1 + thresholds.ttft):
            return False
    return better_on_vram(candidate, incumbent)


def select_best(measurements: list[Measurement], thresholds: Thresholds) -> int | None:
    """Index of the best of a finished set (the exhaustive grid), or None when none is stable.

    Among the stable ones within the noise of the fastest generation and of the shortest time to first
    token: the fastest generation, unless another one takes clearly less graphics memory.
    """
    stable = [(i, m) for i, m in enumerate(measurements) if m.stable and m.gen_tps is not None]
    if not stable:
        return None
    speed = {i: m.gen_tps or 0.0 for i, m in stable}  # every one measured (filtered just above)
    fastest = max(speed.values())
    close = [(i, m) for i, m in stable if speed[i] >= fastest * (1 - thresholds.gen)]

    ttfts = [m.ttft_s for _, m in close if m.ttft_s is not None]
    if ttfts:
        limit = min(ttfts) * (1 + thresholds.ttft)
        close = [(i, m) for i, m in close if m.ttft_s is None or m.ttft_s <= limit] or close
    chosen = max(close, key=lambda item: item[1].gen_tps or 0.0)
    lighter = [item for item in close if better_on_vram(item[1], chosen[1])]
    return min(lighter, key=lambda item: item[1].peak_vram or 0)[0] if lighter else chosen[0]


def better_on_vram(a: Measurement, b: Measurement) -> bool:
    return bool(a.peak_vram and b.peak_vram and a.peak_vram < b.peak_vram * (1 - VRAM_GAIN))
