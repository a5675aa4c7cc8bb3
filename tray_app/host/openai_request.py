"""What an OpenAI client sends, made into what the runner understands, or refused before any generation.

Clients (the avatar's chat, SillyTavern, LangChain, LiteLLM, the official SDKs) speak today's OpenAI API;
the runner (llama-cpp-python's server) knows an older, smaller one and ignores what it does not know. A
field ignored when it changes the answer's length or shape is a silent wrong answer, so every field is
handled here, one way or another (the README's compatibility table lists them):

* **supported**: checked (type and range) and passed on as it is;
* **translated**: ``max_completion_tokens`` → ``max_tokens``, the ``developer`` role → ``system``, content
  given as a list of text parts → one text, ``response_format`` ``json_schema`` → llama-cpp-python's
  schema-constrained JSON, ``tool_choice: "required"`` with one tool → that tool, ``"none"`` → no tools,
  an assistant turn with ``tool_calls`` and ``content: null`` → empty content, ``repetition_penalty``
  (text-generation-webui, SillyTavern) → ``repeat_penalty``, a seed → a 32-bit seed;
* **refused** with an OpenAI-shaped 400 that names the field (``param``), in French: what the local
  model cannot do and would otherwise silently do differently (``n`` > 1, log-probabilities, images and
  audio, several prompts or token ids as prompt, ``tool_choice: "required"`` among several tools…);
* **ignored**: fields that change neither the text's length nor its shape (``user``, ``store``,
  ``metadata``, ``service_tier``, ``parallel_tool_calls``, ``reasoning_effort``, sampling extras the
  engine does not have…). Nothing unknown reaches the runner: its body is built from an allow-list.

The runner's body never contains ``stream_options``: the runner always ends a stream with a usage chunk
(see ``runner_engine_patches``) and the gateway passes it on only when ``include_usage`` was asked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_STOP_SEQUENCES = 16
MAX_LOGIT_BIAS = 1024
SEED_MODULO = 2**32  # llama.cpp's sampler seed is 32 bits
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_NOT_TEXT_PARTS = {
    "image_url": "des images",
    "image": "des images",
    "input_image": "des images",
    "input_audio": "du son",
    "audio": "du son",
    "file": "des fichiers",
    "input_file": "des fichiers",
    "video_url": "des vidéos",
}
# Ignored: they change neither the length nor the shape of the answer (the README says why, field by field).
IGNORED = frozenset(
    """user store metadata service_tier parallel_tool_calls reasoning_effort verbosity prediction
    safety_identifier prompt_cache_key prompt_cache_retention typical_p tfs tfs_z top_a
    repetition_penalty_range smoothing_factor dry_multiplier xtc_probability truncation_length
    add_bos_token skip_special_tokens ban_eos_token include_reasoning reasoning""".split()
)


@dataclass(frozen=True)
class Refusal:
    """An OpenAI-shaped error to answer at once: ``{"error": {"message", "type", "param", "code"}}``."""

    message_fr: str
    param: str | None
    code: str = "invalid_value"
    status: int = 400


@dataclass(frozen=True)
class RunnerRequest:
    body: dict[str, Any]  # what the runner gets
    stream: bool
    include_usage: bool  # the client asked for the last chunk with the token counts
    tools: bool  # tool or function calls may come back (streamed deltas are put in OpenAI's shape)
    grammar_param: str | None  # the field a grammar came from, named if the engine cannot parse it


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message_fr)
        self.refusal = refusal


def _refuse(param: str | None, message_fr: str, code: str = "invalid_value") -> _Refused:
    return _Refused(Refusal(message_fr, param, code))


def _unsupported(param: str, why_fr: str) -> _Refused:
    return _refuse(param, f"Le champ « {param} » n'est pas pris en charge par le modèle local : {why_fr}",
                   "unsupported_parameter")


# -- values ------------------------------------------------------------------------------------------
def _bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(param, f"Le champ « {param} » doit valoir true ou false.", "invalid_type")
    return value


def _number(value: Any, param: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _refuse(param, f"Le champ « {param} » doit être un nombre.", "invalid_type")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"entre {_fr(low)} et {_fr(high)}" if low is not None and high is not None else (
            f"au moins {_fr(low)}" if low is not None else f"au plus {_fr(high)}")
        raise _refuse(param, f"Le champ « {param} » doit être {bounds} (reçu : {_fr(value)}).")
    return value


def _int(value: Any, param: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(param, f"Le champ « {param} » doit être un nombre entier.", "invalid_type")
    _number(value, param, low, high)
    return value


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _refuse(param, f"Le champ « {param} » doit être un texte.", "invalid_type")
    return value


def _fr(value: float | None) -> str:
    if value is None:
        return ""
    return (f"{value:g}" if isinstance(value, float) else str(value)).replace(".", ",")


# -- messages ----------------------------------------------------------------------------------------
def _content_text(content: Any, param: str, *, may_be_empty: bool) -> str:
    """A message's content as one text: a string, or a list of text parts joined by line breaks."""
    if content is None:
        if may_be_empty:
            return ""
        raise _refuse(param, f"Le champ « {param} » doit contenir du texte.", "invalid_type")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _refuse(param, f"Le champ « {param} » doit être un texte ou une liste de parties de texte.",
                      "invalid_type")
    texts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _refuse(where, f"Le champ « {where} » doit être un objet avec un « type ».", "invalid_type")
        kind = part["type"]
        if kind in ("text", "input_text", "output_text"):
            texts.append(_str(part.get("text"), f"{where}.text"))
        elif kind == "refusal":
            texts.append(_str(part.get("refusal"), f"{where}.refusal"))
        elif kind in _NOT_TEXT_PARTS:
            raise _unsupported(where, f"il ne lit que du texte, pas {_NOT_TEXT_PARTS[kind]}. Envoyez le "
                                      "message sous forme de texte.")
        else:
            raise _refuse(where, f"Type de partie inconnu dans « {where} » : « {kind} » (attendu : « text »).")
    return "\n".join(texts)


