"""What a run shows: the markdown table, the summary lines, and the JSON file.

The JSON is rewritten after each case (:func:`write_json`, through a temporary file and a rename) so that
a run cut by a time limit keeps what it measured; :func:`load_done` reads it back for ``--resume``.
:data:`NOTES` go into its ``meta``: what each figure means, for whoever reads the file without this code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.gpu_vram import MIB
from benchmarks.gpu_vram.results import CaseResult
from tray_app.hardware.llama_buffers import device_buffer_total

NOTES = {
    "error": "prediction.used - measured.peak (bytes); positive = the plan reserved more than the runner took",
    "tolerance": "within ±5 % of the measurement or ±256 MiB, whichever is larger",
    "measured.peak": "the runner's own VRAM (NVML, per process) at its peak while answering one request",
    "offloaded": "llama.cpp's n_gpu_layers: repeating layers on the GPU + 1 when the output layer is there too",
    "fit": "fit.offloaded: llama.cpp's own common_fit_params (libllama-common, called through ctypes: the "
           "Python bindings do not wrap it) with the 1 GiB margin of --fit, in a process of its own; "
           "fit.emulated: the same rule with our dry runs (most layers whose model + KV + dry-run compute "
           "buffer stay under the free memory llama.cpp sees - 1 GiB), used when the function is missing",
    "budget": "free VRAM left to the plan by a helper process holding the rest (cuMemAlloc/cudaMalloc); "
              "the plan is told the card has that size",
    "holder.context": "VRAM of a bare CUDA driver context on this machine (grows with the number of SMs: "
                      "an H100's is larger than a laptop GPU's)",
}


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / MIB:,.0f}".replace(",", " ")


def render_table(results: Sequence[CaseResult]) -> str:
    """The markdown table of every case (predicted split, llama.cpp's buffers, measured, error, speed)."""
    head = (
        "| case | layers on GPU: plan / llama.cpp fit | predicted MiB: weights + KV + compute + overhead "
        "= total | llama.cpp buffers MiB: model / KV / compute | device MiB: dry run / allocated / NVML "
        "| measured MiB: after load / peak "
        "| overhead MiB: peak − buffers | error MiB (%) | ±5 % or 256 MiB | OOM | tokens/s |"
    )
    lines = [head, "|" + " --- |" * 11]
    for r in results:
        p, f, m = r.prediction, r.fit, r.measured
        if p is not None:
            layers = f"{p.offloaded}/{p.n_layers + 1}"
            predicted = (
                f"{_mib(p.weights)} + {_mib(p.kv_cache)} + {_mib(p.compute)} + {_mib(p.overhead)} "
                f"= **{_mib(p.used)}**"
            )
        else:
            layers, predicted = "—", "—"
        if f is not None and f.error:
            layers += " / (fit failed)"
        elif f is not None:
            layers += f" / {f.offloaded}"
            if f.method != "common_fit_params":
                layers += " (emulated)"
            elif f.emulated != f.offloaded:
                layers += f" (emulation: {f.emulated})"
        buffers = overhead = "—"
        allocated = device_buffer_total(m.buffers) if m is not None and m.buffers else None
        three = " / ".join((_mib(p.dry_run if p is not None else None), _mib(allocated),
                            _mib(m.after_load if m is not None else None)))
        if m is not None and m.buffers:
            buffers = " / ".join(_mib(device_buffer_total(m.buffers, k)) for k in ("model", "kv", "compute"))
            if m.peak is not None:
                overhead = _mib(m.peak - device_buffer_total(m.buffers))
        measured = "—" if m is None else f"{_mib(m.after_load)} / {_mib(m.peak)}"
        if m is not None and m.method and m.method != "pid" and m.peak is not None:
            measured += f" ({m.method})"  # how the runner's VRAM was found, when not by its own pids
        err = r.error_bytes
        frac = r.error_fraction
        error = "—" if err is None else f"{err / MIB:+,.0f} ({(frac or 0.0) * 100:+.1f} %)".replace(",", " ")
        ok = {None: "—", True: "yes", False: "**NO**"}[r.within_tolerance]
        oom = "**OOM**" if r.oom else ("no" if m is not None and m.peak is not None else "—")
        speed = "—" if m is None or m.tokens_per_s is None else f"{m.tokens_per_s:.1f}"
        case = f"{r.model_name}, {r.ctx} tok, {r.budget}"
        if r.error and not r.oom:
            case += f" — {r.error[:60]}"
        cells = (case, layers, predicted, buffers, three, measured, overhead, error, ok, oom, speed)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_lines(results: Sequence[CaseResult]) -> list[str]:
    """How many cases are within tolerance, the largest error, the OOMs, and layers vs llama.cpp's fit."""
    measured = [r for r in results if r.within_tolerance is not None]
    lines = []
    if measured:
        ok = sum(1 for r in measured if r.within_tolerance)
        worst = max(measured, key=lambda r: abs(r.error_bytes or 0))
        lines.append(
            f"{ok}/{len(measured)} measured cases within ±5 % or 256 MiB; largest error "
            f"{(worst.error_bytes or 0) / MIB:+.0f} MiB ({worst.case})."
        )
    ooms = [r.case for r in results if r.oom]
    if ooms:
        lines.append(f"Out of memory: {', '.join(ooms)}.")
    fits = [r for r in results if r.fit is not None and not r.fit.error and r.prediction is not None]
    if fits:
        same = sum(1 for r in fits if r.fit and r.prediction and r.fit.offloaded == r.prediction.offloaded)
        more = sum(1 for r in fits if r.fit and r.prediction and r.prediction.offloaded > r.fit.offloaded)
        lines.append(
            f"Layers vs llama.cpp's fit (1 GiB margin): same in {same}, more in {more}, fewer in "
            f"{len(fits) - same - more} of {len(fits)} cases."
        )
    return lines


def write_json(path: Path | None, meta: dict[str, Any], results: Sequence[CaseResult]) -> None:
    """``{"meta": …, "cases": […]}`` to ``path`` (nothing without one), replaced whole: never half written."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "cases": [r.to_dict() for r in results]}, indent=2), "utf-8")
    os.replace(tmp, path)


def load_done(path: Path | None) -> list[CaseResult]:
    """The cases of an earlier run's JSON that were measured (not failed for another reason), for --resume."""
    if path is None or not path.is_file():
        return []
    data = json.loads(path.read_text("utf-8"))
    if data.get("meta", {}).get("dry_run"):
        return []
    done = [CaseResult.from_dict(c) for c in data.get("cases", [])]
    return [r for r in done if r.oom or (r.measured is not None and r.measured.peak is not None)]
