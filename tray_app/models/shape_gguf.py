"""GGUF files of a real model's *shape* whose weights take no disk space (Llama, Mistral, Qwen2, Gemma).

The header (metadata, tokenizer, tensor descriptions with their real quantisation types) is written
normally; the data section is then reserved with ``truncate``, which on Linux and macOS makes a sparse
file: a "4,1 Go" model costs a few hundred KB of disk and milliseconds to write. The weights read as
zeros. Planning and header tests use these files through the real reader; the memory measurements (a GPU,
or Mesa's software Vulkan device in the tests) load them too: llama.cpp does not care what the weights
are to measure memory.

Families: the architecture's own tensors and metadata (Qwen2's attention biases, Gemma's 256-wide heads
and tied output, Llama 3.2's tied output), with a small SentencePiece vocabulary of the real size (the
tokenizer's kind changes nothing in memory). The quantisation mix follows llama.cpp's
``llama_tensor_get_type`` for Q4_K_M: Q4_K everywhere, Q6_K for ``attn_v`` and ``ffn_down`` on the first
and last eighth of the layers and every third layer in between, Q6_K for ``output``; a row whose length is
not a multiple of 256 falls back as llama.cpp does (Q4_K → Q5_0, Q6_K → Q8_0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tray_app.models.synthetic_gguf import add_llama_shape


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layers: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_ctx_train: int
    file_type: str = "Q4_K_M"  # Q3_K_M, Q3_K_L, IQ4_XS, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q8_0 or F16
    n_merges: int = 0  # BPE merges (GPT-2-style tokenizers: Llama 3, Qwen): most of such a header's bytes
    architecture: str = "llama"  # llama, qwen2, gemma
    head_dim: int = 0  # 0: n_embd / n_head
    tied_output: bool = False  # no output.weight: the token embedding serves both (always for Gemma)

    @property
    def head_size(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


# Mistral-7B-Instruct-v0.3's shape: Q4_K_M is 4,1 Go (4.4 GB), 32 layers, 8 KV heads of 128.
MISTRAL_7B_Q4_K_M = ModelShape(
    name="Mistral 7B Instruct (forme seule)",
    n_layers=32,
    n_embd=4096,
    n_ff=14336,
    n_head=32,
    n_head_kv=8,
    n_vocab=32768,
    n_ctx_train=32768,
)
# Llama-3.2-1B-Instruct: Llama 3's grouped-query attention (32 heads, 8 for K/V, of 64), its 128 256-token
# vocabulary, tied output; 0,8 Go in Q4_K_M.
LLAMA32_1B_Q4_K_M = ModelShape(
    name="Llama 3.2 1B Instruct (forme seule)",
    n_layers=16,
    n_embd=2048,
    n_ff=8192,
    n_head=32,
    n_head_kv=8,
    n_vocab=128256,
    n_ctx_train=131072,
    tied_output=True,
)
# Qwen2.5-0.5B-Instruct: Qwen2's biases on Q, K and V, 14 heads and 2 for K/V of 64, rows of 896 values
# (not a multiple of 256: Q5_0/Q8_0 fallbacks), 151 936 tokens, tied output.
QWEN25_05B_Q4_K_M = ModelShape(
    name="Qwen2.5 0.5B Instruct (forme seule)",
    n_layers=24,
    n_embd=896,
    n_ff=4864,
    n_head=14,
    n_head_kv=2,
    n_vocab=151936,
    n_ctx_train=32768,
    architecture="qwen2",
    tied_output=True,
)
# Gemma-2B-it (Gemma 1): multi-query attention (8 heads, one for K/V) of 256 values, 256 000 tokens, tied.
GEMMA_2B_Q4_K_M = ModelShape(
    name="Gemma 2B it (forme seule)",
    n_layers=18,
    n_embd=2048,
    n_ff=16384,
    n_head=8,
    n_head_kv=1,
    n_vocab=256000,
    n_ctx_train=8192,
    architecture="gemma",
    head_dim=256,
    tied_output=True,
)


# Qwen2.5-7B-Instruct's sizes in the llama layout (28 layers, 4 KV heads, 152 064 tokens and 151 387
# merges): a header of several MB, as the big-vocabulary models of the catalogue have.
QWEN25_7B_Q4_K_M = ModelShape(
    name="Qwen2.5 7B Instruct (forme seule)",
    n_layers=28,
    n_embd=3584,
    n_ff=18944,
    n_head=28,
    n_head_kv=4,
    n_vocab=152064,
    n_ctx_train=32768,
    n_merges=151387,
)


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def write_shape_only(path: Path, shape: ModelShape = MISTRAL_7B_Q4_K_M) -> Path:
    """Write a GGUF of ``shape`` (its architecture's tensors) with sparse (zero) weights; returns ``path``."""
    import gguf

    q = gguf.GGMLQuantizationType
    # (most tensors, attn_v/ffn_down where llama.cpp gives more bits, output): llama.cpp's mixes, simplified
    mixes = {
        "Q3_K_M": (q.Q3_K, q.Q5_K, q.Q6_K), "Q3_K_L": (q.Q3_K, q.Q5_K, q.Q6_K), "IQ4_XS": (q.IQ4_XS, q.IQ4_XS, q.Q6_K),
        "Q4_K_S": (q.Q4_K, q.Q5_K, q.Q6_K), "Q4_K_M": (q.Q4_K, q.Q6_K, q.Q6_K), "Q5_K_S": (q.Q5_K, q.Q5_K, q.Q6_K),
        "Q5_K_M": (q.Q5_K, q.Q6_K, q.Q6_K), "Q6_K": (q.Q6_K, q.Q6_K, q.Q6_K), "Q8_0": (q.Q8_0, q.Q8_0, q.Q8_0),
        "F16": (q.F16, q.F16, q.F16),
    }  # fmt: skip
    if shape.file_type not in mixes:
        raise ValueError(f"unsupported file type {shape.file_type}")
    base, more, out_type = mixes[shape.file_type]
    ftype = gguf.LlamaFileType["MOSTLY_" + shape.file_type]
    if shape.architecture not in ("llama", "qwen2", "gemma"):
        raise ValueError(f"unsupported architecture {shape.architecture}")
    # a row whose length is not a multiple of the type's block falls back as llama.cpp does
    fallback = {q.Q3_K: q.IQ4_NL, q.IQ4_XS: q.IQ4_NL, q.Q4_K: q.Q5_0, q.Q5_K: q.Q5_1, q.Q6_K: q.Q8_0}
    head = shape.head_size
    n_q, n_kv = head * shape.n_head, head * shape.n_head_kv
    tied = shape.tied_output or shape.architecture == "gemma"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), shape.architecture)
    add_llama_shape(writer, shape, head_size=shape.head_dim or None,
                    rms_eps=1e-6 if shape.architecture != "llama" else 1e-5)
    writer.add_file_type(ftype)
    writer.add_vocab_size(shape.n_vocab)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"▁t{i}" for i in range(shape.n_vocab - len(tokens))]
    if shape.n_merges:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(tokens)
        writer.add_token_merges([f"Ġt ok{i}" for i in range(shape.n_merges)])
    else:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")

    def tensor(name: str, rows: int, cols: int, qtype: gguf.GGMLQuantizationType) -> None:
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        if cols % block:
            qtype = fallback.get(qtype, q.Q8_0)
            block, _ = gguf.GGML_QUANT_SIZES[qtype]
        type_size = gguf.GGML_QUANT_SIZES[qtype][1]
        nbytes = rows * cols // block * type_size
        shape_np = (rows, cols) if rows > 1 else (cols,)
        writer.add_tensor_info(name, shape_np, np.dtype(np.float32), nbytes, raw_dtype=qtype)

    f32 = q.F32
    tensor("token_embd.weight", shape.n_vocab, shape.n_embd, base)
    for i in range(shape.n_layers):
        p = f"blk.{i}."
        wide = more if _more_bits(i, shape.n_layers) else base
        tensor(p + "attn_norm.weight", 1, shape.n_embd, f32)
        tensor(p + "attn_q.weight", n_q, shape.n_embd, base)
        tensor(p + "attn_k.weight", n_kv, shape.n_embd, base)
        tensor(p + "attn_v.weight", n_kv, shape.n_embd, wide)
        if shape.architecture == "qwen2":
            tensor(p + "attn_q.bias", 1, n_q, f32)
            tensor(p + "attn_k.bias", 1, n_kv, f32)
            tensor(p + "attn_v.bias", 1, n_kv, f32)
        tensor(p + "attn_output.weight", shape.n_embd, n_q, base)
        tensor(p + "ffn_norm.weight", 1, shape.n_embd, f32)
        tensor(p + "ffn_gate.weight", shape.n_ff, shape.n_embd, base)
        tensor(p + "ffn_up.weight", shape.n_ff, shape.n_embd, base)
        tensor(p + "ffn_down.weight", shape.n_embd, shape.n_ff, wide)
    tensor("output_norm.weight", 1, shape.n_embd, f32)
    if not tied:
        tensor("output.weight", shape.n_vocab, shape.n_embd, out_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    alignment = writer.data_alignment
    data = 0
    for ti in writer.tensors[0].values():
        data += -(-ti.nbytes // alignment) * alignment
    header_end = path.stat().st_size
    data_start = -(-header_end // alignment) * alignment
    with open(path, "r+b") as f:
        f.truncate(data_start + data)  # sparse: no disk blocks for the zeros
    return path


def write_shape_only_llama(path: Path, shape: ModelShape = MISTRAL_7B_Q4_K_M) -> Path:
    """The llama-architecture writer's former name (the shapes of Mistral and Llama 3 are llama's)."""
    return write_shape_only(path, shape)
