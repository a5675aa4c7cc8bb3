"""CPU identity and topology: physical cores, logical CPUs, performance vs efficiency cores.

Intel hybrid CPUs (12th gen and later) mix performance cores (P, with hyper-threading) and efficiency
cores (E). Token generation is limited by the slowest thread, so the model should run on P-cores only.

* Windows: ``GetLogicalProcessorInformationEx(RelationProcessorCore)`` gives one record per physical
  core with its ``EfficiencyClass`` (higher = faster) and its logical CPUs (see ``cpu_windows``).
* Linux: ``/sys/devices/cpu_core/cpus`` and ``/sys/devices/cpu_atom/cpus`` list the logical CPUs of each
  kind on hybrid Intel; ``/sys/devices/system/cpu/cpuN/topology`` groups logical CPUs into cores.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreRecord:
    """One physical core: its logical CPUs and whether it is an efficiency core."""

    logical_cpus: tuple[int, ...]
    efficiency: bool


@dataclass(frozen=True)
class CpuInfo:
    model: str
    physical_cores: int
    logical_cpus: int
    performance_cores: int  # physical P-cores (all physical cores on non-hybrid CPUs)
    efficiency_cores: int  # physical E-cores (0 on non-hybrid CPUs)
    performance_logical_cpus: tuple[int, ...]  # logical CPU ids on P-cores, () when unknown
    ram_total: int  # bytes
    source: str  # how the topology was found, for the logs and `doctor --json`

    @property
    def hybrid(self) -> bool:
        return self.efficiency_cores > 0

    @property
    def smt(self) -> bool:
        return self.logical_cpus > self.physical_cores


def summarize_cores(cores: list[CoreRecord]) -> tuple[int, int, int, tuple[int, ...]]:
    """(physical, performance, efficiency, logical CPUs of the P-cores) from per-core records."""
    perf = [c for c in cores if not c.efficiency]
    eff = [c for c in cores if c.efficiency]
    p_logical = tuple(sorted(cpu for c in perf for cpu in c.logical_cpus))
    return len(cores), len(perf), len(eff), p_logical


def parse_cpu_list(text: str) -> list[int]:
    """Parse the kernel's CPU list format ``0-3,8,10-11``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def linux_cores(sysfs: Path = Path("/sys")) -> list[CoreRecord]:
    """Physical cores from sysfs; E-cores are those listed under ``devices/cpu_atom/cpus``."""
    atom_file = sysfs / "devices" / "cpu_atom" / "cpus"
    atom: set[int] = set()
    if atom_file.exists():
        atom = set(parse_cpu_list(atom_file.read_text()))
    cpu_root = sysfs / "devices" / "system" / "cpu"
    groups: dict[tuple[str, str], list[int]] = {}
    for entry in sorted(cpu_root.glob("cpu[0-9]*")):
        topo = entry / "topology"
        if not topo.is_dir():
            continue
        cpu = int(entry.name[3:])
        online = entry / "online"
        if online.exists() and online.read_text().strip() == "0":
            continue
        package = _read(topo / "physical_package_id") or "0"
        core = _read(topo / "core_id") or str(cpu)
        groups.setdefault((package, core), []).append(cpu)
    return [
        CoreRecord(tuple(sorted(cpus)), efficiency=bool(atom) and all(c in atom for c in cpus))
        for cpus in groups.values()
    ]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model_name() -> str:
    if sys.platform == "win32":
        try:
            import winreg

            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
            return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        except OSError:
            pass
        # Not platform.processor(): on Windows it asks WMI (see hardware/system_info.py).
        return os.environ.get("PROCESSOR_IDENTIFIER", "").strip() or "processeur inconnu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        return platform.processor() or platform.machine() or "processeur inconnu"
    except Exception:  # noqa: BLE001 - platform may fail (no uname, missing tools): the name is only informative
        return "processeur inconnu"


def detect_cpu() -> CpuInfo:
    logical = psutil.cpu_count(logical=True) or 1
    cores: list[CoreRecord] = []
    source = "psutil"
    try:
        if sys.platform == "win32":
            from tray_app.hardware.cpu_windows import windows_cores

            cores, source = windows_cores(), "GetLogicalProcessorInformationEx"
        elif sys.platform.startswith("linux"):
            cores, source = linux_cores(), "sysfs"
    except Exception:  # topology is a refinement: never fail detection because of it
        log.exception("CPU topology detection failed; falling back to psutil counts")
        cores = []
    if cores:
        physical, perf, eff, p_logical = summarize_cores(cores)
    else:
        physical = psutil.cpu_count(logical=False) or logical
        perf, eff, p_logical, source = physical, 0, (), "psutil"
    return CpuInfo(
        model=cpu_model_name(),
        physical_cores=physical,
        logical_cpus=logical,
        performance_cores=perf,
        efficiency_cores=eff,
        performance_logical_cpus=p_logical,
        ram_total=psutil.virtual_memory().total,
        source=source,
    )
