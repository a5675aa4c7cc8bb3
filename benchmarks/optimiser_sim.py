"""« Optimiser » on simulated machines: does the search find the fastest settings when measuring is noisy?

No runner, no model: each simulated machine is a *response surface* — generation and prompt speed, and
graphics memory, as functions of the settings the engine accepts (GPU layers, threads, CPU pinning,
batch/ubatch, flash attention, KV cache type) — plus a *noise model* (5 / 15 / 30 % multiplicative,
slow drift as the laptop heats, bursts from another program, the occasional crash). Everything is
deterministic by seed. The searches get a measuring function ``Point → Measurement`` and nothing else,
exactly as on a real machine (``RunnerMeasurer``), so the very code « Optimiser » runs is measured here.
Like the real measurer, the simulated one keeps its runner when the next configuration differs only in
thread counts (:func:`~tray_app.benchmark.space.same_runner`): no load, and the process's share of the
noise is the same for both.

    .venv/bin/python benchmarks/optimiser_sim.py                       # table, 40 seeds per case
    .venv/bin/python benchmarks/optimiser_sim.py --seeds 100 --json    # one object per machine × noise × method
    .venv/bin/python benchmarks/optimiser_sim.py --machines rtx4050 --noise 15 --methods racing,grid

Methods, at equal measurement budgets (random and TPE get, seed by seed, as many measurements as the
racing search spent): ``racing`` (today's search, :mod:`tray_app.benchmark.racing_search`),
``coordinate`` (the previous search, one measurement per configuration), ``grid`` (every point of the
space once, then the best), ``random`` (uniform points of the space, every layer count), ``tpe``
(Optuna's TPE sampler, as llama-optimus and llama-bench-tuner use; needs ``pip install -e .[bench]``).

For each method: the distribution of (true generation speed of the pick ÷ true optimum), and the
measurements spent (also as a fraction of the grid's). The true optimum is over everything the engine
accepts on that machine: every layer count, every thread count, both pinnings, the three attention
modes, every ubatch the program offers (256-2048 on a card, 128-512 on the CPU) — not only the values a
search space offers. A pick that does not work on the
machine (out of memory, or the card over the measurer's limit on average) counts 0; the optimum is
taken among configurations the measurer would find too full less than 1 time in 20 when the avatar's
memory moves by its usual σ (40 MiB, *assumption*) — what the program should be willing to apply —
so a pick at the very edge may score a little above 1. For the racing search, ``claim_coverage`` is how often
the true gain over today's settings lies inside the interval its headline gives.

Targets (issue 15): at 15 % noise on every machine, median ≥ 0.98 and 10th percentile ≥ 0.95 with
≤ 35 % of the grid's measurements; at 30 % noise, 10th percentile ≥ 0.90.

Where the numbers come from
---------------------------
Every figure is from a published source, or marked *assumption* when no source was found; the
machines are then varied seed by seed around them (ranges in :class:`Instance`), because a search
should not depend on one exact machine.

[S1] llama.cpp ``tools/llama-bench/README.md``, vendored in llama-cpp-python 0.3.36 (the engine we ship):
     - threads, 7B Q4_0 (3.56 GiB) on CPU: tg16 = 4.05 / 7.80 / 12.22 / 16.71 / 15.32 / 16.41 tok/s at
       1 / 2 / 4 / 8 / 16 / 32 threads; pp64 = 6.17 / 12.31 / 23.18 / 32.29 / 33.52 / 59.00 tok/s.
       → one thread streams about 3.56 GiB × 4.05 ≈ 15.5 GB/s; generation saturates the memory
       (≈ 3.82 GB × 16.71 ≈ 64 GB/s) at about half the cores and gains nothing from hyper-threads
       (16 → 32 threads: +7 %), prompt reading does (+76 %).
     - layers, 7B Q4_0 on CUDA: tg128 = 13.45 / 21.36 / 40.04 tok/s at 10 / 20 / 30 layers, 131.66 with
       everything: the time per token is the sum of the GPU part and the CPU part (each layer moved to
       the card removes its share of the slow CPU time).
     - batch, 7B Q4_0 on CUDA: pp1024 = 1436 / 1932 / 2254 / 2498 tok/s at n_batch 128 / 256 / 512 /
       1024 → prompt speed factors 0.64 / 0.86 / 1.00 / 1.11 (2048: 1.15, extrapolated, *assumption*).
[S2] llmfit PR #958 (community results, RTX 4060 Laptop GPU, Ollama): qwen2.5:7b 48.7 tok/s,
     llama3.1:8b 47.2 tok/s. qwen2.5:7b Q4_K_M reads ≈ 4.4 GB per token → ≈ 213 GB/s, 83 % of the
     4060 Laptop's 256 GB/s. We apply the same 83 % to the RTX 4050 Laptop's 192 GB/s (NVIDIA
     specification: 96-bit GDDR6 at 16 Gbps) → 160 GB/s.
[S3] llmfit PR #815 (GTX 1050 Ti 4 GB): « this card spends roughly 7 seconds at boost clock before
     settling into its sustained state. Short measurements therefore overestimate by up to 50 % » —
     the scale of the heat drift model (we use 8-20 % over 1-4 minutes, *assumption* within it).
[S4] llama.cpp issue #5225 (hybrid Intel): ~140 ms instead of ~160 ms per token on a partial offload
     when llama.cpp is kept off the E-cores (12.5 %); ggerganov: « In general, you don't want to use
     E-cores with llama.cpp ». → the penalty when threads mix core kinds or share a core (8-16 %).
[S5] DESIGN.md (this project) and AtomicBot-ai/atomic-llama-cpp-turboquant issue #77: on Windows,
     when the card is full the driver silently moves memory to system RAM and throughput « collapses by
     roughly an order of magnitude ». → spilled bytes are read over PCIe instead of VRAM.
[S6] ggml-cuda (``ggml_backend_cuda_device_offload_op``, quoted in llama.cpp PR #11446): with a partial
     offload, batches of 32 tokens or more run the CPU layers' matrix products on the GPU, copying the
     weights over PCIe; Ollama PR #12811: without it prompt reading is 3-10× slower.
[S7] This project's planner (:mod:`tray_app.planning.vram_estimate`): exact weights and KV cache,
     modelled compute buffer, 450 MiB CUDA overhead (Ollama keeps 457 MiB), safety margin
     max(512 MiB, 5 %). The simulated card's *true* overhead and compute buffer differ from the
     planner's by a seeded error (overhead ±80 MiB, compute ×0.85-1.25, *assumption*): the plan is a
     starting point, not the truth.
[S8] llama.cpp PR #6374 (CUDA FlashAttention): for one token at 512-2048 cached tokens the attention
     kernel is 1.3-2.1× faster with flash attention (45.37 → 21.64 µs at 512). Attention reads the KV
     cache: ≈ 1 % of a 7B's bytes per token at the avatar's ~400-token conversations, so the attention
     mode changes generation by ~1 % directly — its real effect is the memory it frees.
[S9] tetherto/qvac PR #1276 (GTX 1080 Ti, Llama-3.2-1B): q8_0 KV cache 236.0 tok/s vs f16 229.7 —
     generation within a few % of f16; we charge q8_0 a dequantisation cost of 1.3× on the attention
     part only (*assumption*).
[S10] Our own runs on the 2-core test VM (issue 5/15 closing notes): the same configuration measured
     10-45 % apart minute to minute; « 103.9 tok/s, then 55.9 tok/s 20 s later » → bursts that halve
     the speed for tens of seconds; the 15 % noise level reproduces these spreads.
[S11] Model shapes from the models' published configurations (Hugging Face config.json): Mistral-7B
     v0.3 (32 layers, 4096 wide, 32 heads, 8 KV heads of 128, FFN 14336, vocabulary 32768; Q4_K_M
     file 4.37 GB); Llama-3.2-3B (28 layers, 3072 wide, 24 heads, 8 KV heads of 128, FFN 8192,
     vocabulary 128256, tied output; Q4_K_M 1.87 GiB, as listed in [S1]-style llama-bench tables of
     geerlingguy/ai-benchmarks issues #40, #43, #46).
[S12] Memory bandwidths: DDR5-4800 dual channel 76.8 GB/s, DDR4-2666 dual 42.7 GB/s (JEDEC);
     llama.cpp generation reaching ~70 % of it (*assumption*, consistent with [S1]'s ≈ 64 GB/s).
     PCIe 4.0 ×8 (RTX 4050 Laptop) and 3.0 ×16 (GTX 1650): ~16 GB/s, 12 GB/s effective (*assumption*).
     GTX 1650 (GDDR5, 128 GB/s): 61 % reached, as in llmfit PR #1030 (GTX 1650, 2B Q8_0, 35.7 tok/s).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.objective import Thresholds, select_best
from tray_app.benchmark.racing_search import racing_search
from tray_app.benchmark.search import coordinate_search, grid_search
from tray_app.benchmark.space import (
    GPU_LAYERS,
    Point,
    SearchSpace,
    affinity_for,
    build_space,
    config_for,
    same_runner,
)
from tray_app.hardware.cpu import CpuInfo
from tray_app.models.gguf_info import ModelInfo
from tray_app.planning.memory_plan import make_plan
from tray_app.planning.vram_estimate import (
    GPU_OVERHEAD,
    compute_buffer_bytes,
    kv_cache_bytes,
    safety_margin,
    weights_on_gpu,
)

MIB = 1024 * 1024
GB = 1e9
PROMPT_TOKENS = 330  # the Kira conversation (tray_app.benchmark.workload), as llama.cpp counts it
CONTEXT_READ = PROMPT_TOKENS + 40  # cached tokens attention reads per generated token, on average
REQUESTS = 3  # the NORMAL workload: 3 measured requests of 64 tokens after an 8-token warm-up
MAX_TOKENS = 64
WARMUP_TOKENS = 8
GPU_BATCH_FACTOR = {128: 0.64, 256: 0.86, 512: 1.0, 1024: 1.11, 2048: 1.15}  # [S1]
CPU_BATCH_FACTOR = {128: 0.92, 256: 0.97, 512: 1.0, 1024: 1.0, 2048: 1.0}  # assumption
ATTENTION_MODES = {"f16": ("f16", False), "f16_fa": ("f16", True), "q8_0_fa": ("q8_0", True)}
RUNTIME_RAM = 350 * MIB  # Python, llama-cpp-python and the server (assumption)
AVATAR_WOBBLE = 40 * MIB  # σ of the avatar's graphics memory from one measurement to the next (assumption)


# -- models ------------------------------------------------------------------------------------------------


def model_info(
    name: str, *, n_layers: int, n_embd: int, n_head: int, n_head_kv: int, head_dim: int, n_ff: int,
    n_vocab: int, file_size: int, output_bytes: int, input_bytes: int, tied: bool,
) -> ModelInfo:
    """A :class:`ModelInfo` of a model's shape [S11], without a file: the planner reads only these."""
    per_layer = (file_size - input_bytes - (0 if tied else output_bytes)) / n_layers
    # Q4_K_M keeps some tensors in Q6_K (every other layer's attn_v/ffn_down): layers alternate ±6 %.
    layer_bytes = tuple(int(per_layer * (1.06 if i % 2 else 0.94)) for i in range(n_layers))
    return ModelInfo(
        path=f"/sim/{name}.gguf", name=name, architecture="llama", n_layers=n_layers, n_embd=n_embd,
        n_ff=n_ff, n_head=n_head, n_head_kv=n_head_kv, head_dim_k=head_dim, head_dim_v=head_dim,
        n_ctx_train=32768, n_vocab=n_vocab, file_type="Q4_K_M", tensor_types=(), has_chat_template=True,
        file_size=file_size, layer_bytes=layer_bytes, input_bytes=input_bytes, output_bytes=output_bytes,
        output_tied=tied, weights_bytes=file_size,
    )


