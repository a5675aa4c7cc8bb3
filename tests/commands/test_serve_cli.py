"""``serve`` and ``self-test`` as a user runs them: real subprocesses, real sockets."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.conftest import REPO, run_cli
from tests.host.test_gateway import call


class Serve:
    """``python -m tray_app serve ARGS`` running in the background, its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tray_app", "serve", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_json(self, event: str, timeout: float = 30.0, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            data = json.loads(line)
            if data.get("event") == event and all(data.get(k) == v for k, v in fields.items()):
                return data

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(30)


def test_serve_loads_on_demand_unloads_when_idle_and_stops_on_ctrl_c(tiny_gguf):
    serve = Serve("--model", str(tiny_gguf), "--port", "0", "--keep-alive", "1", "--json")
    try:
        listening = serve.next_json("listening")
        assert listening["url"].startswith("http://127.0.0.1:") and listening["model"] == "tiny-random-llama"
        assert listening["api_base"] == listening["url"] + "/v1" and listening["keep_alive_s"] == 1
        status, _, answer = call(listening["port"], "POST", "/v1/chat/completions",
                                 {"messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 3})
        assert status == 200 and answer["model"] == "tiny-random-llama"
        ready = serve.next_json("state", state="ready")
        request = serve.next_json("request")
        assert request["status"] == 200 and request["completion_tokens"] > 0
        idle = serve.next_json("state", state="idle", timeout=10)
        assert "quitté la mémoire après 1 seconde sans demande" in idle["message"]
        assert not psutil.pid_exists(ready["pid"]) or psutil.Process(ready["pid"]).status() == psutil.STATUS_ZOMBIE
    finally:
        code = serve.stop()
    assert code == 0
    assert serve.next_json("stopped", timeout=5)
    assert "Traceback" not in serve.proc.stderr.read()


def test_serve_speaks_french_and_runner_stops_with_it(tiny_gguf):
    serve = Serve("--model", str(tiny_gguf), "--port", "0", "--load-now")
    try:
        lines = [serve.lines.get(timeout=30) for _ in range(4)]
        text = "\n".join(lines)
        assert "est disponible à l'adresse http://127.0.0.1:" in text and "compatible OpenAI" in text
        assert "Ctrl+C pour arrêter" in text
        while "[Prêt]" not in serve.lines.get(timeout=30):
            pass
        runner_pids = [c.pid for c in psutil.Process(serve.proc.pid).children(recursive=True)]
        assert runner_pids
    finally:
        assert serve.stop() == 0
    for pid in runner_pids:
        assert not psutil.pid_exists(pid)


def test_serve_on_a_taken_port_explains_in_french(tiny_gguf):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        result = run_cli("serve", "--model", str(tiny_gguf), "--port", str(port))
    finally:
        squatter.close()
    assert result.returncode == 3
    assert f"Le port {port} est déjà utilisé par un autre programme" in result.stdout
    assert "Traceback" not in result.stderr


def test_serve_with_a_file_that_is_not_a_model(tmp_path):
    notes = tmp_path / "notes.gguf"
    notes.write_text("ceci n'est pas un modèle")
    result = run_cli("serve", "--model", str(notes), "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["event"] == "error" and "GGUF" in error["message"]
    assert "Traceback" not in result.stderr


def test_serve_refuses_nonsense_options():
    result = run_cli("serve", "--keep-alive", "-5")
    assert result.returncode == 2 and "--keep-alive" in result.stdout


def test_self_test_with_the_tiny_model_reports_figures(tiny_gguf):
    result = run_cli("self-test", "--model", str(tiny_gguf), "--json", timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["ok"] is True and report["tokens"] > 0 and report["memory_returned"] is True
    for key in ("load_s", "ttft_s", "cold_first_token_s", "tokens_per_s", "unload_s"):
        assert report[key] > 0, key


def test_self_test_fails_in_french_on_a_bad_model(tmp_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    result = run_cli("self-test", "--model", str(bad))
    assert result.returncode == 2
    assert "Échec :" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.heavy
def test_self_test_with_the_demo_model_answers_in_french():
    started = time.perf_counter()
    result = run_cli("self-test", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Tout fonctionne." in result.stdout and "SmolLM2" in result.stdout
    answer = next(line for line in result.stdout.splitlines() if line.startswith("Réponse : "))
    assert len(answer) > len("Réponse : ") + 3
    print(f"self-test with the demo model: {time.perf_counter() - started:.1f} s\n{result.stdout}")
    assert os.environ.get("DESKTOP_MATE_HOME")  # isolated settings and logs
