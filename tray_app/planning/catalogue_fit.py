"""The download list's badges: each catalogue file's header read from the hub, planned for this machine.

Used by ``models catalogue`` / ``models fit`` and by the « Télécharger un modèle… » dialog. Reads the
network (a few MB per file the first time, then the cache): call it off the UI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tray_app.hardware.cpu import detect_cpu
from tray_app.hardware.gpu import NvmlReader
from tray_app.models.catalogue import CatalogueFile
from tray_app.models.hub import HubError, RemoteHeader, read_remote_header
from tray_app.planning.fit import FitBadge, Machine, fit_badge, recommend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanWishes:
    """The settings a plan depends on (the same the host plans with)."""

    wanted_ctx: int = 4096
    kv_type: str = "f16"
    cores_left_for_avatar: int = 1
    threads_override: int = 0


@dataclass(frozen=True)
class EntryFit:
    entry: CatalogueFile
    badge: FitBadge | None  # None when the header could not be read
    header: RemoteHeader | None
    error_fr: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.entry.to_dict()
        out["badge"] = self.badge.to_dict() if self.badge is not None else None
        out["error"] = self.error_fr or None
        if self.header is not None:
            out["exact_size"] = self.header.file_size
            out["header_bytes_read"] = self.header.bytes_read
            out["header_seconds"] = round(self.header.seconds, 3)
        return out


def evaluate(
    entry: CatalogueFile, machine: Machine, wishes: PlanWishes, *, cache_dir: Path | None,
    endpoint: str | None = None,
) -> EntryFit:
    try:
        header = read_remote_header(entry.repo, entry.file, endpoint=endpoint, cache_dir=cache_dir)
    except HubError as exc:
        return EntryFit(entry, None, None, exc.message_fr)
    badge = fit_badge(
        header.info,
        machine,
        wanted_ctx=wishes.wanted_ctx,
        kv_type=wishes.kv_type,
        cores_left_for_avatar=wishes.cores_left_for_avatar,
        threads_override=wishes.threads_override,
    )
    return EntryFit(entry, badge, header)


def recommended_key(fits: Iterable[EntryFit]) -> str | None:
    return recommend([(f.entry.key, f.entry.quality, f.badge) for f in fits if f.badge is not None])


def current_machine(nvml: NvmlReader | None = None, runner_pids: Iterable[int] = ()) -> Machine:
    """This computer now; graphics memory used by our own runner counts as free (a new model replaces
    it). Reads NVML: off the UI thread."""
    from tray_app.hardware.gpu import default_nvml_reader
    from tray_app.hardware.llama_backend import detect_llama_backend

    reader = nvml or default_nvml_reader()
    try:
        gpus = reader.read()
    except Exception:  # a broken driver: plan for the processor, the log says why
        log.exception("reading the GPU failed")
        gpus = ()
    finally:
        if nvml is None:
            reader.close()
    cpu = detect_cpu()
    if not gpus or gpus[0].memory_free is None:
        return Machine(None, None, False, cpu)
    gpu = gpus[0]
    free = gpu.memory_free or 0
    for pid in runner_pids:
        free += gpu.process_used_bytes(pid) or 0
    backend = detect_llama_backend(ask_library=False)
    return Machine(free, gpu.memory_total, backend.gpu_offload, cpu)
