"""llama.cpp's Vulkan backend on Mesa's software Vulkan device (lavapipe): a graphics card in CI without one.

Shared by ``benchmarks/plan_accuracy.py`` and the tests marked ``vulkan`` (``tests/vulkan/``).

* **The engine** (:func:`find_engine`): the Vulkan build of the pinned llama-cpp-python's libraries that
  ``scripts/build_llama_vulkan.sh`` caches (``bash scripts/dev.sh install`` builds it), used through
  ``LLAMA_CPP_LIB_PATH`` with the CPU package of ``.venv``: only the processes started with
  :meth:`VulkanEngine.env` (runners, dry-run probes) load it.
* **The device**: lavapipe is a CPU-type Vulkan device, which ggml-vulkan uses only when
  ``GGML_VK_VISIBLE_DEVICES`` names it; ``VK_ICD_FILENAMES`` keeps Mesa's other (hardware) drivers out,
  so lavapipe is device 0. Layers really go to a Vulkan device and buffers are really allocated there.
* **A card of a given size** (:func:`budget_python`): lavapipe's device memory is the runner's own
  memory, and no limit of the operating system tells the two apart (measured: a runner's peak address
  space is the same with 1 or all 17 layers of Llama 3.2 1B offloaded, the weights moved to the device
  replacing the file mapping they came from). So the device itself is made small: a tiny preloaded
  library (``vk_device_budget.c``) makes ``vkAllocateMemory`` fail with ``VK_ERROR_OUT_OF_DEVICE_MEMORY``
  beyond the budget, as a full card does; llama.cpp then fails the load as it would on that card.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
ICD_GLOB = "lvp_icd*.json"
ICD_DIRS = (Path("/usr/share/vulkan/icd.d"), Path("/etc/vulkan/icd.d"), Path("/usr/local/share/vulkan/icd.d"))
ENGINE_ENV = "DESKTOP_MATE_VULKAN_LIB"  # a folder of Vulkan-built libraries, instead of the cached build
BUDGET_SOURCE = Path(__file__).with_name("vk_device_budget.c")
BUDGET_ENV = "DM_VK_DEVICE_BUDGET"  # read by vk_device_budget.c: bytes of device memory


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


def device_budget_library(folder: Path) -> Path:
    """The device-budget library (``vk_device_budget.c``) compiled into ``folder`` (a C compiler is part of
    the Vulkan build's tools); a fresh copy per caller, under a second."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) to build benchmarks/vk_device_budget.c: install gcc")
    library = folder / "vk_device_budget.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(BUDGET_SOURCE), "-ldl", "-lpthread"],
                   check=True, capture_output=True)
    return library


def budget_python(folder: Path, library: Path, device_budget: int) -> Path:
    """An executable that runs this Python with lavapipe limited to ``device_budget`` bytes of device memory
    (a shell script: the library preloaded, then ``exec``), for :class:`~tray_app.host.runner.Runner`'s
    ``python``: a load whose device buffers do not fit fails as on a full card."""
    script = folder / f"python-device-{device_budget}.sh"
    script.write_text(f"#!/bin/sh\nexport LD_PRELOAD='{library}' {BUDGET_ENV}={device_budget}\n"
                      f"exec '{sys.executable}' \"$@\"\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
