"""llama.cpp's fit rule for one GPU and a context set by the user, applied by us (:mod:`.fit_probe`).

The rule: the free memory llama.cpp sees minus 1 GiB (``--fit-target``) is the target; keep the most
layers whose device memory (model + KV cache + compute buffer, from llama.cpp's own dry run) stays under
it. llama.cpp searches by false position; a binary search gives the same answer while memory grows with
layers. Applied beside llama.cpp's own answer, it shows *why* llama.cpp answers what it does.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.gpu_vram import GIB

FIT_MARGIN = GIB  # llama.cpp's default --fit-target


def most_layers_under(target: int, n_max: int, memory_for: Callable[[int], int]) -> tuple[int, int, int]:
    """(layers, their memory, evaluations): the most layers in 0..n_max whose memory stays ≤ target.

    ``memory_for`` is assumed to grow with the layers (binary search); 0 layers is the floor. Each
    evaluation may cost a dry run (a model load), hence the cache and the search rather than a scan.
    """
    cache: dict[int, int] = {}

    def mem(k: int) -> int:
        if k not in cache:
            cache[k] = memory_for(k)
        return cache[k]

    if mem(n_max) <= target:
        return n_max, mem(n_max), len(cache)
    lo, hi = 0, n_max  # mem(hi) > target; lo is the answer when nothing above fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mem(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo, mem(lo), len(cache)