def _tool_calls(value: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _refuse(param, f"Le champ « {param} » doit être une liste d'appels d'outils.", "invalid_type")
    calls = []
    for j, call in enumerate(value):
        where = f"{param}[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise _refuse(where, f"Le champ « {where} » doit contenir « function » (nom et arguments).",
                          "invalid_type")
        arguments = function.get("arguments", "")
        calls.append({
            "id": _str(call.get("id", f"call_{j}"), f"{where}.id"),
            "type": "function",
            "function": {
                "name": _str(function.get("name"), f"{where}.function.name"),
                "arguments": _str(arguments, f"{where}.function.arguments"),
            },
        })
    return calls


def _message(message: Any, i: int) -> dict[str, Any]:
    param = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _refuse(param, f"Le champ « {param} » doit être un objet avec « role » et « content ».",
                      "invalid_type")
    role = message.get("role")
    if role is None:
        raise _refuse(f"{param}.role", f"Le champ « {param}.role » est obligatoire : system, developer, user, "
                                       "assistant ou tool.", "missing_required_parameter")
    if role not in _ROLES:
        raise _refuse(f"{param}.role", f"Rôle inconnu dans « {param}.role » : {role!r} (attendu : system, "
                                       "developer, user, assistant ou tool).")
    out: dict[str, Any] = {"role": "system" if role == "developer" else role}
    out["content"] = _content_text(message.get("content"), f"{param}.content",
                                   may_be_empty=role in ("assistant", "tool", "function"))
    if role == "assistant":
        if message.get("tool_calls") is not None:
            out["tool_calls"] = _tool_calls(message["tool_calls"], f"{param}.tool_calls")
        function_call = message.get("function_call")
        if function_call is not None:
            if not isinstance(function_call, dict):
                raise _refuse(f"{param}.function_call", "« function_call » doit être un objet.", "invalid_type")
            out["function_call"] = {"name": _str(function_call.get("name"), f"{param}.function_call.name"),
                                    "arguments": str(function_call.get("arguments", ""))}
    elif role == "tool":
        out["tool_call_id"] = _str(message.get("tool_call_id", ""), f"{param}.tool_call_id")
    elif role == "function":
        out["name"] = _str(message.get("name"), f"{param}.name")
    return out


