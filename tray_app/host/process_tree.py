"""Small process helpers: a free loopback port, the runner's process tree, stopping that whole tree.

On Windows a virtual environment's ``python.exe`` is a launcher that starts the real interpreter as a
child: the process that holds the model (and the VRAM NVML reports) is then a child of the pid we
started. Stopping therefore collects the whole tree first and makes sure every member is gone.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (it may be taken again before use: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its living descendants (empty when ``pid`` is gone)."""
    try:
        parent = psutil.Process(pid)
        return [pid] + [c.pid for c in parent.children(recursive=True)]
    except psutil.Error:
        return []


def stop_process_tree(proc: subprocess.Popen[bytes], *, grace_s: float, kill_wait_s: float = 5.0) -> None:
    """Wait ``grace_s`` for ``proc`` to exit on its own, then terminate and finally kill its whole tree.

    The caller has already asked the process to exit (closed its stdin). Descendants are collected before
    anything is killed, so a launcher's child cannot escape by losing its parent.
    """
    members: list[psutil.Process] = []
    try:
        root = psutil.Process(proc.pid)
        members = [root] + root.children(recursive=True)
    except psutil.Error:
        pass
    children = [p for p in members if p.pid != proc.pid]
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.info("runner %s did not exit within %.1f s; terminating its process tree", proc.pid, grace_s)
        proc.terminate()
        for p in children:
            _quietly(p.terminate)
        try:
            proc.wait(timeout=kill_wait_s / 2)
        except subprocess.TimeoutExpired:
            log.warning("runner process %s still alive; killing it", proc.pid)
            proc.kill()
    # The root may be gone while a child (Windows launcher case) lingers.
    _, alive = psutil.wait_procs(children, timeout=kill_wait_s / 2)
    for p in alive:
        log.warning("runner child process %s outlived its parent; killing it", p.pid)
        _quietly(p.kill)
    try:
        proc.wait(timeout=kill_wait_s)
    except subprocess.TimeoutExpired:
        log.error("runner %s could not be stopped", proc.pid)


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except psutil.Error:
        pass
