"""Finding the user's models in fake LM Studio, Ollama and Hugging Face trees (real tiny GGUF files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tray_app.models import discovery
from tray_app.models.discovery import (
    demo_model_path,
    discover_models,
    hugging_face_dirs,
    resolve_model_path,
    scan_models,
)
from tray_app.models.gguf_info import ModelFileError
from tray_app.paths import app_paths
from tray_app.settings import Settings
from tray_app.settings_schema import SettingError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder; no model store of this machine leaks into the test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    for var in ("OLLAMA_MODELS", "HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(discovery, "SYSTEM_OLLAMA_DIRS", ())
    return home


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def _ollama_store(root: Path, tiny: Path) -> Path:
    digest = "a" * 64
    blob = _copy(tiny, root / "blobs" / f"sha256-{digest}")
    _copy(tiny, root / "blobs" / f"sha256-{'b' * 64}")  # a projector blob, listed as such
    manifest = {
        "schemaVersion": 2,
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
            {"mediaType": "application/vnd.ollama.image.projector", "digest": f"sha256:{'b' * 64}"},
            {"mediaType": "application/vnd.ollama.image.template", "digest": f"sha256:{'c' * 64}"},
        ],
    }
    for tag in ("latest", "135m"):  # two tags, one blob: listed once
        path = root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / tag
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest), encoding="utf-8")
    hf_manifest = root / "manifests" / "hf.co" / "bartowski" / "Tiny-GGUF" / "Q4_K_M"
    hf_manifest.parent.mkdir(parents=True)
    hf_manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                   "digest": f"sha256:{'d' * 64}"}]}), encoding="utf-8")
    _copy(tiny, root / "blobs" / f"sha256-{'d' * 64}")
    (root / "manifests" / "registry.ollama.ai" / "library" / "broken").mkdir(parents=True)
    (root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest").write_text("{not json")
    return blob


def test_every_source_is_found(home: Path, tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # LM Studio: publisher/repository/file, with a vision projector and a split model beside it
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF"
    _copy(tiny_gguf, lms / "Tiny-Chat-1B-Q4_K_M.gguf")
    _copy(tiny_gguf, lms / "mmproj-Tiny-F16.gguf")
    _copy(tiny_gguf, home / ".cache" / "lm-studio" / "models" / "old" / "repo" / "Old-Model.Q8_0.gguf")
    # Ollama, moved with OLLAMA_MODELS
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama-store"))
    _ollama_store(tmp_path / "ollama-store", tiny_gguf)
    # Hugging Face cache under HF_HOME, snapshot files linking into blobs
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "hub" / "models--TheOrg--Tiny-Instruct-GGUF"
    blob = _copy(tiny_gguf, repo / "blobs" / "0123abcd")
    snap = repo / "snapshots" / "5f1e2d" / "Tiny-Instruct-Q5_K_M.gguf"
    snap.parent.mkdir(parents=True)
    try:
        snap.symlink_to(blob)
    except OSError:  # Windows without developer mode: the hub copies instead
        shutil.copy(blob, snap)
    # our own folder and a folder the user added (given twice, and once as a file)
    _copy(tiny_gguf, app_paths().models_dir / "Mon-Modele.gguf")
    mine = _copy(tiny_gguf, tmp_path / "D" / "IA" / "perso-7b.Q4_0.gguf")

    models = discover_models([tmp_path / "D", str(tmp_path / "D"), mine, lms])
    by_source: dict[str, list[str]] = {}
    for m in models:
        by_source.setdefault(m.source, []).append(m.name)
    assert by_source["Démo"] == ["SmolLM2 135M Instruct"]
    assert sorted(by_source["Mes modèles"]) == ["Mon Modele", "perso 7b"]
    assert sorted(by_source["LM Studio"]) == ["Old Model", "Tiny Chat 1B"]  # no mmproj, no duplicate
    assert sorted(by_source["Ollama"]) == ["hf.co/bartowski/Tiny-GGUF:Q4_K_M", "smollm2:135m"]
    assert by_source["Hugging Face"] == ["Tiny Instruct"]
    assert models[0].source_id == "demo"
    tiny = next(m for m in models if m.name == "Tiny Chat 1B")
    assert tiny.quantization == "F32" and tiny.size == tiny_gguf.stat().st_size
    assert tiny.path == lms / "Tiny-Chat-1B-Q4_K_M.gguf" and tiny.architecture == "llama"
    json.dumps([m.to_dict() for m in models])  # the tray and `--json` can show them


def test_split_parts_projectors_and_broken_files(home: Path, tiny_gguf: Path, tmp_path: Path, caplog):
    folder = tmp_path / "models"
    _copy(tiny_gguf, folder / "big-00002-of-00002.gguf")  # not a first part: silently ignored
    _copy(tiny_gguf, folder / "vision-mmproj-f16.gguf")
    cut = folder / "half-downloaded.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:2000])
    (folder / "empty.gguf").write_bytes(b"")
    (folder / "readme.txt").write_text("pas un modèle")
    _copy(tiny_gguf, folder / "good.gguf")
    with caplog.at_level("WARNING"):
        scan = scan_models([folder], include_demo=False)
    assert [m.name for m in scan.models] == ["good"]
    skipped = {s.path.name: s for s in scan.skipped}
    assert set(skipped) == {"half-downloaded.gguf", "empty.gguf"}
    assert skipped["half-downloaded.gguf"].kind == "truncated"
    assert "half-downloaded.gguf" in skipped["half-downloaded.gguf"].message_fr
    assert "half-downloaded.gguf" in caplog.text  # logged


def test_lm_studio_custom_folder_and_default_hugging_face_cache(home: Path, tiny_gguf: Path, tmp_path: Path):
    custom = tmp_path / "E" / "LLM"
    (home / ".lmstudio").mkdir()
    (home / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(custom)}))
    _copy(tiny_gguf, custom / "pub" / "repo" / "Custom-Model-Q4_K_M.gguf")
    hub = home / ".cache" / "huggingface" / "hub"
    assert hugging_face_dirs(home, {}) == [hub]
    _copy(tiny_gguf, hub / "models--a--b" / "snapshots" / "rev" / "sub" / "B-Chat-Q8_0.gguf")
    names = {m.name: m.source for m in discover_models(include_demo=False)}
    assert names == {"Custom Model": "LM Studio", "B Chat": "Hugging Face"}


def test_hugging_face_cache_variables(tmp_path: Path):
    home = tmp_path
    assert hugging_face_dirs(home, {"HF_HUB_CACHE": "/x/hub", "HF_HOME": "/y"}) == [Path("/x/hub")]
    assert hugging_face_dirs(home, {"HF_HOME": "/y"}) == [Path("/y/hub")]
    assert hugging_face_dirs(home, {"XDG_CACHE_HOME": "/z"}) == [Path("/z/huggingface/hub")]


def test_nothing_installed_gives_only_the_demo(home: Path):
    models = discover_models()
    assert [(m.source, m.name) for m in models] == [("Démo", "SmolLM2 135M Instruct")]


def test_demo_is_the_default_choice(demo_gguf: Path, tmp_path: Path):
    assert demo_model_path() == demo_gguf
    assert resolve_model_path("") == demo_gguf
    assert resolve_model_path("  demo ") == demo_gguf
    chosen = tmp_path / "x.gguf"
    assert resolve_model_path(str(chosen)) == chosen
    settings = Settings.load(app_paths().settings_file)
    assert resolve_model_path(settings.get("model_path")) == demo_gguf


def test_missing_demo_package_is_a_french_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(discovery, "DEMO_PACKAGE", "paquet_absent_pour_le_test")
    assert demo_model_path() is None
    with pytest.raises(ModelFileError) as exc:
        resolve_model_path("")
    assert exc.value.kind == "missing" and "démonstration" in exc.value.message_fr


def test_model_folders_setting_round_trip_and_validation():
    path = app_paths().settings_file
    settings = Settings.load(path)
    assert settings.get("model_folders") == () and settings.get("model_path") == ""
    settings.set("model_folders", ["D:\\IA\\modeles", " ~/llm ", "D:\\IA\\modeles"])
    assert settings.get("model_folders") == ("D:\\IA\\modeles", "~/llm")
    settings.save()
    assert Settings.load(path).get("model_folders") == ("D:\\IA\\modeles", "~/llm")
    for bad in ("D:\\IA", [""], [3], ["x"] * 100):
        with pytest.raises(SettingError):
            settings.set("model_folders", bad)
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["settings"]["model_folders"] = "pas une liste"
    path.write_text(json.dumps(raw), encoding="utf-8")
    again = Settings.load(path)  # one bad value is reset alone, with a notice
    assert again.get("model_folders") == () and "model_folders" in again.notice


def test_unlistable_folder_is_skipped(home: Path, tiny_gguf: Path, tmp_path: Path):
    if os.name == "nt" or os.geteuid() == 0:
        pytest.skip("permissions are not enforced here")
    locked = tmp_path / "locked"
    _copy(tiny_gguf, locked / "m.gguf")
    locked.chmod(0)
    try:
        assert discover_models([locked], include_demo=False) == []
    finally:
        locked.chmod(0o755)
