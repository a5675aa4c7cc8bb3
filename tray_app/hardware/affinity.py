"""Pinning the runner to chosen logical CPUs (the P-cores of a hybrid Intel CPU).

llama_cpp.server has no option for it (llama.cpp's own ``--cpu-mask`` is not exposed), so the tray pins
the runner's process from outside, right after starting it and again once it is ready:

* Windows: ``SetProcessAffinityMask`` (psutil ``cpu_affinity``) covers every thread of the process, the
  ones created later included. That is also what keeps Windows 11 from moving a background process onto
  the E-cores (EcoQoS).
* Linux: ``sched_setaffinity`` applies per thread; new threads inherit it from their creator. Each thread
  present is pinned, so threads created afterwards by them inherit the mask.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

import psutil

log = logging.getLogger(__name__)


def pin_processes(pids: Iterable[int], cpus: Iterable[int]) -> bool:
    """Pin every process of ``pids`` (and on Linux each of their threads) to ``cpus``. True when done."""
    wanted = sorted(set(cpus))
    if not wanted:
        return False
    done = False
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.cpu_affinity(wanted)
            done = True
            if sys.platform.startswith("linux"):
                for thread in proc.threads():
                    try:
                        os.sched_setaffinity(thread.id, wanted)
                    except OSError:
                        pass  # a thread that just ended
        except (psutil.Error, OSError, AttributeError, ValueError) as exc:
            log.info("could not pin process %s to CPUs %s: %s", pid, wanted, exc)
    return done


def affinity_of(pid: int) -> list[int] | None:
    """The logical CPUs ``pid`` may run on, None when unknown."""
    try:
        return sorted(psutil.Process(pid).cpu_affinity())
    except (psutil.Error, AttributeError, OSError):
        return None