MISTRAL_7B = model_info(  # [S11]
    "Mistral-7B-Instruct-v0.3-Q4_K_M", n_layers=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim=128,
    n_ff=14336, n_vocab=32768, file_size=4_372_812_000, output_bytes=110_100_480, input_bytes=75_497_472,
    tied=False,
)
LLAMA_3B = model_info(  # [S11]: 1.87 GiB; the tied output is a Q6_K copy of the 128256 × 3072 embedding
    "Llama-3.2-3B-Instruct-Q4_K_M", n_layers=28, n_embd=3072, n_head=24, n_head_kv=8, head_dim=128,
    n_ff=8192, n_vocab=128256, file_size=2_007_897_000, output_bytes=323_223_552, input_bytes=323_223_552,
    tied=True,
)


# -- machines ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """A machine's nominal figures (sources in the module docstring); :class:`Instance` varies them."""

    key: str
    title: str
    cpu: CpuInfo
    model: ModelInfo
    gpu_total: int | None  # bytes, None: no usable GPU
    desktop_vram: int  # Windows' compositor and the desktop
    avatar_vram: int  # the Unity avatar
    sysmem_fallback: bool  # Windows driver ≥ 536.40: a full card spills into RAM instead of failing [S5]
    gpu_bw: float  # bytes/s generation reaches on the card [S2]
    pcie_bw: float  # bytes/s [S12]
    gpu_pp: float  # prompt tokens/s with everything on the card, ubatch 512 (assumption, scaled from [S1])
    p_thread_bw: float  # bytes/s one P-core thread streams [S1]
    ram_bw: float  # bytes/s the whole CPU reaches [S12]
    pp_per_thread: float  # prompt tokens/s per P-core thread [S1], scaled by the model's size
    avatar_cpu: float  # cores the avatar's renderer keeps busy (assumption: one render thread)
    load_s: float  # runner start + model load from the file cache (assumption)


