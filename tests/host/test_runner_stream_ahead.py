"""The runner computes the next token while the previous one is being sent (runner_engine_patches).

No test here depends on speed: the order of events is forced with threading events (a wait that times
out only when the behaviour is wrong, and then the test fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from starlette.concurrency import iterate_in_threadpool

from tray_app.host import runner_engine_patches
from tray_app.host.runner_engine_patches import _leaving_the_model_first, iterate_ahead

WAIT_S = 30.0  # only ever waited in full when the behaviour is wrong


def producer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "token-producer"]


def test_items_come_in_order_and_an_error_reaches_the_consumer():
    got: list[int] = []

    def tokens():
        yield from range(5)
        raise ValueError("DESKTOP_MATE_INVALID_GRAMMAR: boom")

    async def consume() -> None:
        async for item in iterate_ahead(tokens()):
            got.append(item)

    with pytest.raises(ValueError, match="INVALID_GRAMMAR"):
        asyncio.run(consume())
    assert got == [0, 1, 2, 3, 4]
    assert producer_threads() == [] and runner_engine_patches._producers == set()


def _next_is_computed_while_sending(iterate: Callable[[Iterator[int]], AsyncIterator[int]]) -> bool:
    """While the consumer is still « sending » token 0, is token 1 computed without being asked for?"""
    computed = [threading.Event() for _ in range(3)]

    def tokens():
        for i in range(3):
            computed[i].set()  # token i is computed: about to be handed over
            yield i

    seen: dict[int, bool] = {}

    async def consume() -> None:
        async for i in iterate(tokens()):
            if i == 0:  # sending token 0: wait (off the event loop) for token 1 to be computed meanwhile
                seen[0] = await asyncio.to_thread(computed[1].wait, WAIT_S if iterate is iterate_ahead else 0.2)

    asyncio.run(consume())
    return seen[0]


def test_the_next_token_is_computed_while_the_previous_one_is_sent():
    assert _next_is_computed_while_sending(iterate_ahead)
    assert producer_threads() == []


def test_the_servers_own_way_waits_for_the_sending_before_computing():
    # The check above tells the two apart: Starlette's helper computes token 1 only when asked for it.
    assert not _next_is_computed_while_sending(iterate_in_threadpool)


def test_a_client_that_goes_away_stops_the_generation_before_the_model_is_released():
    # As in llama_cpp.server: the answer is streamed inside ``get_llama_proxy`` (the model under the
    # server's lock); a client that disconnects makes the loop raise, and the async generator is not
    # closed at once. The lock must not be released while the token thread is still computing: the
    # next request would use the model at the same time.
    produced: list[int] = []
    closed = threading.Event()
    seen_at_release: dict[str, object] = {}

    def tokens():
        try:
            for i in range(1000):
                if i == 3:  # token 3 is computed only once the consumer has asked the thread to stop
                    stop = runner_engine_patches._stops[threading.current_thread()]
                    assert stop.wait(WAIT_S)
                produced.append(i)
                yield i
        finally:
            closed.set()

    async def server_proxy():
        try:
            yield "model"
        finally:  # the server releases its lock here
            seen_at_release["closed"] = closed.is_set()
            seen_at_release["threads"] = producer_threads()

    proxy = _leaving_the_model_first(server_proxy)

    async def publish() -> None:
        async with contextlib.asynccontextmanager(proxy)():
            with contextlib.suppress(ConnectionResetError):
                async for i in iterate_ahead(tokens()):
                    if i == 2:
                        raise ConnectionResetError("the client went away")

    asyncio.run(publish())
    assert seen_at_release == {"closed": True, "threads": []}
    # The thread sees the stop right after handing token 2 over, or after the token it was computing then:
    # never later (token 3 waits for the stop, so a thread that ignored it would go on to 4, 5…).
    assert produced in ([0, 1, 2], [0, 1, 2, 3])
    assert runner_engine_patches._stops == {}
