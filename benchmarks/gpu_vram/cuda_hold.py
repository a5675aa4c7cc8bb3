"""A helper process that holds VRAM (``--hold-vram``), so that the card has only the case's budget free.

Why: a laptop's 6 GiB card cannot be rented, but an H100 with all but 6 GiB held looks the same to NVML
and to the plan. Why plain allocations from another process: managed memory could be evicted, and the
runner's own process must not own what is held (its NVML figure is the measurement). The allocations go
through ctypes to the driver API (``cuMemAlloc`` from libcuda) or, without it, the runtime
(``cudaMalloc``): no CUDA Python package is needed on the GPU machine. The child says on one JSON line
how much it holds and what its bare CUDA context cost, then holds until the parent closes its stdin
(or dies): :class:`VramHolder` is the parent's side.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.gpu_vram import ENTRY_SCRIPT, GIB, MIB

HOLD_CHUNK = GIB
HOLD_GRANULARITY = 2 * MIB


def hold_chunks(nbytes: int, chunk: int = HOLD_CHUNK, granularity: int = HOLD_GRANULARITY) -> list[int]:
    """Allocation sizes that add up to ``nbytes`` rounded down to the granularity: big chunks first."""
    nbytes = max(0, nbytes) // granularity * granularity
    sizes = [chunk] * (nbytes // chunk)
    if nbytes % chunk:
        sizes.append(nbytes % chunk)
    return sizes


class CudaAllocator:
    """Plain device allocations through ctypes: the driver API (libcuda) first, else the runtime."""

    def __init__(self, device: int = 0) -> None:
        self.api = ""
        self._free: Callable[[int], None] | None = None
        self._alloc: Callable[[int], int | None] | None = None
        errors = []
        for opener in (self._open_driver, self._open_runtime):
            try:
                opener(device)
                return
            except OSError as exc:
                errors.append(str(exc))
        raise OSError("no CUDA library for allocations (libcuda.so.1, libcudart): " + "; ".join(errors))

    def _open_driver(self, device: int) -> None:
        lib = ctypes.CDLL("libcuda.so.1")

        def check(result: int, what: str) -> None:
            if result != 0:
                raise OSError(f"{what} failed with CUresult {result}")

        lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        check(lib.cuInit(0), "cuInit")
        dev = ctypes.c_int(0)
        check(lib.cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
        ctx = ctypes.c_void_p()
        check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        check(lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

        def alloc(n: int) -> int | None:
            ptr = ctypes.c_uint64(0)
            return ptr.value if lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(n)) == 0 else None

        self.api, self._alloc, self._free = "libcuda cuMemAlloc", alloc, lambda p: lib.cuMemFree_v2(p)

    def _open_runtime(self, device: int) -> None:
        import ctypes.util

        names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", ctypes.util.find_library("cudart")]
        lib = None
        for name in filter(None, names):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise OSError("libcudart not found")
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        if lib.cudaSetDevice(device) != 0:
            raise OSError("cudaSetDevice failed")

        def alloc(n: int) -> int | None:
            ptr = ctypes.c_void_p()
            return ptr.value if lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(n)) == 0 else None

        self.api, self._alloc, self._free = "libcudart cudaMalloc", alloc, lambda p: lib.cudaFree(p)

    def alloc(self, nbytes: int) -> int | None:
        assert self._alloc is not None
        return self._alloc(nbytes)

    def free(self, ptr: int) -> None:
        assert self._free is not None
        self._free(ptr)


def hold_main(argv: Sequence[str]) -> int:
    """Child process: allocate until NVML's free memory is the target, say so, hold until stdin closes."""
    p = argparse.ArgumentParser(prog="gpu_vram_check.py --hold-vram")
    p.add_argument("--free-target", type=int, required=True)
    p.add_argument("--device", type=int, default=0)
    a = p.parse_args(argv)

    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(a.device)
    except Exception as exc:  # noqa: BLE001  (no driver, no GPU, any NVML error: said on the line the parent waits for)
        print(json.dumps({"ready": False, "error": f"NVML: {exc}"}), flush=True)
        return 1

    def mem() -> Any:
        return pynvml.nvmlDeviceGetMemoryInfo(handle)

    used_before = int(mem().used)
    try:
        allocator = CudaAllocator(a.device)
    except OSError as exc:
        print(json.dumps({"ready": False, "error": str(exc)}), flush=True)
        return 1
    context = int(mem().used) - used_before  # what a bare CUDA context costs on this machine
    held: list[tuple[int, int]] = []
    failed = 0
    for _ in range(6):  # the first pass does the bulk; the next ones correct for granularity
        extra = int(mem().free) - a.free_target
        if extra < HOLD_GRANULARITY or failed:
            break
        for size in hold_chunks(extra):
            ptr = allocator.alloc(size)
            if ptr is None:  # the driver refuses: hold what we have (the result says so)
                failed += 1
                break
            held.append((ptr, size))
    info = mem()
    print(json.dumps({
        "ready": True, "api": allocator.api, "held": sum(s for _, s in held), "free": int(info.free),
        "free_target": a.free_target, "context": context, "failed_allocations": failed,
    }), flush=True)
    try:
        sys.stdin.buffer.read()  # until the parent closes our stdin (or dies)
    finally:
        for ptr, _ in held:
            allocator.free(ptr)
    return 0


class VramHolder:
    """The helper process that holds VRAM; :meth:`close` frees it (ending the process frees it too)."""

    def __init__(self, free_target: int, device: int = 0, timeout: float = 120.0) -> None:
        command = [
            sys.executable, str(ENTRY_SCRIPT), "--hold-vram",
            "--free-target", str(free_target), "--device", str(device),
        ]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        stdout = self.proc.stdout
        assert stdout is not None
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([stdout], [], [], left)[0]:
                break  # no answer in time
            line = stdout.readline()
            if not line:
                break  # the helper ended
            if line.startswith("{"):
                self.info = json.loads(line)
                break
        if not self.info.get("ready"):
            self.close()
            raise RuntimeError(f"VRAM holder failed: {self.info.get('error', 'no answer')}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
