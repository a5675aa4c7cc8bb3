"""What a plan costs in graphics memory by our own formula: exact weights and KV cache, modelled compute
buffers. The instant estimate (menus, catalogue) and the plan's fallback: when llama.cpp's dry run can run
(:mod:`tray_app.planning.dry_run`), its exact buffers decide, and this formula is shown beside them.

Pure functions of a :class:`~tray_app.models.gguf_info.ModelInfo` and the llama.cpp settings; the
policy that picks the settings is in :mod:`tray_app.planning.memory_plan`.

The parts (llama.cpp with the CUDA backend, ``n_gpu_layers = k``)
-----------------------------------------------------------------
* **weights** — exact, from the file: the last ``k`` ``blk.N`` layers; the output layer (``output`` +
  ``output_norm``, or the tied embedding copy) only when every layer is offloaded; ``token_embd`` never.
* **KV cache** — exact: ``n_ctx × Σ(GPU layers) n_head_kv × (key_length + value_length) × bytes per
  element`` (f16 = 2, q8_0 = 34/32, q4_0 = 18/32). The cache of a layer lives where the layer lives.
  ``n_ctx`` is a multiple of 256, as llama.cpp pads it. Sliding-window models (Gemma 2/3) really need
  less: the prediction errs on the safe side.
* **compute buffer** — the peak of the graph allocator for the worst-case micro-batch (``n_ubatch``
  tokens, all asking for logits; that is what llama.cpp reserves). Tensors are freed after their last
  use and soft-max works in place, so the peak is the largest of three phases (4 bytes per f32 value):

  - attention: ``n_ubatch × (2·n_embd + q + k + v + attention output)`` activations, the mask
    ``n_ctx × n_ubatch``, and without flash attention the scores ``n_ctx × n_ubatch × n_head``
    (the big one: 256 MiB for a 7B at 4 096 tokens). With flash attention the scores are never
    materialised; a quantised cache adds one layer's K and V converted to f16.
  - feed-forward: ``n_ubatch × (2·n_embd + 2·n_ff)``.
  - output: ``n_ubatch × (n_embd + n_vocab)`` (the logits).

  With a **partial** offload, llama.cpp's scheduler also runs the CPU layers' big matrix products on the
  GPU while reading a prompt (batches of 32 tokens or more, "op offload"), copying those weights into
  the compute buffer: the largest CPU layer (with its cache) is added to the layer phases, and the
  output matrix to the output phase when the output layer stayed on the CPU.
  Cross-check with figures seen in llama.cpp bug reports for Llama-3-8B (CUDA, full offload, n_ubatch
  512, no flash attention): 258,50 MiB at short contexts, exactly the logits phase here, and about
  560 MiB at 8 192 tokens (564 MiB here). Not yet measured on our reference machine: the GPU
  measurement script of issue 3 records predicted vs measured and will correct these terms.
* **overhead** — 450 MiB by default: the CUDA context, cuBLAS, the kernels loaded and llama.cpp's
  memory pool (Ollama reserves 457 MiB for the same thing). A plan passes its own: the overhead measured
  on the user's card after each load (:mod:`tray_app.hardware.gpu_calibration`).
* **safety margin** — ``max(512 MiB, 5 % of the card)`` when the monitor has no history yet (otherwise
  the plan sizes it from the other programs' use: :mod:`tray_app.planning.vram_budget`): free VRAM is
  measured once, before loading, but the avatar (Unity), Windows' compositor and a browser keep
  allocating. 512 MiB covers the avatar changing scene or outfit and a hardware-accelerated browser tab
  on a 6 GB laptop; on bigger cards
  other programs use more, hence the percentage. With the overhead this reserves about 1 GiB, like
  llama.cpp's own ``--fit`` margin (which, measuring after its CUDA context exists, needs no overhead).
  Since Windows drivers spill silently into system RAM instead of failing, planning short is much
  worse than leaving a few hundred MB unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from tray_app.format_fr import MIB
from tray_app.models.gguf_info import ModelInfo

DEFAULT_UBATCH = 512
GPU_OVERHEAD = 450 * MIB
MARGIN_MIN = 512 * MIB
MARGIN_FRACTION = 0.05

# Bytes per block and values per block of each KV cache type.
KV_TYPES: dict[str, tuple[int, int]] = {"f16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32)}


@dataclass(frozen=True)
class VramBreakdown:
    """Predicted GPU memory of a plan, in bytes."""

    weights: int
    kv_cache: int
    compute: int
    overhead: int
    margin: int  # kept free for the avatar and other programs; not used by the model

    @property
    def used(self) -> int:
        """What the runner process will take on the GPU."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def reserved(self) -> int:
        return self.used + self.margin

    def to_dict(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "compute": self.compute,
            "overhead": self.overhead,
            "margin": self.margin,
            "used": self.used,
            "reserved": self.reserved,
        }


NO_VRAM = VramBreakdown(0, 0, 0, 0, 0)


