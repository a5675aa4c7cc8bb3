"""llama.cpp's fit rule for one GPU and a context set by the user, emulated (pure arithmetic, no GPU).

Why emulate what :mod:`.fit_probe` can call: the call needs a build that ships ``libllama-common``, and
the emulation shows *why* llama.cpp answers what it does (its projected model, KV and compute bytes at
each layer count). The rule: the free memory llama.cpp sees minus 1 GiB (``--fit-target``) is the target;
the device memory of ``ngl`` layers is model + KV cache + compute buffer; keep the most layers under the
target. The compute buffer comes from a dry run (the probe's); the model and KV bytes, which a
``no_alloc`` run logs as 0, are the GGUF tensors' sizes padded as the CUDA buffer type pads them
(:func:`cuda_tensor_bytes`). llama.cpp searches by false position; a binary search gives the same answer
while memory grows with layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from benchmarks.gpu_vram import GIB

if TYPE_CHECKING:
    from tray_app.models.gguf_info import ModelInfo, TensorInfo

FIT_MARGIN = GIB  # llama.cpp's default --fit-target
CUDA_ALIGNMENT = 128  # ggml-cuda's buffer alignment
CUDA_MATRIX_ROW_PADDING = 512  # ggml-cuda pads quantised rows to a multiple of this many values


def offloaded_split(n_layers: int, offloaded: int) -> tuple[int, bool]:
    """llama.cpp's n_gpu_layers (0..n_layers+1) as (repeating layers on the GPU, output layer on the GPU)."""
    return min(offloaded, n_layers), offloaded > n_layers


def cuda_tensor_bytes(tensor: TensorInfo) -> int:
    """What ggml-cuda allocates for a tensor: quantised rows padded to 512 values, 128-byte aligned."""
    from tray_app.models.gguf_info import gguf_constants

    size = tensor.n_bytes
    gguf = gguf_constants()
    qtype = getattr(gguf.GGMLQuantizationType, tensor.ggml_type, None)
    if qtype is not None and tensor.shape:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        ne0 = tensor.shape[0]
        if block > 1 and ne0 % CUDA_MATRIX_ROW_PADDING:
            size += (CUDA_MATRIX_ROW_PADDING - ne0 % CUDA_MATRIX_ROW_PADDING) // block * type_size
    return -(-size // CUDA_ALIGNMENT) * CUDA_ALIGNMENT


def fit_model_bytes(model: ModelInfo, offloaded: int) -> int:
    """Weights llama.cpp puts on the GPU for n_gpu_layers = ``offloaded``, as the CUDA buffer holds them."""
    from tray_app.planning.vram_estimate import weights_on_gpu

    layers, output = offloaded_split(model.n_layers, offloaded)
    if not model.tensors:
        return weights_on_gpu(model, layers, output)
    first = model.n_layers - layers
    total = 0
    embd: TensorInfo | None = None
    for t in model.tensors:
        if t.name.startswith("blk."):
            if int(t.name.split(".")[1]) >= first:
                total += cuda_tensor_bytes(t)
        elif t.name.startswith(("token_embd.", "token_embd_norm.", "position_embd.", "token_types.")):
            embd = t if t.name == "token_embd.weight" else embd
        elif output:
            total += cuda_tensor_bytes(t)
    if output and model.output_tied and embd is not None:
        total += cuda_tensor_bytes(embd)  # llama.cpp's duplicated embedding for the output
    return total


def fit_kv_bytes(model: ModelInfo, offloaded: int, n_ctx: int, kv_type: str = "f16") -> int:
    """KV cache llama.cpp puts on the GPU: one K and one V tensor per GPU layer, each 128-byte aligned."""
    from tray_app.planning.vram_estimate import gpu_layer_range, kv_row_bytes

    def aligned(n: int) -> int:
        return -(-n // CUDA_ALIGNMENT) * CUDA_ALIGNMENT

    layers, _ = offloaded_split(model.n_layers, offloaded)
    total = 0
    for i in gpu_layer_range(model, layers):
        heads = model.kv_heads(i)
        total += aligned(n_ctx * kv_row_bytes(kv_type, heads * model.head_dim_k))
        total += aligned(n_ctx * kv_row_bytes(kv_type, heads * model.head_dim_v))
    return total


def most_layers_under(target: int, n_max: int, memory_for: Callable[[int], int]) -> tuple[int, int, int]:
    """(layers, their memory, evaluations): the most layers in 0..n_max whose memory stays ≤ target.

    ``memory_for`` is assumed to grow with the layers (binary search); 0 layers is the floor. Each
    evaluation may cost a dry run (a model load), hence the cache and the search rather than a scan.
    """
    cache: dict[int, int] = {}

    def mem(k: int) -> int:
        if k not in cache:
            cache[k] = memory_for(k)
        return cache[k]

    if mem(n_max) <= target:
        return n_max, mem(n_max), len(cache)
    lo, hi = 0, n_max  # mem(hi) > target; lo is the answer when nothing above fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mem(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo, mem(lo), len(cache)
