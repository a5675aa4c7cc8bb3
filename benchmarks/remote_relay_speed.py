"""A remote model through our gateway vs the remote server itself (a benchmark that prints figures).

Two ``serve`` processes on loopback stand in for two computers: A hosts the model and shares it
(``--share``: the key-protected network port), B uses it (``--remote``). Each run streams the same kind
of answer (``--max-tokens`` tokens, the end token suppressed, a slightly different question each run so
no mode gets more of the prompt cache) either straight from A's shared port (what the remote server
gives any client of the house) or through B's local address (what the avatar gets); the two modes are
interleaved, their order alternating, and the tokens/s each client saw are compared per pair.
On one machine the two "computers" share its cores, so the relay's work takes CPU time from the runner,
which two real computers would not; ``--separate-cores`` gives A (and its runner) CPU 0 and B with the
client the other CPUs.

    .venv/bin/python benchmarks/remote_relay_speed.py [--model demo] [--runs 12] [--max-tokens 128] [--json]
                                                      [--separate-cores]

Target (issue 17): through our gateway ≥ 98 % of the remote server's own tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.gateway_overhead import end_tokens, question
from tray_app.host.chat_probe import stream_chat
from tray_app.host.hosting import choose_model
from tray_app.paths import app_paths
from tray_app.settings import Settings


class Serve:
    """``python -m tray_app serve ARGS --json`` in the background, its events read line by line."""

    def __init__(self, *args: str, cpus: set[int] | None = None) -> None:
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # its runner inherits it
        self.proc = subprocess.Popen([sys.executable, "-m", "tray_app", "serve", *args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8",
                                     preexec_fn=pin)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def next_json(self, event: str, timeout: float = 60.0, **fields: object) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            data = json.loads(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            if data.get("event") == event and all(data.get(k) == v for k, v in fields.items()):
                return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo")
    parser.add_argument("--runs", type=int, default=12, help="pairs of runs")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--separate-cores", action="store_true",
                        help="Linux: the model's computer (A and its runner) on CPU 0, the other computer (B) and "
                             "this client on the other CPUs, so that the two computers do not share a core")
    args = parser.parse_args()
    model = choose_model(args.model, Settings.load(app_paths().settings_file))
    bias = end_tokens(model)
    cpus_a: set[int] | None = None
    if args.separate_cores:
        every = os.sched_getaffinity(0)
        if len(every) < 2:
            raise SystemExit("--separate-cores needs at least two CPUs")
        cpus_a = {min(every)}
        os.sched_setaffinity(0, every - cpus_a)  # this client, and B started from it
    a = Serve("--model", str(model), "--port", "0", "--share", "--share-port", "0", "--keep-alive", "-1",
              "--load-now", "--json", cpus=cpus_a)
    b = None
    try:
        a.next_json("listening")
        shared = a.next_json("sharing")
        a.next_json("state", timeout=120, state="ready")
        b = Serve("--port", "0", "--remote", f"http://127.0.0.1:{shared['share_port']}", "--remote-key", shared["key"],
                  "--json")
        relay = b.next_json("listening")
        direct_url = f"http://127.0.0.1:{shared['share_port']}"
        relay_url = f"http://127.0.0.1:{relay['port']}"
        key = {"Authorization": f"Bearer {shared['key']}"}
        for i in range(2):  # warm-up: both paths, the runner's caches
            stream_chat(direct_url, question(900 + i), max_tokens=16, headers=key, extra={"logit_bias": bias})
            stream_chat(relay_url, question(950 + i), max_tokens=16, extra={"logit_bias": bias})
        direct: list[float] = []
        relayed: list[float] = []
        for i in range(args.runs):
            order = [("direct", direct_url, key), ("relay", relay_url, None)]
            if i % 2:
                order.reverse()
            for name, url, headers in order:
                result = stream_chat(url, question(i * 2 + (name == "relay")), max_tokens=args.max_tokens,
                                     headers=headers, extra={"logit_bias": bias})
                assert result.complete and result.tokens_per_s, result
                (direct if name == "direct" else relayed).append(result.tokens_per_s)
    finally:
        if b is not None:
            b.stop()
        a.stop()
    ratios = [r / d for r, d in zip(relayed, direct)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [min(ratios), statistics.median(ratios), max(ratios)]
    figures = {
        "model": model.name,
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "direct_tokens_per_s_median": round(statistics.median(direct), 2),
        "relay_tokens_per_s_median": round(statistics.median(relayed), 2),
        "ratio_of_medians": round(statistics.median(relayed) / statistics.median(direct), 4),
        "pair_ratio_median": round(statistics.median(ratios), 4),
        "pair_ratio_iqr": [round(q[0], 4), round(q[2], 4)],
        "pair_ratio_min_max": [round(min(ratios), 4), round(max(ratios), 4)],
        "direct_spread_min_max": [round(min(direct), 2), round(max(direct), 2)],
        "relay_spread_min_max": [round(min(relayed), 2), round(max(relayed), 2)],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k:32} {v}")
        print("target: relay ≥ 98 % of direct →", "met" if figures["pair_ratio_median"] >= 0.98 else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
