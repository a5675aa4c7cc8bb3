"""GPU measurement of the memory plan: predicted vs measured VRAM, and llama.cpp's own fit (issue 3, item 7).

Run by ``benchmarks/gpu_vram_check.py`` (its docstring: how to run it; ``gpu_vram_check.sh``: how to
build the CUDA wheel it needs). For each case, a model × a context × a VRAM budget (:mod:`.cases`):

1. **Budget** (:mod:`.cuda_hold`). For a budget smaller than what the card has free, a helper process
   first holds the rest of the card's memory with plain allocations (``cuMemAlloc`` from libcuda, else
   ``cudaMalloc`` from libcudart, through ctypes; never managed memory), so that NVML's free memory is
   the budget, as on a laptop whose card is that big. The plan is told the card is that big too
   (``total_vram = budget``), so its safety margin is the laptop's. The helper frees everything at the
   end of the case.
2. **Plan** (:mod:`.models`). ``make_plan(model, free_vram=<NVML free>, total_vram=…, wanted_ctx=ctx)``:
   the layers on the GPU and the predicted split (weights, KV cache, compute buffers, CUDA overhead).
3. **llama.cpp's own fit for the same free memory** (:mod:`.fit_probe`, :mod:`.fit_emulation`), in a
   separate process (its own CUDA context, as the fit runs inside llama-server): ``common_fit_params``
   from the wheel's ``libllama-common`` called through ctypes (the Python bindings do not wrap it), and
   its rule emulated with our own dry runs, to compare.
4. **Load and measure** (:mod:`.measurement`). The real runner (``Runner(plan.to_runner_config())``)
   and NVML: the runner's own VRAM by the project's one rule (``tray_app.hardware.gpu.runner_vram``: its
   pids, else the process that appeared, else the card's increase) and the whole card, after load and
   at the peak while answering one streaming request (~1 500 prompt tokens, 256 generated, end token
   forbidden: :mod:`.prompts`) that exercises the compute buffers; llama.cpp's own buffer sizes from the
   runner's log; tokens/s. A runner that dies of out-of-memory is a result (``OOM``), not a crash.

Error = prediction − measurement (positive: the plan reserved more than needed, the safe side), in MiB
and % of the measurement; "ok" when within ±5 % or ±256 MiB (:mod:`.results`). :mod:`.report` prints
the table and writes the JSON; :mod:`.run` is the command (``main``) and its two helper-process entry
points (``--fit-probe``, ``--hold-vram``), which re-run :data:`ENTRY_SCRIPT` so that a child starts
exactly as the parent did.

Heavy imports (llama_cpp, the planner, NVML) happen inside the functions that need them: ``--help``,
``--dry-run`` and the helper processes load only what they use.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRY_SCRIPT = REPO / "benchmarks" / "gpu_vram_check.py"  # what the helper processes are started with
MIB = 1024 * 1024  # binary units, as NVML and llama.cpp's log count
GIB = 1024 * MIB
