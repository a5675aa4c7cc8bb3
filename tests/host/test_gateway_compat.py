"""What today's OpenAI clients send, through the real gateway and a real runner (tiny random GGUF).

A representative request of each common client family: the official SDK (streaming with usage, tool
calls with its stream helper), a LangChain-style request (content parts), a SillyTavern-style request
(its sampling extras); and the errors a request can cause, streamed or plain, without stopping the engine.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.host.test_gateway import CHAT, WORDS_ONLY, call, sse_events
from tray_app.host.gateway import Gateway, GatewayOptions
from tray_app.host.supervisor import Supervisor
from tray_app.planning.runner_config import RunnerConfig

HELLO = [{"role": "user", "content": "Quel temps fait-il à Paris ?"}]
TOOLS = [{"type": "function", "function": {
    "name": "meteo", "description": "La météo d'une ville",
    "parameters": {"type": "object", "properties": {"ville": {"type": "string", "maxLength": 8}},
                   "required": ["ville"]}}}]


@pytest.fixture(scope="module")
def gateway(tiny_gguf):
    sup = Supervisor(RunnerConfig(str(tiny_gguf), n_ctx=1024, n_threads=1, n_threads_batch=1), keep_alive_s=-1)
    gw = Gateway(sup, GatewayOptions(port=0))
    gw.start()
    yield gw
    gw.close()
    sup.close()


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_base, api_key="sans-cle", max_retries=0)


def test_official_sdk_streams_with_the_usage_chunk_only_when_asked(client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=HELLO, max_completion_tokens=6, stream=True,
        stream_options={"include_usage": True}, logit_bias=WORDS_ONLY))
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    written = sum(1 for c in chunks[:-1] if c.choices and c.choices[0].delta.content)
    assert usage.completion_tokens == 6 == written  # max_completion_tokens honoured, and counted right
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + 6
    plain = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, max_completion_tokens=3,
                                                stream=True, logit_bias=WORDS_ONLY))
    assert all(c.choices and c.usage is None for c in plain)


def test_official_sdk_tool_call_round_trip_streamed_and_plain(client):
    answer = client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=TOOLS, tool_choice="required",
                                            max_completion_tokens=40)
    (call_,) = answer.choices[0].message.tool_calls
    assert call_.function.name == "meteo" and call_.id
    with client.chat.completions.stream(model="gpt-4o", messages=HELLO, tools=TOOLS, tool_choice="required",
                                        max_completion_tokens=40) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    (streamed,) = final.choices[0].message.tool_calls
    assert streamed.function.name == "meteo"  # named once, not « meteometeo… »
    history = HELLO + [
        {"role": "assistant", "content": None, "tool_calls": [call_.model_dump(include={"id", "type", "function"})]},
        {"role": "tool", "tool_call_id": call_.id, "content": "Soleil, 21 °C"},
    ]
    after = client.chat.completions.create(model="gpt-4o", messages=history, tools=TOOLS, max_completion_tokens=4)
    assert after.choices[0].message.role == "assistant"


def test_langchain_style_request_with_content_parts(gateway):
    body = {"model": "gpt-3.5-turbo", "stream": False, "n": 1, "temperature": 0.7,
            "messages": [{"role": "system", "content": [{"type": "text", "text": "Tu es Kira."}]},
                         {"role": "user", "content": [{"type": "text", "text": "Bonjour"}]}],
            "max_completion_tokens": 3}
    status, _, answer = call(gateway.port, "POST", CHAT, body)
    assert status == 200 and answer["usage"]["completion_tokens"] <= 3


def test_sillytavern_style_request_with_its_sampling_extras(gateway):
    body = {"messages": HELLO, "model": "local", "temperature": 1, "max_tokens": 5, "stream": True,
            "presence_penalty": 0, "frequency_penalty": 0, "top_p": 1, "top_k": 0, "min_p": 0.05,
            "repetition_penalty": 1.1, "typical_p": 1, "tfs": 1, "top_a": 0, "stop": ["\nUser:"],
            "logit_bias": {}, "seed": -1, "include_reasoning": False}
    status, _, payload = call(gateway.port, "POST", CHAT, body)
    events = sse_events(payload)
    assert status == 200 and events[-1] == "[DONE]" and all("error" not in e for e in events[:-1])


def test_the_same_seed_gives_the_same_answer_whatever_came_before(client):
    def ask() -> str:
        return client.chat.completions.create(model="x", messages=HELLO, max_completion_tokens=12, seed=42,
                                              temperature=1, logit_bias=WORDS_ONLY).choices[0].message.content

    first = ask()
    client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Autre chose"}],
                                   max_completion_tokens=5)
    assert ask() == first


def test_json_schema_answers_follow_the_schema(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = client.chat.completions.create(
        model="x", messages=HELLO, max_completion_tokens=20,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
    assert isinstance(json.loads(answer.choices[0].message.content)["ok"], bool)


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"messages": [{"role": "user", "content": "mot " * 1500}]}, "messages", "context_length_exceeded"),
    ({"messages": HELLO, "grammar": "root ::= this is (not valid GBNF"}, "grammar", "invalid_grammar"),
    ({"messages": HELLO, "n": 2}, "n", "unsupported_parameter"),
    ({"messages": HELLO, "logprobs": True}, "logprobs", "unsupported_parameter"),
])
def test_errors_are_decided_before_the_first_byte_and_agree_streamed_or_plain(gateway, body, param, code):
    """The engine survives each (same process), and a streamed request gets the same status as a plain one."""
    gateway.supervisor.acquire(60)
    gateway.supervisor.release()
    pid = gateway.supervisor.status().pid
    answers = [call(gateway.port, "POST", CHAT, {**body, "max_tokens": 4, "stream": stream})
               for stream in (False, True)]
    for status, headers, error in answers:
        assert status == 400 and headers["content-type"].startswith("application/json")
        assert error["error"]["param"] == param and error["error"]["code"] == code
        assert error["error"]["type"] == "invalid_request_error"
    assert answers[0][2]["error"]["message"] == answers[1][2]["error"]["message"]
    assert gateway.supervisor.status().pid == pid


def test_token_ids_as_a_completion_prompt_are_refused_in_french(gateway):
    status, _, error = call(gateway.port, "POST", "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2})
    assert status == 400 and error["error"]["param"] == "prompt" and "jetons" in error["error"]["message"]


# The tiny model's byte token 0xE2, the first byte of a three-byte character (« € », « … »): an answer made
# only of it never completes a character, so llama-cpp-python never reaches its max_tokens check and, before
# the runner's patch, ran past the length asked for to the end of the context, where the next token cannot
# be evaluated: a 500.
LEAD_BYTES_ONLY = {"229": 100}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("max_tokens", [20, None])
def test_an_answer_ends_at_its_length_or_the_context_never_with_an_error(client, stream, max_tokens):
    asked: dict = dict(model="x", messages=HELLO, logit_bias=LEAD_BYTES_ONLY)
    if max_tokens is not None:
        asked["max_completion_tokens"] = max_tokens
    if stream:
        chunks = list(client.chat.completions.create(**asked, stream=True, stream_options={"include_usage": True}))
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = chunks[-1].usage
    else:
        answer = client.chat.completions.create(**asked)
        reasons, usage = [answer.choices[0].finish_reason], answer.usage
    assert reasons == ["length"]
    assert usage is not None
    if max_tokens is not None:
        assert usage.completion_tokens == max_tokens
    else:  # the whole context, and the last token sampled (never evaluated)
        assert usage.total_tokens == 1024 + 1
    again = client.chat.completions.create(model="x", messages=HELLO, max_completion_tokens=3)
    assert again.choices[0].finish_reason == "length"  # the engine goes on
