"""Soak: ``serve`` and the tray (offscreen) under mixed traffic, with the runner killed at random moments.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--targets serve,tray] [--kill-every 150]
                                        [--seed 1] [--model PATH] [--json FILE]

Loopback only, bounded in time (``--minutes``) and in requests (each has a 120 s client limit: a request
that takes longer is counted as *hung*). Each target is a real process started the way a user starts it
(``python -m tray_app serve``, or ``python -m tray_app`` with Qt offscreen and its own settings folder),
each with its own runner.

Traffic, two client threads per target: plain and streamed chat requests, streams abandoned after the
first tokens, bursts past the gateway's queue limit (``max_pending`` + 4 at once), ``/v1/models`` and
``/health``. Every ``--kill-every`` seconds (± 30 %) the runner of a target is killed (SIGKILL, as the
task manager, an antivirus or a driver reset would) at one of these moments, in turn:

* ``idle``: loaded, no request (traffic paused);
* ``loading``: while the model loads for a waiting request (traffic paused, model unloaded first);
* ``mid-stream``: after the first tokens of a streamed answer;
* ``random``: whenever, with the traffic running.

Each kill is a single one: no target is killed a third time within ten minutes (the host would rightly
take that as repeated crashes and try safer settings; the supervisor's tests cover that case).

After each kill, the time back to service is measured (kill → the next request answered with 200), and
the new runner's command line is compared with the first one (same settings kept).

Printed at the end: requests sent / answered / refused cleanly (an OpenAI-shaped error: JSON body or
an error event followed by ``[DONE]``) / abandoned by the client on purpose / failed / hung; restarts
and time back per kill; RSS, threads and open handles (file descriptors on Linux, handles on Windows) of
each target process, sampled every 10 s: at minute 5, at the end, the growth between and the maximum.

Targets (issue 11): back in ≤ 15 s after each kill, same settings; 0 failed or hung requests; RSS growth
≤ 5 MB between minute 5 and minute 30.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHAT = "/v1/chat/completions"
CLIENT_TIMEOUT_S = 120.0
SAMPLE_EVERY_S = 10.0
BURST = 12  # the gateway's max_pending (8) + 4
BACK_LIMIT_S = 60.0  # how long the killer waits for service to come back before calling it a failure
PROMPTS = (
    "Bonjour ! Comment vas-tu aujourd'hui ?",
    "Raconte-moi une courte histoire sur un chat qui apprend à voler.",
    "Quelle est la capitale de la France ?",
    "Donne-moi trois idées de repas pour ce soir.",
)
KILL_MODES = ("idle", "loading", "mid-stream", "random")
SINGLE_KILL_SPACING_S = 610.0  # the host steps down after 3 crashes of one target within 600 s


# -- one target process ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    keep_alive_s: float
    first_runner_args: list[str] | None = None
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, rss, threads, handles)

    def runner_processes(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                if any(part.endswith("runner_entry.py") for part in child.cmdline()):
                    found.append(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    def runner_args(self) -> list[str] | None:
        """The runner's settings from its command line, without what changes each start (port)."""
        for p in self.runner_processes():
            try:
                args = p.cmdline()
            except psutil.NoSuchProcess:
                continue
            start = next(i for i, a in enumerate(args) if a.endswith("runner_entry.py")) + 1
            rest = args[start:]
            return [a for i, a in enumerate(rest) if not (i > 0 and rest[i - 1] == "--port") and a != "--port"]
        return None

    def health_state(self) -> str:
        try:
            status, _, body = request(self.port, "GET", "/health", timeout=5)
        except OSError:
            return "unreachable"
        return str(body.get("state")) if status == 200 and isinstance(body, dict) else f"http {status}"

    def sample(self, t: float) -> None:
        try:
            p = psutil.Process(self.proc.pid)
            handles = p.num_handles() if sys.platform == "win32" else p.num_fds()
            self.samples.append((t, p.memory_info().rss, p.num_threads(), handles))
        except psutil.NoSuchProcess:
            pass