RTX4050 = Machine(
    key="rtx4050",
    title="RTX 4050 Laptop 6 Go + i5-13420H (4P+4E), Mistral 7B Q4_K_M, avatar 1,5 Go",
    cpu=CpuInfo("Intel Core i5-13420H", 8, 12, 4, 4, tuple(range(8)), 16 << 30, "sim"),
    model=MISTRAL_7B,
    gpu_total=6141 * MIB,  # NVML's total for the 6 GB card (this repo's tests/data recording)
    desktop_vram=450 * MIB,  # assumption (this repo's composed RTX 4050 timeline)
    avatar_vram=1536 * MIB,  # issue 15
    sysmem_fallback=True,
    gpu_bw=160 * GB,  # [S2]
    pcie_bw=12 * GB,  # [S12]
    gpu_pp=1100.0,  # assumption: [S1]'s 2254 tok/s scaled to a laptop GPU with ~half the compute
    p_thread_bw=14 * GB,  # [S1] (15.5 GB/s on a desktop core), laptop core a little slower
    ram_bw=0.62 * 76.8 * GB,  # [S12] DDR5-4800 dual channel; 4 P-core threads saturate it [S1]
    pp_per_thread=6.17 * 6.74 / 7.25,  # [S1] per thread for a 7B, scaled to Mistral's 7.25 B
    avatar_cpu=0.8,
    load_s=4.5,
)
GTX1650 = Machine(
    key="gtx1650",
    title="GTX 1650 4 Go + i5-10300H (4 cœurs, 8 fils), Llama 3.2 3B Q4_K_M, avatar 1,2 Go",
    cpu=CpuInfo("Intel Core i5-10300H", 4, 8, 4, 0, (), 16 << 30, "sim"),
    model=LLAMA_3B,
    gpu_total=3911 * MIB,  # a 4 GB card as NVML reports it (assumption)
    desktop_vram=350 * MIB,  # assumption
    avatar_vram=1229 * MIB,  # assumption: a lighter avatar scene on a smaller card
    sysmem_fallback=False,  # « Prefer no sysmem fallback », the usual advice (llama.cpp PR #15649)
    gpu_bw=0.61 * 128 * GB,  # [S12] via llmfit PR #1030
    pcie_bw=12 * GB,
    gpu_pp=420.0,  # assumption: no tensor cores, ~1/3 of a 4050 for a model half the size
    p_thread_bw=11 * GB,  # assumption (Comet Lake laptop core, DDR4)
    ram_bw=0.7 * 42.7 * GB,  # [S12] DDR4-2666 dual channel
    pp_per_thread=6.17 * 6.74 / 3.21 * 0.8,  # [S1] scaled to 3.21 B params, older core (assumption)
    avatar_cpu=0.7,
    load_s=2.5,
)
CPU4 = Machine(
    key="cpu4",
    title="Processeur seul, 4 cœurs + hyper-threading (i7-8550U), Llama 3.2 3B Q4_K_M, avatar",
    cpu=CpuInfo("Intel Core i7-8550U", 4, 8, 4, 0, (), 16 << 30, "sim"),
    model=LLAMA_3B,
    gpu_total=None,
    desktop_vram=0,
    avatar_vram=0,
    sysmem_fallback=False,
    gpu_bw=0.0,
    pcie_bw=0.0,
    gpu_pp=0.0,
    p_thread_bw=9 * GB,  # assumption: a 15 W laptop core
    ram_bw=0.7 * 38.4 * GB,  # [S12] DDR4-2400 dual channel
    pp_per_thread=6.17 * 6.74 / 3.21 * 0.7,  # [S1], scaled (low-power core, assumption)
    avatar_cpu=0.6,
    load_s=2.5,
)
MACHINES = {m.key: m for m in (RTX4050, GTX1650, CPU4)}


