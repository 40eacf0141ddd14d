"""Memory per GPU of one engine instance: weights + KV cache + the engine's own overhead. Pure.

vLLM sizes its KV cache after loading (``Worker.determine_available_memory`` in
``vllm/v1/worker/gpu_worker.py``, with ``memory_profiling`` in ``vllm/utils``)::

    KV cache = total memory x gpu_memory_utilization - non_kv_cache_memory
    non_kv_cache_memory = weights + activation peak of a dummy forward pass of max_num_batched_tokens
                          + memory outside torch's allocator (CUDA context, cuBLAS, NCCL) [+ CUDA graphs]

and refuses to start when one sequence of ``max_model_len`` does not fit that cache ("To serve at
least one request with the model's max seq len ..."). The same sum is computed here, before any host is
touched:

- **weights per GPU** = the checkpoint's tensor bytes (safetensors headers; quantized checkpoints as
  stored; float32 checkpoints at 16 bits, as vLLM's ``--dtype auto`` runs them) / (tensor x pipeline
  parallel ranks);
- **KV bytes per token per GPU** = 2 (K and V) x ceil(layers / PP) x max(1, kv_heads / TP) x head_dim x
  KV dtype bytes (the model's 16-bit dtype, 1 byte with ``--kv-cache-dtype fp8*``); MLA:
  ceil(layers / PP) x (kv_lora_rank + qk_rope_head_dim) x bytes; encoder-only: 0;
- **KV per sequence** = KV bytes per token x (max_model_len + encoder positions for encoder-decoder);
- **overhead per GPU**, a conservative estimate of the terms vLLM measures when it profiles:
  - outside torch: ``NON_TORCH_GIB`` (CUDA context 0.3-0.5 GiB on A100/H100, cuBLAS workspaces) plus
    ``NCCL_GIB`` with more than one rank (NCCL and custom all-reduce buffers);
  - activations: max_num_batched_tokens x (2 x intermediate / TP + 4 x hidden) x 2 bytes (the gated
    MLP's widest intermediate and the residual, norm and attention outputs live at once), plus the
    sampler's logits: max_num_seqs x vocab x 4 bytes x 2 (float32 logits and their softmax);
    max_num_batched_tokens and max_num_seqs are taken from ``extra_args`` when given, else vLLM's own
    defaults for its OpenAI server (``EngineArgs.get_batch_defaults`` in ``vllm/engine/arg_utils.py``):
    8192 and 1024 on GPUs of 70 GiB or more other than A100 (H100, H200), 2048 and 256 on the others;
    a pooling model is counted with at least max_model_len tokens (a whole sequence in one pass);
  - CUDA graphs unless ``--enforce-eager``: ``GRAPH_BASE_GIB`` + ``GRAPH_PER_LAYER_GIB`` per layer (vLLM
    logs "Graph capturing finished in N secs, took X GiB": 0.2-1.3 GiB for 1B-70B models);
  - a vision tower's profile run on its largest input: ``VISION_ENCODER_GIB``; an audio encoder's (30 s
    of audio): ``AUDIO_ENCODER_GIB``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from airgap_llm.memory.model_shape import ModelShape, compute_dtype_bytes
from airgap_llm.memory.safetensors_header import WeightsSize

GIB = 1024**3
NON_TORCH_GIB = 0.75
NCCL_GIB = 0.25
GRAPH_BASE_GIB = 0.5
GRAPH_PER_LAYER_GIB = 8 / 1024
VISION_ENCODER_GIB = 1.0
AUDIO_ENCODER_GIB = 0.5
# vLLM's OpenAI-server defaults: (max_num_batched_tokens, max_num_seqs) on large non-A100 GPUs, and others
LARGE_GPU_BATCH = (8192, 1024)
OTHER_GPU_BATCH = (2048, 256)
LARGE_GPU_GIB = 70
MAX_LEN_STEP = 256  # the max_model_len hint is rounded down to a multiple of this
FP32_DTYPES = ("F32", "F64")


@dataclass(frozen=True)
class EngineSettings:
    """What the engine's arguments say that changes its memory."""

    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_model_len: int | None = None
    pooling: bool = False
    enforce_eager: bool = False
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    large_gpu: bool = False  # vLLM's larger batch defaults apply (>= 70 GiB, not an A100)


def is_large_gpu(model: str, memory_gib: float) -> bool:
    """Whether vLLM picks its larger batch defaults for this GPU (``EngineArgs.get_batch_defaults``)."""
    return memory_gib >= LARGE_GPU_GIB and "a100" not in model.lower()


