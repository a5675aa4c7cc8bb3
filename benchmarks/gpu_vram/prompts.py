"""The one request each case answers: a prompt of a known length and an answer that never ends early.

Why: the compute buffers are exercised by a long prompt (~1 500 tokens, filled from :data:`FILLER`) and
the peak is reached while generating; tokens/s compares only when every answer is ``--max-tokens`` long.
Shape-only models have zero weights, so greedy sampling would pick the lowest id, often an end token:
:func:`answer_bias` forbids the end tokens and favours one ordinary word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

# Text to fill prompts: repeated until the prompt has the wanted number of tokens.
FILLER = (
    "Le chat de la voisine dort au soleil sur le rebord de la fenêtre pendant que la pluie tombe sur la "
    "ville. The avatar listens to the conversation and remembers what was said about the weather, the "
    "cat, the garden and the long walk by the river on Sunday afternoon. "
)

# Texts of the tokens llama.cpp ends an answer on (its end-of-generation list) besides the file's own ids.
END_TEXTS = (
    "</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
    "<end_of_turn>", "<|return|>", "<|call|>", "<EOT>", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
)


def build_prompt(count: Callable[[str], int], target: int) -> tuple[str, int]:
    """Repeat FILLER until the prompt has about ``target`` tokens (never more): (text, tokens)."""
    per = max(1, count(FILLER))
    reps = max(1, target // per)
    text = FILLER * reps
    n = count(text)
    while n > target and reps > 1:
        reps -= 1
        text = FILLER * reps
        n = count(text)
    while n > target and len(text) > 1:  # one FILLER is already too long: cut it
        text = text[: max(1, len(text) * target // n - 1)]
        n = count(text)
    return text, n


def answer_bias(tokenize: Callable[[str], list[int]], end_ids: Iterable[int]) -> dict[str, float]:
    """logit_bias that makes every answer ``max_tokens`` long: end tokens forbidden, one word favoured.

    With zero weights every logit is 0 and greedy sampling takes the lowest id, often an end or control
    token (SmolLM2's 0 is ``<|endoftext|>``): favouring an ordinary word makes each step stream a visible
    token, so tokens/s counts them all. What the answer says does not change its speed or memory.
    """
    prefix = tokenize("")  # the BOS the server adds, if any

    def ids(text: str) -> list[int]:
        got = tokenize(text)
        return got[len(prefix):] if got[: len(prefix)] == prefix else got

    bias = dict.fromkeys(end_ids, -100.0)
    for text in END_TEXTS:
        single = ids(text)
        if len(single) == 1:  # a special token of this vocabulary, not a spelling in pieces
            bias[single[0]] = -100.0
    word = ids(" the") or ids("a")
    if word and word[-1] not in bias:
        bias[word[-1]] = 20.0
    return {str(k): v for k, v in sorted(bias.items())}


def end_token_ids(path: Path) -> list[int]:
    """The model file's own end-of-sequence and end-of-turn ids (GGUF metadata)."""
    from tray_app.models.gguf_header import read_header

    with open(path, "rb") as f:
        md = read_header(f, path.stat().st_size).metadata
    ids = {md.get("tokenizer.ggml.eos_token_id"), md.get("tokenizer.ggml.eot_token_id")}
    return sorted(int(i) for i in ids if isinstance(i, int))