@dataclass(frozen=True)
class Truth:
    """What a configuration really does on an instance (noise-free)."""

    outcome: str  # "ok", "out_of_memory", "refused"
    gen_tps: float = 0.0
    prompt_tps: float = 0.0
    runner_vram: int = 0
    device_vram: int = 0  # the whole card, others included (what NVML reports)
    runner_ram: int = 0  # the runner's RSS: the mapped file, the KV cache and buffers on the CPU
    unsafe: bool = False  # over the measurer's limit: total − safety margin

    @property
    def accepted(self) -> bool:
        """Works, and the card stays under the measurer's limit on average."""
        return self.outcome == "ok" and not self.unsafe

    def safe(self, limit: int | None) -> bool:
        """Works, and the measurer would find the card too full less than 1 time in 20 (the avatar's
        memory moving by its usual σ): what the program should be willing to apply."""
        if not self.accepted:
            return False
        return limit is None or not self.runner_vram or self.device_vram + 1.64 * AVATAR_WOBBLE <= limit


class Instance:
    """One machine as drawn for one seed: every nominal figure varied within its plausible range."""

    def __init__(self, machine: Machine, seed: int) -> None:
        rng = random.Random(f"{machine.key}/{seed}")
        self.machine = machine
        self.model = machine.model
        self.gpu_bw = machine.gpu_bw * rng.uniform(0.92, 1.08)
        self.p_thread_bw = machine.p_thread_bw * rng.uniform(0.9, 1.1)
        self.ram_bw = machine.ram_bw * rng.uniform(0.88, 1.1)
        self.e_factor = rng.uniform(0.45, 0.6)  # E-core streaming vs P-core (assumption around [S4])
        self.mix_penalty = rng.uniform(0.05, 0.12)  # a core shared (hyper-thread, the avatar): barrier waits [S4]
        self.e_penalty = rng.uniform(0.10, 0.20)  # threads on E-cores slow every step [S4]
        self.ecoqos_penalty = rng.uniform(0.0, 0.12)  # unpinned on a hybrid CPU: moved to E-cores now and then [S4]
        self.smt_gen = rng.uniform(0.95, 1.02)  # two threads on one core, generation [S1]
        self.smt_pp = rng.uniform(1.1, 1.35)  # two threads on one core, prompt [S1]
        self.avatar_cpu = machine.avatar_cpu * rng.uniform(0.6, 1.3)
        self.overhead = GPU_OVERHEAD + int(rng.gauss(0, 80) * MIB)  # [S7]
        self.compute_factor = rng.uniform(0.85, 1.25)  # [S7]
        self.fa_attention = rng.uniform(1.3, 2.1)  # attention without flash attention costs this much more [S8]
        self.q8_attention = rng.uniform(1.1, 1.5)  # [S9]
        self.gpu_pp = machine.gpu_pp * rng.uniform(0.85, 1.15)
        self.pp_per_thread = machine.pp_per_thread * rng.uniform(0.85, 1.15)
        self.others_vram = machine.desktop_vram + machine.avatar_vram + int(rng.gauss(0, 60) * MIB)
        self._cache: dict[tuple[Any, ...], Truth] = {}

    # -- memory ----------------------------------------------------------------------------------------
    @property
    def free_vram(self) -> int | None:
        total = self.machine.gpu_total
        return None if total is None else total - self.others_vram

    @property
    def vram_limit(self) -> int | None:
        total, free = self.machine.gpu_total, self.free_vram
        return None if total is None or free is None else total - safety_margin(free, total)

    def runner_vram(self, layers: int, output: bool, n_ctx: int, ubatch: int, kv: str, fa: bool) -> int:
        if layers == 0 and not output:
            return 0
        m = self.model
        compute = compute_buffer_bytes(m, n_ctx=n_ctx, n_ubatch=ubatch, gpu_layers=layers, output_on_gpu=output,
                                       flash_attn=fa, kv_type=kv)
        return (weights_on_gpu(m, layers, output) + kv_cache_bytes(m, n_ctx, layers, kv)
                + int(compute * self.compute_factor) + self.overhead)

    # -- CPU -------------------------------------------------------------------------------------------
    def cpu_rates(self, threads: int, pinned: bool, *, prompt: bool) -> float:
        """Bytes/s (generation) or P-core-thread equivalents (prompt) that ``threads`` threads reach."""
        cpu = self.machine.cpu
        p, e = cpu.performance_cores, cpu.efficiency_cores
        smt = cpu.logical_cpus > cpu.physical_cores
        slots: list[str] = ["P"] * min(threads, p)
        left = threads - len(slots)
        if left > 0 and e and not pinned:  # Windows: P-cores, then E-cores, then P-core siblings
            slots += ["E"] * min(left, e)
            left = threads - len(slots)
        if left > 0 and smt:
            slots += ["S"] * min(left, p)
            left = threads - len(slots)
        slots += ["X"] * max(0, left)  # more threads than CPUs: time-shared
        r = self.p_thread_bw if not prompt else 1.0
        e_rate = r * (self.e_factor if not prompt else 0.55)
        total = 0.0
        shared_cores = sum(1 for s in slots if s == "S")
        for s in slots:
            if s == "P":
                total += r
            elif s == "E":
                total += e_rate
            elif s == "X":
                total += 0.3 * r
        # A core running two of our threads gives (smt_gen or smt_pp) × one thread, not two.
        factor = self.smt_pp if prompt else self.smt_gen
        total += shared_cores * r * (factor - 1.0)
        # The avatar's render thread: when our threads take every P-core, one of them shares its core.
        fast_cores_used = min(threads, p)
        if fast_cores_used >= p:
            total -= r * self.avatar_cpu / 2
        if not prompt:
            total = min(total, self.ram_bw)  # generation streams weights: the memory caps it [S1]
        # Waiting at every step for the slowest thread costs time whatever the bandwidth [S4].
        if any(s in ("S", "X") for s in slots) or fast_cores_used >= p:
            total *= 1 - self.mix_penalty
        if "E" in slots:
            total *= 1 - self.e_penalty
        if e and not pinned:
            total *= 1 - self.ecoqos_penalty
        return max(total, 0.05 * r)

    # -- the truth -------------------------------------------------------------------------------------
    def truth(self, layers_setting: int, threads: int, threads_batch: int, kv: str, fa: bool, ubatch: int,
              pinned: bool, n_ctx: int) -> Truth:
        key = (layers_setting, threads, threads_batch, kv, fa, ubatch, pinned, n_ctx)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        truth = self._truth(*key)
        self._cache[key] = truth
        return truth

    def _truth(self, layers_setting: int, threads: int, threads_batch: int, kv: str, fa: bool, ubatch: int,
               pinned: bool, n_ctx: int) -> Truth:
        m = self.model
        if kv != "f16" and not fa:
            return Truth("refused")  # llama.cpp needs flash attention for a quantised V cache
        total = self.machine.gpu_total
        if total is None:
            layers_setting = 0
        n = m.n_layers
        everything = layers_setting < 0 or layers_setting > n
        layers = n if everything else layers_setting
        output = everything
        need = self.runner_vram(layers, output, n_ctx, ubatch, kv, fa) if total is not None else 0
        free = self.free_vram or 0
        spill = max(0, need - free) if total is not None else 0
        if spill and not self.machine.sysmem_fallback:
            return Truth("out_of_memory", runner_vram=need)
        device = min(total, self.others_vram + need) if total is not None else 0
        limit = self.vram_limit
        unsafe = bool(limit is not None and need and device > limit)
        # Generation: bytes read per token on the card and on the CPU [S1][S2].
        kv_token = kv_cache_bytes(m, 1, n, kv) / n  # one token's cache in one layer
        attention_factor = (1.0 if fa else self.fa_attention) * (self.q8_attention if kv != "f16" else 1.0)
        attention_bytes = kv_token * CONTEXT_READ * attention_factor
        gpu_layer_ids = range(n - layers, n)
        gpu_bytes = sum(m.layer_bytes[i] for i in gpu_layer_ids) + layers * attention_bytes
        gpu_bytes += m.output_bytes if output else 0
        cpu_layers = n - layers
        cpu_bytes = sum(m.layer_bytes[i] for i in range(cpu_layers)) + cpu_layers * attention_bytes
        cpu_bytes += 0 if output else m.output_bytes
        seconds = 0.0
        if gpu_bytes:
            spilled = min(spill, gpu_bytes)
            seconds += (gpu_bytes - spilled) / self.gpu_bw + spilled / self.machine.pcie_bw  # [S5]
        if cpu_bytes:
            seconds += cpu_bytes / self.cpu_rates(threads, pinned, prompt=False)
        if gpu_bytes and cpu_bytes:
            seconds += 0.0004  # one more graph split per token (assumption)
        gen = 1.0 / seconds
        # Prompt: compute-bound on the CPU; on the card, plus the CPU weights copied per ubatch [S6].
        cpu_pp = self.pp_per_thread * self.cpu_rates(threads_batch, pinned, prompt=True) * CPU_BATCH_FACTOR[ubatch]
        if total is None or (layers == 0 and not output):
            prompt = cpu_pp
        else:
            gpu_pp = self.gpu_pp * GPU_BATCH_FACTOR[ubatch]
            per_ubatch = ubatch / gpu_pp + (cpu_bytes + spill) / self.machine.pcie_bw
            prompt = ubatch / per_ubatch
        kv_cpu = kv_cache_bytes(m, n_ctx, n, kv) - kv_cache_bytes(m, n_ctx, layers, kv)
        cpu_compute = 0 if layers else compute_buffer_bytes(m, n_ctx=n_ctx, n_ubatch=ubatch, gpu_layers=n,
                                                             output_on_gpu=True, flash_attn=fa, kv_type=kv)
        ram = m.file_size + kv_cpu + cpu_compute + RUNTIME_RAM
        return Truth("ok", gen, prompt, need, device, ram, unsafe)

    def truth_of(self, config: Any, affinity: tuple[int, ...]) -> Truth:
        return self.truth(config.n_gpu_layers, config.n_threads, config.n_threads_batch, config.type_k,
                          config.flash_attn, config.n_ubatch, bool(affinity), config.n_ctx)

    def optimum(self, n_ctx: int) -> tuple[float, tuple[Any, ...]]:
        """The fastest generation over everything the engine accepts on this machine."""
        cpu = self.machine.cpu
        layer_values = range(self.model.n_layers + 2) if self.machine.gpu_total is not None else (0,)
        pinnings = (False, True) if cpu.efficiency_cores else (False,)
        # ubatch: the range the program offers (below 256 a card reads prompts a third slower [S1]).
        batches = (256, 512, 1024, 2048) if self.machine.gpu_total is not None else (128, 256, 512)
        best, where = 0.0, ()
        for layers in layer_values:
            for threads in range(1, cpu.logical_cpus + 1):
                for pinned in pinnings:
                    if pinned and threads > len(cpu.performance_logical_cpus):
                        continue
                    for kv, fa in ATTENTION_MODES.values():
                        for ubatch in batches:
                            t = self.truth(layers, threads, threads, kv, fa, ubatch, pinned, n_ctx)
                            if t.safe(self.vram_limit) and t.gen_tps > best:
                                best, where = t.gen_tps, (layers, threads, pinned, kv, fa, ubatch)
        return best, where


