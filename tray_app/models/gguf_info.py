"""What a GGUF model file holds, read from its header without loading it: :func:`read_model_info`.

The memory plan needs the model's shape (layers, widths, heads) and the exact bytes of every tensor,
grouped the way llama.cpp places them (see ``llama_model::load_tensors``):

* ``blk.N.*`` — the repeating layers. ``n_gpu_layers = k`` puts the **last** k layers on the GPU.
* the **input** tensors (``token_embd``, ``token_embd_norm``, ``position_embd``, ``token_types``) always
  stay on the CPU: looking up a few rows of the embedding is not worth the VRAM.
* the **output** tensors (``output``, ``output_norm`` and any other non-layer tensor) go to the GPU only
  when every layer is offloaded (``n_gpu_layers > n_layers``, or -1). When the file has no
  ``output.weight`` the embedding is tied: llama.cpp loads a second copy of ``token_embd`` for the
  output, so :attr:`ModelInfo.output_bytes` counts it.

Files that cannot be used raise :class:`ModelFileError`, whose ``message_fr`` names the file and says
what to do; ``kind`` tells programs which problem it is. Nothing else escapes (the traceback, when there
is one, goes to the log).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tray_app.format_fr import size_fr
from tray_app.models.gguf_header import (
    ArraySummary,
    GgufHeader,
    HeaderCorrupt,
    HeaderTruncated,
    NotGguf,
    UnsupportedVersion,
    read_header,
)

log = logging.getLogger(__name__)

MAX_LAYERS = 4096  # sanity bounds: a damaged header must not allocate gigabytes
MAX_WIDTH = 1 << 20
INPUT_TENSORS = ("token_embd.", "token_embd_norm.", "position_embd.", "token_types.")
_LAYER = re.compile(r"^blk\.(\d+)\.")
_SHARD = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# GGUF files that are not chat models: embeddings, vision projectors, audio, encoders.
NOT_CHAT_ARCHITECTURES = frozenset(
    {
        "clip", "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
        "neo-bert", "eurobert", "t5encoder", "wavtokenizer-dec", "gemma-embedding", "llama-embed",
    }
)  # fmt: skip
# Chat models whose memory the plan cannot predict with the attention-cache formula: recurrent state
# (Mamba, RWKV), hybrids, compressed attention (MLA), encoder-decoder and diffusion models.
UNPLANNABLE_ARCHITECTURES = frozenset(
    {
        "mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "jamba", "falcon-h1", "nemotron_h",
        "nemotron_h_moe", "granitehybrid", "lfm2", "lfm2moe", "qwen3next", "qwen35", "qwen35moe",
        "kimi-linear", "plamo2", "deepseek2", "minicpm3", "glm-dsa", "t5", "dream", "llada",
        "llada-moe", "rnd1",
    }
)  # fmt: skip


class ModelFileError(Exception):
    """A model file that cannot be used. ``message_fr`` is for the user; ``kind`` for programs.

    Kinds: ``missing``, ``not_a_file``, ``unreadable``, ``empty``, ``not_gguf``, ``old_format``,
    ``truncated``, ``corrupt``, ``missing_part``, ``not_chat``, ``unsupported``.
    """

    def __init__(self, path: Path | str, kind: str, message_fr: str) -> None:
        super().__init__(message_fr)
        self.path = Path(path)
        self.kind = kind
        self.message_fr = message_fr


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: str  # "Q4_K", "F32", ...
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class ModelInfo:
    """The facts the memory plan and the model list need; small (no tensor data, no vocabulary)."""

    path: str
    name: str  # readable name: « SmolLM2 135M Instruct »
    architecture: str
    n_layers: int
    n_embd: int
    n_ff: int  # largest feed-forward width of any layer (0 when the file does not say)
    n_head: int  # query heads (largest of any layer)
    n_head_kv: int  # key/value heads (largest of any layer)
    head_dim_k: int  # key width per head (attention.key_length, else n_embd / n_head)
    head_dim_v: int
    n_ctx_train: int
    n_vocab: int
    file_type: str  # quantisation of the file: "Q4_K_M", "Q4_1", "F16"...
    tensor_types: tuple[tuple[str, int], ...]  # (ggml type, bytes), largest first
    has_chat_template: bool
    file_size: int  # bytes on disk, every part of a split model
    layer_bytes: tuple[int, ...]  # exact weight bytes of blk.0 ... blk.N-1
    input_bytes: int  # token_embd & co: always on the CPU
    output_bytes: int  # output + output_norm (+ the tied embedding copy): GPU only at full offload
    output_tied: bool  # no output.weight: llama.cpp reuses token_embd for the output
    weights_bytes: int  # every tensor of the file once (the tied output copy is not in the file)
    kv_heads_per_layer: tuple[int, ...] = ()  # when the file gives one count per layer
    general_name: str = ""  # the file's own general.name
    parts: tuple[str, ...] = ()  # every file of a split model, first one first
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False, compare=False)

    @property
    def n_embd_k_gqa(self) -> int:
        return self.n_head_kv * self.head_dim_k

    @property
    def n_embd_v_gqa(self) -> int:
        return self.n_head_kv * self.head_dim_v

    def kv_heads(self, layer: int) -> int:
        if self.kv_heads_per_layer:
            return self.kv_heads_per_layer[layer]
        return self.n_head_kv

    @property
    def quantization(self) -> str:
        return self.file_type

    def summary_dict(self) -> dict[str, Any]:
        """The shape and sizes, for ``--json`` outputs (no per-tensor list)."""
        return {
            "path": self.path,
            "name": self.name,
            "architecture": self.architecture,
            "n_layers": self.n_layers,
            "n_embd": self.n_embd,
            "n_ff": self.n_ff,
            "n_head": self.n_head,
            "n_head_kv": self.n_head_kv,
            "head_dim_k": self.head_dim_k,
            "head_dim_v": self.head_dim_v,
            "n_ctx_train": self.n_ctx_train,
            "n_vocab": self.n_vocab,
            "file_type": self.file_type,
            "tensor_types": dict(self.tensor_types),
            "has_chat_template": self.has_chat_template,
            "file_size": self.file_size,
            "weights_bytes": self.weights_bytes,
            "layer_bytes": list(self.layer_bytes),
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "output_tied": self.output_tied,
            "parts": list(self.parts),
        }


# -- reading ----------------------------------------------------------------------------------------


def read_model_info(path: Path | str) -> ModelInfo:
    """Read ``path``'s header (and those of its other parts when it is split) into a :class:`ModelInfo`.

    Only the header is read (a few MB at most); a file whose data section is shorter than its tensors
    need is reported as truncated. Parsed headers are cached on (path, size, modification time,
    inode), so listing models again is cheap.
    Raises :class:`ModelFileError`.
    """
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(
            p, "not_a_file", f"« {p.name} » est un dossier, pas un fichier de modèle. "
            "Choisissez le fichier .gguf qui se trouve dedans."
        )
    return _read(p)


def clear_cache() -> None:
    _header_cached.cache_clear()


def _read(path: Path) -> ModelInfo:
    parts = [path]
    header, size = _read_one_header(path)
    split_count = _int(header.metadata.get("split.count"), 0)
    headers = [(path, header, size)]
    if split_count > 1:
        if _int(header.metadata.get("split.no"), 0) != 0:
            first = _shard_path(path, 1, split_count)
            first_name = first.name if first else "…-00001-of-…"
            raise ModelFileError(
                path, "missing_part", f"« {path.name} » n'est qu'une partie d'un modèle découpé en "
                f"{split_count} fichiers. Choisissez la première partie : {first_name}."
            )
        for no in range(2, split_count + 1):
            other = _shard_path(path, no, split_count)
            if other is None or not other.is_file():
                raise ModelFileError(
                    path, "missing_part", f"Il manque la partie {no} sur {split_count} du modèle "
                    f"« {path.name} ». Téléchargez toutes les parties dans le même dossier."
                )
            h, s = _read_one_header(other)
            headers.append((other, h, s))
            parts.append(other)
    return _build_info(path, header, headers, tuple(str(p) for p in parts))


def model_info_from_header(name: str, header: GgufHeader, file_size: int) -> ModelInfo:
    """A :class:`ModelInfo` from a header read elsewhere (a few MB fetched from a server) and the size of
    the whole file: what the memory plan needs, before the file is downloaded.

    ``name`` stands for the file's path (``repository/file.gguf``): its last part names the model.
    Raises :class:`ModelFileError`; a part of a split model is refused (kind ``missing_part``).
    """
    path = Path(name)
    if _int(header.metadata.get("split.count"), 0) > 1:
        raise ModelFileError(
            path, "missing_part", f"« {path.name} » est une partie d'un modèle découpé en plusieurs fichiers : "
            "ce programme ne sait pas encore l'évaluer avant le téléchargement. Choisissez un autre fichier."
        )
    return _build_info(path, header, [(path, header, file_size)], (name,))


def _read_one_header(path: Path) -> tuple[GgufHeader, int]:
    """The parsed header and file size, cached on (path, size, modification time, inode)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelFileError(
            path, "missing", f"Le fichier de modèle « {path.name} » est introuvable "
            f"(dossier : {path.parent}). Vérifiez qu'il n'a pas été déplacé ou supprimé, ou choisissez "
            "un autre modèle."
        ) from None
    except OSError as exc:
        log.warning("cannot stat %s: %s", path, exc)
        raise _unreadable(path) from None
    return _header_cached(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=64)
