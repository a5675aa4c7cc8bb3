"""``desktop-mate-tray plan``: real subprocesses for the command line, in-process for the text layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import RTX4050_RECORDING, run_cli
from tray_app.commands.plan import GpuView, _assumed_gpu, render_text
from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.llama_backend import detect_llama_backend
from tray_app.models.gguf_info import read_model_info
from tray_app.models.shape_gguf import write_shape_only_llama
from tray_app.planning.memory_plan import make_plan

MIB = 1 << 20
CPU = CpuInfo("test", 8, 16, 8, 0, tuple(range(16)), 16 << 30, "test")


@pytest.fixture(scope="module")
def sparse_7b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shape_only_llama(tmp_path_factory.mktemp("big") / "Mistral-7B-Instruct-v0.3.Q4_K_M.gguf")


@pytest.fixture
def no_nvidia(tmp_path: Path) -> dict[str, str]:
    """Environment of a machine whose NVML library is missing (recorded as such)."""
    recording = tmp_path / "no-nvidia.json"
    recording.write_text(
        json.dumps({"format": "desktop-mate-nvml-recording", "version": 1, "devices": [],
                    "nvml_error": "NVML Shared Library Not Found", "samples": [{"t": 0, "devices": []}]}),
        encoding="utf-8",
    )
    return {"DESKTOP_MATE_NVML_REPLAY": str(recording)}


def test_plan_demo_in_french_without_nvidia(no_nvidia):
    result = run_cli("plan", "demo", env=no_nvidia)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Plan mémoire pour « SmolLM2 135M Instruct »" in out
    assert "30 couches, Q4_1, 94 Mo, jusqu'à 8 192 jetons" in out
    assert "aucune : tout sur le processeur" in out
    assert "Pas de carte graphique NVIDIA utilisable" in out
    assert "Traceback" not in out + result.stderr


def test_plan_7b_for_a_6_gb_card_as_json(sparse_7b: Path):
    result = run_cli("plan", str(sparse_7b), "--vram-mib", "6144", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["gpu"]["source"] == "assumed" and doc["gpu"]["free"] == (6144 - 1350) * MIB
    plan = doc["plan"]
    assert plan["mode"] == "partial" and 0 < plan["gpu_layers"] < 32
    assert plan["vram"]["reserved"] <= doc["gpu"]["free"]
    assert plan["n_ctx"] == 4096 and plan["n_gpu_layers"] == plan["gpu_layers"]
    assert doc["model"]["file_type"] == "Q4_K_M" and doc["model"]["n_layers"] == 32
    assert "couches sur 32" in plan["explanation"]


def test_plan_with_the_recorded_rtx4050(demo_gguf: Path):
    result = run_cli("plan", str(demo_gguf), "--ctx", "8192", "--kv-type", "q8_0", "--json",
                     env={"DESKTOP_MATE_NVML_REPLAY": str(RTX4050_RECORDING)})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["gpu"]["source"] == "nvml" and "RTX 4050" in doc["gpu"]["name"]
    plan = doc["plan"]
    assert plan["n_ctx"] == 8192 and plan["kv_type"] == "q8_0" and plan["flash_attn"] is True
    if detect_llama_backend(ask_library=False).gpu_offload:
        assert plan["mode"] == "gpu"
    else:  # this llama-cpp-python is a CPU build: it cannot use the card, and says so
        assert plan["mode"] == "cpu" and plan["cpu_reason"] == "no_gpu_backend"
        assert doc["gpu"]["offload_supported"] is False


def test_bad_model_files_exit_2_with_a_french_message(tiny_gguf: Path, tmp_path: Path):
    cut = tmp_path / "coupé.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:5000])
    result = run_cli("plan", str(cut))
    assert result.returncode == 2
    assert "« coupé.gguf » est incomplet" in result.stdout and "Traceback" not in result.stderr
    result = run_cli("plan", str(tmp_path / "absent.gguf"), "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["kind"] == "missing"
    result = run_cli("plan", "demo", "--vram-mib", "0")
    assert result.returncode == 2 and "option invalide" in result.stderr


# -- the text layout, in process (fast) ------------------------------------------------------------


def test_text_for_a_partial_offload_uses_french_units(sparse_7b: Path):
    info = read_model_info(sparse_7b)
    gpu = _assumed_gpu(6144)
    plan = make_plan(info, free_vram=gpu.free, total_vram=gpu.total, cpu=CPU)
    text = render_text(info, gpu, plan)
    assert "carte supposée de 6,0 Go, 4,7 Go libres" in text
    assert f"{plan.gpu_layers} sur 32 (couche de sortie sur le processeur)" in text
    for label in ("Poids du modèle", "Cache de conversation", "Tampons de calcul", "Marge gardée"):
        assert label in text
    assert re.search(r"Total prévu +\d,\d Go\n", text)  # decimal comma, « Go »
    assert re.search(r"Cache de conversation +384 Mo\n", text)  # 24 layers × 16 Mo
    assert "4 096 jetons" in text


def test_text_for_a_measured_card_without_gpu_backend(demo_gguf: Path):
    info = read_model_info(demo_gguf)
    gpu = GpuView("nvml", "NVIDIA GeForce RTX 4050 Laptop GPU", 4791 * MIB, 6141 * MIB, False,
                  "llama-cpp-python 0.3.36 (cpu) : processeur seulement")
    plan = make_plan(info, free_vram=gpu.free, total_vram=gpu.total, cpu=CPU, gpu_offload_supported=False)
    text = render_text(info, gpu, plan)
    assert "4,7 Go libres sur 6,0 Go" in text and "processeur seulement" in text
    assert "Le moteur installé ne sait pas utiliser la carte graphique" in text


def test_text_shows_the_cards_calibration_and_why_the_margin(sparse_7b: Path):
    from tray_app.hardware.gpu_calibration import CalibrationBook
    from tray_app.monitoring.history import OtherVramUse
    from tray_app.planning.vram_budget import make_budget

    info = read_model_info(sparse_7b)
    gpu = _assumed_gpu(6144)
    calibration = CalibrationBook().learn_from_load("RTX 4050 Laptop|566.36|vulkan", 900 * MIB, 600 * MIB)
    others = OtherVramUse(now=1350 * MIB, peak=1800 * MIB, low=1300 * MIB, seconds=1200.0, samples=1200)
    assert gpu.free is not None
    budget = make_budget(free_vram=gpu.free, total_vram=gpu.total, overhead=calibration.overhead,
                         calibration=calibration, others=others)
    plan = make_plan(info, free_vram=gpu.free, total_vram=gpu.total, cpu=CPU, budget=budget)
    text = render_text(info, gpu, plan)
    assert "Pilote : 300 Mo en plus des tampons du modèle (RTX 4050 Laptop, pilote 566.36, " \
           "vulkan ; 1 chargement mesuré)." in text
    assert "Marge : depuis 20 minutes, vos autres programmes ont utilisé jusqu'à 450 Mo de plus" in text
    assert f"{plan.gpu_layers} couches sur 32 dans la carte graphique : il reste" in plan.explain_fr()
