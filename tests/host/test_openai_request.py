"""Requests as today's OpenAI clients send them, made into the runner's, or refused naming the field.

One test (or parameter) per row of the README's compatibility table; no runner here (see
test_gateway_compat.py for the same rows through a real runner).
"""

from __future__ import annotations

import pytest

from tray_app.host.gateway_stream import EventSplitter, StreamRewriter
from tray_app.host.openai_request import Refusal, RunnerRequest, translate

USER = {"role": "user", "content": "Bonjour"}


def chat(**fields) -> RunnerRequest:
    result = translate({"messages": [USER], **fields}, chat=True, n_vocab=1000)
    assert isinstance(result, RunnerRequest), result
    return result


def refused(request: dict, *, chat: bool = True) -> Refusal:
    result = translate(request, chat=chat, n_vocab=1000)
    assert isinstance(result, Refusal), result
    assert result.status == 400 and result.message_fr and result.code
    return result


# -- translated --------------------------------------------------------------------------------------
def test_content_given_as_text_parts_becomes_one_text_for_every_role():
    parts = [{"type": "text", "text": "Bonjour"}, {"type": "text", "text": "ça va ?"}]
    body = chat(messages=[{"role": "system", "content": [{"type": "text", "text": "Sois bref."}]},
                          {"role": "user", "content": parts},
                          {"role": "assistant", "content": [{"type": "text", "text": "Oui."}]}]).body
    assert [m["content"] for m in body["messages"]] == ["Sois bref.", "Bonjour\nça va ?", "Oui."]


def test_an_image_part_is_refused_naming_the_part():
    r = refused({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})
    assert r.param == "messages[0].content[0]" and "que du texte, pas des images" in r.message_fr


def test_the_developer_role_is_the_system_role():
    assert chat(messages=[{"role": "developer", "content": "Réponds en français."}, USER]).body["messages"][0] == {
        "role": "system", "content": "Réponds en français."}


def test_max_completion_tokens_is_the_length_limit():
    assert chat(max_completion_tokens=5).body["max_tokens"] == 5
    assert chat(max_tokens=7).body["max_tokens"] == 7
    assert chat(max_completion_tokens=5, max_tokens=9).body["max_tokens"] == 5  # the smaller wins
    assert "max_tokens" not in chat().body  # as OpenAI: up to the context
    assert translate({"prompt": "x"}, chat=False).body["max_tokens"] == 16  # /v1/completions' default
    assert refused({"messages": [USER], "max_completion_tokens": 0}).param == "max_completion_tokens"


def test_stream_options_are_kept_by_the_gateway_not_sent_to_the_runner():
    request = chat(stream=True, stream_options={"include_usage": True})
    assert request.include_usage and request.stream and "stream_options" not in request.body
    assert not chat(stream=True).include_usage


def test_response_format_json_schema_becomes_schema_constrained_json():
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    spec = {"name": "r", "schema": schema, "strict": True}
    request = chat(response_format={"type": "json_schema", "json_schema": spec})
    assert request.body["response_format"] == {"type": "json_object", "schema": schema}
    assert request.grammar_param == "response_format"
    assert chat(response_format={"type": "json_object"}).body["response_format"] == {"type": "json_object"}
    assert "response_format" not in chat(response_format={"type": "text"}).body
    assert refused({"messages": [USER], "response_format": {"type": "xml"}}).param == "response_format"


TOOL = {"type": "function", "function": {"name": "meteo", "parameters": {"type": "object"}}}
OTHER = {"type": "function", "function": {"name": "heure"}}


def test_tool_choice_required_with_one_tool_names_it():
    request = chat(tools=[TOOL], tool_choice="required")
    assert request.body["tool_choice"] == {"type": "function", "function": {"name": "meteo"}}
    assert request.tools and request.grammar_param == "tool_choice"


def test_tool_choice_required_among_several_tools_is_refused():
    r = refused({"messages": [USER], "tools": [TOOL, OTHER], "tool_choice": "required"})
    assert r.param == "tool_choice" and "nommez l'outil" in r.message_fr


def test_tool_choice_none_sends_no_tools_and_an_unknown_name_is_refused():
    request = chat(tools=[TOOL], tool_choice="none")
    assert "tools" not in request.body and not request.tools
    unknown = {"type": "function", "function": {"name": "x"}}
    assert refused({"messages": [USER], "tools": [TOOL], "tool_choice": unknown}).param == "tool_choice"
    assert refused({"messages": [USER], "tools": [{"type": "custom", "custom": {}}]}).param == "tools[0]"


def test_a_tool_call_round_trip_in_the_history():
    call = {"id": "call_1", "type": "function", "function": {"name": "meteo", "arguments": '{"ville": "Paris"}'}}
    body = chat(tools=[TOOL], messages=[USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                                        {"role": "assistant", "tool_calls": [call]},  # no content at all
                                        {"role": "tool", "tool_call_id": "call_1", "content": "Soleil"}]).body
    assistant, bare, tool = body["messages"][1:]
    assert assistant == {"role": "assistant", "content": "", "tool_calls": [call]} and bare == assistant
    assert tool == {"role": "tool", "content": "Soleil", "tool_call_id": "call_1"}


