"""The thread counts of a running runner, read or changed through its private route.

The route (:data:`~tray_app.host.runner_engine_patches.THREADS_ROUTE`, added inside the runner by
:mod:`tray_app.host.runner_engine_patches`) calls llama.cpp's ``llama_set_n_threads`` under the server's
lock and answers the counts read back from llama.cpp. « Optimiser » uses it to measure configurations that
differ only in thread counts in one runner process. The gateway never relays it to clients.
"""

from __future__ import annotations

import http.client
import json

from tray_app.host.runner import RunnerEndpoint
from tray_app.host.runner_engine_patches import THREADS_ROUTE

DEFAULT_TIMEOUT_S = 30.0


class ThreadChangeError(Exception):
    """The runner did not answer the route as expected (old runner, refused counts, gone, not answering)."""


def read_threads(endpoint: RunnerEndpoint, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[int, int]:
    """``(n_threads, n_threads_batch)`` as llama.cpp uses them now. Raises :class:`ThreadChangeError`."""
    return _call(endpoint, "GET", None, timeout)


def set_threads(
    endpoint: RunnerEndpoint, n_threads: int, n_threads_batch: int, timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[int, int]:
    """Give the loaded model these thread counts, once the answer in progress (if any) has ended.

    Returns the counts read back from llama.cpp afterwards. Raises :class:`ThreadChangeError`.
    """
    body = {"n_threads": n_threads, "n_threads_batch": n_threads_batch}
    return _call(endpoint, "POST", json.dumps(body).encode("utf-8"), timeout)


def _call(endpoint: RunnerEndpoint, method: str, body: bytes | None, timeout: float) -> tuple[int, int]:
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        conn.request(
            method,
            endpoint.path_prefix + THREADS_ROUTE,
            body=body,
            headers={"Content-Type": "application/json", **endpoint.headers},
        )
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ThreadChangeError(f"{method} {THREADS_ROUTE}: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ThreadChangeError(f"{method} {THREADS_ROUTE}: HTTP {response.status} {data[:300]!r}")
    try:
        answer = json.loads(data)
        counts = int(answer["n_threads"]), int(answer["n_threads_batch"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ThreadChangeError(f"{method} {THREADS_ROUTE}: unexpected answer {data[:300]!r}") from exc
    return counts