def _arg(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in an argument list (the last one wins)."""
    value: str | None = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def _int_arg(args: Sequence[str], name: str) -> int | None:
    value = _arg(args, name)
    return int(value) if value is not None and value.isdigit() else None


def settings_from_args(
    extra_args: Sequence[str],
    tensor_parallel: int,
    pipeline_parallel: int,
    max_model_len: int | None,
    pooling: bool,
    large_gpu: bool = False,
) -> EngineSettings:
    return EngineSettings(
        tensor_parallel=max(tensor_parallel, 1),
        pipeline_parallel=max(pipeline_parallel, 1),
        max_model_len=max_model_len,
        pooling=pooling,
        enforce_eager="--enforce-eager" in extra_args,
        dtype=_arg(extra_args, "--dtype"),
        kv_cache_dtype=_arg(extra_args, "--kv-cache-dtype"),
        max_num_batched_tokens=_int_arg(extra_args, "--max-num-batched-tokens"),
        max_num_seqs=_int_arg(extra_args, "--max-num-seqs"),
        large_gpu=large_gpu,
    )


@dataclass(frozen=True)
class Estimate:
    """One engine instance's memory per GPU, in bytes."""

    weights: int
    kv_per_token: int
    kv_tokens_per_seq: int  # max_model_len (+ encoder positions)
    max_model_len: int
    encoder_positions: int
    model_max_len: int  # the model's own context: no hint goes above it
    overhead: dict[str, int] = field(default_factory=dict)

    @property
    def kv_per_seq(self) -> int:
        return self.kv_per_token * self.kv_tokens_per_seq

    @property
    def overhead_total(self) -> int:
        return sum(self.overhead.values())

    @property
    def needed(self) -> int:
        return self.weights + self.kv_per_seq + self.overhead_total

    def kv_budget(self, share: int) -> int:
        """What a share leaves for the KV cache once weights and overhead are in."""
        return share - self.weights - self.overhead_total

    def max_seqs(self, share: int) -> int | None:
        """Sequences of max_model_len the KV cache holds at once (None: the model keeps no KV cache)."""
        if self.kv_per_seq == 0:
            return None
        return max(self.kv_budget(share), 0) // self.kv_per_seq

    def largest_max_model_len(self, share: int) -> int:
        """The largest max_model_len whose one sequence fits the share (0: not even the weights do)."""
        budget = self.kv_budget(share)
        if budget <= 0 or self.kv_per_token == 0:
            return 0
        tokens = min(budget // self.kv_per_token - self.encoder_positions, self.model_max_len)
        if tokens >= MAX_LEN_STEP:
            tokens -= tokens % MAX_LEN_STEP
        return max(int(tokens), 0)

    def share_for(self, seqs: int) -> int:
        """The memory that holds ``seqs`` sequences of max_model_len (at least one)."""
        return self.weights + self.overhead_total + max(seqs, 1) * self.kv_per_seq


def weights_in_memory(weights: WeightsSize, shape: ModelShape, settings: EngineSettings) -> int:
    """Bytes of weights the engine holds: as stored, float32 tensors at 16 bits under ``--dtype auto``."""
    keep_fp32 = settings.dtype in ("float32", "float")
    total = 0
    for dtype, n in weights.by_dtype.items():
        total += n // 2 if dtype in FP32_DTYPES and not keep_fp32 and shape.dtype == "float32" else n
    return total


def kv_bytes_per_token(shape: ModelShape, settings: EngineSettings) -> int:
    if shape.encoder_only:
        return 0
    kv_dtype = settings.kv_cache_dtype or "auto"
    elem = 1 if kv_dtype.startswith("fp8") else compute_dtype_bytes(shape, settings.dtype)
    layers = math.ceil(shape.layers / settings.pipeline_parallel)
    if shape.mla_latent:
        return layers * shape.mla_latent * elem
    kv_heads = max(1, math.ceil(shape.kv_heads / settings.tensor_parallel))
    return 2 * layers * kv_heads * shape.head_dim * elem


def overhead(shape: ModelShape, settings: EngineSettings, max_model_len: int) -> dict[str, int]:
    tp, pp = settings.tensor_parallel, settings.pipeline_parallel
    act = compute_dtype_bytes(shape, settings.dtype)
    default_tokens, default_seqs = LARGE_GPU_BATCH if settings.large_gpu else OTHER_GPU_BATCH
    tokens = settings.max_num_batched_tokens or default_tokens
    if settings.pooling:
        tokens = max(tokens, max_model_len)
    parts = {"non_torch": int((NON_TORCH_GIB + (NCCL_GIB if tp * pp > 1 else 0)) * GIB)}
    parts["activations"] = tokens * (2 * math.ceil(shape.intermediate / tp) + 4 * shape.hidden) * act
    if not settings.pooling:
        parts["logits"] = (settings.max_num_seqs or default_seqs) * shape.vocab * 4 * 2
    if not settings.enforce_eager:
        layers = math.ceil(shape.layers / pp)
        parts["cuda_graphs"] = int((GRAPH_BASE_GIB + GRAPH_PER_LAYER_GIB * layers) * GIB)
    if shape.vision:
        parts["vision_encoder"] = int(VISION_ENCODER_GIB * GIB)
    if shape.audio_encoder:
        parts["audio_encoder"] = int(AUDIO_ENCODER_GIB * GIB)
    return parts


def default_max_model_len(shape: ModelShape) -> int:
    """The engine's max_model_len when none is set: the model's own context."""
    return shape.max_position or 2048


def estimate(weights: WeightsSize, shape: ModelShape, settings: EngineSettings) -> Estimate:
    """The memory per GPU of one engine instance serving this model with these settings."""
    max_len = settings.max_model_len or default_max_model_len(shape)
    ranks = settings.tensor_parallel * settings.pipeline_parallel
    return Estimate(
        weights=math.ceil(weights_in_memory(weights, shape, settings) / ranks),
        kv_per_token=kv_bytes_per_token(shape, settings),
        kv_tokens_per_seq=max_len + shape.encoder_positions,
        max_model_len=max_len,
        encoder_positions=shape.encoder_positions,
        model_max_len=max(default_max_model_len(shape), max_len),
        overhead=overhead(shape, settings, max_len),
    )
