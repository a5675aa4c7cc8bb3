"""Where the monitor's measurements come from: the real machine, or a recorded timeline.

A source answers :meth:`read` with one :class:`~tray_app.hardware.snapshot.HardwareSnapshot` per tick
(None when a replay is over) and may carry host figures and host events recorded with it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import psutil

from tray_app.hardware.gpu import NvmlReader
from tray_app.hardware.nvml_replay import ReplayNvml, load_recording
from tray_app.hardware.snapshot import HardwareProbe, HardwareSnapshot
from tray_app.monitoring.host_metrics import HostMetrics, HostNotice, HostNoticeKind

log = logging.getLogger(__name__)


class MachineSource(Protocol):
    interval_s: float

    def read(self) -> HardwareSnapshot | None: ...

    def close(self) -> None: ...


class LiveMachine:
    """NVML + psutil through :class:`HardwareProbe` (``DESKTOP_MATE_NVML_REPLAY`` still applies).

    The probe is created on the first read, so that the NVML library loads on the monitor's thread. With
    ``nvml`` (a session the program shares with the plan), the owner of that session closes it, not us.
    """

    interval_s = 1.0

    def __init__(self, probe: HardwareProbe | None = None, *, nvml: NvmlReader | None = None) -> None:
        self._probe = probe
        self._shared_nvml = nvml

    def read(self) -> HardwareSnapshot:
        if self._probe is None:
            self._probe = HardwareProbe(self._shared_nvml)
        return self._probe.snapshot()

    def close(self) -> None:
        if self._probe is not None and self._shared_nvml is None:
            self._probe.close()


class ReplayMachine:
    """A recorded timeline (``tray_app.hardware.nvml_replay`` format, extended fields optional).

    GPU figures go through the real :class:`NvmlReader` code. CPU and RAM come from the sample's
    ``cpu_percent``/``ram_total``/``ram_used`` when recorded, else from this machine (psutil). Host
    figures come from the sample's ``host`` object when recorded; otherwise, when a runner pid is known
    (``runner_pid`` argument or the recording's top-level ``runner_pid``), the model counts as loaded
    while that pid is among the GPU's processes. Times are the recording's ``t`` (seconds) from
    ``start_at``; a looping replay keeps time moving forward.
    """

    def __init__(
        self,
        recording: dict[str, Any] | Path,
        *,
        loop: bool = False,
        runner_pid: int | None = None,
        start_at: float | None = None,
    ) -> None:
        self.recording = recording if isinstance(recording, dict) else load_recording(recording)
        self.interval_s = float(self.recording.get("interval_s", 1.0))
        self.runner_pid = runner_pid if runner_pid is not None else self.recording.get("runner_pid")
        self._nvml = ReplayNvml(self.recording, loop=False)
        self._reader = NvmlReader(self._nvml)
        self.loop = loop
        self.start_at = time.time() if start_at is None else start_at
        self._offset = 0.0
        self._finished = False
        self._current: dict[str, Any] = {}
        self._gpus: tuple[Any, ...] = ()
        self._cpu = psutil.cpu_percent(interval=None)
        self._cpu_read_at = time.monotonic()

    @property
    def finished(self) -> bool:
        return self._finished

    def read(self) -> HardwareSnapshot | None:
        if self._finished:
            return None
        self._current = sample = self._nvml.sample
        self._gpus = gpus = self._reader.read()
        at = self.start_at + self._offset + float(sample.get("t", self._nvml.index * self.interval_s))
        if not self._nvml.step():
            if self.loop:
                self._offset += float(sample.get("t", 0.0)) + self.interval_s
                self._nvml.index = 0
            else:
                self._finished = True
        ram_total = sample.get("ram_total")
        ram_used = sample.get("ram_used")
        if ram_total is None or ram_used is None:
            mem = psutil.virtual_memory()
            ram_total, ram_used = mem.total, mem.total - mem.available
        cpu = sample.get("cpu_percent")
        return HardwareSnapshot(
            taken_at=at,
            cpu_percent=float(cpu) if cpu is not None else self._live_cpu(),
            ram_total=int(ram_total),
            ram_available=int(ram_total) - int(ram_used),
            gpus=gpus,
            gpu_unavailable_reason="" if gpus else self._reader.unavailable_reason,
        )

    def _live_cpu(self) -> float:
        """This machine's CPU load, refreshed at most twice a second: a fast replay reads it thousands of
        times a second, and psutil over a few microseconds gives only 0 or 100."""
        now = time.monotonic()
        if now - self._cpu_read_at >= 0.5:
            self._cpu, self._cpu_read_at = psutil.cpu_percent(interval=None), now
        return self._cpu

    def host_metrics(self) -> HostMetrics | None:
        """The host figures of the sample last read (recorded, or derived from the runner pid)."""
        host = self._current.get("host")
        if isinstance(host, dict):
            try:
                return HostMetrics(
                    runner_pid=None if host.get("runner_pid") is None else int(host["runner_pid"]),
                    tokens_per_second=_float_or_none(host.get("tokens_per_s")),
                    baseline_tokens_per_second=_float_or_none(host.get("baseline_tokens_per_s")),
                    model_loaded=bool(host.get("model_loaded")),
                )
            except (TypeError, ValueError):
                log.warning("recording: unreadable host figures %r ignored", host)
                return None
        if self.runner_pid is None:
            return None
        present = bool(self._gpus) and any(p.pid == self.runner_pid for p in self._gpus[0].processes)
        return HostMetrics(self.runner_pid if present else None, None, None, present)

    def host_events(self) -> tuple[HostNotice, ...]:
        """Host events recorded with the sample last read (``"host_events": [{"kind": …}]``)."""
        events = []
        for raw in self._current.get("host_events") or ():
            try:
                events.append(
                    HostNotice(
                        HostNoticeKind(raw["kind"]),
                        idle_seconds=_float_or_none(raw.get("idle_seconds")),
                        detail_fr=str(raw.get("detail_fr", "")),
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.warning("recording: unreadable host event %r ignored", raw)
        return tuple(events)

    def close(self) -> None:
        self._reader.close()


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