# -- noise -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noise:
    """How measuring is disturbed. ``level``: σ of one request's speed (half of its variance shared by the
    whole runner process, half per request); ``drift``: the laptop heating; ``bursts``: another program
    now and then; ``crash``: probability that a measurement stops for no reason of its settings."""

    key: str
    level: float
    drift: bool = False
    bursts: bool = False
    crash: float = 0.0


NOISES = {
    n.key: n
    for n in (
        Noise("5", 0.05),
        Noise("15", 0.15),
        Noise("30", 0.30),
        Noise("15+chaleur", 0.15, drift=True),
        Noise("15+rafales", 0.15, bursts=True),
        Noise("15+pannes", 0.15, crash=0.04),
        Noise("15+tout", 0.15, drift=True, bursts=True, crash=0.04),
    )
}


class SimulatedMeasurer:
    """``Point → Measurement`` on an instance, with noise and a clock; counts what it measured."""

    def __init__(self, instance: Instance, noise: Noise, space_base: Any, seed: int, label: str) -> None:
        self.instance = instance
        self.noise = noise
        self.base = space_base
        self.rng = random.Random(f"{instance.machine.key}/{noise.key}/{seed}/{label}")
        self.clock = 0.0
        self.count = 0
        drift_rng = random.Random(f"drift/{instance.machine.key}/{seed}")
        self.drift_depth = drift_rng.uniform(0.08, 0.20)  # [S3]
        self.drift_tau = drift_rng.uniform(60.0, 240.0)
        self.bursts = self._bursts(random.Random(f"bursts/{instance.machine.key}/{seed}"))
        self.n_layers = instance.model.n_layers
        # The runner kept from the last measurement, as the real measurer keeps it: its configuration,
        # pinning, number and luck (generation, prompt). A configuration that differs only in thread
        # counts is measured in it; any other starts a new one.
        self.kept: tuple[Any, tuple[int, ...], int, float, float] | None = None
        self.runners = 0

    @staticmethod
    def _bursts(rng: random.Random) -> list[tuple[float, float, float]]:
        """(start, end, speed factor): about one every two minutes, 10-60 s, 45-80 % of the speed [S10]."""
        out, t = [], 0.0
        while t < 4 * 3600:
            t += rng.expovariate(1 / 120)
            length = rng.uniform(10, 60)
            out.append((t, t + length, rng.uniform(0.45, 0.8)))
            t += length
        return out

    def factor(self, t: float) -> float:
        f = 1.0
        if self.noise.drift:
            f *= 1 - self.drift_depth * (1 - math.exp(-t / self.drift_tau))
        if self.noise.bursts:
            for start, end, slow in self.bursts:
                if start <= t < end:
                    f *= slow
                    break
                if start > t:
                    break
        return f

    def __call__(self, point: Point) -> Measurement:
        self.count += 1
        config = config_for(self.base, point, n_layers=self.n_layers)
        affinity = affinity_for(point, self.instance.machine.cpu)
        truth = self.instance.truth_of(config, affinity)
        started = self.clock
        kept, self.kept = self.kept, None
        sigma = self.noise.level / math.sqrt(2)
        if kept is not None and kept[1] == affinity and same_runner(kept[0], config):
            runner, process, process_prompt = kept[2], kept[3], kept[4]
        else:
            self.runners += 1
            runner = self.runners
            self.clock += self.instance.machine.load_s
            process = math.exp(self.rng.gauss(0, sigma))
            process_prompt = math.exp(self.rng.gauss(0, sigma))
        if truth.outcome != "ok":
            kind = truth.outcome
            return Measurement.failed(kind, "simulé", wall_s=self.clock - started)
        if self.noise.crash and self.rng.random() < self.noise.crash:
            self.clock += 1.0
            return Measurement.failed("crashed", "simulé", wall_s=self.clock - started)
        wobble = self.rng.gauss(0, AVATAR_WOBBLE)  # the avatar changes scene: the card's use moves a little
        device = int(truth.device_vram + wobble) if truth.device_vram else None
        limit = self.instance.vram_limit
        if device is not None and limit is not None and truth.runner_vram and device > limit:
            return Measurement.failed("unsafe", "simulé", wall_s=self.clock - started, peak_vram=truth.runner_vram,
                                      peak_vram_device=device)
        self.clock += WARMUP_TOKENS / truth.gen_tps + 0.2
        gen, ttft, prompt = [], [], []
        for _ in range(REQUESTS):
            f = self.factor(self.clock)
            g = truth.gen_tps * process * math.exp(self.rng.gauss(0, sigma)) * f
            p = truth.prompt_tps * process_prompt * math.exp(self.rng.gauss(0, sigma)) * f
            first = PROMPT_TOKENS / p + 1 / g
            self.clock += first + MAX_TOKENS / g
            gen.append(g)
            ttft.append(first)
            prompt.append(p)
        self.clock += 0.5
        self.kept = (config, affinity, runner, process, process_prompt)
        return Measurement(
            stable=True, runner=runner, gen_samples=tuple(gen), ttft_samples=tuple(ttft), prompt_samples=tuple(prompt),
            prompt_tokens=PROMPT_TOKENS, generated_tokens=MAX_TOKENS, wall_s=self.clock - started,
            peak_vram=truth.runner_vram or None, peak_vram_device=device, peak_ram=truth.runner_ram,
        )


