"""benchmarks/gpu_vram_check.py without a GPU: its arguments, cases, table, fit search and glue.

The measurement itself needs an NVIDIA GPU and runs on a lent machine (README, "GPU measurement"); these
tests keep the script from rotting meanwhile: the pure parts of its package (``benchmarks/gpu_vram/``),
the llama.cpp dry run on the CPU build, the script itself run as a file (its helper processes included),
and one case measured end to end on the CPU with a recorded GPU standing in for NVML.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from benchmarks.gpu_vram import (
    cases,
    cuda_hold,
    fit_emulation,
    measurement,
    models,
    prompts,
    report,
    results,
    run,
)
from tests.conftest import REPO
from tray_app.hardware.gpu import GpuProcess, GpuReading
from tray_app.hardware.llama_buffers import device_buffer_total, is_device_buffer, parse_buffer_sizes

SCRIPT = REPO / "benchmarks" / "gpu_vram_check.py"
MIB = 1 << 20
GIB = 1 << 30


# -- cases and arguments -------------------------------------------------------------------------------


def test_default_cases_cover_every_model_and_context_and_laptop_budgets():
    chosen = cases.default_cases()
    assert {c.model for c in chosen} == set(models.MODELS)
    assert {c.ctx for c in chosen} == set(cases.CONTEXTS)
    assert {c.budget_gib for c in chosen} == set(cases.BUDGETS)
    for shape in models.SHAPES:  # each 7-8B shape is measured on the whole card and on a 6 GiB laptop budget
        assert any(c.model == shape and c.budget_gib is None for c in chosen)
        assert any(c.model == shape and c.budget_gib == 6.0 for c in chosen)
    assert len({c.id for c in chosen}) == len(chosen) <= 20


def test_case_ids_and_labels_are_readable():
    case = cases.Case("llama3-8b", 4096, 6.0)
    assert case.id == "llama3-8b-ctx4096-6GiB"
    assert case.budget_label == "6 GiB"
    assert case.budget_bytes == 6 * GIB
    card = cases.Case("smollm2", 2048, None)
    assert (card.id, card.budget_label, card.budget_bytes) == ("smollm2-ctx2048-card", "card", None)


def test_quick_is_one_partial_offload_case_and_all_is_the_cross_product():
    assert cases.select_cases(cases.parse_args(["--quick"])) == [cases.QUICK_CASE]
    every = len(models.MODELS) * len(cases.CONTEXTS) * len(cases.BUDGETS)
    assert len(cases.select_cases(cases.parse_args(["--all"]))) == every


def test_filters_narrow_the_default_list_or_take_their_own_cross_product():
    args = cases.parse_args(["--models", "mistral-7b", "--budgets", "6"])
    assert [c.id for c in cases.select_cases(args)] == ["mistral-7b-ctx4096-6GiB", "mistral-7b-ctx8192-6GiB"]
    # mistral-7b at 2 048 tokens on 12 GiB is not a default case: the filters then name it themselves
    args = cases.parse_args(["--models", "mistral-7b", "--contexts", "2048", "--budgets", "12,card"])
    assert [c.id for c in cases.select_cases(args)] == ["mistral-7b-ctx2048-12GiB", "mistral-7b-ctx2048-card"]


def test_defaults_of_the_measurement():
    args = cases.parse_args([])
    assert (args.prompt_tokens, args.max_tokens, args.out, args.dry_run) == (1500, 256, None, False)
    assert cases.parse_budget("card") is None
    assert cases.parse_budget("8GiB") == 8.0 and cases.parse_budget("12") == 12.0


@pytest.mark.parametrize(
    "argv",
    [["--budgets", "lots"], ["--budgets", "-2"], ["--contexts", "1000"], ["--models", "gpt-5"],
     ["--max-tokens", "0"]],
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        cases.parse_args(argv)
    assert "error" in capsys.readouterr().err


# -- what is read and derived --------------------------------------------------------------------------

RUNNER_LOG = """\
load_tensors: offloaded 29/33 layers to GPU
load_tensors:        CUDA0 model buffer size =  3462.31 MiB
load_tensors:   CPU_Mapped model buffer size =  1166.95 MiB
llama_context:  CUDA_Host  output buffer size =     0.49 MiB
llama_kv_cache:      CUDA0 KV buffer size =   896.00 MiB
llama_kv_cache:        CPU KV buffer size =   128.00 MiB
sched_reserve:      CUDA0 compute buffer size =   731.00 MiB
sched_reserve:  CUDA_Host compute buffer size =    24.01 MiB
sched_reserve: reserving ...
sched_reserve:      CUDA0 compute buffer size =   731.00 MiB
"""


def test_buffer_sizes_are_read_from_llama_cpp_log_and_split_device_from_host():
    sizes = parse_buffer_sizes(RUNNER_LOG)
    # a second reserve replaces the compute buffer: the last size counts, once
    assert sizes["CUDA0"] == {"model": round(3462.31 * MIB), "kv": 896 * MIB, "compute": 731 * MIB}
    assert sizes["CUDA_Host"] == {"output": round(0.49 * MIB), "compute": round(24.01 * MIB)}
    assert device_buffer_total(sizes, "compute") == 731 * MIB
    assert device_buffer_total(sizes) == round(3462.31 * MIB) + 896 * MIB + 731 * MIB
    assert not is_device_buffer("CPU_REPACK") and is_device_buffer("Vulkan0")


def test_tolerance_is_five_percent_or_256_mib_whichever_is_larger():
    assert results.within_tolerance(1000 * MIB, 1250 * MIB)  # 250 MiB off: under 256 MiB
    assert not results.within_tolerance(1000 * MIB, 1300 * MIB)
    assert results.within_tolerance(20_000 * MIB, 19_100 * MIB)  # 900 MiB off, but under 5 % of 19 100
    assert not results.within_tolerance(20_000 * MIB, 18_000 * MIB)


def test_fit_search_keeps_the_most_layers_under_the_target():
    def memory(k: int) -> int:
        return 500 * MIB + k * 150 * MIB

    for target_mib in (-100, 400, 500, 949, 950, 3000, 10_000):
        expected = max([k for k in range(34) if memory(k) <= target_mib * MIB], default=0)
        layers, mem, runs = fit_emulation.most_layers_under(target_mib * MIB, 33, memory)
        assert layers == expected and mem == memory(layers)
        assert runs <= 8  # a dry run costs a model load: a handful, not one per layer


def test_held_vram_is_cut_in_big_chunks_that_add_up():
    assert cuda_hold.hold_chunks(0) == [] and cuda_hold.hold_chunks(-5) == []
    sizes = cuda_hold.hold_chunks(5 * GIB + 300 * MIB + 12345)
    assert sizes == [GIB] * 5 + [300 * MIB]
    assert all(s % (2 * MIB) == 0 for s in sizes)


def _sampler(readings: list[GpuReading], pids: list[int]) -> measurement.PeakSampler:
    """A sampler over recorded readings (one per sample), its runner's pids ``pids``, 2 GiB used before."""
    feed = iter(readings)
    return measurement.PeakSampler(lambda: next(feed), lambda: pids, pids_before={10}, used_before=2 * GIB)


