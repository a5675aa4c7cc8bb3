"""Models of the hub: the header read by ranges, the fit badge, and downloads (resumed, verified, never
half-visible). The hub is a real HTTP server on loopback (``benchmarks/loopback_hub.py``) serving real
GGUF files; huggingface_hub is the real client."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks.loopback_hub import LoopbackHub
from tests.conftest import run_cli
from tray_app.models.download import Download, DownloadError, DownloadStopped, pending_downloads
from tray_app.models.gguf_info import read_model_info
from tray_app.models.hub import HubError, read_remote_header
from tray_app.models.shape_gguf import MISTRAL_7B_Q4_K_M, QWEN25_7B_Q4_K_M, write_shape_only_llama
from tray_app.models.synthetic_gguf import LlamaShape, write_random_llama

REPO_ID = "org/models-GGUF"
MB = 1_000_000


@pytest.fixture
def hub():
    server = LoopbackHub()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shapes")
    return {
        "mistral": write_shape_only_llama(folder / "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf", MISTRAL_7B_Q4_K_M),
        "qwen": write_shape_only_llama(folder / "Qwen2.5-7B-Instruct-Q4_K_M.gguf", QWEN25_7B_Q4_K_M),
    }


@pytest.fixture(scope="module")
def eight_mb_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real random-weight llama of about 8 MB: several 1 MiB progress steps."""
    shape = LlamaShape(n_layers=2, n_embd=256, n_ff=1024, n_head=4, n_head_kv=2, name="small-random")
    return write_random_llama(tmp_path_factory.mktemp("dl") / "small-random-F32.gguf", shape)


def _download(hub: LoopbackHub, tmp_path: Path, file: str, **kwargs) -> Download:
    return Download(REPO_ID, file, models_dir=tmp_path / "models", staging_dir=tmp_path / "downloads",
                    endpoint=hub.endpoint, **kwargs)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the header, read by ranges -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mistral", "qwen"])
def test_a_7b_header_is_read_in_a_few_mb_and_gives_the_local_facts(hub, shapes, name):
    path = shapes[name]
    hub.add(REPO_ID, path.name, path, sha256="0" * 64)
    remote = read_remote_header(REPO_ID, path.name, endpoint=hub.endpoint)
    local = read_model_info(path)
    assert remote.file_size == path.stat().st_size > 4000 * MB
    assert remote.bytes_read <= 8 * MB and hub.bytes_sent == remote.bytes_read
    assert all(r.range is not None for r in hub.requests)  # never the whole file
    info = remote.info
    assert (info.n_layers, info.layer_bytes, info.output_bytes, info.n_vocab, info.file_type, info.name) == (
        local.n_layers, local.layer_bytes, local.output_bytes, local.n_vocab, local.file_type, local.name)


def test_a_header_read_once_comes_from_the_cache_next_time(hub, shapes, tmp_path):
    path = shapes["mistral"]
    hub.add(REPO_ID, path.name, path, sha256="0" * 64)
    first = read_remote_header(REPO_ID, path.name, endpoint=hub.endpoint, cache_dir=tmp_path / "cache")
    hub.reset_counts()
    again = read_remote_header(REPO_ID, path.name, endpoint=hub.endpoint, cache_dir=tmp_path / "cache")
    assert again.from_cache and hub.requests == [] and again.info.layer_bytes == first.info.layer_bytes


def test_a_missing_file_and_a_file_that_is_not_a_model_say_so_in_french(hub, tmp_path):
    with pytest.raises(HubError) as missing:
        read_remote_header(REPO_ID, "absent.gguf", endpoint=hub.endpoint)
    assert missing.value.kind == "not_found" and "n'existe pas" in missing.value.message_fr
    text = tmp_path / "notes.gguf"
    text.write_bytes(b"Ceci n'est pas un modele\n" * 100)
    hub.add(REPO_ID, text.name, text)
    with pytest.raises(HubError) as bad:
        read_remote_header(REPO_ID, text.name, endpoint=hub.endpoint)
    assert bad.value.kind == "not_gguf" and "Choisissez un autre fichier" in bad.value.message_fr


