"""The Vulkan engine on Mesa's software device (lavapipe): see benchmarks/lavapipe.py.

Every test here is marked ``vulkan`` (a quick run deselects them: ``-m "not vulkan"``). They skip only where
this machine cannot have the engine at all (the build script said so: not Linux, no way to install Debian
packages); an engine that is merely not built yet is a failure that says how to build it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.lavapipe import VulkanEngine, find_engine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vulkan)


@pytest.fixture(scope="session")
def vulkan_engine() -> VulkanEngine:
    engine, why = find_engine()
    if engine is None:
        if why.startswith("SKIP"):
            pytest.skip(why)
        pytest.fail(why)
    return engine


@pytest.fixture
def on_lavapipe(vulkan_engine: VulkanEngine, monkeypatch: pytest.MonkeyPatch) -> VulkanEngine:
    """This test's processes (runners, probes) load the Vulkan engine and see lavapipe as device 0."""
    for name, value in vulkan_engine.env({}).items():
        monkeypatch.setenv(name, value)
    return vulkan_engine


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")