def kv_row_bytes(kv_type: str, n_values: int) -> int:
    """Bytes of one cache row of ``n_values`` values (one token, one layer, K or V)."""
    try:
        block_bytes, block_values = KV_TYPES[kv_type]
    except KeyError:
        raise ValueError(f"unknown KV cache type {kv_type!r}; expected one of {sorted(KV_TYPES)}") from None
    return -(-n_values // block_values) * block_bytes


def kv_layer_bytes(model: ModelInfo, layer: int, n_ctx: int, kv_type: str) -> int:
    heads = model.kv_heads(layer)
    k = kv_row_bytes(kv_type, heads * model.head_dim_k)
    v = kv_row_bytes(kv_type, heads * model.head_dim_v)
    return n_ctx * (k + v)


def gpu_layer_range(model: ModelInfo, gpu_layers: int) -> range:
    """llama.cpp offloads the *last* ``gpu_layers`` layers."""
    return range(model.n_layers - gpu_layers, model.n_layers)


def kv_cache_bytes(model: ModelInfo, n_ctx: int, gpu_layers: int, kv_type: str = "f16") -> int:
    """Exact KV cache bytes on the GPU for the last ``gpu_layers`` layers."""
    return sum(kv_layer_bytes(model, i, n_ctx, kv_type) for i in gpu_layer_range(model, gpu_layers))


def weights_on_gpu(model: ModelInfo, gpu_layers: int, output_on_gpu: bool) -> int:
    layers = sum(model.layer_bytes[i] for i in gpu_layer_range(model, gpu_layers))
    return layers + (model.output_bytes if output_on_gpu else 0)


def compute_buffer_bytes(
    model: ModelInfo,
    *,
    n_ctx: int,
    n_ubatch: int,
    gpu_layers: int,
    output_on_gpu: bool,
    flash_attn: bool = False,
    kv_type: str = "f16",
) -> int:
    """The CUDA compute buffer (see the module docstring for the three phases and op offload)."""
    if gpu_layers == 0 and not output_on_gpu:
        return 0
    f32 = 4
    t = n_ubatch
    m = model
    q_width = m.n_head * m.head_dim_k
    attn_out = m.n_head * m.head_dim_v
    kv_width = m.n_head_kv * (m.head_dim_k + m.head_dim_v)
    attention = t * f32 * (2 * m.n_embd + q_width + kv_width + attn_out) + n_ctx * t * f32  # + mask
    if flash_attn:
        attention += n_ctx * t * 2  # the mask converted to f16
        if kv_type != "f16":
            attention += n_ctx * kv_width * 2  # one layer's K and V converted to f16
    else:
        attention += n_ctx * t * m.n_head * f32  # attention scores (soft-max in place)
    n_ff = m.n_ff or 4 * m.n_embd
    feed_forward = t * f32 * (2 * m.n_embd + 2 * n_ff)
    layer_phase = max(attention, feed_forward)
    cpu_layers = range(m.n_layers - gpu_layers)
    if cpu_layers:  # op offload: a CPU layer's weights and cache copied in for prompt batches
        layer_phase += max(m.layer_bytes[i] + kv_layer_bytes(m, i, n_ctx, kv_type) for i in cpu_layers)
    output = t * f32 * (m.n_embd + m.n_vocab)
    if not output_on_gpu:
        output += m.output_bytes
    return max(layer_phase, output)


def safety_margin(free_vram: int, total_vram: int | None) -> int:
    """VRAM left unused for the avatar and other programs: max(512 MiB, 5 % of the card)."""
    card = total_vram if total_vram else free_vram
    return max(MARGIN_MIN, int(card * MARGIN_FRACTION))


def predict_vram(
    model: ModelInfo,
    *,
    gpu_layers: int,
    output_on_gpu: bool,
    n_ctx: int,
    n_ubatch: int = DEFAULT_UBATCH,
    kv_type: str = "f16",
    flash_attn: bool = False,
    margin: int = 0,
    overhead: int = GPU_OVERHEAD,
) -> VramBreakdown:
    """Our formula's figures (``overhead``: the driver's, default CUDA's; the plan passes its budget's)."""
    if not 0 <= gpu_layers <= model.n_layers:
        raise ValueError(f"gpu_layers {gpu_layers} outside 0..{model.n_layers}")
    if output_on_gpu and gpu_layers != model.n_layers:
        raise ValueError("llama.cpp offloads the output layer only with every layer")
    if gpu_layers == 0 and not output_on_gpu:
        return NO_VRAM
    return VramBreakdown(
        weights=weights_on_gpu(model, gpu_layers, output_on_gpu),
        kv_cache=kv_cache_bytes(model, n_ctx, gpu_layers, kv_type),
        compute=compute_buffer_bytes(
            model,
            n_ctx=n_ctx,
            n_ubatch=n_ubatch,
            gpu_layers=gpu_layers,
            output_on_gpu=output_on_gpu,
            flash_attn=flash_attn,
            kv_type=kv_type,
        ),
        overhead=overhead,
        margin=margin,
    )


def predict_ram(model: ModelInfo, gpu_layers: int, output_on_gpu: bool, n_ctx: int, kv_type: str) -> int:
    cpu = range(model.n_layers - gpu_layers)
    weights = model.input_bytes + sum(model.layer_bytes[i] for i in cpu)
    if not output_on_gpu:
        weights += model.output_bytes if not model.output_tied else 0  # tied: the embedding serves both
    return weights + sum(kv_layer_bytes(model, i, n_ctx, kv_type) for i in cpu)
