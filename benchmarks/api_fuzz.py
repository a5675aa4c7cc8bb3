"""Fuzz the local API: thousands of random and mutated OpenAI bodies against a real ``serve``, loopback only.

    .venv/bin/python benchmarks/api_fuzz.py [--count 2000] [--seed 1] [--model PATH] [--minutes 40]
                                            [--json FILE] [--keep FOLDER]

Each body starts from a request a real client sends (the official SDK's chat, streaming, tools,
structured output, completions, a SillyTavern-style and a LangChain-style request), then gets one to
four mutations: a field removed, a value replaced by another type or an extreme (huge, negative, NaN,
deep nesting, long strings, odd Unicode), a known OpenAI or llama.cpp field added with a random value,
or the JSON text itself cut or altered. Every JSON object body is sent twice, plain and streamed, and
the two statuses are compared. ``serve`` keeps its model loaded (``--keep-alive -1``), so any change of
runner process is a crash that a request caused.

Printed: what the bodies got (status and error code), the bodies that crashed the runner, the ones whose
streamed and plain statuses differ, the ones that got no OpenAI-shaped answer, and whether the service
answered ``/health`` and a plain request after each body. ``--keep`` writes every offending body there.

Targets (issue 12): 0 bodies that stop the service; streamed and plain agree on every error status.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
TIMEOUT_S = 60.0
TOOLS = [{"type": "function", "function": {"name": "meteo", "description": "Météo",
                                           "parameters": {"type": "object", "properties": {
                                               "ville": {"type": "string"}}, "required": ["ville"]}}}]
SEEDS: list[tuple[str, dict[str, Any]]] = [
    (CHAT, {"model": "gpt-4o", "messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 8}),
    (CHAT, {"model": "gpt-4o", "messages": [{"role": "system", "content": "Sois bref."},
                                            {"role": "user", "content": "Salut"}],
            "stream": True, "stream_options": {"include_usage": True}, "max_completion_tokens": 8}),
    (CHAT, {"model": "x", "messages": [{"role": "user", "content": "Météo ?"}], "tools": TOOLS,
            "tool_choice": "required", "max_tokens": 24}),
    (CHAT, {"model": "x", "messages": [
        {"role": "user", "content": "Météo ?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "meteo", "arguments": "{\"ville\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Soleil"}], "tools": TOOLS, "max_tokens": 8}),
    (CHAT, {"model": "x", "messages": [{"role": "user", "content": "JSON"}], "max_tokens": 16,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
                "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}}),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "Bonjour"}]}], "n": 1,
            "temperature": 0.7, "max_completion_tokens": 8}),
    (CHAT, {"messages": [{"role": "user", "content": "Salut"}], "temperature": 1, "max_tokens": 8,
            "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "typical_p": 1, "stop": ["\nUser:"],
            "logit_bias": {}, "seed": -1, "stream": True}),
    (COMPLETIONS, {"model": "x", "prompt": "Il était une fois", "max_tokens": 8}),
    (COMPLETIONS, {"prompt": ["Il était"], "max_tokens": 8, "stream": True, "echo": True}),
]
FIELDS = """model messages max_tokens max_completion_tokens stream stream_options temperature top_p n stop
presence_penalty frequency_penalty logit_bias logprobs top_logprobs seed tools tool_choice response_format
user functions function_call parallel_tool_calls modalities audio prediction store metadata grammar top_k
min_p repeat_penalty repetition_penalty mirostat_mode mirostat_tau mirostat_eta min_tokens logit_bias_type
prompt suffix echo best_of typical_p""".split()


SCALARS: tuple[Any, ...] = (None, True, False, 0, -1, 1, 2**31, -(2**63), 2**70, 1e308, "",
                            "\u0000\ud7ff\U0001f600é\u202e")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.55 or depth >= 3:
        return rng.choice(SCALARS)
    if roll < 0.65:
        return rng.uniform(-5, 5)
    if roll < 0.75:
        return "x" * rng.choice((1, 100, 100_000))
    if roll < 0.87:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = FIELDS + ["type", "text", "role", "content", "name"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, prefix + (i,))
    return found


def mutate(rng: random.Random, body: Any) -> Any:
    where = paths(body)
    choice = rng.randrange(5)
    if choice == 0 and where:  # remove a field
        path = rng.choice(where)
        parent = body
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
    elif choice in (1, 2) and where:  # replace a value
        path = rng.choice(where)
        parent = body
        for p in path[:-1]:
            parent = parent[p]
        parent[path[-1]] = random_value(rng)
    elif choice == 3 and isinstance(body, dict):  # add a known field
        body[rng.choice(FIELDS)] = random_value(rng)
    else:  # nest deeply
        body = {"messages": [{"role": "user", "content": "x"}], "metadata": json.loads("[" * 200 + "]" * 200)} \
            if rng.random() < 0.1 else body
    return body


def corrupt(rng: random.Random, text: str) -> bytes | None:
    """The JSON text cut, one byte changed, or nested deeper than a reader goes; None (most often) to keep it."""
    roll = rng.random()
    if roll < 0.03:
        return text[: rng.randrange(len(text) + 1)].encode()
    if roll < 0.05:
        data = bytearray(text.encode())
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if roll < 0.06:
        return b"[" * 100_000 + b"]" * 100_000
    return None


def post(port: int, route: str, data: bytes) -> tuple[int | None, str, bool]:
    """(status or None, error code or outcome, OpenAI-shaped answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request("POST", route, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
    except TimeoutError:
        return None, "hung", False
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__, False
    finally:
        conn.close()
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        events = [line[6:].strip() for line in payload.split(b"\n") if line.startswith(b"data: ")]
        done = bool(events) and events[-1] == b"[DONE]"
        errors = [e for e in events if e.startswith(b'{"error"')]
        return response.status, ("stream-error" if errors else "stream-ok"), done
    try:
        parsed = json.loads(payload)
    except ValueError:
        return response.status, "not-json", False
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        shaped = all(k in error for k in ("message", "type", "param", "code"))
        return response.status, str(error.get("code")), shaped
    return response.status, "ok", isinstance(parsed, dict) and "choices" in parsed


def runner_pids(serve: subprocess.Popen[bytes]) -> set[int]:
    try:
        children = psutil.Process(serve.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    return {c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE}


def healthy(port: int) -> bool:
    status, _, shaped = post(port, CHAT, json.dumps({"messages": [{"role": "user", "content": "ok"}],
                                                     "max_tokens": 1}).encode())
    return status == 200 and shaped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", help="a .gguf file (default: a tiny random-weight llama written here)")
    parser.add_argument("--minutes", type=float, default=40.0, help="stop after this long, whatever the count")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--keep", metavar="FOLDER", help="write the offending bodies there")
    parser.add_argument("--ctx", type=int, default=256,
                        help="the runner's context: a small one keeps runaway answers (max_tokens mutated to "
                             "billions) short; the bodies are what is tested, not the answers")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="dm-fuzz-") as tmp:
        model = args.model
        if not model:
            from tray_app.models.synthetic_gguf import write_random_llama

            model = str(write_random_llama(Path(tmp) / "tiny-random-llama.gguf"))
        port = _free_port()
        serve = subprocess.Popen(
            [sys.executable, "-m", "tray_app", "serve", "--model", model, "--port", str(port), "--keep-alive", "-1",
             "--ctx", str(args.ctx), "--load-now"],
            cwd=REPO, env={**os.environ, "DESKTOP_MATE_HOME": str(Path(tmp) / "home")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not healthy(port):
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise SystemExit("serve did not start")
                time.sleep(0.5)
            report = fuzz(rng, port, serve, args)
        finally:
            serve.terminate()
            serve.wait(30)
    print_report(report, args)
    bad = report["stopped_service"] or report["disagreements"] or report["not_shaped"] or report["crashes"]
    return 1 if bad else 0


def fuzz(rng: random.Random, port: int, serve: subprocess.Popen[bytes], args: argparse.Namespace) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    offenders: dict[str, list[dict[str, Any]]] = {"crashes": [], "disagreements": [], "not_shaped": [],
                                                  "stopped_service": [], "server_errors": []}
    pids = runner_pids(serve)
    end = time.monotonic() + args.minutes * 60
    sent = 0
    started = time.monotonic()
    for n in range(args.count):
        if time.monotonic() > end:
            break
        route, seed = rng.choice(SEEDS)
        body: Any = copy.deepcopy(seed)
        for _ in range(rng.randint(1, 4)):
            body = mutate(rng, body)
        ascii_only = rng.random() < 0.5
        broken = corrupt(rng, json.dumps(body, ensure_ascii=ascii_only, allow_nan=True))
        if broken is not None or not isinstance(body, dict):
            variants = [broken or json.dumps(body, ensure_ascii=ascii_only, allow_nan=True).encode()]
        else:  # the same body plain and streamed: their statuses must agree
            variants = [json.dumps({**body, "stream": stream}, ensure_ascii=ascii_only, allow_nan=True).encode()
                        for stream in (False, True)]
        statuses = []
        crashed = False
        for data in variants:
            status, code, shaped = post(port, route, data)
            sent += 1
            statuses.append(status)
            outcomes[f"{status} {code}"] += 1
            record = {"route": route, "body": data[:20_000].decode("utf-8", "replace")}
            if status is None or not shaped and status != 200:
                offenders["not_shaped"].append({**record, "status": status, "code": code})
            elif status >= 500:
                offenders["server_errors"].append({**record, "status": status, "code": code})
            now = runner_pids(serve)
            if now != pids:
                offenders["crashes"].append({**record, "status": status, "code": code})
                pids = now
                crashed = True
        if len(statuses) == 2 and statuses[0] != statuses[1] and not (statuses[0] == 200 and statuses[1] == 200):
            offenders["disagreements"].append({"route": route, "statuses": statuses,
                                               "body": variants[0][:20_000].decode("utf-8", "replace")})
        if (n % 25 == 0 or crashed) and not healthy(port):
                offenders["stopped_service"].append(record)
                time.sleep(2)
        if n % 50 == 0:
            print(f"{n} bodies, {sent} requests, {time.monotonic() - started:.0f} s", flush=True)
    return {"bodies": n + 1, "requests": sent, "seconds": round(time.monotonic() - started), "outcomes": outcomes,
            **offenders}


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{report['bodies']} bodies, {report['requests']} requests in {report['seconds']} s")
    print("answers (status code-or-outcome × count):")
    for key, count in sorted(report["outcomes"].items(), key=lambda i: -i[1]):
        print(f"  {key:40s} {count}")
    for name in ("stopped_service", "crashes", "disagreements", "not_shaped", "server_errors"):
        print(f"{name}: {len(report[name])}")
        for item in report[name][:5]:
            print(f"  {json.dumps(item, ensure_ascii=False)[:300]}")
    if args.keep:
        folder = Path(args.keep)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("stopped_service", "crashes", "disagreements", "not_shaped", "server_errors"):
            (folder / f"{name}.json").write_text(json.dumps(report[name], ensure_ascii=False, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "outcomes": dict(report["outcomes"])}, ensure_ascii=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