def _header_cached(path: str, size: int, mtime_ns: int, inode: int) -> tuple[GgufHeader, int]:
    return _parse_header(Path(path))


def _parse_header(path: Path) -> tuple[GgufHeader, int]:
    name = path.name
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFileError(
                    path, "empty", f"Le fichier « {name} » est vide (0 octet) : le téléchargement a "
                    "sans doute échoué. Supprimez-le et téléchargez le modèle à nouveau."
                )
            header = read_header(f, size)
    except ModelFileError:
        raise
    except NotGguf:
        raise ModelFileError(
            path, "not_gguf", f"« {name} » n'est pas un modèle au format GGUF. Choisissez un fichier "
            "dont le nom finit par .gguf (LM Studio, Ollama et Hugging Face en proposent)."
        ) from None
    except UnsupportedVersion as exc:
        raise ModelFileError(
            path, "old_format", f"« {name} » utilise une version du format GGUF que ce programme ne lit "
            f"pas (version {exc.version}). Téléchargez une version récente de ce modèle."
        ) from None
    except HeaderTruncated as exc:
        log.info("truncated header in %s: %s", path, exc)
        raise _truncated(path, None, None) from None
    except HeaderCorrupt as exc:
        log.warning("corrupt GGUF header in %s: %s", path, exc)
        raise _corrupt(path) from None
    except PermissionError:
        raise _unreadable(path) from None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        raise _unreadable(path) from None
    return header, size


