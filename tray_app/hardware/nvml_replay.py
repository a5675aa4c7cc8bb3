"""A recorded NVML device, replayed at the NVML boundary.

:class:`ReplayNvml` answers the same calls as ``pynvml`` (the subset :class:`~tray_app.hardware.gpu.NvmlReader`
uses) from a timeline file, so the real reading code runs unchanged in tests, demos and
``monitor --replay``. A field absent or ``null`` in a sample (or a device's ``memory_total`` set to ``null``)
raises ``NVMLError_NotSupported``, as the real library does on cards and drivers that lack it.

File format (JSON)::

    {"format": "desktop-mate-nvml-recording", "version": 1, "description": "...",
     "driver_version": "566.36",
     "devices": [{"name": "...", "uuid": "...", "memory_total": BYTES, "power_limit_mw": 80000}],
     "samples": [{"t": 0.0, "devices": [{"memory_used": BYTES, "gpu_util": 12, "temperature": 51,
                                         "power_mw": 14000, "throttle": 0,
                                         "processes": [{"pid": 4242, "used": null, "kind": "graphics"}]}]}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDING_FORMAT = "desktop-mate-nvml-recording"


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


@dataclass(frozen=True)
class _Memory:
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Process:
    pid: int
    usedGpuMemory: int | None


def load_recording(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != RECORDING_FORMAT or not data.get("samples"):
        raise ValueError(f"{path} n'est pas un enregistrement de mesures Desktop-Mate")
    return data


class ReplayNvml:
    """Module-like object with pynvml's function names; :meth:`step` moves to the next sample."""

    NVMLError = NVMLError

    def __init__(self, recording: dict[str, Any], *, loop: bool = False) -> None:
        self.recording = recording
        self.devices: list[dict[str, Any]] = recording.get("devices", [])
        self.samples: list[dict[str, Any]] = recording["samples"]
        self.index = 0
        self.loop = loop
        self.initialised = False

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> ReplayNvml:
        return cls(load_recording(path), **kwargs)

    # -- timeline -------------------------------------------------------------------------------
    @property
    def sample(self) -> dict[str, Any]:
        return self.samples[self.index]

    @property
    def at_end(self) -> bool:
        return self.index >= len(self.samples) - 1

    def step(self) -> bool:
        """Advance one sample; False when the timeline is over (and ``loop`` is off)."""
        if self.index < len(self.samples) - 1:
            self.index += 1
            return True
        if self.loop:
            self.index = 0
            return True
        return False

    def _field(self, handle: int, key: str) -> Any:
        value = self.sample["devices"][handle].get(key)
        if value is None:
            raise NVMLError_NotSupported(key)
        return value

    # -- pynvml API -----------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.recording.get("nvml_error"):
            raise NVMLError_LibraryNotFound(self.recording["nvml_error"])
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self.recording.get("driver_version", ""))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return str(self.devices[handle]["name"])

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return str(self.devices[handle].get("uuid", f"GPU-replay-{handle}"))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        value = self.devices[handle].get("power_limit_mw")
        if value is None:
            raise NVMLError_NotSupported("power_limit_mw")
        return int(value)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:
        total = self.devices[handle].get("memory_total")
        if total is None:
            raise NVMLError_NotSupported("memory_total")
        used = int(self._field(handle, "memory_used"))
        return _Memory(total=int(total), used=used, free=max(0, int(total) - used))

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Utilization:
        return _Utilization(gpu=int(self._field(handle, "gpu_util")), memory=0)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return int(self._field(handle, "temperature"))

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self._field(handle, "power_mw"))

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return int(self._field(handle, "throttle"))

    def _processes(self, handle: int, kind: str) -> list[_Process]:
        procs = self.sample["devices"][handle].get("processes") or []
        return [
            _Process(int(p["pid"]), None if p.get("used") is None else int(p["used"]))
            for p in procs
            if p.get("kind", "compute") == kind
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[_Process]:
        return self._processes(handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[_Process]:
        return self._processes(handle, "graphics")
