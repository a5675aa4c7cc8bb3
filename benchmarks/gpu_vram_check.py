"""GPU measurement of the memory plan: predicted vs measured VRAM, and llama.cpp's own fit (issue 3, item 7).

Needs an NVIDIA GPU and a CUDA build of llama-cpp-python 0.3.36: ``benchmarks/gpu_vram_check.sh`` builds
one and runs this script (``--dry-run`` needs neither). For each case, a model × a context × a VRAM
budget (6, 8, 12 GiB left free by a helper process holding the rest, or the whole card), it prints the
plan's predicted VRAM, llama.cpp's own buffer sizes and fit, and the runner's VRAM measured by NVML after
loading and at its peak while answering. How, and why so: the package :mod:`benchmarks.gpu_vram`.

    bash benchmarks/gpu_vram_check.sh --out gpu_vram.json    # build, install, then every default case
    python benchmarks/gpu_vram_check.py --dry-run              # no GPU: plans and predictions only
    python benchmarks/gpu_vram_check.py --quick --out q.json   # one case (Llama-3-8B, 4 096, 6 GiB)

Output: a markdown table on stdout; with ``--out``, the JSON of every case, rewritten after each case
so that a run cut by a time limit keeps what it measured. ``--time-budget 540`` starts no case after
9 minutes; the same command with ``--resume`` then measures only the cases missing from ``--out``.
The default list (~17 cases) takes roughly 20-40 s a case on an H100 (estimate, not yet measured).

This file is only the entry point, also of the helper processes the measurement starts (``--hold-vram``,
``--fit-probe``, by running this file again): it puts the repository root first on ``sys.path``, so the
package and ``tray_app`` are this checkout's wherever it is run from.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))

from benchmarks.gpu_vram.run import main

if __name__ == "__main__":
    sys.exit(main())
