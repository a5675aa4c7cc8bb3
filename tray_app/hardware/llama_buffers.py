"""llama.cpp's buffer sizes as it logs them: what the engine really allocated, per buffer and kind.

A real load logs, for each buffer, ``<name> <kind> buffer size = N MiB`` (``Vulkan0 model buffer size =
3847.55 MiB``, ``CUDA0 KV buffer size``, ``Vulkan0 compute buffer size``, ``Vulkan_Host output buffer
size``…). The host reads them from the runner's output (the device's share, for the calibration of this
card), the tests and ``benchmarks/plan_accuracy.py`` compare them with the dry run's prediction, and the
GPU check beside NVML's figure.
"""

from __future__ import annotations

import re

from tray_app.format_fr import MIB

BufferSizes = dict[str, dict[str, int]]  # buffer name -> kind (model, kv, compute, output, rs) -> bytes

BUFFER_LINE = re.compile(
    r"(?P<name>[A-Za-z][A-Za-z0-9_]*)\s+(?P<kind>model|KV|output|compute|RS)\s+buffer size\s*=\s*"
    r"(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB"
)


def parse_buffer_sizes(text: str) -> BufferSizes:
    """llama.cpp's "<buffer> <kind> buffer size = N MiB" log lines: {"CUDA0": {"model": …, "kv": …}}.

    Model and KV buffers are allocated once per load and added up (a model too big for one buffer is
    logged as several); compute and output buffers are reallocated when the scheduler reserves again
    (the log repeats them): the last size is the one held.
    """
    sizes: BufferSizes = {}
    for m in BUFFER_LINE.finditer(text):
        add_buffer_line(sizes, m["name"], m["kind"], float(m["mib"]))
    return sizes


def add_buffer_line(sizes: BufferSizes, name: str, kind: str, mib: float) -> None:
    kind = kind.lower()
    by_kind = sizes.setdefault(name, {})
    size = round(mib * MIB)
    by_kind[kind] = size if kind in ("compute", "output") else by_kind.get(kind, 0) + size


def is_device_buffer(name: str) -> bool:
    """CUDA0, Vulkan0…: the graphics card's memory. CPU, CPU_Mapped, CUDA_Host (pinned RAM): not."""
    return not (name.upper().startswith("CPU") or "host" in name.lower())


def device_buffer_total(sizes: BufferSizes, kind: str | None = None) -> int:
    """Bytes in the device buffers (of one ``kind``, or all)."""
    return sum(
        size
        for name, kinds in sizes.items()
        if is_device_buffer(name)
        for k, size in kinds.items()
        if kind is None or k == kind
    )
