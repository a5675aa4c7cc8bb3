"""Five changes to llama-cpp-python's engine and server, and one private route, made inside the runner
process only.

Loaded by :mod:`tray_app.host.runner_entry` before the server starts (standard library and llama_cpp
only: the runner does not import ``tray_app``). Each fixes a behaviour of llama-cpp-python 0.3.x that the
gateway cannot repair from outside the process:

* **An invalid grammar kills the process.** For the ``grammar`` field, or a grammar built from a
  ``response_format`` JSON schema, llama.cpp's ``llama_sampler_init_grammar`` returns NULL when it cannot
  parse it; llama-cpp-python adds that NULL to its sampler chain and the process dies (SIGSEGV) at the
  next token. Here the NULL is refused with a Python error whose text starts with
  :data:`INVALID_GRAMMAR`; the server answers it as an HTTP error and the gateway as a 400 naming the
  field. llama.cpp itself decides what is valid: no second parser to keep in step with it.
* **A streamed answer carries no token counts.** OpenAI's ``stream_options.include_usage`` asks for them
  in a last chunk ``{"choices": [], "usage": {...}}``. Here every streamed completion ends with such a
  chunk, counted from the tokens the engine really evaluated and generated (the same counts as a plain
  answer's ``usage``); the gateway passes it on only to the clients that asked for it.
* **A seed did not give the same answer twice.** The engine reuses the part of the previous prompt that
  is the same; evaluating the prompt in other pieces changes the numbers slightly, enough to change what
  is sampled at temperature 1. A request with a ``seed`` evaluates its whole prompt again.
* **Streaming waited for the network between tokens.** The server pulls each token through Starlette's
  ``iterate_in_threadpool``: one hop to a worker thread to compute the token, one back to the event
  loop to encode and send it, and only then is the next token started. Here the tokens are computed in
  one thread of their own that never waits for the sending (a queue between the two), so encoding and
  sending a token overlaps computing the next one. A client that goes away still stops the generation
  at the next token, and the model is released only once the thread has left it.
  ``DESKTOP_MATE_STREAM_AHEAD=0`` keeps the server's own way (for ``benchmarks/runner_vs_llama_server.py``).
* **An answer could run past ``max_tokens``, and one that filled the context was a 500.** The engine checks
  ``max_tokens`` only once the text of a token is complete, so tokens that end inside a UTF-8 character
  (an accented letter or an emoji split in bytes) skip the check: the answer goes past the length asked
  for, and can run to the end of the context, where llama.cpp cannot evaluate the next token
  (« llama_decode returned 1 »: a 500, or a stream cut by an error, by chance). Here the answer ends at
  the length asked for, or one token before the context is full, with its text and ``finish_reason``
  « length »: the stop of an answer cut by its size.

And one route the server does not have: :data:`THREADS_ROUTE` (« Optimiser » only; the gateway never
relays it). ``POST`` with ``{"n_threads": int, "n_threads_batch": int}`` sets the thread counts of the
loaded model (llama.cpp's ``llama_set_n_threads``, read at every evaluation) under the server's lock, so
never in the middle of an answer; ``GET`` changes nothing. Both answer the counts read back from llama.cpp,
``{"n_threads": …, "n_threads_batch": …}``, and need the server's API key like its other routes; a change
is logged (:data:`THREADS_ASKED`) when it arrives, before it waits for the lock. So
configurations that differ only in thread counts are measured in one process, without loading the model
again. A body that is not such an object is a 400 with a JSON error.

The server handles one request at a time (its own lock), so the counts of the request being answered
live on the model object.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

INVALID_GRAMMAR = "DESKTOP_MATE_INVALID_GRAMMAR"
THREADS_ROUTE = "/desktop-mate/threads"
THREAD_FIELDS = ("n_threads", "n_threads_batch")
THREADS_ASKED = "desktop-mate: thread change asked"  # + the counts, on stderr (the runner's log)
MAX_THREADS = 512  # ggml's GGML_MAX_N_THREADS
_CUT = "_desktop_mate_cut"  # set on the model when this answer was ended here for its length
_MAX_TOKENS = "_desktop_mate_max_tokens"  # the length asked for by the request being answered
_USAGE = "_desktop_mate_usage"


def apply() -> None:
    import llama_cpp
    from llama_cpp import _internals

    def add_grammar(self: Any, model: Any, grammar: Any) -> None:
        sampler = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not sampler:  # llama.cpp printed why on stderr (the runner's log)
            raise ValueError(f"{INVALID_GRAMMAR}: llama.cpp could not parse the grammar")
        llama_cpp.llama_sampler_chain_add(self.sampler, sampler)

    setattr(_internals.LlamaSampler, "add_grammar", add_grammar)  # noqa: B010 - a method replaced on purpose

    llama_class = llama_cpp.Llama
    is_end = llama_cpp.llama_vocab_is_eog
    original_generate = llama_class.generate

    @functools.wraps(original_generate)
    def generate(self: Any, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
        usage = {"prompt_tokens": len(tokens), "completion_tokens": 0}
        setattr(self, _USAGE, usage)
        setattr(self, _CUT, False)
        vocab = self._model.vocab
        n_ctx = self.n_ctx()
        for token in original_generate(self, tokens, *args, **kwargs):
            if not is_end(vocab, token):  # the end token is not part of the answer (as in usage)
                usage["completion_tokens"] += 1
            yield token
            limit = getattr(self, _MAX_TOKENS, None)
            # Asked for one more token: past the length asked for (the engine's own check was skipped), or
            # no room left in the context to evaluate the last one.
            if self.n_tokens >= n_ctx or (limit and usage["completion_tokens"] >= limit):
                setattr(self, _CUT, True)
                yield self.token_eos()  # ends the answer with its text; the reason is said « length »
                return

    setattr(llama_class, "generate", generate)  # noqa: B010 - a method replaced on purpose

    original_completion = llama_class.create_completion

    @functools.wraps(original_completion)
    def create_completion(self: Any, *args: Any, **kwargs: Any) -> Any:
        asked = kwargs.get("max_tokens")  # both routes pass it by name
        setattr(self, _MAX_TOKENS, asked if isinstance(asked, int) and asked > 0 else None)
        if kwargs.get("seed") is not None:
            self.reset()  # the whole prompt is evaluated again: same seed, same answer
        return original_completion(self, *args, **kwargs)

    setattr(llama_class, "create_completion", create_completion)  # noqa: B010 - a method replaced on purpose

    for name in ("__call__", "create_chat_completion"):  # what the server calls for each route
        setattr(llama_class, name, _ending_streams_with_usage(getattr(llama_class, name)))

    if os.environ.get("DESKTOP_MATE_STREAM_AHEAD", "1") != "0":
        from llama_cpp.server import app

        setattr(app, "iterate_in_threadpool", iterate_ahead)  # noqa: B010 - a function replaced on purpose
        setattr(app, "get_llama_proxy", _leaving_the_model_first(app.get_llama_proxy))  # noqa: B010 - idem

    from llama_cpp.server import app as server

    # On the server's router, included in the application when the server creates it (after this).
    server.router.add_route(THREADS_ROUTE, _threads, methods=["GET", "POST"], include_in_schema=False)


def thread_counts(body: object) -> tuple[int, int] | str:
    """``(n_threads, n_threads_batch)`` from a request body, or why it is refused."""
    if not isinstance(body, dict) or set(body) != set(THREAD_FIELDS):
        return 'expected a JSON object {"n_threads": int, "n_threads_batch": int}'
    values = [body[name] for name in THREAD_FIELDS]
    for name, value in zip(THREAD_FIELDS, values):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_THREADS:
            return f"{name} must be an integer from 1 to {MAX_THREADS}"
    return values[0], values[1]


async def _threads(request: Any) -> Any:
    """The :data:`THREADS_ROUTE` endpoint (a plain Starlette route: the key and the lock are the server's)."""
    from llama_cpp.server import app as server
    from starlette.responses import JSONResponse

    settings = next(server.get_server_settings())
    credentials: Any = await server.bearer_scheme(request)  # (authenticate's annotation says str: it is not)
    await server.authenticate(settings, credentials)  # HTTPException 401, as for the server's own routes
    counts: tuple[int, int] | None = None
    if request.method == "POST":
        try:
            parsed = thread_counts(json.loads(await request.body()))
        except ValueError:  # not JSON, or not UTF-8
            parsed = "the body is not JSON"
        if isinstance(parsed, str):
            return JSONResponse({"error": {"message": parsed, "type": "invalid_request_error"}}, status_code=400)
        counts = parsed
        print(f"{THREADS_ASKED}: n_threads = {counts[0]}, n_threads_batch = {counts[1]}", file=sys.stderr, flush=True)
    try:
        # The server's own lock around the model: never in the middle of an answer.
        async with contextlib.asynccontextmanager(server.get_llama_proxy)() as proxy:
            read = _set_threads(proxy(), counts)
    except Exception as exc:  # noqa: BLE001 - a JSON error for the caller, never a traceback
        message = f"{type(exc).__name__}: {exc}"
        return JSONResponse({"error": {"message": message, "type": "server_error"}}, status_code=500)
    return JSONResponse(read)


def _set_threads(llama: Any, counts: tuple[int, int] | None) -> dict[str, int]:
    """Give the model ``counts`` (None: leave them), then read them back from llama.cpp."""
    import llama_cpp

    if counts is not None:
        n_threads, n_batch = counts
        llama._ctx.set_n_threads(n_threads, n_batch)  # llama_set_n_threads
        llama.n_threads, llama.n_threads_batch = n_threads, n_batch  # what llama-cpp-python says it uses
        llama.context_params.n_threads, llama.context_params.n_threads_batch = n_threads, n_batch
    ctx = llama._ctx.ctx
    return {"n_threads": llama_cpp.llama_n_threads(ctx), "n_threads_batch": llama_cpp.llama_n_threads_batch(ctx)}


_producers: set[threading.Thread] = set()  # token threads of the answer being streamed
_stops: dict[threading.Thread, threading.Event] = {}


def _leaving_the_model_first(original: Any) -> Any:
    """``get_llama_proxy`` (the model, under the server's lock) whose exit first stops and waits for the
    token thread: a client that went away must not leave it computing while the next request starts."""

    async def get_llama_proxy() -> AsyncIterator[Any]:
        import anyio

        inner = original()
        proxy = await inner.__anext__()
        try:
            yield proxy
        finally:
            with anyio.CancelScope(shield=True):
                for thread in list(_producers):
                    _stops[thread].set()
                    await anyio.to_thread.run_sync(thread.join)
                    _producers.discard(thread)
                    _stops.pop(thread, None)
                await inner.aclose()  # the server's own exit: the lock is released

    return get_llama_proxy


_DONE = object()


async def iterate_ahead(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """The items of ``iterator``, computed in a thread of their own that never waits for the consumer."""
    import asyncio

    import anyio

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def hand(item: Any, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the event loop is closed: the server is stopping, nobody is listening
            stop.set()

    def produce() -> None:
        try:
            for item in iterator:
                hand(item)
                if stop.is_set():
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()  # in this thread, the one that ran it
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            hand(_DONE, exc)
            return
        hand(_DONE)

    thread = threading.Thread(target=produce, name="token-producer", daemon=True)
    _producers.add(thread)
    _stops[thread] = stop
    thread.start()
    try:
        while True:
            item, error = await queue.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()  # the client went away, or the answer ended: the thread leaves the model first
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.join)
        _producers.discard(thread)
        _stops.pop(thread, None)


def _ending_streams_with_usage(original: Any) -> Any:
    @functools.wraps(original)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        setattr(self, _USAGE, None)  # set again by generate() for this request
        result = original(self, *args, **kwargs)
        if kwargs.get("stream"):
            return _with_usage(self, result)
        _say_length_when_cut(self, result)
        return result

    return call


def _say_length_when_cut(llama: Any, answer: dict[str, Any]) -> None:
    """An answer ended here (context full, or the length asked for) stopped for its length, not at an end
    token."""
    if getattr(llama, _CUT, False):
        for choice in answer.get("choices") or ():
            if choice.get("finish_reason") == "stop":
                choice["finish_reason"] = "length"


def _with_usage(llama: Any, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    last: dict[str, Any] | None = None
    for chunk in chunks:
        _say_length_when_cut(llama, chunk)
        last = chunk
        yield chunk
    usage = getattr(llama, _USAGE, None)
    if last is not None and usage is not None:
        yield {
            "id": last.get("id"),
            "object": last.get("object"),
            "created": last.get("created"),
            "model": last.get("model"),
            "choices": [],
            "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
        }