@functools.cache
def gguf_constants() -> Any:
    """The ``gguf`` package's ``constants`` module (block sizes, type and architecture names) alone.

    ``import gguf`` runs the package's ``__init__``, which loads numpy and yaml (20 MB that would stay
    in the tray process for good); ``constants.py`` needs only the standard library, so it is loaded
    from its file by itself.
    """
    if "gguf" in sys.modules:
        return sys.modules["gguf"]
    spec = importlib.util.find_spec("gguf")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the gguf package is missing")
    path = Path(next(iter(spec.submodule_search_locations))) / "constants.py"
    loader_spec = importlib.util.spec_from_file_location("_desktop_mate_gguf_constants", path)
    if loader_spec is None or loader_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def _build_info(
    path: Path, header: GgufHeader, headers: list[tuple[Path, GgufHeader, int]], parts: tuple[str, ...]
) -> ModelInfo:
    gguf = gguf_constants()
    md = header.metadata
    general_type = str(md.get("general.type", "model"))
    arch = md.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _corrupt(path, "l'architecture du modèle n'est pas indiquée")
    if arch in NOT_CHAT_ARCHITECTURES or general_type in ("mmproj", "adapter", "vocab"):
        what = {
            "clip": "un complément de vision (projecteur d'images)",
            "mmproj": "un complément de vision (projecteur d'images)",
            "adapter": "un adaptateur (LoRA) à utiliser avec un autre modèle",
            "vocab": "un vocabulaire seul",
        }.get(general_type if general_type != "model" else arch, "un modèle d'encodage, pas de conversation")
        raise ModelFileError(
            path, "not_chat", f"« {path.name} » est {what}, pas un modèle de conversation. "
            "Choisissez un autre fichier .gguf."
        )
    known = set(gguf.MODEL_ARCH_NAMES.values())
    if arch in UNPLANNABLE_ARCHITECTURES or arch not in known:
        hint = (
            "Ce programme ne sait pas encore le faire tourner"
            if arch in known
            else "Cette architecture est inconnue de ce programme"
        )
        raise ModelFileError(
            path, "unsupported", f"« {path.name} » est un modèle de type « {arch} ». {hint} : "
            "choisissez un autre modèle (Llama, Qwen, Mistral, Gemma, Phi…) ou mettez le programme "
            "à jour."
        )

    # Tensors of every part, with their exact sizes; the data of each part must be all there.
    tensors: list[TensorInfo] = []
    for part_path, h, size in headers:
        end = h.data_start
        for raw in h.tensors:
            t = _tensor_info(part_path, raw.name, raw.dims, raw.type_id, gguf)
            tensors.append(t)
            end = max(end, h.data_start + raw.offset + t.n_bytes)
        if size < end:
            raise _truncated(part_path, size, end)
    if not tensors:
        raise _corrupt(path, "le fichier ne contient aucun poids")

    def key(name: str) -> Any:
        return md.get(f"{arch}.{name}")

    n_layers = _int(key("block_count"), 0)
    n_embd = _int(key("embedding_length"), 0)
    heads = _per_layer(key("attention.head_count"))
    if n_layers <= 0 or n_embd <= 0 or not heads or max(heads) <= 0:
        raise _corrupt(path, "il manque la forme du modèle (couches, largeur ou têtes d'attention)")
    if n_layers > MAX_LAYERS or n_embd > MAX_WIDTH or max(heads) > MAX_WIDTH:
        raise _corrupt(path, "la forme du modèle est impossible")
    n_head = max(heads)
    kv_list = _per_layer(key("attention.head_count_kv")) or heads
    if len(kv_list) not in (1, n_layers):
        raise _corrupt(path, "le nombre de têtes par couche ne correspond pas au nombre de couches")
    kv_per_layer = tuple(kv_list) if len(kv_list) == n_layers and len(set(kv_list)) > 1 else ()
    n_head_kv = max(kv_list)
    head_k = _int(key("attention.key_length"), 0) or n_embd // n_head
    head_v = _int(key("attention.value_length"), 0) or n_embd // n_head
    ff = _per_layer(key("feed_forward_length"))
    n_ff = max(ff) if ff else 0
    if n_ff == 0:  # mixture of experts: the experts a token goes through
        n_ff = _int(key("expert_feed_forward_length"), 0) * max(1, _int(key("expert_used_count"), 1))

    layer_bytes = [0] * n_layers
    input_bytes = output_bytes = 0
    has_output = False
    embd_bytes = 0
    n_vocab_from_tensor = 0
    for t in tensors:
        m = _LAYER.match(t.name)
        if m:
            i = int(m.group(1))
            if i >= n_layers:
                raise _corrupt(path, f"le poids {t.name} dépasse le nombre de couches ({n_layers})")
            layer_bytes[i] += t.n_bytes
        elif t.name.startswith(INPUT_TENSORS):
            input_bytes += t.n_bytes
            if t.name == "token_embd.weight":
                embd_bytes = t.n_bytes
                n_vocab_from_tensor = t.shape[1] if len(t.shape) > 1 else 0
        else:
            output_bytes += t.n_bytes
            has_output = has_output or t.name == "output.weight"
    output_tied = not has_output and embd_bytes > 0
    if output_tied:
        output_bytes += embd_bytes

    tokens = md.get("tokenizer.ggml.tokens")
    n_vocab = (
        n_vocab_from_tensor
        or _int(key("vocab_size"), 0)
        or (tokens.count if isinstance(tokens, ArraySummary) else 0)
    )
    by_type: dict[str, int] = {}
    for t in tensors:
        by_type[t.ggml_type] = by_type.get(t.ggml_type, 0) + t.n_bytes
    tensor_types = tuple(sorted(by_type.items(), key=lambda kv: -kv[1]))
    general_name = md.get("general.name")
    general_name = general_name if isinstance(general_name, str) else ""
    return ModelInfo(
        path=str(path),
        name=readable_name(path, general_name),
        architecture=arch,
        n_layers=n_layers,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_k,
        head_dim_v=head_v,
        n_ctx_train=_int(key("context_length"), 0),
        n_vocab=n_vocab,
        file_type=_file_type_name(md.get("general.file_type"), tensor_types, gguf),
        tensor_types=tensor_types,
        has_chat_template=any(k.startswith("tokenizer.chat_template") for k in md),
        file_size=sum(size for _, _, size in headers),
        layer_bytes=tuple(layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        output_tied=output_tied,
        weights_bytes=sum(t.n_bytes for t in tensors),
        kv_heads_per_layer=kv_per_layer,
        general_name=general_name,
        parts=parts,
        tensors=tuple(tensors),
    )


def _tensor_info(path: Path, name: str, dims: tuple[int, ...], type_id: int, gguf: Any) -> TensorInfo:
    try:
        qtype = gguf.GGMLQuantizationType(type_id)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        raise ModelFileError(
            path, "unsupported", f"« {path.name} » utilise un type de compression inconnu de ce "
            f"programme (n° {type_id}). Mettez le programme à jour ou choisissez une autre version "
            "du modèle."
        ) from None
    n = 1
    for d in dims:
        n *= d
    if dims[0] % block:
        raise _corrupt(path, f"le poids {name} a une taille incompatible avec sa compression")
    return TensorInfo(name, qtype.name, tuple(dims), n, n // block * type_size)


def _file_type_name(value: Any, tensor_types: tuple[tuple[str, int], ...], gguf: Any) -> str:
    if isinstance(value, int):
        try:
            name = gguf.LlamaFileType(value).name
        except ValueError:
            name = ""
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # No (or unknown) file type: name it after the type holding the most bytes.
    return tensor_types[0][0] if tensor_types else "?"


def _per_layer(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return list(value)
    return []


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _shard_path(path: Path, no: int, count: int) -> Path | None:
    m = _SHARD.match(path.name)
    if not m:
        return None
    return path.with_name(f"{m.group('stem')}-{no:05d}-of-{count:05d}.gguf")


def shard_number(path: Path | str) -> tuple[int, int] | None:
    """(part number, part count) for split files named ``…-00002-of-00003.gguf``, else None."""
    m = _SHARD.match(Path(path).name)
    return (int(m.group("no")), int(m.group("count"))) if m else None


# -- names ------------------------------------------------------------------------------------------

_QUANT_TAG = re.compile(
    r"[-_. ](?:i?q\d[\w]*|f16|f32|bf16|fp16|fp32|mxfp4|tq\d_\d|ud[-_]\w+)$", re.IGNORECASE
)
_HASHLIKE = re.compile(r"^(?:sha256[-:])?[0-9a-f]{32,}$", re.IGNORECASE)


def readable_name(path: Path | str, general_name: str = "") -> str:
    """A name people recognise: the file name without its quantisation and extension, words spaced.

    ``SmolLM2-135M-Instruct.Q4_1.gguf`` gives « SmolLM2 135M Instruct ». The file name is what the user
    saw when downloading (LM Studio, Hugging Face); ``general.name`` is used when the file name is a
    hash (Ollama's blobs) or empty.
    """
    stem = Path(path).name
    m = _SHARD.match(stem)
    if m:
        stem = m.group("stem")
    if stem.lower().endswith(".gguf"):
        stem = stem[:-5]
    for _ in range(2):  # "model.Q4_K_M" and "model-Q4_K_M-imat"-like tails
        stem = _QUANT_TAG.sub("", stem)
    if not stem or _HASHLIKE.match(stem):
        stem = general_name or stem
    words = re.sub(r"[-_]+", " ", stem).replace(" .", " ").strip(" .")
    return re.sub(r"\s+", " ", words) or Path(path).name


# -- French messages --------------------------------------------------------------------------------


def _truncated(path: Path, size: int | None, expected: int | None) -> ModelFileError:
    amount = ""
    if size is not None and expected:
        amount = f" ({size_fr(size)} sur {size_fr(expected)})"
    return ModelFileError(
        path, "truncated", f"Le fichier « {path.name} » est incomplet{amount} : le téléchargement a "
        "sans doute été interrompu. Supprimez-le et téléchargez le modèle à nouveau."
    )


def _corrupt(path: Path, detail: str = "") -> ModelFileError:
    why = f" ({detail})" if detail else ""
    return ModelFileError(
        path, "corrupt", f"Le fichier « {path.name} » est endommagé{why}. "
        "Supprimez-le et téléchargez le modèle à nouveau."
    )


def _unreadable(path: Path) -> ModelFileError:
    return ModelFileError(
        path, "unreadable", f"Impossible de lire « {path.name} » (accès refusé ou disque indisponible). "
        "Vérifiez que le disque est branché et que le fichier n'est pas ouvert par un autre programme."
    )


def model_info_from_shape(
    *,
    name: str,
    n_layers: int,
    n_embd: int,
    n_ff: int,
    n_head: int,
    n_head_kv: int,
    n_vocab: int,
    layer_bytes: int,
    input_bytes: int,
    output_bytes: int,
    head_dim: int | None = None,
    n_ctx_train: int = 32768,
    file_type: str = "Q4_K_M",
    architecture: str = "llama",
    path: str = "",
) -> ModelInfo:
    """A :class:`ModelInfo` for a shape without a file (planning what-ifs, tests of big models)."""
    head = head_dim or n_embd // n_head
    total = layer_bytes * n_layers + input_bytes + output_bytes
    return ModelInfo(
        path=path,
        name=name,
        architecture=architecture,
        n_layers=n_layers,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head,
        head_dim_v=head,
        n_ctx_train=n_ctx_train,
        n_vocab=n_vocab,
        file_type=file_type,
        tensor_types=((file_type, total),),
        has_chat_template=True,
        file_size=total,
        layer_bytes=(layer_bytes,) * n_layers,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        output_tied=False,
        weights_bytes=total,
    )