def start_serve(home: Path, model: str | None, keep_alive_s: int) -> Target:
    port = free_port()
    args = [sys.executable, "-m", "tray_app", "serve", "--port", str(port), "--keep-alive", str(keep_alive_s)]
    if model:
        args += ["--model", model]
    env = dict(os.environ, DESKTOP_MATE_HOME=str(home))
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_listening(Target("serve", proc, port, keep_alive_s))


def start_tray(home: Path, model: str | None, keep_alive_s: int) -> Target:
    """The tray program, offscreen (no tray icon there: its small window stands in), its own settings."""
    from tray_app.paths import app_paths
    from tray_app.settings import Settings

    port = free_port()
    env = dict(os.environ, DESKTOP_MATE_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    os.environ["DESKTOP_MATE_HOME"] = str(home)  # app_paths() of that home
    try:
        settings = Settings.load(app_paths().settings_file)
        settings.set("api_port", port)
        settings.set("keep_alive", str(keep_alive_s))
        settings.set("optimize_offered", True)  # no first-start question in the way
        if model:
            settings.set("model_path", model)
        settings.save()
    finally:
        del os.environ["DESKTOP_MATE_HOME"]
    proc = subprocess.Popen([sys.executable, "-m", "tray_app"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_listening(Target("tray", proc, port, keep_alive_s))


def wait_listening(target: Target, timeout: float = 60.0) -> Target:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise SystemExit(f"{target.name} exited at start (status {target.proc.returncode})")
        if target.health_state() in ("idle", "loading", "ready", "busy", "error"):
            return target
        time.sleep(0.2)
    raise SystemExit(f"{target.name} does not answer on port {target.port}")


def stop_target(target: Target) -> list[int]:
    """End the target as a user would (SIGTERM / Ctrl+C for serve); the runner pids left behind."""
    runners = [p.pid for p in target.runner_processes()]
    target.proc.terminate()
    try:
        target.proc.wait(30)
    except subprocess.TimeoutExpired:
        target.proc.kill()
        target.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and _not_zombie(p) for p in runners):
        time.sleep(0.1)
    return [p for p in runners if psutil.pid_exists(p) and _not_zombie(p)]


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- requests and their outcomes -------------------------------------------------------------------
def request(port: int, method: str, path: str, body: Any = None, timeout: float = CLIENT_TIMEOUT_S
            ) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


def openai_shaped_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and "type" in error and "code" in error


def chat_body(stream: bool, max_tokens: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": random.choice(PROMPTS)}], "max_tokens": max_tokens,
            "stream": stream}


def plain_chat(port: int, max_tokens: int = 24) -> tuple[str, str]:
    """(outcome, detail): answered, refused, failed or hung."""
    try:
        status, _, body = request(port, "POST", CHAT, chat_body(False, max_tokens))
    except TimeoutError:
        return "hung", "no answer within the client limit"
    except (OSError, http.client.HTTPException) as exc:
        return "failed", f"{type(exc).__name__}: {exc}"
    if status == 200 and isinstance(body, dict) and body.get("choices"):
        return "answered", ""
    if status != 200 and openai_shaped_error(body):
        return "refused", f"{status} {body['error'].get('code')}"
    return "failed", f"HTTP {status}: {str(body)[:200]}"


def streamed_chat(port: int, max_tokens: int = 48, *, abandon: bool = False,
                  on_first_token: Any = None) -> tuple[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        conn.request("POST", CHAT, body=json.dumps(chat_body(True, max_tokens)),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            body = response.read()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body
            if openai_shaped_error(parsed):
                return "refused", f"{response.status} {parsed['error'].get('code')}"
            return "failed", f"HTTP {response.status}: {body[:200]!r}"
        received = b""
        first = True
        while True:
            data = response.read1(65536)
            if not data:
                break
            received += data
            if first and b'"content"' in received:
                first = False
                if abandon:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                    return "abandoned", ""
                if on_first_token is not None:
                    on_first_token()
        events = [line[6:].strip() for line in received.split(b"\n") if line.startswith(b"data: ")]
        if not events or events[-1] != b"[DONE]":
            return "failed", f"stream without [DONE]: {received[-200:]!r}"
        errors = [e for e in events[:-1] if b'"error"' in e and openai_shaped_error(json.loads(e))]
        if errors:
            return "refused", "error event"
        return "answered", ""
    except TimeoutError:
        return "hung", "stream silent past the client limit"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return "failed", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)  # why requests were refused: count

    def add(self, target: str, kind: str, outcome: str, detail: str = "") -> None:
        with self.lock:
            for key in ("sent", outcome, f"{target}:{outcome}", f"{kind}:{outcome}"):
                self.counts[key] = self.counts.get(key, 0) + 1
            if outcome in ("failed", "hung"):
                self.failures.append(f"{time.strftime('%H:%M:%S')} {target} {kind}: {outcome} {detail}")
            if outcome == "refused":
                self.refusals[detail] = self.refusals.get(detail, 0) + 1


# -- traffic and kills -----------------------------------------------------------------------------
class Soak:
    def __init__(self, targets: list[Target], minutes: float, kill_every: float, seed: int) -> None:
        self.targets = targets
        self.end = time.monotonic() + minutes * 60
        self.started = time.monotonic()
        self.kill_every = kill_every
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.kills: list[dict[str, Any]] = []
        self.paused = {t.name: threading.Event() for t in targets}
        self.in_flight = {t.name: 0 for t in targets}
        self._flight_lock = threading.Lock()

    def running(self) -> bool:
        return time.monotonic() < self.end

    # traffic
    def client(self, target: Target, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            if self.paused[target.name].is_set():
                time.sleep(0.1)
                continue
            action = rng.choices(("plain", "stream", "abandon", "burst", "models"), (30, 40, 10, 3, 7))[0]
            with self._flight_lock:
                self.in_flight[target.name] += 1
            try:
                self.one(target, action, rng)
            finally:
                with self._flight_lock:
                    self.in_flight[target.name] -= 1
            time.sleep(rng.uniform(0.0, 1.5))

    def one(self, target: Target, action: str, rng: random.Random) -> None:
        if action == "plain":
            self.tally.add(target.name, action, *plain_chat(target.port, rng.randint(8, 48)))
        elif action == "stream":
            self.tally.add(target.name, action, *streamed_chat(target.port, rng.randint(16, 96)))
        elif action == "abandon":
            self.tally.add(target.name, action, *streamed_chat(target.port, 200, abandon=True))
        elif action == "models":
            try:
                status, _, body = request(target.port, "GET", rng.choice(("/v1/models", "/health")), timeout=10)
                ok = status == 200 and isinstance(body, dict)
                self.tally.add(target.name, action, "answered" if ok else "failed", f"HTTP {status}")
            except (OSError, http.client.HTTPException) as exc:
                self.tally.add(target.name, action, "failed", str(exc))
        else:  # a burst past the queue limit: some are refused with 503, none may hang
            results: list[tuple[str, str]] = []
            threads = [threading.Thread(target=lambda: results.append(plain_chat(target.port, 8)))
                       for _ in range(BURST)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(CLIENT_TIMEOUT_S + 10)
            for outcome, detail in results:
                self.tally.add(target.name, "burst", outcome, detail)
            for _ in range(BURST - len(results)):
                self.tally.add(target.name, "burst", "hung", "burst thread still waiting")

    # kills
    def killer(self) -> None:
        n = 0
        next_kill = time.monotonic() + self.kill_every * self.rng.uniform(0.7, 1.3)
        while self.running():
            time.sleep(0.5)
            if time.monotonic() < next_kill:
                continue
            target = self.targets[n % len(self.targets)]
            mode = KILL_MODES[(n // len(self.targets)) % len(KILL_MODES)]
            before = [k["mono"] for k in self.kills if k["target"] == target.name and "mono" in k]
            if len(before) >= 2 and time.monotonic() - before[-2] < SINGLE_KILL_SPACING_S:
                continue  # a third kill within ten minutes would be "repeated crashes" (tests cover that)
            n += 1
            try:
                self.kill(target, mode)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong with a kill is reported, then on
                self.kills.append({"target": target.name, "mode": mode, "error": f"{type(exc).__name__}: {exc}"})
            next_kill = time.monotonic() + self.kill_every * self.rng.uniform(0.7, 1.3)

    def quiesce(self, target: Target, timeout: float = 150.0) -> None:
        self.paused[target.name].set()
        deadline = time.monotonic() + timeout
        while self.in_flight[target.name] and time.monotonic() < deadline:
            time.sleep(0.1)

    def kill(self, target: Target, mode: str) -> None:
        record: dict[str, Any] = {"target": target.name, "mode": mode, "at_s": round(time.monotonic() - self.started)}
        background: threading.Thread | None = None
        outcome: list[tuple[str, str]] = []
        if mode != "random":
            self.quiesce(target)
        try:
            if mode == "idle":
                self.tally.add(target.name, "kill-setup", *plain_chat(target.port, 4))  # loaded
                time.sleep(0.5)
            elif mode == "loading":
                deadline = time.monotonic() + target.keep_alive_s + 30
                while target.runner_processes() and time.monotonic() < deadline:
                    time.sleep(0.2)  # the keep-alive delay unloads it
                background = threading.Thread(target=lambda: outcome.append(plain_chat(target.port, 8)))
                background.start()
                deadline = time.monotonic() + 30
                while not target.runner_processes() and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(self.rng.uniform(0.0, 0.5))
            elif mode == "mid-stream":
                started = threading.Event()
                background = threading.Thread(target=lambda: outcome.append(
                    streamed_chat(target.port, 400, on_first_token=started.set)))
                background.start()
                started.wait(60)
            runners = target.runner_processes()
            if not runners:
                record["skipped"] = "no runner at that moment"
                return
            if target.first_runner_args is None:
                target.first_runner_args = target.runner_args()
            record["state_at_kill"] = target.health_state()
            killed_at = record["mono"] = time.monotonic()
            for p in runners:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            if background is not None:
                background.join(CLIENT_TIMEOUT_S + 10)
                if outcome:
                    record["request_during_kill"] = outcome[0][0]
                    self.tally.add(target.name, f"kill-{mode}", *outcome[0])
                else:
                    self.tally.add(target.name, f"kill-{mode}", "hung", "request of the kill still waiting")
            # back to service: the next request answered
            while time.monotonic() - killed_at < BACK_LIMIT_S:
                result, detail = plain_chat(target.port, 4)
                self.tally.add(target.name, "after-kill", result, detail)
                if result == "answered":
                    record["back_s"] = round(time.monotonic() - killed_at, 2)
                    break
                time.sleep(0.2)
            args = target.runner_args()
            record["same_settings"] = args == target.first_runner_args if args is not None else None
        finally:
            self.paused[target.name].clear()
            self.kills.append(record)

    def sampler(self) -> None:
        while self.running():
            t = time.monotonic() - self.started
            for target in self.targets:
                target.sample(t)
            time.sleep(SAMPLE_EVERY_S)


# -- report ----------------------------------------------------------------------------------------
def footprint(samples: list[tuple[float, int, int, int]], from_s: float) -> dict[str, Any]:
    if not samples:
        return {}
    at_start = next((s for s in samples if s[0] >= from_s), samples[-1])
    last = samples[-1]
    later = [s for s in samples if s[0] >= from_s] or samples
    return {
        "from_s": round(at_start[0]), "to_s": round(last[0]),
        "rss_mb_from": round(at_start[1] / 1e6, 1), "rss_mb_end": round(last[1] / 1e6, 1),
        "rss_growth_mb": round((last[1] - at_start[1]) / 1e6, 1),
        "rss_mb_max": round(max(s[1] for s in later) / 1e6, 1),
        "threads_from": at_start[2], "threads_end": last[2], "threads_max": max(s[2] for s in later),
        "handles_from": at_start[3], "handles_end": last[3], "handles_max": max(s[3] for s in later),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--targets", default="serve,tray", help="serve, tray or serve,tray")
    parser.add_argument("--kill-every", type=float, default=150.0, help="seconds between kills (± 30 %%)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", help="a .gguf file (default: the demo model)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args()
    random.seed(args.seed)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    warmup_s = min(300.0, args.minutes * 60 / 6)
    with tempfile.TemporaryDirectory(prefix="dm-soak-") as tmp:
        targets = []
        for name in names:
            start = start_serve if name == "serve" else start_tray
            targets.append(start(Path(tmp) / name, args.model, 20 if name == "serve" else 60))
        soak = Soak(targets, args.minutes, args.kill_every, args.seed)
        threads = [threading.Thread(target=soak.sampler, daemon=True),
                   threading.Thread(target=soak.killer, daemon=True)]
        for i, target in enumerate(targets):
            for j in range(2):
                threads.append(threading.Thread(target=soak.client, args=(target, args.seed * 100 + i * 10 + j),
                                                daemon=True))
        print(f"soak: {', '.join(names)} for {args.minutes:g} min, a kill every ~{args.kill_every:.0f} s", flush=True)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for target in targets:
            target.sample(time.monotonic() - soak.started)
        left = {t.name: stop_target(t) for t in targets}
    report(soak, targets, left, warmup_s, args.json)
    failed = soak.tally.counts.get("failed", 0) + soak.tally.counts.get("hung", 0)
    slow = [k for k in soak.kills if k.get("back_s") is None or k["back_s"] > 15 or k.get("same_settings") is False]
    return 1 if failed or any(left.values()) or [k for k in slow if "skipped" not in k] else 0


def report(
    soak: Soak, targets: list[Target], left: dict[str, list[int]], warmup_s: float, json_file: str | None
) -> None:
    c = soak.tally.counts
    print("\n== requests ==")
    print(f"sent {c.get('sent', 0)}: answered {c.get('answered', 0)}, refused cleanly {c.get('refused', 0)}, "
          f"abandoned by the client {c.get('abandoned', 0)}, failed {c.get('failed', 0)}, hung {c.get('hung', 0)}")
    for kind in ("plain", "stream", "abandon", "burst", "models", "after-kill"):
        row = {o: c.get(f"{kind}:{o}", 0) for o in ("answered", "refused", "abandoned", "failed", "hung")}
        print(f"  {kind:11s} " + ", ".join(f"{k} {v}" for k, v in row.items() if v))
    refusals = sorted(soak.tally.refusals.items(), key=lambda i: -i[1])
    print("  refused: " + ", ".join(f"{why} × {n}" for why, n in refusals))
    for line in soak.tally.failures[:20]:
        print("  ! " + line)
    print("\n== kills ==")
    backs = [k["back_s"] for k in soak.kills if "back_s" in k]
    for k in soak.kills:
        print(f"  {k['at_s']:>5} s {k['target']:5s} {k['mode']:10s} state {k.get('state_at_kill', '-'):8s} "
              f"back {k.get('back_s', '-')} s, same settings {k.get('same_settings', '-')}"
              + (f", request hit: {k['request_during_kill']}" if "request_during_kill" in k else "")
              + (f" ({k['skipped']})" if "skipped" in k else "") + (f" ERROR {k['error']}" if "error" in k else ""))
    if backs:
        print(f"  time back to service: median {statistics.median(backs):.2f} s, max {max(backs):.2f} s "
              f"over {len(backs)} kills (target ≤ 15 s)")
    print(f"\n== footprint (from minute {warmup_s / 60:.0f}) ==")
    figures = {}
    for target in targets:
        f = footprint(target.samples, warmup_s)
        figures[target.name] = f
        if f:
            print(f"  {target.name:5s} RSS {f['rss_mb_from']} → {f['rss_mb_end']} MB "
                  f"(growth {f['rss_growth_mb']:+} MB, "
                  f"max {f['rss_mb_max']}), threads {f['threads_from']} → {f['threads_end']} (max {f['threads_max']}), "
                  f"handles {f['handles_from']} → {f['handles_end']} (max {f['handles_max']})")
    for name, pids in left.items():
        print(f"  {name}: runner processes left after stopping: {len(pids)}")
    if json_file:
        Path(json_file).write_text(json.dumps({
            "counts": c, "failures": soak.tally.failures, "refusals": soak.tally.refusals, "kills": soak.kills,
            "footprint": figures,
            "samples": {t.name: t.samples for t in targets}, "left_behind": left,
        }, indent=2))


if __name__ == "__main__":
    sys.exit(main())
