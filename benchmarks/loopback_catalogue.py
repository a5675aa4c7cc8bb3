"""The catalogue's files, as real-shape GGUF files (zero weights, sparse) served by a :class:`LoopbackHub`.

Each model of ``tray_app/models/catalogue.json`` gets a llama-layout file of its real size (layers,
widths, heads, vocabulary; GPT-2-style merges for the big vocabularies) in each listed quantisation,
written once into ``folder`` (a few MB of disk each: the weights are holes). Screenshots of the download
dialog and the badge measurements use it with ``HF_ENDPOINT`` pointing at the hub.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from benchmarks.loopback_hub import LoopbackHub
from tray_app.models.catalogue import catalogue
from tray_app.models.shape_gguf import ModelShape, write_shape_only_llama

SHAPES = {
    "gemma-2-2b": ModelShape("Gemma 2 2B (forme seule)", 26, 2304, 9216, 8, 4, 256000, 8192),
    "qwen2.5-3b": ModelShape("Qwen2.5 3B (forme seule)", 36, 2048, 11008, 16, 2, 151936, 32768, n_merges=151387),
    "llama-3.2-3b": ModelShape("Llama 3.2 3B (forme seule)", 28, 3072, 8192, 24, 8, 128256, 131072, n_merges=280147),
    "mistral-7b-v0.3": ModelShape("Mistral 7B v0.3 (forme seule)", 32, 4096, 14336, 32, 8, 32768, 32768),
    "qwen2.5-7b": ModelShape("Qwen2.5 7B (forme seule)", 28, 3584, 18944, 28, 4, 152064, 32768, n_merges=151387),
    "mistral-nemo-12b": ModelShape("Mistral Nemo (forme seule)", 40, 5120, 14336, 32, 8, 131072, 131072),
    "qwen2.5-14b": ModelShape("Qwen2.5 14B (forme seule)", 48, 5120, 13824, 40, 8, 152064, 32768, n_merges=151387),
}


def fake_sha(repo: str, file: str) -> str:
    """A stable stand-in for the sha256 of a sparse file (hashing gigabytes of zeros would take minutes)."""
    import hashlib

    return hashlib.sha256(f"{repo}/{file}".encode()).hexdigest()


def host_catalogue(hub: LoopbackHub, folder: Path, *, only: set[str] | None = None) -> None:
    """Write (once) and serve every catalogue file, or those whose model id is in ``only``."""
    for entry in catalogue():
        if only is not None and entry.model_id not in only:
            continue
        path = folder / entry.file
        if not path.exists():
            write_shape_only_llama(path, replace(SHAPES[entry.model_id], file_type=entry.quant))
        hub.add(entry.repo, entry.file, path, sha256=fake_sha(entry.repo, entry.file))