# -- one case ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    machine: Machine
    seed: int
    instance: Instance = field(init=False)
    space: SearchSpace = field(init=False)
    base: Any = field(init=False)
    optimum: float = field(init=False)
    optimum_at: tuple[Any, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.instance = Instance(self.machine, self.seed)
        m = self.machine
        plan = make_plan(self.instance.model, free_vram=self.instance.free_vram, cpu=m.cpu, total_vram=m.gpu_total)
        self.base = plan.to_runner_config(Path(self.instance.model.path))
        self.space = build_space(self.base, m.cpu, n_layers=self.instance.model.n_layers,
                                 gpu_usable=m.gpu_total is not None)
        self.optimum, self.optimum_at = self.instance.optimum(self.base.n_ctx)

    def true_gen(self, point: Point) -> float:
        config = config_for(self.base, point, n_layers=self.instance.model.n_layers)
        t = self.instance.truth_of(config, affinity_for(point, self.machine.cpu))
        return t.gen_tps if t.accepted else 0.0

    def measurer(self, noise: Noise, label: str) -> SimulatedMeasurer:
        return SimulatedMeasurer(self.instance, noise, self.base, self.seed, label)


@dataclass(frozen=True)
class Run:
    ratio: float
    measurements: int
    seconds: float
    claim_covered: bool | None = None  # racing only: true gain inside the headline's interval


def run_racing(case: Case, noise: Noise) -> Run:
    measure = case.measurer(noise, "racing")
    outcome = racing_search(case.space, measure)
    pick = outcome.best.point if outcome.best is not None else case.space.start
    covered = None
    check = outcome.final_check
    if check is not None and outcome.kept_because:
        start_gen = case.true_gen(case.space.canonical(case.space.start))
        true_gain = case.true_gen(pick) / start_gen - 1 if start_gen else None
        covered = true_gain is not None and check.low - 1e-9 <= true_gain <= check.high + 1e-9
    return Run(case.true_gen(pick) / case.optimum, measure.count, measure.clock, covered)


def run_coordinate(case: Case, noise: Noise) -> Run:
    measure = case.measurer(noise, "coordinate")
    outcome = coordinate_search(case.space, measure)
    pick = outcome.best.point if outcome.best is not None else case.space.start
    return Run(case.true_gen(pick) / case.optimum, measure.count, measure.clock)


def run_grid(case: Case, noise: Noise) -> Run:
    measure = case.measurer(noise, "grid")
    outcome = grid_search(case.space, measure)
    pick = outcome.best.point if outcome.best is not None else case.space.start
    return Run(case.true_gen(pick) / case.optimum, measure.count, measure.clock)


def _space_choices(case: Case) -> list[tuple[str, tuple[Any, ...]]]:
    """Each dimension's values for random search and TPE; every layer count, like community tuners."""
    return [(d.name, d.steps) for d in case.space.dims]


def _pick_best(measured: list[tuple[Point, Measurement]]) -> Point | None:
    if not measured:
        return None
    index = select_best([m for _, m in measured], Thresholds.from_noise(m for _, m in measured))
    return measured[index][0] if index is not None else None


def run_random(case: Case, noise: Noise, budget: int) -> Run:
    measure = case.measurer(noise, "random")
    rng = random.Random(f"random/{case.machine.key}/{noise.key}/{case.seed}")
    choices = _space_choices(case)
    measured: list[tuple[Point, Measurement]] = []
    tries = 0
    while measure.count < budget and tries < 50 * budget:
        tries += 1
        point = case.space.canonical(Point(tuple((name, rng.choice(values)) for name, values in choices)))
        if not case.space.valid(point):
            continue
        measured.append((point, measure(point)))
    pick = _pick_best(measured) or case.space.start
    return Run(case.true_gen(pick) / case.optimum, measure.count, measure.clock)


def run_tpe(case: Case, noise: Noise, budget: int) -> Run:
    import optuna  # the [bench] extra

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    measure = case.measurer(noise, "tpe")
    choices = _space_choices(case)
    sampler = optuna.samplers.TPESampler(seed=case.seed, n_startup_trials=min(10, max(3, budget // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    measured: list[tuple[Point, Measurement]] = []

    def objective(trial: Any) -> float:
        values = []
        for name, options in choices:
            if name == GPU_LAYERS:
                values.append((name, trial.suggest_int(name, min(options), max(options))))
            else:
                values.append((name, trial.suggest_categorical(name, list(options))))
        point = case.space.canonical(Point(tuple(values)))
        if not case.space.valid(point):
            return 0.0
        m = measure(point)
        measured.append((point, m))
        return m.gen_tps or 0.0 if m.stable else 0.0

    while measure.count < budget and len(study.trials) < 20 * budget:
        study.optimize(objective, n_trials=1)
    pick = _pick_best(measured) or case.space.start
    return Run(case.true_gen(pick) / case.optimum, measure.count, measure.clock)


METHODS = ("racing", "coordinate", "grid", "random", "tpe")


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def evaluate(machines: Iterable[Machine], noises: Iterable[Noise], methods: Sequence[str], seeds: int,
             progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    noises = list(noises)
    for machine in machines:
        cases = [Case(machine, seed) for seed in range(seeds)]
        grid_size = len(cases[0].space.grid())
        for noise in noises:
            runs: dict[str, list[Run]] = {m: [] for m in methods}
            started = time.monotonic()
            for case in cases:
                racing = run_racing(case, noise)
                budget = racing.measurements
                if "racing" in runs:
                    runs["racing"].append(racing)
                if "coordinate" in runs:
                    runs["coordinate"].append(run_coordinate(case, noise))
                if "grid" in runs:
                    runs["grid"].append(run_grid(case, noise))
                if "random" in runs:
                    runs["random"].append(run_random(case, noise, budget))
                if "tpe" in runs:
                    runs["tpe"].append(run_tpe(case, noise, budget))
            for method in methods:
                rs = runs[method]
                ratios = [r.ratio for r in rs]
                counts = [r.measurements for r in rs]
                covered = [r.claim_covered for r in rs if r.claim_covered is not None]
                rows.append({
                    "machine": machine.key,
                    "noise": noise.key,
                    "method": method,
                    "seeds": len(rs),
                    "median": round(quantile(ratios, 0.5), 4),
                    "p10": round(quantile(ratios, 0.1), 4),
                    "p90": round(quantile(ratios, 0.9), 4),
                    "failed_picks": sum(1 for r in ratios if r == 0.0),
                    "measurements": round(statistics.median(counts), 1),
                    "measurements_fraction_of_grid": round(statistics.median(counts) / grid_size, 4),
                    "grid_size": grid_size,
                    "simulated_minutes": round(statistics.median(r.seconds for r in rs) / 60, 1),
                    "claim_coverage": round(sum(covered) / len(covered), 3) if covered else None,
                    "claims": len(covered),
                })
            if progress is not None:
                progress(f"{machine.key} / {noise.key}: {time.monotonic() - started:.0f} s")
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'machine':<8} {'bruit':<11} {'méthode':<10} {'médiane':>7} {'p10':>6} {'p90':>6} {'mesures':>7} "
              f"{'% grille':>8} {'min':>5} {'couv.':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        cov = "" if r["claim_coverage"] is None else f"{r['claim_coverage']:.2f}"
        print(f"{r['machine']:<8} {r['noise']:<11} {r['method']:<10} {r['median']:>7.3f} {r['p10']:>6.3f} "
              f"{r['p90']:>6.3f} {r['measurements']:>7.1f} {100 * r['measurements_fraction_of_grid']:>7.1f}% "
              f"{r['simulated_minutes']:>5.1f} {cov:>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--machines", default=",".join(MACHINES))
    parser.add_argument("--noise", default=",".join(NOISES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    machines = [MACHINES[k] for k in args.machines.split(",")]
    noises = [NOISES[k] for k in args.noise.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            parser.error(f"méthode inconnue : {m}")
    if "tpe" in methods:
        try:
            import optuna  # noqa: F401 - only asks whether the [bench] extra is installed
        except ImportError:
            parser.error("TPE needs Optuna: .venv/bin/pip install -e '.[bench]'")
    rows = evaluate(machines, noises, methods, args.seeds,
                    progress=None if args.json else lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