def test_the_peak_is_the_runners_own_by_pid_else_the_new_process_else_the_cards_increase():
    # the runner (pid 20) listed, then one sample where the driver lists none of its pids: that sample's
    # card-wide estimate (9 - 2 GiB) must not become the per-process peak
    listed = [_reading(6 * GIB, ((10, 1 * GIB), (20, 3 * GIB))), _reading(7 * GIB, ((10, 1 * GIB), (20, 4 * GIB)))]
    sampler = _sampler([*listed, _reading(9 * GIB, ((10, 1 * GIB),))], [20])
    for _ in range(3):
        sampler.sample()
    assert (sampler.peak, sampler.method, sampler.peak_card) == (4 * GIB, "pid", 9 * GIB)
    # in a container the driver's pids are not ours: the process that appeared (30) is the runner
    sampler = _sampler([_reading(5 * GIB, ((10, GIB), (30, 2 * GIB)))], [99])
    sampler.sample()
    assert (sampler.peak, sampler.method) == (2 * GIB, "new-process")
    # no process memory at all (Windows WDDM): the card's use minus its use before the runner started
    sampler = _sampler([_reading(5 * GIB), _reading(6 * GIB), _reading(4 * GIB)], [99])
    for _ in range(3):
        sampler.sample()
    assert (sampler.peak, sampler.method) == (4 * GIB, "card-delta")


