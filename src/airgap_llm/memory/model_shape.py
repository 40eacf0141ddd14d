"""What the memory estimate needs from a model's ``config.json``: layers, attention heads, sizes.

Pure: takes the parsed JSON. Families the plain decoder formula does not describe get their own rule,
recorded in ``ModelShape.notes`` so the report says which rule was used:

- multimodal models keep the language model under ``text_config`` / ``llm_config`` /
  ``language_config`` (or at the top, as dots.ocr does, with a ``vision_config`` beside it): the KV cache
  is the language model's, and the vision tower adds to the engine's overhead (its profile run);
- encoder-decoder models (Whisper): the decoder's layers and heads, ``max_target_positions`` as the
  model's own context, and a cross-attention cache of ``max_source_positions`` tokens per sequence;
- encoder-only models (BERT and the like, served for embeddings): no KV cache at all;
- MLA (DeepSeek V2/V3, Kimi K2): one compressed latent of ``kv_lora_rank + qk_rope_head_dim`` per
  token and layer, not split by tensor parallelism;
- sliding-window attention: counted over the whole ``max_model_len`` (conservative: the engine may
  keep less for sliding-window layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TEXT_CONFIG_KEYS = ("text_config", "llm_config", "language_config")
ENCODER_ONLY_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "nomic_bert", "modernbert", "deberta-v2", "electra", "distilbert"}
)
# torch_dtype values -> bytes per element of the engine's compute dtype with --dtype auto: vLLM runs
# float32 checkpoints in 16-bit unless told otherwise (its ModelConfig: "auto" is FP16 for FP32 models).
DTYPE_BYTES = {"float32": 2, "float16": 2, "bfloat16": 2, "float": 2, "half": 2}


class ShapeError(ValueError):
    """config.json lacks what the estimate needs."""


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    layers: int  # layers that hold a KV cache (the decoder's)
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    max_position: int | None  # the model's own context when max_model_len is unset
    dtype: str  # torch_dtype of the checkpoint
    encoder_positions: int = 0  # encoder-decoder: cross-attention tokens cached per sequence
    encoder_only: bool = False
    mla_latent: int = 0  # MLA: kv_lora_rank + qk_rope_head_dim
    sliding_window: int | None = None
    vision: bool = False
    audio_encoder: bool = False
    quantization: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _int(part: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = part.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def text_part(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's part of a config: nested for most multimodal models, else the top."""
    for key in TEXT_CONFIG_KEYS:
        part = config.get(key)
        if isinstance(part, Mapping) and _int(part, "num_hidden_layers", "n_layer", "num_layers"):
            return part
    return config


def _dtype(config: Mapping[str, Any], text: Mapping[str, Any]) -> str:
    for part in (text, config):
        for key in ("torch_dtype", "dtype"):
            value = part.get(key)
            if isinstance(value, str):
                return value
    return "bfloat16"


def _whisper(config: Mapping[str, Any]) -> ModelShape:
    d_model = _int(config, "d_model")
    layers = _int(config, "decoder_layers")
    heads = _int(config, "decoder_attention_heads")
    if not (d_model and layers and heads):
        raise ShapeError("an encoder-decoder config.json needs d_model, decoder_layers and decoder_attention_heads")
    source = _int(config, "max_source_positions") or 1500
    return ModelShape(
        model_type=str(config.get("model_type", "")),
        layers=layers,
        heads=heads,
        kv_heads=heads,
        head_dim=d_model // heads,
        hidden=d_model,
        intermediate=_int(config, "decoder_ffn_dim") or 4 * d_model,
        vocab=_int(config, "vocab_size") or 0,
        max_position=_int(config, "max_target_positions"),
        dtype=_dtype(config, config),
        encoder_positions=source,
        audio_encoder=True,
        notes=(f"encoder-decoder: KV cache for max_model_len + {source} encoder positions (cross-attention)",),
    )


def model_shape(config: Mapping[str, Any]) -> ModelShape:
    """Read a ``config.json``; ``ShapeError`` says which figure is missing."""
    model_type = str(config.get("model_type", ""))
    if config.get("is_encoder_decoder") or model_type == "whisper":
        return _whisper(config)
    text = text_part(config)
    notes: list[str] = []
    if text is not config:
        notes.append("multimodal: KV cache from the language model's part of config.json")
    vision = isinstance(config.get("vision_config"), Mapping)
    if vision:
        notes.append("vision tower: its weights counted in the checkpoint, its profile run in the overhead")
    layers = _int(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(text, "num_attention_heads", "n_head")
    hidden = _int(text, "hidden_size", "n_embd", "d_model")
    if not (layers and heads and hidden):
        raise ShapeError("config.json needs num_hidden_layers, num_attention_heads and hidden_size")
    kv_heads = _int(text, "num_key_value_heads", "num_kv_heads", "multi_query_group_num") or heads
    head_dim = _int(text, "head_dim") or hidden // heads
    mla = 0
    lora, rope = _int(text, "kv_lora_rank"), _int(text, "qk_rope_head_dim")
    if lora and rope:
        mla = lora + rope
        notes.append(f"MLA: one latent of kv_lora_rank {lora} + qk_rope_head_dim {rope} per token and layer")
    window = _int(text, "sliding_window")
    if window and text.get("use_sliding_window") is False:
        window = None
    if window:
        notes.append(f"sliding window {window}: counted over the whole max_model_len (conservative)")
    encoder_only = str(text.get("model_type", model_type)) in ENCODER_ONLY_TYPES
    if encoder_only:
        notes.append("encoder-only: no KV cache")
    quant = config.get("quantization_config")
    quant_method = str(quant.get("quant_method")) if isinstance(quant, Mapping) else None
    return ModelShape(
        model_type=model_type,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        hidden=hidden,
        intermediate=_int(text, "intermediate_size", "ffn_hidden_size", "n_inner") or 4 * hidden,
        vocab=_int(text, "vocab_size") or _int(config, "vocab_size") or 0,
        max_position=_int(text, "max_position_embeddings", "n_positions", "seq_length"),
        dtype=_dtype(config, text),
        encoder_only=encoder_only,
        mla_latent=mla,
        sliding_window=window,
        vision=vision,
        quantization=quant_method,
        notes=tuple(notes),
    )


def compute_dtype_bytes(shape: ModelShape, dtype_arg: str | None) -> int:
    """Bytes per element the engine computes (and caches KV) in: ``--dtype`` if given, else auto."""
    if dtype_arg in ("float32", "float"):
        return 4
    if dtype_arg in ("float16", "half", "bfloat16"):
        return 2
    return DTYPE_BYTES.get(shape.dtype, 2)
