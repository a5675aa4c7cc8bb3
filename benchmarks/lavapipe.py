"""llama.cpp's Vulkan backend on Mesa's software Vulkan device (lavapipe): a graphics card in CI without one.

Shared by ``benchmarks/plan_accuracy.py`` and the tests marked ``vulkan`` (``tests/vulkan/``).

* **The engine** (:func:`find_engine`): the Vulkan build of the pinned llama-cpp-python's libraries that
  ``scripts/build_llama_vulkan.sh`` caches (``bash scripts/dev.sh install`` builds it), used through
  ``LLAMA_CPP_LIB_PATH`` with the CPU package of ``.venv``: only the processes started with
  :meth:`VulkanEngine.env` (runners, dry-run probes) load it.
* **The device**: lavapipe is a CPU-type Vulkan device, which ggml-vulkan uses only when
  ``GGML_VK_VISIBLE_DEVICES`` names it; ``VK_ICD_FILENAMES`` keeps Mesa's other (hardware) drivers out,
  so lavapipe is device 0. Layers really go to a Vulkan device and buffers are really allocated there.
* **A card of a given size** (:func:`limited_python`): lavapipe's device memory is the runner's own
  memory, so a limit on the runner's address space (``RLIMIT_AS``) makes a load that does not fit really
  fail, as on a full card. The limit is the runner's own footprint without its device buffers (measured
  with one layer offloaded: :func:`footprint`) plus the device budget.
"""

from __future__ import annotations

import importlib.metadata
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from tray_app.hardware.llama_buffers import BufferSizes, device_buffer_total

MIB = 1024 * 1024
ICD_GLOB = "lvp_icd*.json"
ICD_DIRS = (Path("/usr/share/vulkan/icd.d"), Path("/etc/vulkan/icd.d"), Path("/usr/local/share/vulkan/icd.d"))
ENGINE_ENV = "DESKTOP_MATE_VULKAN_LIB"  # a folder of Vulkan-built libraries, instead of the cached build


@dataclass(frozen=True)
class VulkanEngine:
    lib_dir: Path
    icd: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment in which llama_cpp loads this engine and sees lavapipe as device 0."""
        env = dict(os.environ if base is None else base)
        env.update(LLAMA_CPP_LIB_PATH=str(self.lib_dir), VK_ICD_FILENAMES=str(self.icd), VK_DRIVER_FILES=str(self.icd),
                   GGML_VK_VISIBLE_DEVICES="0", MALLOC_ARENA_MAX="2")
        return env

    def activate(self) -> None:
        """This process's environment (the runners and probes it starts inherit it)."""
        os.environ.update(self.env({}))


def wheel_cache() -> Path:
    root = os.environ.get("DESKTOP_MATE_WHEEL_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "desktop-mate-tray" / "wheels"


def find_engine() -> tuple[VulkanEngine | None, str]:
    """The Vulkan engine and lavapipe, or (None, why not): ``"SKIP: …"`` when this machine cannot have
    them at all (the build script said so), anything else is a missing step."""
    version = importlib.metadata.version("llama_cpp_python")
    override = os.environ.get(ENGINE_ENV)
    lib = Path(override) if override else wheel_cache() / f"llama-vulkan-{version}" / "lib"
    unavailable = wheel_cache() / f"llama-vulkan-{version}.unavailable"
    if not override and unavailable.is_file():
        return None, "SKIP: " + unavailable.read_text(encoding="utf-8").strip().removeprefix("SKIP: ")
    if not (lib / "libggml-vulkan.so").is_file():
        return None, (f"the Vulkan build of llama.cpp is not in {lib}: run `bash scripts/dev.sh install` "
                      "(scripts/build_llama_vulkan.sh builds it once)")
    icds = [p for d in ICD_DIRS for p in sorted(d.glob(ICD_GLOB))]
    if not icds:
        return None, "Mesa's lavapipe is not installed (Debian: mesa-vulkan-drivers; the build script installs it)"
    return VulkanEngine(lib, icds[0]), ""


def limited_python(folder: Path, address_space: int) -> Path:
    """An executable that runs this Python with the address space limited to ``address_space`` bytes (a
    shell script: ``ulimit -v`` then ``exec``), for :class:`~tray_app.host.runner.Runner`'s ``python``."""
    script = folder / f"python-limited-{address_space // MIB}m.sh"
    script.write_text(f"#!/bin/sh\nulimit -v {address_space // 1024}\nexec '{sys.executable}' \"$@\"\n",
                      encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def vm_peak(pid: int) -> int:
    """The process's peak address space (``VmPeak``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmPeak for {pid}")


@dataclass(frozen=True)
class Footprint:
    """What a runner takes outside its device buffers (address space), measured with one layer offloaded."""

    address_space: int  # VmPeak − device buffers
    device: int  # the one-layer load's device buffers

    def limit_for(self, device_budget: int, slack: int = 64 * MIB) -> int:
        return self.address_space + device_budget + slack


def footprint(vm_peak_bytes: int, buffers: BufferSizes) -> Footprint:
    device = device_buffer_total(buffers)
    return Footprint(vm_peak_bytes - device, device)
