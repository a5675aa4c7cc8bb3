"""Reading GGUF headers: real files (tiny random, the SmolLM2 demo, a sparse 7B), and every broken case."""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from tray_app.models.gguf_header import read_header
from tray_app.models.gguf_info import (
    ModelFileError,
    model_info_from_shape,
    read_model_info,
    readable_name,
    shard_number,
)
from tray_app.models.shape_gguf import write_shape_only_llama
from tray_app.models.synthetic_gguf import LlamaShape, write_random_llama


@pytest.fixture(scope="module")
def sparse_7b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shape_only_llama(tmp_path_factory.mktemp("big") / "Mistral-7B-Instruct-v0.3.Q4_K_M.gguf")


def data_start_of(path, size: int) -> int:
    with open(path, "rb") as f:
        return read_header(f, size).data_start


def _reader_sizes(path: Path) -> dict[str, int]:
    """Per-tensor bytes as the gguf package's own reader computes them (the reference)."""
    return {t.name: int(t.n_bytes) for t in gguf.GGUFReader(path).tensors}


# -- good files -------------------------------------------------------------------------------------


def test_tiny_random_llama_matches_the_gguf_package_byte_for_byte(tiny_gguf: Path):
    info = read_model_info(tiny_gguf)
    shape = LlamaShape()
    assert (info.architecture, info.n_layers, info.n_embd, info.n_ff) == ("llama", 2, 64, 128)
    assert (info.n_head, info.n_head_kv, info.head_dim_k, info.head_dim_v) == (4, 2, 16, 16)
    assert info.n_ctx_train == 2048 and info.n_vocab == shape.n_vocab
    assert info.file_type == "F32" and info.has_chat_template and not info.output_tied
    sizes = _reader_sizes(tiny_gguf)
    for i in range(2):
        assert info.layer_bytes[i] == sum(n for name, n in sizes.items() if name.startswith(f"blk.{i}."))
    assert info.input_bytes == sizes["token_embd.weight"]
    assert info.output_bytes == sizes["output.weight"] + sizes["output_norm.weight"]
    assert info.weights_bytes == sum(sizes.values())
    assert info.file_size == tiny_gguf.stat().st_size
    assert {t.name: t.n_bytes for t in info.tensors} == sizes


def test_demo_model_smollm2(demo_gguf: Path):
    info = read_model_info(demo_gguf)
    assert info.name == "SmolLM2 135M Instruct"
    assert info.general_name.startswith("Smollm2 135M")
    assert (info.architecture, info.n_layers, info.n_embd, info.n_ff) == ("llama", 30, 576, 1536)
    assert (info.n_head, info.n_head_kv, info.head_dim_k, info.head_dim_v) == (9, 3, 64, 64)
    assert (info.n_ctx_train, info.n_vocab) == (8192, 49152)
    assert info.file_type == "Q4_1"
    assert dict(info.tensor_types).keys() == {"Q4_1", "Q8_0", "F32"}
    assert info.has_chat_template
    # SmolLM2 ties its output to the embedding: llama.cpp loads a second copy for the output layer.
    assert info.output_tied
    assert info.output_bytes == info.input_bytes + 576 * 4  # token_embd copy + output_norm (f32)
    assert len(set(info.layer_bytes)) == 1 and info.layer_bytes[0] == 2_216_448
    assert info.file_size == demo_gguf.stat().st_size == 98_362_432
    data_start = data_start_of(demo_gguf, info.file_size)
    assert data_start + info.weights_bytes == info.file_size  # every byte of data accounted for


def test_reader_reads_the_header_only(demo_gguf: Path):
    """98 MB file, 1.8 MB header: at most the header and one 1 MiB buffer are read."""

    class CountingFile:
        def __init__(self, f):
            self.f, self.read_bytes = f, 0

        def read(self, n=-1):
            data = self.f.read(n)
            self.read_bytes += len(data)
            return data

        def seek(self, *a):
            return self.f.seek(*a)

    size = demo_gguf.stat().st_size
    with open(demo_gguf, "rb") as f:
        counting = CountingFile(f)
        header = read_header(counting, size)
    assert counting.read_bytes <= header.data_start + (1 << 20)
    assert counting.read_bytes < size / 20


