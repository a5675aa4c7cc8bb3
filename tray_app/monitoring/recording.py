"""« Enregistrer 5 minutes de mesures »: samples written as a timeline that the monitor can replay.

The file is the NVML recording format of :mod:`tray_app.hardware.nvml_replay` (so
:class:`~tray_app.hardware.nvml_replay.ReplayNvml` and ``DESKTOP_MATE_NVML_REPLAY`` read it as they
are) with optional fields that older readers ignore::

    top level:   "interval_s": 1.0, "started_at": <time.time()>, "recorded_by": "desktop-mate-tray 0.1.0"
    per sample:  "cpu_percent": 23.5, "ram_total": BYTES, "ram_used": BYTES,
                 "host": {"runner_pid": 5151, "model_loaded": true, "tokens_per_s": 24.1,
                          "baseline_tokens_per_s": 26.0},
                 "host_events": [{"kind": "model_unloaded_idle", "idle_seconds": 300}]

Only the first GPU is recorded. Per-process memory is written as the driver reported it (``null`` on
Windows WDDM). A machine without an NVIDIA GPU gives ``"devices": []``: the replay then shows the
« pas de carte NVIDIA » path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tray_app import __version__
from tray_app.hardware.nvml_replay import RECORDING_FORMAT
from tray_app.monitoring.host_metrics import HostNotice
from tray_app.monitoring.sample import MonitorSample

DEFAULT_RECORD_SECONDS = 300


class TimelineRecorder:
    """Collects ``duration_s / interval_s`` samples (a bounded list), then writes them in one go."""

    def __init__(self, duration_s: float = DEFAULT_RECORD_SECONDS, interval_s: float = 1.0) -> None:
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.wanted = max(1, round(duration_s / interval_s))
        self._samples: list[dict[str, Any]] = []
        self._devices: list[dict[str, Any]] = []
        self._driver = ""
        self._started_at: float | None = None
        self._pending_events: list[dict[str, Any]] = []

    @property
    def count(self) -> int:
        return len(self._samples)

    @property
    def complete(self) -> bool:
        return len(self._samples) >= self.wanted

    @property
    def progress(self) -> float:
        return min(1.0, len(self._samples) / self.wanted)

    def add_event(self, event: HostNotice) -> None:
        """A host event, stored with the next sample."""
        raw: dict[str, Any] = {"kind": event.kind.value}
        if event.idle_seconds is not None:
            raw["idle_seconds"] = event.idle_seconds
        if event.detail_fr:
            raw["detail_fr"] = event.detail_fr
        self._pending_events.append(raw)

    def add(self, sample: MonitorSample) -> None:
        if self.complete:
            return
        if self._started_at is None:
            self._started_at = sample.at
        gpu = sample.gpu
        devices: list[dict[str, Any]] = []
        if gpu is not None:
            if not self._devices:
                self._driver = gpu.driver_version
                self._devices = [
                    {
                        "name": gpu.name,
                        "uuid": gpu.uuid,
                        "memory_total": gpu.memory_total,
                        "power_limit_mw": None if gpu.power_limit_w is None else round(gpu.power_limit_w * 1000),
                    }
                ]
            devices.append(
                {
                    "memory_used": gpu.memory_used,
                    "gpu_util": gpu.utilization_percent,
                    "temperature": gpu.temperature_c,
                    "power_mw": None if gpu.power_w is None else round(gpu.power_w * 1000),
                    "throttle": gpu.throttle_reasons,
                    "processes": [{"pid": p.pid, "used": p.used_bytes, "kind": "compute"} for p in gpu.processes],
                }
            )
        row: dict[str, Any] = {
            "t": round(sample.at - self._started_at, 3),
            "devices": devices,
            "cpu_percent": round(sample.cpu_percent, 1),
            "ram_total": sample.ram_total,
            "ram_used": sample.ram_used,
        }
        if sample.host is not None:
            h = sample.host
            row["host"] = {
                "runner_pid": h.runner_pid,
                "model_loaded": h.model_loaded,
                "tokens_per_s": h.tokens_per_second,
                "baseline_tokens_per_s": h.baseline_tokens_per_second,
            }
        if self._pending_events:
            row["host_events"], self._pending_events = self._pending_events, []
        self._samples.append(row)

    def document(self, description: str = "") -> dict[str, Any]:
        # Samples taken before the GPU appeared (or after it vanished) keep the same device count.
        samples = [s for s in self._samples if len(s["devices"]) == len(self._devices)]
        return {
            "format": RECORDING_FORMAT,
            "version": 1,
            "description": description or "Mesures enregistrées par Desktop-Mate",
            "recorded_by": f"desktop-mate-tray {__version__}",
            "driver_version": self._driver,
            "interval_s": self.interval_s,
            "started_at": self._started_at,
            "devices": self._devices,
            "samples": samples,
        }

    def write(self, path: Path, description: str = "") -> Path:
        """Write atomically; raises ``OSError`` (the caller tells the user) or ValueError when empty."""
        document = self.document(description)
        if not document["samples"]:
            raise ValueError("no sample recorded")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(document, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return path


def default_recording_path(data_dir: Path, now: float | None = None) -> Path:
    """``<data>/mesures/mesures-AAAAMMJJ-HHMMSS.json``."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path(data_dir) / "mesures" / f"mesures-{stamp}.json"
