"""What the installed llama-cpp-python can do: its version, its backend (CPU, Vulkan, CUDA…) and whether it
can offload to a GPU.

The engine's libraries are the ones ``llama_cpp`` will load: its own ``lib`` folder, or the folder named by
``LLAMA_CPP_LIB_PATH`` (llama-cpp-python's own setting; the Vulkan tests use it to run the Vulkan build of
the same version with the CPU package). They are listed without being loaded;
``llama_supports_gpu_offload()`` is asked only when the caller accepts the import (~0.3 s).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LIB_PATH_ENV = "LLAMA_CPP_LIB_PATH"  # read by llama_cpp.llama_cpp itself
_GPU_BACKENDS = ("cuda", "vulkan", "metal", "hip", "sycl", "opencl")
# The graphics backend a plan is made for, when a build has several: CUDA's buffers before Vulkan's.
_PREFERENCE = ("cuda", "hip", "vulkan", "metal", "sycl", "opencl")
BACKEND_NAMES_FR = {
    "cpu": "processeur",
    "cuda": "CUDA (cartes NVIDIA)",
    "vulkan": "Vulkan (toutes les cartes graphiques)",
    "metal": "Metal (Mac)",
    "hip": "ROCm (cartes AMD)",
    "sycl": "SYCL (cartes Intel)",
    "opencl": "OpenCL",
}
# Variables that change which devices the engine sees, hence its buffers (part of the fingerprint).
DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "GGML_VK_VISIBLE_DEVICES", "GGML_VK_FORCE_MAX_BUFFER_SIZE",
              "VK_ICD_FILENAMES", "VK_DRIVER_FILES")


@dataclass(frozen=True)
class LlamaBackend:
    installed: bool
    version: str
    backends: tuple[str, ...]  # e.g. ("cpu",), ("cpu", "cuda")
    gpu_offload: bool
    lib_dir: str = ""  # where llama_cpp loads its libraries from

    @property
    def gpu_backend(self) -> str:
        """The graphics backend a plan is made for ("cuda", "vulkan"…), "" for a processor-only engine."""
        for name in _PREFERENCE:
            if name in self.backends:
                return name
        return ""

    @property
    def name_fr(self) -> str:
        """The backend a plan is made for, in French words."""
        backend = self.gpu_backend if self.gpu_offload else ""
        return BACKEND_NAMES_FR.get(backend or "cpu", backend)

    @property
    def summary(self) -> str:
        if not self.installed:
            return "llama-cpp-python n'est pas installé"
        if self.gpu_offload and self.gpu_backend:
            return (f"llama-cpp-python {self.version}, moteur {self.name_fr} : peut utiliser la carte "
                    "graphique")
        if self.gpu_backend:
            return (f"llama-cpp-python {self.version}, moteur {BACKEND_NAMES_FR.get(self.gpu_backend)} : "
                    "aucune carte graphique utilisable, processeur seulement")
        return f"llama-cpp-python {self.version}, moteur pour le processeur seulement"

    def fingerprint(self) -> str:
        """Changes when the engine, its libraries or the devices it may see change (dry-run cache key)."""
        parts = [self.version, self.lib_dir, *self.backends]
        lib = Path(self.lib_dir)
        for f in sorted(lib.glob("*ggml*")) + sorted(lib.glob("*llama*")) if self.lib_dir else []:
            try:
                stat = f.stat()
            except OSError:
                continue
            parts.append(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}")
        parts += [f"{name}={os.environ.get(name, '')}" for name in DEVICE_ENV]
        return hashlib.sha1("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def _backends_from_files(lib_dir: Path) -> tuple[str, ...]:
    found = {"cpu"}
    for f in lib_dir.glob("*ggml-*"):
        for name in _GPU_BACKENDS:
            if f"ggml-{name}" in f.name.lower():
                found.add(name)
    return tuple(sorted(found, key=lambda n: (n != "cpu", n)))


def engine_lib_dir() -> Path | None:
    """The folder llama_cpp loads its libraries from (``LLAMA_CPP_LIB_PATH``, else its own ``lib``)."""
    override = os.environ.get(LIB_PATH_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "lib"


def detect_llama_backend(*, ask_library: bool = True) -> LlamaBackend:
    spec = importlib.util.find_spec("llama_cpp")
    lib_dir = engine_lib_dir()
    if spec is None or not spec.origin or lib_dir is None:
        return LlamaBackend(False, "", (), False)
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    backends = _backends_from_files(lib_dir)
    gpu = any(b != "cpu" for b in backends)
    if ask_library:
        try:
            import llama_cpp

            gpu = bool(llama_cpp.llama_supports_gpu_offload())
        except Exception:  # a broken install must not stop the diagnosis
            log.exception("llama_cpp import failed")
            return LlamaBackend(True, version, backends, False, str(lib_dir))
    return LlamaBackend(True, version, backends, gpu, str(lib_dir))
