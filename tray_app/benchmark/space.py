"""The settings the benchmark explores: a few values per dimension, around the memory plan's choice.

A :class:`Point` is one configuration, as ``dimension name → value``; a :class:`SearchSpace` lists the
dimensions, the start point (what the program would use today) and which points are valid. The search
(:mod:`tray_app.benchmark.search`) only knows points; :func:`config_for` turns one into the runner's
:class:`~tray_app.planning.runner_config.RunnerConfig`.

Dimensions (in the order the search visits them, most important first)
-----------------------------------------------------------------------
``gpu_layers``   layers on the graphics card, only when a GPU is usable; ``n_layers + 1`` = everything
                 (output layer included, llama.cpp's ``-1``). Around the plan: ½, ¾, the plan, halfway
                 to everything, everything. Ordered.
``threads``      generation threads: the plan's value, P-cores − 1, P-cores, every physical core, the
                 logical CPUs of the P-cores (hyper-threads), every logical CPU. Ordered.
``affinity``     hybrid Intel CPUs only: ``""`` (let Windows choose) or ``"p_cores"`` (the runner pinned
                 to the P-cores, so background EcoQoS never moves it to E-cores). Unordered.
``attention``    ``f16`` (no flash attention), ``f16_fa`` (flash attention), ``q8_0_fa`` (flash attention
                 and a q8_0 KV cache: half the cache memory; llama.cpp needs flash attention for it).
``threads_batch`` threads that read the prompt: ``0`` = same as ``threads``, or more (hyper-threads help
                 reading a prompt, not generating). Unordered.
``batch``        ``n_batch = n_ubatch``: tokens read at once (prompt speed and compute-buffer memory).
                 Ordered.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tray_app.hardware.cpu import CpuInfo
from tray_app.planning.runner_config import RunnerConfig

GPU_LAYERS = "gpu_layers"
THREADS = "threads"
AFFINITY = "affinity"
ATTENTION = "attention"
THREADS_BATCH = "threads_batch"
BATCH = "batch"

P_CORES = "p_cores"
ATTENTION_MODES: dict[str, tuple[str, bool]] = {  # name → (KV cache type, flash attention)
    "f16": ("f16", False),
    "f16_fa": ("f16", True),
    "q8_0_fa": ("q8_0", True),
}
CPU_BATCHES = (128, 256, 512)
GPU_BATCHES = (256, 512, 1024, 2048)


@dataclass(frozen=True)
class Point:
    """One configuration: ``(name, value)`` pairs in the space's dimension order. Hashable."""

    items: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **values: Any) -> Point:
        return cls(tuple(values.items()))

    def get(self, name: str, default: Any = None) -> Any:
        for key, value in self.items:
            if key == name:
                return value
        return default

    def with_value(self, name: str, value: Any) -> Point:
        if all(key != name for key, _ in self.items):
            raise KeyError(name)
        return Point(tuple((key, value if key == name else v) for key, v in self.items))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Point:
        return cls(tuple(data.items()))

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.items)


@dataclass(frozen=True)
class Dimension:
    """One setting explored. ``ordered``: neighbours make sense (hill-climb); else every value is tried.

    ``prompt_only``: a move along it does not send the search back to the other dimensions (they
    decide the generation speed, which it does not change).
    ``memory_bound``: a value that crashed (out of memory) is not tried again at other points, nor any
    higher value: more GPU layers with other threads still do not fit.
    """

    name: str
    values: tuple[Any, ...]
    ordered: bool = True
    prompt_only: bool = False  # changes how fast the prompt is read, not the generation speed
    memory_bound: bool = False  # higher values take more memory: once a value failed, higher ones are skipped
    # Every value the engine accepts, for a search that looks finely where it matters (the layer count
    # just below where memory runs out); ``values`` stays the grid's coarse choice. Empty: ``values``.
    fine: tuple[Any, ...] = ()
    # Moving along it changes the memory taken on the card (KV cache type, batch size): on a GPU, each
    # value is judged at the most layers that fit with it.
    changes_memory: bool = False
    # A value known to be at least as good where it is allowed (P-core pinning on hybrid CPUs: llama.cpp
    # on E-cores slows every step): it wins unless measured slower beyond the noise. None: no prior.
    preferred: Any = None

    def index(self, value: Any) -> int:
        return self.values.index(value)

    @property
    def steps(self) -> tuple[Any, ...]:
        """The values a fine search may visit: ``fine`` when given, else ``values``."""
        return self.fine or self.values


