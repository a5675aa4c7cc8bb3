"""NVIDIA GPUs through NVML, read into frozen snapshots.

Every NVML call goes through :func:`query`, which turns "not supported" (and any other NVML error on a
single field) into ``None``: missing data is a value, not an exception. A machine without an NVIDIA GPU,
driver or NVML library gives an empty tuple and a French reason, and everything else keeps working.

The NVML module is injected: the real one is ``pynvml`` (package ``nvidia-ml-py``); tests and
``monitor --replay`` pass :class:`tray_app.hardware.nvml_replay.ReplayNvml`, which answers the same calls
from a recorded timeline.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

NO_NVIDIA_GPU = "pas de carte NVIDIA détectée"


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None where the driver does not say (Windows WDDM)


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one instant."""

    index: int
    name: str
    uuid: str
    driver_version: str
    memory_total: int | None  # bytes; the three are None together when the driver does not say
    memory_used: int | None
    memory_free: int | None
    utilization_percent: int | None
    temperature_c: int | None
    power_w: float | None
    power_limit_w: float | None
    throttle_reasons: int | None  # NVML clocks-event bitmask
    processes: tuple[GpuProcess, ...]

    @property
    def used_fraction(self) -> float | None:
        """Share of the card's memory in use; None when the driver does not say."""
        if self.memory_total is None or self.memory_used is None or self.memory_total <= 0:
            return None
        return self.memory_used / self.memory_total

    def process_used_bytes(self, pid: int) -> int | None:
        for p in self.processes:
            if p.pid == pid:
                return p.used_bytes
        return None


def runner_vram(
    gpu: GpuReading,
    runner_pids: Collection[int],
    *,
    pids_before: Collection[int] | None = None,
    used_before: int | None = None,
) -> tuple[int | None, str]:
    """The model runner's graphics memory on ``gpu``, and how it was found: the one rule the gauges,
    « Optimiser » and the GPU check all use.

    1. ``"pid"``: what the driver reports for the runner's processes (``runner_pids``: the runner and its
       children — on Windows a virtual environment's launcher starts the real process), summed;
    2. ``"new-process"``: when none of those pids is listed (a container's pids are not the driver's),
       the processes that appeared since the runner started (not in ``pids_before``), summed;
    3. ``"card-delta"``: where the driver reports no process memory (Windows WDDM, every consumer
       laptop), the card's use now minus ``used_before``, its use just before the runner started: an
       estimate (another program starting meanwhile counts as the runner's);
    4. ``"unknown"``: (None) when none of that is known.
    """
    reported = [p.used_bytes for p in gpu.processes if p.pid in runner_pids and p.used_bytes is not None]
    if reported:
        return sum(reported), "pid"
    if pids_before is not None:
        new = [p.used_bytes for p in gpu.processes if p.pid not in pids_before and p.used_bytes is not None]
        if new:
            return sum(new), "new-process"
    if used_before is not None and gpu.memory_used is not None:
        return max(0, gpu.memory_used - used_before), "card-delta"
    return None, "unknown"