def test_sampling_extras_of_other_programs():
    body = chat(top_k=40, min_p=0.05, repetition_penalty=1.1, mirostat_mode=2, typical_p=0.9).body
    assert body["top_k"] == 40 and body["min_p"] == 0.05 and body["repeat_penalty"] == 1.1
    assert body["mirostat_mode"] == 2 and "typical_p" not in body  # the engine has no typical_p


def test_seeds_fit_the_engine():
    assert chat(seed=42).body["seed"] == 42
    assert chat(seed=-1).body["seed"] == 2**32 - 1
    assert chat(seed=2**40 + 3).body["seed"] == 3


def test_nothing_unknown_reaches_the_runner():
    body = chat(user="u1", store=True, metadata={"a": "b"}, parallel_tool_calls=False, whatever=1).body
    assert set(body) == {"messages", "stream"}


# -- refused -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy"}}, "audio"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"temperature": 3}, "temperature"),
    ({"temperature": "chaud"}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"stream": "oui"}, "stream"),
    ({"stop": [1, 2]}, "stop"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5000": 1}}, "logit_bias"),  # beyond this model's 1000 tokens
    ({"logit_bias": {"5": 1000}}, "logit_bias.5"),
    ({"mirostat_mode": 3}, "mirostat_mode"),
    ({"grammar": 12}, "grammar"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
])
def test_what_would_change_the_answer_silently_is_refused_naming_the_field(fields, param):
    r = refused({"messages": [USER], **fields})
    assert r.param == param
    assert f"« {param.split('[')[0].split('.')[0]}" in r.message_fr or "« messages[" in r.message_fr


@pytest.mark.parametrize(("prompt", "words"), [
    ([1, 2, 3], "numéros de jetons"),
    ([[1, 2], [3]], "numéros de jetons"),
    (["un", "deux"], "un seul texte"),
    (None, "obligatoire"),
])
def test_completion_prompts_the_engine_cannot_take(prompt, words):
    r = refused({"prompt": prompt}, chat=False)
    assert r.param == "prompt" and words in r.message_fr


def test_completions_one_prompt_in_a_list_and_its_own_fields():
    request = translate({"prompt": ["Il était"], "echo": True, "suffix": "fin", "best_of": 1}, chat=False)
    assert isinstance(request, RunnerRequest)
    assert request.body == {"prompt": "Il était", "echo": True, "suffix": "fin", "stream": False, "max_tokens": 16}
    assert refused({"prompt": "x", "logprobs": 2}, chat=False).param == "logprobs"
    assert refused({"prompt": "x", "best_of": 3}, chat=False).param == "best_of"


def test_an_empty_stop_text_is_dropped_and_an_empty_grammar_too():
    body = chat(stop=["", "\n"], grammar="  ").body
    assert body["stop"] == ["\n"] and "grammar" not in body


# -- the stream --------------------------------------------------------------------------------------
def sse(payload: str) -> bytes:
    return f"data: {payload}\r\n\r\n".encode()


def test_events_are_cut_whole_whatever_the_reads():
    splitter = EventSplitter()
    data = sse('{"a": 1}') + b": ping\n\n" + sse("[DONE]")
    got = [e for i in range(0, len(data), 3) for e in splitter.feed(data[i:i + 3])]
    assert got == [sse('{"a": 1}'), b": ping\n\n", sse("[DONE]")] and splitter.rest == b""


def test_streamed_tool_calls_name_the_function_once():
    import json

    rewriter = StreamRewriter(include_usage=False, tools=True)
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "meteo", "arguments": '{"vi'}}
    chunk = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
    first = json.loads(rewriter.rewrite(sse(json.dumps(chunk)))[6:])
    call["function"]["arguments"] = 'lle": "Paris"}'
    second = json.loads(rewriter.rewrite(sse(json.dumps(chunk)))[6:])
    assert first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "meteo"
    assert second["choices"][0]["delta"]["tool_calls"][0] == {"index": 0, "function": {"arguments": 'lle": "Paris"}'}}
    end = {"choices": [{"index": 0, "delta": {"tool_calls": None}, "finish_reason": "tool_calls"}]}
    assert json.loads(rewriter.rewrite(sse(json.dumps(end)))[6:])["choices"][0]["delta"] == {}


def test_the_usage_chunk_goes_only_to_clients_that_asked():
    usage = sse('{"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}')
    assert StreamRewriter(include_usage=True, tools=False).rewrite(usage) == usage
    assert StreamRewriter(include_usage=False, tools=False).rewrite(usage) is None
    plain = sse('{"choices": [{"index": 0, "delta": {"content": "Bon"}}]}')
    assert StreamRewriter(include_usage=False, tools=False).rewrite(plain) is plain  # not even parsed