@dataclass(frozen=True)
class SearchSpace:
    dims: tuple[Dimension, ...]
    start: Point
    is_valid: Callable[[Point], bool] = field(default=lambda p: True, compare=False)
    normalize: Callable[[Point], Point] = field(default=lambda p: p, compare=False)

    def __post_init__(self) -> None:
        for dim in self.dims:
            if self.start.get(dim.name) not in dim.values:
                raise ValueError(f"start value of {dim.name} not among {dim.values}")

    def dim(self, name: str) -> Dimension:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    def canonical(self, point: Point) -> Point:
        return self.normalize(point)

    def valid(self, point: Point) -> bool:
        return self.is_valid(point)

    def grid(self) -> list[Point]:
        """Every distinct valid point (the exhaustive search), start first."""
        seen: dict[Point, None] = {self.canonical(self.start): None}
        names = [d.name for d in self.dims]
        for combo in itertools.product(*(d.values for d in self.dims)):
            point = self.canonical(Point(tuple(zip(names, combo))))
            if self.valid(point):
                seen.setdefault(point, None)
        return list(seen)


# -- the runner's space ------------------------------------------------------------------------------


def attention_of(config: RunnerConfig) -> str:
    if config.type_k == "q8_0" and config.flash_attn:
        return "q8_0_fa"
    return "f16_fa" if config.flash_attn else "f16"


def _sorted_unique(values: Iterable[int], low: int, high: int) -> tuple[int, ...]:
    return tuple(sorted({v for v in values if low <= v <= high}))


