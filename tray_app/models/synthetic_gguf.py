"""Write random-weight llama GGUF files of any shape with the ``gguf`` package.

Speed and memory of llama.cpp do not depend on the weights' values, so a random model of a real shape
(e.g. 7-8B llama) measures VRAM and tokens/s faithfully. Tiny shapes (hundreds of KB) load in
milliseconds and make tests fast. The tokenizer is a small SentencePiece-style vocabulary with the
256 byte tokens, so any text can be tokenized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LlamaShape:
    n_layers: int = 2
    n_embd: int = 64
    n_ff: int = 128
    n_head: int = 4
    n_head_kv: int = 2
    n_ctx_train: int = 2048
    n_vocab_extra: int = 64  # word pieces beside the 3 special and 256 byte tokens
    name: str = "tiny-random-llama"

    @property
    def n_vocab(self) -> int:
        return 3 + 256 + self.n_vocab_extra


def _vocab(shape: LlamaShape) -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # UNKNOWN, CONTROL, CONTROL, BYTE
    letters = "abcdefghijklmnopqrstuvwxyzéèàç"
    extra = [f"▁{letters[i % len(letters)]}{i // len(letters) or ''}" for i in range(shape.n_vocab_extra)]
    tokens += extra
    types += [1] * len(extra)  # NORMAL
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(len(extra))]
    return tokens, scores, types


def add_llama_shape(writer: Any, shape: Any, *, head_size: int | None = None, rms_eps: float = 1e-5) -> None:
    """The llama-family hyper-parameters of ``shape`` (any object with LlamaShape's fields) into a
    GGUFWriter; ``head_size``: when the heads are not ``n_embd / n_head`` wide (Gemma's 256)."""
    writer.add_name(shape.name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(head_size or shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(rms_eps)
    if head_size:
        writer.add_key_length(head_size)
        writer.add_value_length(head_size)


def write_random_llama(path: Path, shape: LlamaShape = LlamaShape(), *, seed: int = 0) -> Path:
    """Write a float32 llama GGUF with random weights; returns ``path``."""
    import gguf

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    head_dim = shape.n_embd // shape.n_head
    add_llama_shape(writer, shape)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = _vocab(shape)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )

    def w(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims) * 0.02).astype(np.float32)

    n_kv = head_dim * shape.n_head_kv
    writer.add_tensor("token_embd.weight", w(shape.n_vocab, shape.n_embd))
    for i in range(shape.n_layers):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", np.ones(shape.n_embd, dtype=np.float32))
        writer.add_tensor(p + "attn_q.weight", w(shape.n_embd, shape.n_embd))
        writer.add_tensor(p + "attn_k.weight", w(n_kv, shape.n_embd))
        writer.add_tensor(p + "attn_v.weight", w(n_kv, shape.n_embd))
        writer.add_tensor(p + "attn_output.weight", w(shape.n_embd, shape.n_embd))
        writer.add_tensor(p + "ffn_norm.weight", np.ones(shape.n_embd, dtype=np.float32))
        writer.add_tensor(p + "ffn_gate.weight", w(shape.n_ff, shape.n_embd))
        writer.add_tensor(p + "ffn_up.weight", w(shape.n_ff, shape.n_embd))
        writer.add_tensor(p + "ffn_down.weight", w(shape.n_embd, shape.n_ff))
    writer.add_tensor("output_norm.weight", np.ones(shape.n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", w(shape.n_vocab, shape.n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