def query(fn: Callable[..., T], *args: Any) -> T | None:
    """Call one NVML function; any NVML error (not supported, no permission, GPU lost) gives None."""
    try:
        return fn(*args)
    except Exception as exc:  # pynvml raises NVMLError subclasses; a replay raises the same
        if type(exc).__name__.startswith("NVMLError"):
            return None
        raise


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlReader:
    """Owns the NVML session; :meth:`read` returns a reading per GPU (empty when there is none).

    Static facts (name, UUID, driver, power limit) are read once per device; a read costs only the
    dynamic calls. Thread-safe: the monitor thread and a command may read at the same time.
    """

    def __init__(self, nvml: Any | None = None, *, on_read: Callable[[], object] | None = None) -> None:
        self._nvml: Any = nvml
        self._on_read = on_read  # called after each read (a replay moves to its next sample)
        self._lock = threading.Lock()
        self._started = False
        self._initialised = False  # nvmlInit succeeded: nvmlShutdown is owed, devices or not
        self._handles: list[Any] = []
        self._indexes: list[int] = []  # NVML's index of each handle (a device that fails is skipped)
        self._static: list[tuple[str, str, float | None]] = []
        self._driver = ""
        self.unavailable_reason = ""

    def _start(self) -> None:
        self._started = True
        nvml: Any = self._nvml
        if nvml is None:
            try:
                import pynvml  # nvidia-ml-py
            except ImportError:
                self.unavailable_reason = NO_NVIDIA_GPU + " (bibliothèque NVML absente)"
                return
            self._nvml = nvml = pynvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError, or OSError when the library is broken: no GPU
            log.info("NVML not available: %s", exc)
            self.unavailable_reason = NO_NVIDIA_GPU
            return
        self._initialised = True
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as exc:  # noqa: BLE001 - whatever NVML raises here means no GPU to read
            log.info("NVML cannot count the GPUs: %s", exc)
            self.unavailable_reason = NO_NVIDIA_GPU
            return
        if count == 0:
            self.unavailable_reason = NO_NVIDIA_GPU
            return
        self._driver = _text(query(nvml.nvmlSystemGetDriverVersion) or "")
        for i in range(count):
            handle = query(nvml.nvmlDeviceGetHandleByIndex, i)
            if handle is None:
                log.warning("NVML: GPU %d skipped, its handle cannot be read", i)
                continue
            limit_mw = query(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            self._handles.append(handle)
            self._indexes.append(i)
            self._static.append(
                (
                    _text(query(nvml.nvmlDeviceGetName, handle) or "GPU NVIDIA"),
                    _text(query(nvml.nvmlDeviceGetUUID, handle) or ""),
                    limit_mw / 1000 if limit_mw else None,
                )
            )
        if not self._handles:
            self.unavailable_reason = NO_NVIDIA_GPU + " (le pilote ne donne accès à aucune carte)"

    @property
    def available(self) -> bool:
        with self._lock:
            if not self._started:
                self._start()
            return bool(self._handles)

    def read(self) -> tuple[GpuReading, ...]:
        with self._lock:
            if not self._started:
                self._start()
            readings = tuple(self._read_one(i) for i in range(len(self._handles)))
            if self._on_read is not None:
                self._on_read()
            return readings

    def _read_one(self, index: int) -> GpuReading:
        nvml, handle = self._nvml, self._handles[index]
        name, uuid, power_limit = self._static[index]
        mem = query(nvml.nvmlDeviceGetMemoryInfo, handle)
        util = query(nvml.nvmlDeviceGetUtilizationRates, handle)
        temp = query(nvml.nvmlDeviceGetTemperature, handle, 0)  # NVML_TEMPERATURE_GPU
        power_mw = query(nvml.nvmlDeviceGetPowerUsage, handle)
        throttle = query(nvml.nvmlDeviceGetCurrentClocksThrottleReasons, handle)
        procs = list(query(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or [])
        seen = {p.pid for p in procs}
        procs += [
            p for p in query(nvml.nvmlDeviceGetGraphicsRunningProcesses, handle) or [] if p.pid not in seen
        ]
        return GpuReading(
            index=self._indexes[index],
            name=name,
            uuid=uuid,
            driver_version=self._driver,
            memory_total=int(mem.total) if mem is not None else None,  # not supported: unknown, not 0
            memory_used=int(mem.used) if mem is not None else None,
            memory_free=int(mem.free) if mem is not None else None,
            utilization_percent=int(util.gpu) if util else None,
            temperature_c=int(temp) if temp is not None else None,
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=power_limit,
            throttle_reasons=int(throttle) if throttle is not None else None,
            processes=tuple(
                GpuProcess(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else None)
                for p in procs
            ),
        )

    def close(self) -> None:
        with self._lock:
            if self._initialised and self._nvml is not None:
                query(self._nvml.nvmlShutdown)
            self._initialised = False
            self._handles.clear()
            self._indexes.clear()
            self._static.clear()
            self._started = False


REPLAY_ENV = "DESKTOP_MATE_NVML_REPLAY"


def default_nvml_reader() -> NvmlReader:
    """The real NVML, or a recorded timeline when ``DESKTOP_MATE_NVML_REPLAY`` names one.

    The replay (one sample per read, looping) lets demos, screenshots and bug reports show a GPU on a
    machine that has none.
    """
    recording = os.environ.get(REPLAY_ENV)
    if recording:
        from tray_app.hardware.nvml_replay import ReplayNvml

        replay = ReplayNvml.from_file(Path(recording), loop=True)
        return NvmlReader(replay, on_read=replay.step)
    return NvmlReader()
