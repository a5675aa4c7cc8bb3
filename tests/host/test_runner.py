"""The runner process: real ``llama_cpp.server`` subprocesses on a tiny random GGUF."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_gone
from tray_app.format_fr import MIB
from tray_app.host import runner as runner_module
from tray_app.host.runner import (
    SERVER_SETTING_NAMES,
    Runner,
    build_command,
    check_model_file,
    model_id_for,
    runner_environment,
)
from tray_app.host.runner_errors import FailureKind, RunnerError, classify_failure
from tray_app.host.runner_output import BoundedLog, OutputWatcher, RunnerPhase
from tray_app.planning.runner_config import RunnerConfig


def get(endpoint_port: int, path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", endpoint_port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# -- command line and environment (no process) ----------------------------------------------------
def test_every_server_setting_is_stripped_from_the_environment():
    from llama_cpp.server.settings import Settings

    assert set(Settings.model_fields) <= SERVER_SETTING_NAMES


def test_command_line_carries_the_plan_and_our_safe_defaults(tiny_gguf):
    config = RunnerConfig(str(tiny_gguf), n_gpu_layers=12, n_ctx=2048, type_k="q8_0", type_v="q4_0", flash_attn=True)
    command = build_command(config, port=4321, model_id="tiny")
    args = dict(zip(command[2::2], command[3::2]))
    assert command[1].endswith("runner_entry.py")
    assert args["--port"] == "4321" and args["--host"] == "127.0.0.1"
    assert args["--n_gpu_layers"] == "12" and args["--n_ctx"] == "2048"
    assert args["--type_k"] == "8" and args["--type_v"] == "2"  # ggml type numbers
    assert args["--flash_attn"] == "true"
    assert args["--logits_all"] == "false" and args["--use_mlock"] == "false"
    assert args["--interrupt_requests"] == "false"
    assert "--api_key" not in args  # the key travels in the environment only


def test_unknown_cache_type_is_a_programming_error(tiny_gguf):
    with pytest.raises(ValueError, match="KV cache type"):
        build_command(RunnerConfig(str(tiny_gguf), type_k="q3_x"), port=1, model_id="x")


def test_environment_drops_server_settings_and_hides_the_gpu_for_cpu_plans(tiny_gguf):
    base = {"PORT": "80", "host": "0.0.0.0", "N_CTX": "1", "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}
    cpu = runner_environment("k", RunnerConfig(str(tiny_gguf), n_gpu_layers=0), base)
    assert "PORT" not in cpu and "host" not in cpu and "N_CTX" not in cpu
    assert cpu["PATH"] == "/bin" and cpu["API_KEY"] == "k"
    assert cpu["CUDA_VISIBLE_DEVICES"] == "-1"
    assert cpu["GGML_VK_VISIBLE_DEVICES"] == ""  # set and empty: a Vulkan build uses no device either
    gpu = runner_environment("k", RunnerConfig(str(tiny_gguf), n_gpu_layers=-1), base)
    assert gpu["CUDA_VISIBLE_DEVICES"] == "0" and "GGML_VK_VISIBLE_DEVICES" not in gpu


def test_model_id_is_the_file_name_without_extension():
    assert model_id_for("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"


# -- model file checks before any process ----------------------------------------------------------
def test_missing_and_non_gguf_files_fail_fast_in_french(tmp_path):
    with pytest.raises(RunnerError) as missing:
        check_model_file(tmp_path / "absent.gguf")
    assert missing.value.kind is FailureKind.MODEL_FILE and "introuvable" in missing.value.message_fr
    text = tmp_path / "notes.gguf"
    text.write_text("bonjour")
    with pytest.raises(RunnerError) as not_gguf:
        check_model_file(text)
    assert not_gguf.value.kind is FailureKind.MODEL_FILE and "GGUF" in not_gguf.value.message_fr


# -- failure classification and output parsing (no process) ----------------------------------------
@pytest.mark.parametrize(
    ("returncode", "lines", "kind"),
    [
        (1, ["ggml_backend_cuda_buffer_type_alloc_buffer: allocating 5000 MiB on device 0: cudaMalloc failed: out of memory"], FailureKind.OUT_OF_MEMORY),
        (1, ["llama_model_load: error loading model: tensor 'blk.0.ffn_up.weight' data is not within the file bounds, model is corrupted or incomplete"], FailureKind.MODEL_FILE),
        (1, ["llama_model_load: error loading model: error loading model architecture: unknown model architecture: 'qwen9'"], FailureKind.MODEL_UNSUPPORTED),
        (1, ["ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 5): address already in use"], FailureKind.PORT),
        (1, ["ModuleNotFoundError: No module named 'llama_cpp'"], FailureKind.ENGINE),
        (-9, ["INFO: Uvicorn running"], FailureKind.CRASHED),
        (0xC0000005, [], FailureKind.CRASHED),
        (1, ["llama_init_from_model: quantized V cache requires flash_attn to be enabled",
             'ValueError: Failed to create llama_context'], FailureKind.REFUSED),
        (1, ["llama_kv_cache: failed to allocate buffer for kv cache", 'ValueError: Failed to create llama_context'],
         FailureKind.OUT_OF_MEMORY),
        (1, ["something else"], FailureKind.UNKNOWN),
    ],
)
def test_failures_are_classified_from_the_output(returncode, lines, kind):
    assert classify_failure(returncode, lines)[0] is kind


def test_only_memory_like_failures_let_a_safer_plan_help():
    assert FailureKind.OUT_OF_MEMORY.plan_may_help and FailureKind.CRASHED.plan_may_help
    assert not FailureKind.MODEL_FILE.plan_may_help and not FailureKind.ENGINE.plan_may_help


def test_progress_follows_llama_cpp_markers_and_the_dots():
    seen = []
    watcher = OutputWatcher(stream=None, sink=None, on_progress=seen.append)
    watcher.feed("llama_model_loader: loaded meta data with 19 key-value pairs\n")
    watcher.feed("load_tensors: loading model tensors, this can take a while...\n")
    watcher.feed("." * 30)
    watcher.feed("." * 30)
    watcher.feed("." * 40 + "\nllama_context: constructing llama_context\n")
    assert not watcher.listening.is_set()
    watcher.feed("INFO:     Uvicorn running on http://127.0.0.1:5 (Press CTRL+C to quit)\n")
    assert watcher.listening.is_set()
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.05 and fractions[-1] == 0.98
    assert any(0.5 < f < 0.9 for f in fractions)  # the dots moved it
    assert all(p.phase is RunnerPhase.LOADING for p in seen)
    assert seen[-1].message == "Chargement du modèle… 98 %"


def test_llama_cpps_buffer_lines_are_kept_as_figures():
    watcher = OutputWatcher(stream=None, sink=None)  # no stream: lines are fed by hand
    watcher.feed("load_tensors:      Vulkan0 model buffer size =  3847.55 MiB\n"
                 "load_tensors:  CPU_Mapped model buffer size =   281.81 MiB\n"
                 "llama_kv_cache:    Vulkan0 KV buffer size =   512.00 MiB\n"
                 "sched_reserve:     Vulkan0 compute buffer size =   300.00 MiB\n"
                 "sched_reserve:     Vulkan0 compute buffer size =   296.00 MiB\n")
    assert watcher.buffers["Vulkan0"] == {"model": round(3847.55 * MIB), "kv": 512 * MIB, "compute": 296 * MIB}
    assert watcher.buffers["CPU_Mapped"] == {"model": round(281.81 * MIB)}


def test_runner_log_is_bounded(tmp_path):
    log = BoundedLog(tmp_path / "runner.log", max_bytes=1000)
    for _ in range(50):
        log.write("x" * 99 + "\n")
    log.close()
    assert (tmp_path / "runner.log").stat().st_size <= 1000
    assert (tmp_path / "runner.log.1").stat().st_size <= 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runner.log", "runner.log.1"]


# -- real processes -------------------------------------------------------------------------------
def test_a_runner_loads_reports_its_phases_answers_with_its_key_and_stops(tiny_gguf, tmp_path):
    progress = []
    log_file = tmp_path / "runner.log"
    runner = Runner(RunnerConfig(str(tiny_gguf), n_ctx=512, n_threads=1, n_threads_batch=1),
                    log_file=log_file, on_progress=progress.append)
    started = time.perf_counter()
    endpoint = runner.load(timeout=60)
    elapsed = time.perf_counter() - started
    try:
        print(f"runner start to ready: {elapsed:.2f} s")
        phases = [p.phase for p in progress]
        assert phases[0] is RunnerPhase.STARTING and phases[-1] is RunnerPhase.READY
        assert RunnerPhase.LOADING in phases
        assert runner.load_seconds is not None and runner.load_seconds > 0
        assert endpoint.model_id == "tiny-random-llama" and endpoint.host == "127.0.0.1"
        assert get(endpoint.port, "/v1/models", endpoint.headers) == 200
        assert get(endpoint.port, "/v1/models") == 401  # without our key nobody can use it
        assert runner.pid in runner.pids() and runner.alive
    finally:
        runner.stop()
    assert wait_gone(runner.pid)
    assert not runner.alive
    text = log_file.read_text(encoding="utf-8")
    assert "llama_model_loader" in text and "API_KEY" not in text and endpoint.api_key not in text


def test_a_truncated_model_fails_with_a_french_reason(tiny_gguf, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    runner = Runner(RunnerConfig(str(truncated), n_ctx=512))
    with pytest.raises(RunnerError) as failure:
        runner.load(timeout=60)
    assert failure.value.kind is FailureKind.MODEL_FILE
    assert "abîmé" in failure.value.message_fr
    assert runner.pid is not None and wait_gone(runner.pid)


def test_settings_llama_cpp_refuses_end_cleanly_and_are_not_a_crash(tiny_gguf):
    runner = Runner(RunnerConfig(str(tiny_gguf), n_ctx=512, type_k="f16", type_v="q8_0", flash_attn=False))
    with pytest.raises(RunnerError) as failure:
        runner.load(timeout=60)
    assert failure.value.kind is FailureKind.REFUSED and failure.value.kind.plan_may_help
    assert "requires flash_attn" in failure.value.detail
    assert runner.returncode == 1  # the traceback, then a clean exit: no abort at interpreter shutdown
    assert not any("Fatal Python error" in line for line in runner.output_tail(80))


def test_a_load_timeout_kills_the_runner(tiny_gguf):
    runner = Runner(RunnerConfig(str(tiny_gguf), n_ctx=512))
    with pytest.raises(RunnerError) as failure:
        runner.load(timeout=0.05)
    assert failure.value.kind is FailureKind.TIMEOUT
    assert runner.pid is not None and wait_gone(runner.pid)


def test_a_private_port_taken_meanwhile_is_retried_elsewhere(tiny_gguf, monkeypatch):
    import socket

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))  # bound, not listening: the runner cannot bind it, probes are refused
    taken = squatter.getsockname()[1]
    ports = iter([taken])
    real = runner_module.free_loopback_port
    monkeypatch.setattr(runner_module, "free_loopback_port", lambda: next(ports, None) or real())
    runner = Runner(RunnerConfig(str(tiny_gguf), n_ctx=512))
    try:
        endpoint = runner.load(timeout=60)
        assert endpoint.port != taken
    finally:
        runner.stop()
        squatter.close()


def test_an_orphaned_runner_exits_when_its_parent_dies(tiny_gguf, tmp_path):
    """The tray crashing must not leave the model in memory: the runner watches its stdin."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tray_app.host.runner import Runner
        from tray_app.planning.runner_config import RunnerConfig
        r = Runner(RunnerConfig({str(tiny_gguf)!r}, n_ctx=512))
        r.load(60)
        print(r.pid, flush=True)
        os._exit(9)  # a crash: no stop(), no cleanup
    """))
    parent = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    pid = int(parent.stdout.strip())
    assert wait_gone(pid, timeout=10), "the orphaned runner kept running"


def test_stop_is_idempotent_and_safe_before_start(tiny_gguf):
    runner = Runner(RunnerConfig(str(tiny_gguf)))
    runner.stop()
    assert runner.pid is None and runner.pids() == [] and runner.endpoint is None
    assert os.path.basename(str(runner_module.RUNNER_ENTRY)) == "runner_entry.py"
    assert Path(runner_module.RUNNER_ENTRY).is_file()