# -- tools and formats -------------------------------------------------------------------------------
def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _refuse("tools", "Le champ « tools » doit être une liste d'outils.", "invalid_type")
    tools = []
    for j, tool in enumerate(value):
        where = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _unsupported(where, f"seuls les outils de type « function » sont possibles (reçu : {kind!r}).")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _refuse(f"{where}.function", f"« {where}.function » doit être un objet.", "invalid_type")
        name = _str(function.get("name"), f"{where}.function.name")
        if not _TOOL_NAME.match(name):
            raise _refuse(f"{where}.function.name", f"Nom d'outil invalide : {name!r} (lettres, chiffres, _ et -, "
                                                    "64 au plus).")
        clean: dict[str, Any] = {"name": name}
        if function.get("description") is not None:
            clean["description"] = _str(function["description"], f"{where}.function.description")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _refuse(f"{where}.function.parameters", "Les paramètres d'un outil sont un schéma JSON (un objet).",
                          "invalid_type")
        clean["parameters"] = parameters or {"type": "object", "properties": {}}
        tools.append({"type": "function", "function": clean})
    return tools


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """(the runner's tool_choice, the tools to send)."""
    names = [t["function"]["name"] for t in tools]
    if value is None or value == "auto":
        return None, tools
    if value == "none":
        return None, []  # the model may not call any tool: it is not told about them
    if value == "required":
        if len(names) == 1:
            return {"type": "function", "function": {"name": names[0]}}, tools
        if not names:
            raise _refuse("tool_choice", "« tool_choice » vaut « required » mais aucun outil n'est donné (« tools »).")
        raise _unsupported("tool_choice", "« required » parmi plusieurs outils n'est pas possible ; nommez l'outil à "
                                          'appeler : {"type": "function", "function": {"name": …}}.')
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("function"), dict):
        name = value["function"].get("name")
        if name not in names:
            raise _refuse("tool_choice", f"L'outil demandé dans « tool_choice » ({name!r}) n'est pas dans « tools ».")
        return {"type": "function", "function": {"name": name}}, tools
    raise _unsupported("tool_choice", "attendu « auto », « none », « required » ou un outil nommé.")


def _response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _refuse("response_format", "« response_format » doit être un objet avec un « type ».", "invalid_type")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        schema = value.get("schema")  # llama-cpp-python's extension
        return {"type": "json_object", **({"schema": schema} if isinstance(schema, dict) else {})}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise _refuse("response_format.json_schema", "« json_schema » doit être un objet avec « name » et "
                                                         "« schema ».", "invalid_type")
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise _refuse("response_format.json_schema.schema", "Le schéma doit être un objet JSON.", "invalid_type")
        return {"type": "json_object", "schema": schema or {"type": "object"}}
    raise _unsupported("response_format", f"type {kind!r} inconnu (text, json_object ou json_schema).")


def _stop(value: Any) -> list[str] | None:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _refuse("stop", "« stop » doit être un texte ou une liste de textes.", "invalid_type")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise _refuse("stop", f"« stop » : {MAX_STOP_SEQUENCES} textes au plus.")
    stops = [s for s in stops if s]  # an empty stop text would end every answer before its first word
    return stops or None