def test_the_prompt_reaches_the_target_without_passing_it():
    def count(text: str) -> int:
        return len(text) // 4

    text, n = prompts.build_prompt(count, 1500)
    assert n == count(text) and 1500 - count(prompts.FILLER) < n <= 1500
    short, n = prompts.build_prompt(count, 10)
    assert n <= 10 and short


def test_answers_cannot_end_early_and_favour_one_ordinary_word():
    vocab = {"<s>": 1, "</s>": 2, "<|im_end|>": 7, " the": 42}

    def tokenize(text: str) -> list[int]:  # a BOS first, special tokens whole, other text in bytes
        if text in vocab:
            return [1, vocab[text]]
        return [1] + [300 + b for b in text.encode()]

    bias = prompts.answer_bias(tokenize, [2, 5])
    assert bias == {"2": -100.0, "5": -100.0, "7": -100.0, "42": 20.0}


def test_a_models_header_alone_rebuilds_it_with_zero_weights(tiny_gguf, tmp_path):
    from tray_app.models.gguf_info import read_model_info

    header = models.export_shape_header(tiny_gguf, tmp_path / "bundle")
    assert header.stat().st_size < tiny_gguf.stat().st_size
    clone = models.restore_shape(header, tmp_path / "m" / "tiny-shape.gguf")
    assert clone.stat().st_size == tiny_gguf.stat().st_size
    assert clone.read_bytes()[:1000] == tiny_gguf.read_bytes()[:1000]
    original, rebuilt = read_model_info(tiny_gguf), read_model_info(clone)
    assert rebuilt.layer_bytes == original.layer_bytes and rebuilt.tensors == original.tensors
    assert models.restore_shape(header, clone) == clone  # already there: kept


# -- rendering -----------------------------------------------------------------------------------------


def _prediction(offloaded: int = 29, **changes):
    values = dict(mode="partial", n_layers=32, offloaded=offloaded, n_gpu_layers=offloaded, threads=15,
                  n_ubatch=512, free_vram=6 * GIB, total_vram=6 * GIB, weights=3462 * MIB, kv_cache=896 * MIB,
                  compute=728 * MIB, overhead=450 * MIB, margin=512 * MIB)
    values.update(changes)
    return results.Prediction(**values)


def fake_results():
    measured = results.CaseResult("llama3-8b-ctx8192-6GiB", "llama3-8b", "Llama 3 8B shape", 8192, "6 GiB", 80 * GIB)
    measured.prediction = _prediction(dry_run=5100 * MIB, source="llama.cpp")
    measured.fit = results.FitResult(offloaded=24, method="common_fit_params", emulated=24, free_seen=5600 * MIB,
                               free_source="ggml_backend_dev_memory", target=4576 * MIB, projected=4500 * MIB,
                               dry_runs=6)
    measured.measured = results.Measurement(method="pid", after_load=5400 * MIB, peak=5700 * MIB,
                                      buffers=parse_buffer_sizes(RUNNER_LOG), tokens_per_s=41.25)
    oom = results.CaseResult("mistral-7b-ctx8192-6GiB", "mistral-7b", "Mistral 7B shape", 8192, "6 GiB", 80 * GIB)
    oom.prediction = _prediction(offloaded=33, mode="gpu")
    oom.measured = results.Measurement()
    oom.oom, oom.error = True, "load: out_of_memory: CUDA error: out of memory"
    planned = results.CaseResult("smollm2-ctx2048-card", "smollm2", "SmolLM2 135M Instruct", 2048, "card", 80 * GIB)
    planned.prediction = _prediction(offloaded=31, n_layers=30, mode="gpu")
    skipped = results.CaseResult("smollm2-ctx4096-card", "smollm2", "smollm2", 4096, "card", 80 * GIB)
    skipped.error = "model: the demo model is missing"
    return [measured, oom, planned, skipped]