def test_an_unreachable_hub_says_so_in_french():
    from tests.conftest import free_port

    with pytest.raises(HubError) as err:
        read_remote_header(REPO_ID, "x.gguf", endpoint=f"http://127.0.0.1:{free_port()}", timeout=3)
    assert err.value.kind == "unreachable" and "connexion à Internet" in err.value.message_fr


def test_the_badge_plans_as_many_layers_as_plan_does_once_the_file_is_here(hub, shapes, tmp_path):
    path = shapes["qwen"]
    hub.add(REPO_ID, path.name, path, sha256="0" * 64)
    env = {"HF_ENDPOINT": hub.endpoint}
    fit = run_cli("models", "fit", REPO_ID, path.name, "--vram-mib", "6144", "--json", env=env)
    assert fit.returncode == 0, fit.stderr
    badge = json.loads(fit.stdout)
    local = run_cli("plan", str(path), "--vram-mib", "6144", "--json")
    plan = json.loads(local.stdout)["plan"]
    assert badge["plan"]["n_gpu_layers"] == plan["n_gpu_layers"] == badge["badge"]["n_gpu_layers"]
    assert 0 < plan["gpu_layers"] < plan["n_layers"]  # a 7B on a 6 GB laptop card: in part
    assert badge["badge"]["kind"] == "partial" and "mots/seconde" in badge["badge"]["text"]
    assert badge["header_read"]["bytes"] <= 8 * MB


