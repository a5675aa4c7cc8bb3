"""« Télécharger un modèle… » on a loopback hub: badges, the advice, a download to the end, the menu entry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from benchmarks.loopback_catalogue import host_catalogue
from benchmarks.loopback_hub import LoopbackHub
from tray_app.format_fr import GIB
from tray_app.hardware.cpu import CpuInfo
from tray_app.models.catalogue import catalogue
from tray_app.models.synthetic_gguf import LlamaShape, write_random_llama
from tray_app.paths import app_paths
from tray_app.planning.fit import Machine
from tray_app.planning.memory_plan import assumed_free_vram

LAPTOP = Machine(assumed_free_vram(6 * GIB), 6 * GIB, True,
                 CpuInfo("portable", 6, 12, 6, 0, tuple(range(12)), 16 * GIB, "test"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("catalogue-shapes")


@pytest.fixture
def hub(shapes, monkeypatch):
    server = LoopbackHub()
    host_catalogue(server, shapes, only={"mistral-7b-v0.3"})
    monkeypatch.setenv("HF_ENDPOINT", server.start())
    yield server
    server.close()


def test_the_list_shows_badges_recommends_one_and_downloads_it_to_the_end(qtbot, hub, settings, tmp_path):
    from tray_app.ui.download_dialog import DownloadDialog

    mistral = [e for e in catalogue() if e.model_id == "mistral-7b-v0.3"]
    small = min(mistral, key=lambda e: e.size)
    real = write_random_llama(tmp_path / small.file, LlamaShape(n_layers=2, n_embd=256, n_ff=1024))
    dialog = DownloadDialog(settings, app_paths(), lambda: LAPTOP)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.take_advice.isEnabled(), timeout=60000)
    for entry in mistral:
        assert dialog.items[entry.key].text(2).startswith("tient en partie sur la carte graphique (environ ")
    others = [e for e in catalogue() if e.model_id != "mistral-7b-v0.3"]
    assert dialog.items[others[0].key].text(2) == "inconnu (site des modèles injoignable)"
    assert dialog.recommended in {e.key for e in mistral}
    assert "Notre conseil pour cet ordinateur" in dialog.advice.text()

    hub.add(small.repo, small.file, real)  # a small real model under that name: downloaded to the end
    dialog.tree.setCurrentItem(dialog.items[small.key])
    assert dialog.start_button.isEnabled()
    dialog.start_download()
    qtbot.waitUntil(lambda: not dialog.use_button.isHidden(), timeout=60000)
    assert not dialog.optimize_button.isHidden() and "téléchargé et vérifié" in dialog.status.text()
    with qtbot.waitSignal(dialog.use_model_requested) as used:
        dialog.use_button.click()
    path = used.args[0]
    assert path == app_paths().models_dir / small.file
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(real.read_bytes()).digest()


def test_the_model_menu_offers_the_download_window(qtbot, settings):
    from tray_app.ui.host_controller import HostController

    host = HostController(settings, app_paths(), lambda text, warning: None)
    choose = next(e for e in host.entries() if e.text == "Choisir un modèle")
    assert "Télécharger un modèle…" in [c.text for c in choose.children]