def test_table_shows_prediction_fit_buffers_measurement_error_and_speed():
    table = report.render_table(fake_results())
    lines = table.splitlines()
    assert len(lines) == 2 + 4 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    row = lines[2]
    assert "Llama 3 8B shape, 8192 tok, 6 GiB" in row
    assert "29/33 / 24" in row  # plan vs llama.cpp's fit
    assert "3 462 + 896 + 728 + 450 = **5 536**" in row
    assert "3 462 / 896 / 731" in row  # llama.cpp's CUDA0 buffers
    assert "| 5 100 / 5 089 / 5 400 |" in row  # device: the dry run's prediction / allocated / NVML's figure
    assert "5 400 / 5 700" in row
    assert "| 611 |" in row  # the runner's peak minus llama.cpp's device buffers: context and pools
    assert "-164 (-2.9 %)" in row and "| yes |" in row and "41.2" in row
    assert "**OOM**" in lines[3] and "33/33" in lines[3]
    assert "31/31" in lines[4] and lines[4].count("—") >= 5  # planned only (dry run)
    assert "demo model is missing" in lines[5]


def test_json_holds_every_figure_and_the_derived_error(tmp_path):
    out = tmp_path / "r" / "gpu.json"
    report.write_json(out, {"gpu": "test"}, fake_results())
    data = json.loads(out.read_text("utf-8"))
    first = data["cases"][0]
    assert data["meta"] == {"gpu": "test"}
    assert first["prediction"]["used"] == 5536 * MIB
    assert first["error_bytes"] == -164 * MIB and first["within_tolerance"] is True
    assert first["fit"]["offloaded"] == 24 and first["measured"]["buffers"]["CUDA0"]["kv"] == 896 * MIB
    assert data["cases"][1]["oom"] is True and data["cases"][1]["within_tolerance"] is None
    assert any("within ±5 %" in line for line in report.summary_lines(fake_results()))


def test_resume_reads_back_the_cases_already_measured(tmp_path):
    out = tmp_path / "gpu.json"
    report.write_json(out, {"gpu": "test"}, fake_results())
    done = report.load_done(out)
    assert [r.case for r in done] == ["llama3-8b-ctx8192-6GiB", "mistral-7b-ctx8192-6GiB"]  # measured, OOM
    again = done[0]
    assert again.to_dict() == fake_results()[0].to_dict()
    assert again.within_tolerance is True and again.prediction.used == 5536 * MIB
    with pytest.raises(SystemExit):
        cases.parse_args(["--resume"])  # needs --out


# -- runs without a GPU --------------------------------------------------------------------------------


def test_dry_run_plans_every_case_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "dry.json"
    argv = ["--dry-run", "--models", "llama3-8b,mistral-7b", "--models-dir", str(tmp_path / "m"),
            "--card-gib", "80", "--out", str(out)]
    assert run.main(argv) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith(("| Llama", "| Mistral"))]
    assert len(rows) == len(cases.select_cases(cases.parse_args(argv)))
    data = json.loads(out.read_text("utf-8"))
    assert data["meta"]["dry_run"] is True
    by_id = {c["case"]: c for c in data["cases"]}
    full = by_id["llama3-8b-ctx4096-card"]["prediction"]
    laptop = by_id["llama3-8b-ctx8192-6GiB"]["prediction"]
    assert full["offloaded"] == 33 and full["kv_cache"] == 512 * MIB  # 32 layers × 4 096 × 2 × 1 024 × 2 B
    assert laptop["mode"] == "partial" and laptop["used"] + laptop["margin"] <= 6 * GIB
    assert laptop["total_vram"] == 6 * GIB  # the budget is told as the card's size