def thread_values(cpu: CpuInfo, start: int, *, gpu: bool = False) -> tuple[int, ...]:
    fast = cpu.performance_cores or cpu.physical_cores or cpu.logical_cpus
    values = {start, max(1, fast - 1), fast, cpu.physical_cores, cpu.logical_cpus}
    if cpu.smt and cpu.performance_logical_cpus:
        values.add(len(cpu.performance_logical_cpus))
    if fast >= 6:
        values.add(fast // 2)
    if gpu:
        values.add(2)  # a model entirely on the card needs few threads
    return _sorted_unique(values, 1, max(1, cpu.logical_cpus))


def batch_threads_values(cpu: CpuInfo) -> tuple[int, ...]:
    fast = cpu.performance_cores or cpu.physical_cores or cpu.logical_cpus
    more = {fast, len(cpu.performance_logical_cpus) or fast, cpu.logical_cpus}
    return (0,) + _sorted_unique(more, 1, max(1, cpu.logical_cpus))


def gpu_layer_values(start: int, n_layers: int) -> tuple[int, ...]:
    """Effective layer counts (``n_layers + 1`` = everything) around the plan's ``start``."""
    everything = n_layers + 1
    values = {start, everything, round(start / 2), round(start * 3 / 4), start + (everything - start) // 2}
    return _sorted_unique(values, 0, everything)


def build_space(
    base: RunnerConfig,
    cpu: CpuInfo,
    *,
    n_layers: int,
    gpu_usable: bool,
    quantized_kv_ok: bool = True,
) -> SearchSpace:
    """The space around ``base`` (the memory plan's configuration) on this CPU and GPU.

    ``quantized_kv_ok`` False leaves out the q8_0 cache (heads narrower than a q8_0 block).
    """
    dims: list[Dimension] = []
    start: dict[str, Any] = {}
    if gpu_usable:
        layers = effective_layers(base.n_gpu_layers, n_layers)
        dims.append(Dimension(GPU_LAYERS, gpu_layer_values(layers, n_layers), memory_bound=True,
                              fine=tuple(range(n_layers + 2))))
        start[GPU_LAYERS] = layers
    dims.append(Dimension(THREADS, thread_values(cpu, base.n_threads, gpu=gpu_usable)))
    start[THREADS] = base.n_threads
    p_cpus = cpu.performance_logical_cpus
    if cpu.hybrid and p_cpus:
        dims.append(Dimension(AFFINITY, ("", P_CORES), ordered=False, preferred=P_CORES))
        start[AFFINITY] = ""
    modes = [m for m in ATTENTION_MODES if quantized_kv_ok or ATTENTION_MODES[m][0] == "f16"]
    start[ATTENTION] = attention_of(base)
    if start[ATTENTION] not in modes:
        modes.append(start[ATTENTION])
    dims.append(Dimension(ATTENTION, tuple(modes), ordered=False, changes_memory=gpu_usable))
    tb_values = batch_threads_values(cpu)
    start_tb = 0 if base.n_threads_batch == base.n_threads else base.n_threads_batch
    if start_tb not in tb_values:
        tb_values = tuple(sorted(set(tb_values) | {start_tb}))
    dims.append(Dimension(THREADS_BATCH, tb_values, ordered=False, prompt_only=True))
    start[THREADS_BATCH] = start_tb
    batches = {b for b in (GPU_BATCHES if gpu_usable else CPU_BATCHES) if b <= base.n_ctx} | {base.n_ubatch}
    dims.append(Dimension(BATCH, tuple(sorted(batches)), prompt_only=True, changes_memory=gpu_usable))
    start[BATCH] = base.n_ubatch

    def normalize(point: Point) -> Point:
        tb = point.get(THREADS_BATCH)
        if tb is not None and tb == point.get(THREADS):
            return point.with_value(THREADS_BATCH, 0)
        return point

    def is_valid(point: Point) -> bool:
        if point.get(AFFINITY) == P_CORES and point.get(THREADS, 0) > len(p_cpus):
            return False
        tb = point.get(THREADS_BATCH, 0)
        return tb == 0 or tb > point.get(THREADS, 0)  # fewer prompt than generation threads never helps

    order = [d.name for d in dims]
    return SearchSpace(tuple(dims), Point(tuple((n, start[n]) for n in order)), is_valid, normalize)


def effective_layers(n_gpu_layers: int, n_layers: int) -> int:
    """llama.cpp's ``n_gpu_layers`` (−1 = all) as a count where ``n_layers + 1`` means everything."""
    return n_layers + 1 if n_gpu_layers < 0 or n_gpu_layers > n_layers else n_gpu_layers


def config_for(base: RunnerConfig, point: Point, *, n_layers: int) -> RunnerConfig:
    """The runner configuration of ``point``: ``base`` with the explored settings changed."""
    changes: dict[str, Any] = {}
    layers = point.get(GPU_LAYERS)
    if layers is not None:
        changes["n_gpu_layers"] = -1 if layers > n_layers else int(layers)
    threads = point.get(THREADS)
    if threads is not None:
        changes["n_threads"] = int(threads)
        tb = point.get(THREADS_BATCH, 0)
        changes["n_threads_batch"] = int(tb) if tb else int(threads)
    attention = point.get(ATTENTION)
    if attention is not None:
        kv, flash = ATTENTION_MODES[attention]
        changes.update(type_k=kv, type_v=kv, flash_attn=flash)
    batch = point.get(BATCH)
    if batch is not None:
        changes.update(n_batch=int(batch), n_ubatch=int(batch))
    return base.with_changes(**changes)


# What a running runner can change between two requests (llama.cpp's ``llama_set_n_threads``): two
# configurations that differ only here are measured in one process, one after the other.
RUNTIME_SETTINGS = ("n_threads", "n_threads_batch")


def same_runner(a: RunnerConfig, b: RunnerConfig) -> bool:
    """``b`` can be measured in the runner that measured ``a`` (their other settings are equal)."""
    keep = {name: getattr(a, name) for name in RUNTIME_SETTINGS}
    return b.with_changes(**keep) == a


def affinity_for(point: Point, cpu: CpuInfo) -> tuple[int, ...]:
    """The logical CPUs the runner is pinned to, ``()`` for none."""
    return tuple(cpu.performance_logical_cpus) if point.get(AFFINITY) == P_CORES else ()


def iter_neighbours(space: SearchSpace, point: Point, dim: Dimension) -> Iterator[Point]:
    """Every other valid value of ``dim`` at ``point`` (for unordered dimensions)."""
    current = point.get(dim.name)
    for value in dim.values:
        if value != current:
            candidate = space.canonical(point.with_value(dim.name, value))
            if space.valid(candidate) and candidate != point:
                yield candidate