def _logit_bias(value: Any, n_vocab: int | None) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _refuse("logit_bias", "« logit_bias » doit être un objet {numéro de jeton: biais}.", "invalid_type")
    if len(value) > MAX_LOGIT_BIAS:
        raise _refuse("logit_bias", f"« logit_bias » : {MAX_LOGIT_BIAS} jetons au plus.")
    out = {}
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise _refuse("logit_bias", f"« logit_bias » : la clé {key!r} n'est pas un numéro de jeton.")
        if n_vocab and int(key) >= n_vocab:
            raise _refuse("logit_bias", f"« logit_bias » : le jeton {key} n'existe pas (ce modèle en a {n_vocab}).")
        out[str(int(key))] = float(_number(bias, f"logit_bias.{key}", -100, 100))
    return out


# -- the request -------------------------------------------------------------------------------------
def translate(request: Any, *, chat: bool, n_vocab: int | None = None) -> RunnerRequest | Refusal:
    """The runner's request for an OpenAI ``request`` (already parsed JSON), or why it is refused."""
    try:
        return _translate(request, chat, n_vocab)
    except _Refused as refused:
        return refused.refusal


def _translate(request: Any, chat: bool, n_vocab: int | None) -> RunnerRequest:
    if not isinstance(request, dict):
        raise _refuse(None, "Le corps de la requête doit être un objet JSON.", "invalid_type")
    r = request
    body: dict[str, Any] = {}

    def given(key: str) -> bool:
        return r.get(key) is not None

    stream = _bool(r["stream"], "stream") if given("stream") else False
    include_usage = False
    if given("stream_options"):
        options = r["stream_options"]
        if not isinstance(options, dict):
            raise _refuse("stream_options", "« stream_options » doit être un objet.", "invalid_type")
        if options.get("include_usage") is not None:
            include_usage = _bool(options["include_usage"], "stream_options.include_usage")
    body["stream"] = stream

    # what the answer is made from
    grammar_param = None
    tools_sent = False
    if chat:
        messages = r.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _refuse("messages", "Le champ « messages » est obligatoire : une liste de messages, au moins un.",
                          "invalid_type" if messages is not None else "missing_required_parameter")
        body["messages"] = [_message(m, i) for i, m in enumerate(messages)]
        if given("tools"):
            tools = _tools(r["tools"])
            choice, tools = _tool_choice(r.get("tool_choice"), tools)
            if tools:
                body["tools"] = tools
                tools_sent = True
            if choice is not None:
                body["tool_choice"] = choice
                grammar_param = "tool_choice"
        elif given("tool_choice") and r["tool_choice"] not in ("none", "auto"):
            raise _refuse("tool_choice", "« tool_choice » demande un outil mais aucun outil n'est donné (« tools »).")
        if given("functions"):  # deprecated form of tools, still understood by the runner
            functions = r["functions"]
            if not isinstance(functions, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str)
                                                          for f in functions):
                raise _refuse("functions", "« functions » doit être une liste d'objets avec un « name ».",
                              "invalid_type")
            body["functions"] = functions
            tools_sent = True
            if given("function_call"):
                call = r["function_call"]
                if call not in ("none", "auto") and not (isinstance(call, dict) and
                                                         call.get("name") in [f["name"] for f in functions]):
                    raise _refuse("function_call", "« function_call » : « none », « auto » ou une fonction de "
                                                   "« functions ».")
                body["function_call"] = call
        if given("response_format"):
            fmt = _response_format(r["response_format"])
            if fmt is not None:
                body["response_format"] = fmt
                grammar_param = "response_format"
        if given("logprobs") and _bool(r["logprobs"], "logprobs"):
            raise _unsupported("logprobs", "il ne calcule pas les probabilités des mots (cela coûterait beaucoup "
                                           "de mémoire). Retirez « logprobs ».")
        if given("top_logprobs") and _int(r["top_logprobs"], "top_logprobs", 0, 20) > 0:
            raise _unsupported("top_logprobs", "il ne calcule pas les probabilités des mots.")
        for key in ("modalities",):
            if given(key) and r[key] != ["text"]:
                raise _unsupported(key, "il ne répond que par du texte.")
        for key in ("audio", "web_search_options"):
            if given(key):
                raise _unsupported(key, "il ne répond que par du texte, sans recherche sur Internet.")
    else:
        body["prompt"] = _prompt(r.get("prompt"))
        if given("suffix"):
            body["suffix"] = _str(r["suffix"], "suffix")
        if given("echo"):
            body["echo"] = _bool(r["echo"], "echo")
        if given("logprobs") and _int(r["logprobs"], "logprobs", 0, 5) > 0:
            raise _unsupported("logprobs", "il ne calcule pas les probabilités des mots. Retirez « logprobs ».")
        if given("best_of") and _int(r["best_of"], "best_of", 1, 20) != 1:
            raise _unsupported("best_of", "il écrit une seule réponse à la fois. Utilisez best_of = 1.")

    if given("n") and _int(r["n"], "n", 1, 128) != 1:
        raise _unsupported("n", "il écrit une seule réponse à la fois. Envoyez n = 1, ou plusieurs requêtes.")

    # how long
    limits = [_int(r[k], k, 1) for k in ("max_completion_tokens", "max_tokens") if given(k)]
    if limits:
        body["max_tokens"] = min(limits)
    elif not chat:
        body["max_tokens"] = 16  # OpenAI's default for /v1/completions
    if given("min_tokens"):
        body["min_tokens"] = _int(r["min_tokens"], "min_tokens", 0, body.get("max_tokens"))
    if given("stop"):
        stops = _stop(r["stop"])
        if stops:
            body["stop"] = stops

    # sampling
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1), ("frequency_penalty", -2, 2),
                           ("presence_penalty", -2, 2), ("min_p", 0, 1), ("repeat_penalty", 0, 10),
                           ("mirostat_tau", 0, 100), ("mirostat_eta", 0, 1)):
        if given(key):
            body[key] = _number(r[key], key, low, high)
    if given("repetition_penalty") and "repeat_penalty" not in body:
        body["repeat_penalty"] = _number(r["repetition_penalty"], "repetition_penalty", 0, 10)
    if given("top_k"):
        body["top_k"] = _int(r["top_k"], "top_k", 0, 1_000_000)
    if given("mirostat_mode"):
        body["mirostat_mode"] = _int(r["mirostat_mode"], "mirostat_mode", 0, 2)
    if given("seed"):
        body["seed"] = _int(r["seed"], "seed", -(2**63), 2**64 - 1) % SEED_MODULO
    if given("logit_bias"):
        body["logit_bias"] = _logit_bias(r["logit_bias"], n_vocab)
    if given("logit_bias_type"):
        if r["logit_bias_type"] not in ("input_ids", "tokens"):
            raise _refuse("logit_bias_type", "« logit_bias_type » : « input_ids » ou « tokens ».")
        body["logit_bias_type"] = r["logit_bias_type"]
    if given("grammar"):
        grammar = _str(r["grammar"], "grammar")
        if grammar.strip():
            if grammar_param is not None:
                raise _refuse("grammar", f"« grammar » et « {grammar_param} » ne peuvent pas aller ensemble.")
            body["grammar"] = grammar
            grammar_param = "grammar"
    return RunnerRequest(body, stream, include_usage, tools_sent, grammar_param)


def _prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if not value:
            return ""
        if all(isinstance(p, str) for p in value):
            if len(value) == 1:
                return value[0]
            raise _unsupported("prompt", "un seul texte à la fois (reçu : une liste de plusieurs). Envoyez une "
                                         "requête par texte.")
        token_ids = all(isinstance(p, int) and not isinstance(p, bool) for p in value)
        if token_ids or all(isinstance(p, list) for p in value):
            raise _unsupported("prompt", "le texte doit être envoyé tel quel, pas en numéros de jetons.")
    raise _refuse("prompt", "Le champ « prompt » est obligatoire : un texte.",
                  "missing_required_parameter" if value is None else "invalid_type")