def test_weights_are_never_interpreted(tiny_gguf: Path, tmp_path: Path):
    """Scrambling every weight byte changes nothing: only the header matters."""
    copy = tmp_path / "scrambled.gguf"
    shutil.copy(tiny_gguf, copy)
    start = data_start_of(copy, copy.stat().st_size)
    data = bytearray(copy.read_bytes())
    data[start:] = random.Random(1).randbytes(len(data) - start)
    copy.write_bytes(bytes(data))
    a, b = read_model_info(tiny_gguf), read_model_info(copy)
    assert (a.layer_bytes, a.output_bytes, a.n_vocab, a.file_type) == (
        b.layer_bytes, b.output_bytes, b.n_vocab, b.file_type
    )


def test_sparse_7b_shape_reads_fast_without_gigabytes_on_disk(sparse_7b: Path):
    info = read_model_info(sparse_7b)
    assert (info.n_layers, info.n_head_kv, info.head_dim_k, info.n_embd) == (32, 8, 128, 4096)
    assert info.file_type == "Q4_K_M"
    assert dict(info.tensor_types).keys() == {"Q4_K", "Q6_K", "F32"}
    assert 4.0 < info.file_size / 2**30 < 4.2  # « 4,1 Go »
    assert max(info.layer_bytes) > min(info.layer_bytes)  # Q6_K on some layers, as in Q4_K_M
    if hasattr(os.stat_result, "st_blocks"):
        assert sparse_7b.stat().st_blocks * 512 < 50 * 2**20  # sparse: the data takes no disk
    assert info.name == "Mistral 7B Instruct v0.3"


def test_shape_only_model_info_needs_no_file():
    info = model_info_from_shape(
        name="7B", n_layers=32, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=32000,
        layer_bytes=120 * 2**20, input_bytes=70 * 2**20, output_bytes=100 * 2**20,
    )
    assert info.head_dim_k == 128 and info.weights_bytes == 32 * 120 * 2**20 + 170 * 2**20