# -- downloads ----------------------------------------------------------------------------------------------
def test_a_download_cut_at_half_resumes_and_ends_with_the_right_sha256(hub, eight_mb_model, tmp_path):
    hosted = hub.add(REPO_ID, eight_mb_model.name, eight_mb_model)
    hub.cut_after = [hosted.size // 2]
    path = _download(hub, tmp_path, eight_mb_model.name).run()
    assert path == tmp_path / "models" / eight_mb_model.name and _sha(path) == hosted.sha256
    resumed = [r.range for r in hub.requests if r.path.startswith("/cdn/") and r.range]
    assert resumed and int(resumed[0].split("=")[1].rstrip("-")) > 0  # asked from where it stopped
    assert hub.bytes_sent < hosted.size * 1.25  # not everything again
    assert list((tmp_path / "downloads").iterdir()) == []


def test_a_paused_download_is_never_a_model_and_resumes_later(hub, eight_mb_model, tmp_path):
    from tray_app.models.discovery import discover_models

    hosted = hub.add(REPO_ID, eight_mb_model.name, eight_mb_model)
    seen: list[float] = []

    def on_progress(progress) -> None:
        seen.append(progress.fraction)
        if progress.phase == "download" and progress.fraction >= 0.5:
            first.pause()

    first = _download(hub, tmp_path, eight_mb_model.name, on_progress=on_progress)
    with pytest.raises(DownloadStopped) as stopped:
        first.run()
    assert not stopped.value.cancelled
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []
    pending = pending_downloads(tmp_path / "downloads")
    assert [(p.repo, p.file, p.total) for p in pending] == [(REPO_ID, eight_mb_model.name, hosted.size)]
    assert 0 < pending[0].done < hosted.size
    found = discover_models([str(tmp_path / "downloads"), str(tmp_path / "models")])
    assert found and all(m.path.name != eight_mb_model.name for m in found)
    hub.reset_counts()
    path = _download(hub, tmp_path, eight_mb_model.name).run()  # a new start, as after closing the program
    assert _sha(path) == hosted.sha256
    # Asked only for the rest. (Not counted in bytes: the paused connection may still be sending what
    # was in flight when the count was reset.)
    data_requests = [r for r in hub.requests if r.path.startswith("/cdn/")]
    assert [r.range for r in data_requests] == [f"bytes={pending[0].done}-"]


def test_cancel_deletes_what_was_downloaded(hub, eight_mb_model, tmp_path):
    hub.add(REPO_ID, eight_mb_model.name, eight_mb_model)

    def on_progress(progress) -> None:
        if progress.phase == "download" and progress.fraction >= 0.3:
            job.cancel()

    job = _download(hub, tmp_path, eight_mb_model.name, on_progress=on_progress)
    with pytest.raises(DownloadStopped) as stopped:
        job.run()
    assert stopped.value.cancelled
    assert list((tmp_path / "downloads").glob("*.part")) == []


@pytest.mark.parametrize(("fault", "kind", "words"), [
    ({"corrupt": True}, "corrupt", "abîmé"),
    ({"short_by": 4096}, "truncated", "incomplet"),
])
def test_a_corrupt_or_truncated_file_is_deleted_with_a_french_message(hub, eight_mb_model, tmp_path, fault, kind,
                                                                      words):
    hub.add(REPO_ID, eight_mb_model.name, eight_mb_model, **fault)
    with pytest.raises(DownloadError) as err:
        _download(hub, tmp_path, eight_mb_model.name).run()
    assert err.value.kind == kind and words in err.value.message_fr and "supprimé" in err.value.message_fr
    assert list((tmp_path / "downloads").glob("*.part")) == []
    assert not (tmp_path / "models" / eight_mb_model.name).exists()


def test_not_enough_disk_space_is_said_before_anything_is_downloaded(hub, tiny_gguf, tmp_path):
    hub.add(REPO_ID, tiny_gguf.name, tiny_gguf, announced=1 << 60)
    with pytest.raises(DownloadError) as err:
        _download(hub, tmp_path, tiny_gguf.name).run()
    assert err.value.kind == "disk_full" and "Libérez de la place" in err.value.message_fr
    assert not [r for r in hub.requests if r.method == "GET"]


def test_a_missing_file_is_a_french_error(hub, tmp_path):
    with pytest.raises(DownloadError) as err:
        _download(hub, tmp_path, "absent.gguf").run()
    assert err.value.kind == "not_found" and "Choisissez-en un autre" in err.value.message_fr


def test_the_metadata_is_asked_as_huggingface_hub_asks_it(hub, tiny_gguf, tmp_path):
    hosted = hub.add(REPO_ID, tiny_gguf.name, tiny_gguf)
    _download(hub, tmp_path, tiny_gguf.name).run()
    first = hub.requests[0]
    assert (first.method, first.path) == ("HEAD", f"/{REPO_ID}/resolve/main/{tiny_gguf.name}")
    assert any(r.method == "GET" and r.path == f"/cdn/{hosted.sha256}" for r in hub.requests)


def test_models_download_command_reports_progress_on_stderr_and_fails_in_french(hub, eight_mb_model):
    hosted = hub.add(REPO_ID, eight_mb_model.name, eight_mb_model)
    env = {"HF_ENDPOINT": hub.endpoint}
    ok = run_cli("models", "download", REPO_ID, eight_mb_model.name, "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    path = Path(json.loads(ok.stdout)["path"])
    assert _sha(path) == hosted.sha256
    phases = [json.loads(line)["phase"] for line in ok.stderr.splitlines() if line.startswith("{")]
    assert "download" in phases and phases[-1] == "done"
    failed = run_cli("models", "download", REPO_ID, "absent.gguf", env=env)
    assert failed.returncode == 1 and "n'existe pas" in failed.stderr and "Traceback" not in failed.stderr


def test_the_tray_and_the_command_line_start_without_the_download_client():
    """huggingface_hub (and its HTTP library) load when a download starts, never with the tray."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; import tray_app.ui.program; from tray_app.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('huggingface_hub', 'httpx2', 'hf_xet', 'tray_app.models.hub', "
        "'tray_app.models.download') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