def test_the_script_runs_as_a_file_from_anywhere(tmp_path):
    """What gpu_vram_check.sh and the README run: the file itself, here from another folder."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--quick", "--card-gib", "80",
         "--models-dir", str(tmp_path / "m"), "--out", str(tmp_path / "q.json")],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| Llama 3 8B shape, 4096 tok, 6 GiB |" in done.stdout
    data = json.loads((tmp_path / "q.json").read_text("utf-8"))
    assert [c["case"] for c in data["cases"]] == [cases.QUICK_CASE.id]


def test_requirements_are_pinned_from_this_environment():
    lines = run.print_requirements()
    names = {line.split("==")[0] for line in lines}
    assert all("==" in line for line in lines)
    assert {"fastapi", "uvicorn", "pydantic-settings", "sse-starlette", "starlette-context", "gguf",
            "diskcache", "psutil", "nvidia-ml-py"} <= names
    assert "numpy" not in names and "llama-cpp-python" not in names and "pyside6-essentials" not in names
    assert "numpy" in {line.split("==")[0] for line in run.print_requirements(with_numpy=True)}


def test_fit_probe_runs_llama_cpp_dry_runs_in_its_own_process(tiny_gguf):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--fit-probe", "--model", str(tiny_gguf), "--ctx", "1024",
         "--plan-offloaded", "3"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fit = results.FitResult(**json.loads(done.stdout.strip().splitlines()[-1]))
    assert fit.dry_runs >= 2 and not fit.error
    # this CPU engine has no graphics device: llama.cpp's dry run puts nothing there at the plan's layers
    assert fit.at_plan == {"model": 0, "kv": 0, "compute": 0}
    # llama.cpp's own fit is called when the wheel ships libllama-common (0.3.36 does); without a GPU it
    # keeps every layer (nothing to fit), while the emulation, seeing no GPU memory, keeps none
    assert fit.method in ("common_fit_params", "emulated") and fit.emulated == 0
    if fit.method == "common_fit_params":
        assert fit.offloaded == 3 and not fit.note


def test_the_vram_holder_says_why_it_cannot_hold_anything_without_a_gpu():
    from tray_app.hardware.gpu import NvmlReader

    if NvmlReader().available:
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(RuntimeError, match="VRAM holder failed: NVML"):
        cuda_hold.VramHolder(6 * GIB, timeout=60)


def _reading(used: int, processes: tuple[tuple[int, int], ...] = (), total: int = 80 * GIB) -> GpuReading:
    return GpuReading(0, "NVIDIA H100 80GB HBM3 (recorded)", "GPU-test", "580.159.04", total, used, total - used,
                      0, 40, 70.0, 700.0, 0, tuple(GpuProcess(pid, size) for pid, size in processes))


class RecordedGpu:
    """NVML as a recorded H100: each of our child processes (the runner) "uses" 700 MiB."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> tuple[GpuReading, ...]:
        self.reads += 1
        children = [p.pid for p in psutil.Process().children(recursive=True)]
        return (_reading(2 * GIB + 700 * MIB * len(children), tuple((pid, 700 * MIB) for pid in children)),)

    def close(self) -> None:
        pass


def test_a_case_is_measured_end_to_end_on_the_cpu_with_a_recorded_gpu(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setattr(measurement, "model_path", lambda key, models_dir: tiny_gguf)
    args = cases.parse_args(["--prompt-tokens", "64", "--max-tokens", "8", "--logs-dir", str(tmp_path / "logs")])
    gpu = RecordedGpu()
    result = measurement.measure_case(cases.Case("smollm2", 1024, None), args, gpu)
    assert not result.error and not result.oom
    m = result.measured
    assert m.method == "pid" and m.after_load == m.peak == 700 * MIB  # the runner's pid, found in the list
    assert 16 <= m.prompt_tokens <= 64 and m.tokens == 8 and m.tokens_per_s > 0
    assert m.buffers["CPU"]["kv"] > 0  # read from the runner's own log
    assert result.prediction.offloaded == 3 and result.within_tolerance is not None
    assert result.fit is not None and not result.fit.error and result.fit.dry_runs >= 2  # the probe, a child
    assert gpu.reads >= 4