def test_split_model_is_read_as_one(tmp_path: Path):
    shape = LlamaShape(n_layers=4)
    single = write_random_llama(tmp_path / "single" / "tiny.gguf", shape)
    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()
    # the same model, split in parts by the gguf writer (as gguf-split does)
    writer = gguf.GGUFWriter(str(parts_dir / "tiny.gguf"), "llama", split_max_tensors=15)
    src = gguf.GGUFReader(single)
    for field in src.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    for t in src.tensors:
        writer.add_tensor(t.name, np.array(t.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    del src
    parts = sorted(parts_dir.glob("*.gguf"))
    assert len(parts) >= 2 and shard_number(parts[0]) == (1, len(parts))
    whole, one = read_model_info(parts[0]), read_model_info(single)
    assert whole.layer_bytes == one.layer_bytes and whole.output_bytes == one.output_bytes
    assert whole.file_size == sum(p.stat().st_size for p in parts)
    assert len(whole.parts) == len(parts)
    with pytest.raises(ModelFileError) as second:
        read_model_info(parts[1])
    assert second.value.kind == "missing_part" and parts[0].name in second.value.message_fr
    parts[-1].unlink()
    with pytest.raises(ModelFileError) as missing:
        read_model_info(parts[0])
    assert missing.value.kind == "missing_part" and "Il manque la partie" in missing.value.message_fr


# -- broken files -------------------------------------------------------------------------------------


def _error(path: Path) -> ModelFileError:
    with pytest.raises(ModelFileError) as exc:
        read_model_info(path)
    err = exc.value
    assert path.name in err.message_fr, err.message_fr  # names the file
    assert err.message_fr == str(err)
    return err


@pytest.mark.parametrize("keep", ["most_data", "half", "header_only", "inside_header"])
def test_truncated_copies_are_reported(tiny_gguf: Path, tmp_path: Path, keep: str):
    size = tiny_gguf.stat().st_size
    start = data_start_of(tiny_gguf, size)
    cut = {"most_data": size - 1000, "half": size // 2, "header_only": start, "inside_header": 600}[keep]
    copy = tmp_path / f"cut-{keep}.gguf"
    copy.write_bytes(tiny_gguf.read_bytes()[:cut])
    err = _error(copy)
    assert err.kind == "truncated"
    assert "incomplet" in err.message_fr and "téléchargez" in err.message_fr


def test_truncated_demo_copy_says_how_much_is_there(demo_gguf: Path, tmp_path: Path):
    copy = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(demo_gguf, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read(10 * 2**20))
    err = _error(copy)
    assert err.kind == "truncated" and "(10 Mo sur 94 Mo)" in err.message_fr


def test_missing_empty_folder_and_not_gguf(tmp_path: Path):
    assert _error(tmp_path / "absent.gguf").kind == "missing"
    (tmp_path / "empty.gguf").write_bytes(b"")
    assert _error(tmp_path / "empty.gguf").kind == "empty"
    (tmp_path / "folder.gguf").mkdir()
    assert _error(tmp_path / "folder.gguf").kind == "not_a_file"
    (tmp_path / "notes.gguf").write_text("ceci n'est pas un modèle", encoding="utf-8")
    assert _error(tmp_path / "notes.gguf").kind == "not_gguf"
    (tmp_path / "tiny.gguf").write_bytes(b"GG")
    assert _error(tmp_path / "tiny.gguf").kind == "not_gguf"
    (tmp_path / "v1.gguf").write_bytes(b"GGUF" + struct.pack("<I", 1) + bytes(64))
    err = _error(tmp_path / "v1.gguf")
    assert err.kind == "old_format" and "version 1" in err.message_fr


def _write_arch(path: Path, arch: str, general_type: str = "") -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    if general_type:
        writer.add_type(general_type)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(1)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("arch", "general_type", "kind", "words"),
    [
        ("mamba", "", "unsupported", "ne sait pas encore"),
        ("rwkv7", "", "unsupported", "ne sait pas encore"),
        ("architecture-du-futur", "", "unsupported", "inconnue"),
        ("clip", "", "not_chat", "vision"),
        ("bert", "", "not_chat", "pas un modèle de conversation"),
        ("llama", "adapter", "not_chat", "adaptateur"),
    ],
)
def test_architectures_that_cannot_be_planned(tmp_path: Path, arch, general_type, kind, words):
    err = _error(_write_arch(tmp_path / f"{arch}.gguf", arch, general_type))
    assert err.kind == kind and words in err.message_fr


def test_missing_shape_is_corrupt(tmp_path: Path):
    path = tmp_path / "noshape.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    err = _error(path)
    assert err.kind == "corrupt" and "endommagé" in err.message_fr


def test_damaged_headers_never_crash(tiny_gguf: Path, tmp_path: Path):
    """Random bytes flipped in the header: a ModelInfo or a ModelFileError, never anything else."""
    original = tiny_gguf.read_bytes()
    start = data_start_of(tiny_gguf, len(original))
    rng = random.Random(4050)
    kinds = set()
    for i in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(4, start)] = rng.getrandbits(8)
        path = tmp_path / f"damaged-{i}.gguf"
        path.write_bytes(bytes(data))
        try:
            read_model_info(path)
            kinds.add("ok")
        except ModelFileError as exc:
            kinds.add(exc.kind)
            assert exc.message_fr
    assert len(kinds) >= 2


def test_unreadable_file(tiny_gguf: Path, tmp_path: Path):
    if os.name == "nt" or os.geteuid() == 0:
        pytest.skip("permissions are not enforced here")
    locked = tmp_path / "locked.gguf"
    shutil.copy(tiny_gguf, locked)
    locked.chmod(0)
    try:
        err = _error(locked)
    finally:
        locked.chmod(0o644)
    assert err.kind == "unreadable" and "accès refusé" in err.message_fr


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2 135M Instruct"),
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Meta Llama 3.1 8B Instruct"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "qwen2.5 7b instruct"),
        ("Llama-3.2-3B-Instruct-IQ4_XS.gguf", "Llama 3.2 3B Instruct"),
        ("phi-3-mini-4k-instruct-fp16.gguf", "phi 3 mini 4k instruct"),
        ("sha256-" + "ab" * 32, "Nom interne"),
    ],
)
def test_readable_names(file_name: str, expected: str):
    assert readable_name(file_name, "Nom interne") == expected


def test_reading_a_model_keeps_numpy_out_of_the_tray_process(demo_gguf):
    """The gguf package's __init__ loads numpy and yaml (20 MB kept for good); only its constants are used."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom tray_app.models.gguf_info import read_model_info\n"
        f"info = read_model_info({str(demo_gguf)!r})\n"
        "print(info.file_type, sorted(m for m in ('numpy', 'gguf', 'yaml') if m in sys.modules))\n"
    )
    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.strip() == "Q4_1 []", out.stderr[-400:]
