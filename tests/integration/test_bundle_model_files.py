"""``bundle build`` takes only the model files vLLM loads (or what a service's patterns say), bundles
the code repository a --trust-remote-code model's ``auto_map`` names, and prints the bytes it saved.
Imports from a local Hugging Face cache (no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import loopback_env
from hf_cache import write_hf_cache

from airgap_llm.bundle.layout import model_repo_dir

REPO = Path(__file__).resolve().parents[2]
INVENTORY = """\
all:
  hosts:
    gpu-box:
      ansible_host: 127.0.0.1
  vars:
    airgap_llm_target_os: ubuntu-24.04
    airgap_llm_vllm_version: "0.32.0"
    airgap_llm_gpu: {model: H100-80GB, count: 2, memory_gib: 80}
    airgap_llm_services:
      llm:
        kind: chat
        model: org/llm
        port: 8003
        gpus: [0]
        gpu_memory_utilization: 0.5
        ignore_patterns: [generation_config.json]
      ocr:
        kind: ocr
        model: org/ocr
        port: 8002
        gpus: [1]
        gpu_memory_utilization: 0.5
"""


def repo(tmp: Path, hub: Path, repo_id: str, files: dict[str, bytes]) -> None:
    src = tmp / "src" / repo_id
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    write_hf_cache(src, hub, repo_id)


def test_filters_code_repos_and_bytes_saved(tmp_path: Path) -> None:
    hub = tmp_path / "cache" / "hub"
    repo(tmp_path, hub, "org/llm", {
        "config.json": b"{}", "generation_config.json": b"{}", "tokenizer.json": b"{}",
        "model.safetensors": b"s" * 4096, "pytorch_model.bin": b"b" * 8192,
        "original/consolidated.00.pth": b"o" * 16384, "README.md": b"# llm",
    })  # fmt: skip
    auto_map = {"auto_map": {"AutoModel": "org/ocr-code--modeling_ocr.OcrModel"}}
    repo(tmp_path, hub, "org/ocr", {
        "config.json": json.dumps(auto_map).encode(), "model.safetensors": b"w" * 1024, "modeling_local.py": b"x = 1\n",
        "model.onnx": b"n" * 2048,
    })  # fmt: skip
    repo(tmp_path, hub, "org/ocr-code", {"modeling_ocr.py": b"class OcrModel: ...\n", "config.json": b"{}"})
    inv = tmp_path / "inv.yml"
    inv.write_text(INVENTORY)
    out = tmp_path / "bundle"
    env = loopback_env(tmp_path, "http://127.0.0.1:9", offline=True)
    proc = subprocess.run(
        [sys.executable, "-m", "airgap_llm.cli", "bundle", "build", "-i", str(inv), "-o", str(out),
         "--models-from", str(hub.parent), "--only", "models"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def files(repo_id: str) -> set[str]:
        snaps = list((out / model_repo_dir(repo_id) / "snapshots").iterdir())
        assert len(snaps) == 1
        return {p.relative_to(snaps[0]).as_posix() for p in snaps[0].rglob("*") if p.is_symlink()}

    assert files("org/llm") == {"config.json", "tokenizer.json", "model.safetensors"}
    assert files("org/ocr") == {"config.json", "model.safetensors", "modeling_local.py"}
    assert files("org/ocr-code") == {"modeling_ocr.py", "config.json"}
    flat = " ".join(proc.stdout.split())
    saved = 2 + 8192 + 16384 + 5 + 2048  # generation_config, .bin, original/, README, .onnx
    assert f"the file filter left out {saved / 1024:.1f} KiB that vLLM does not load" in flat, flat
    assert "org/ocr-code@main: bundled too, since org/ocr's config.json auto_map takes code from it" in flat

    # a rebuild after a service leaves out one more file removes it, and what only it used
    inv.write_text(INVENTORY.replace("[generation_config.json]", "[generation_config.json, tokenizer.json]"))
    again = subprocess.run(proc.args, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert files("org/llm") == {"config.json", "model.safetensors"}
    assert "tokenizer.json (left out by the file filter)" in " ".join(again.stdout.split())
    verify = subprocess.run([sys.executable, "-m", "airgap_llm.cli", "bundle", "verify", str(out)],
                            capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
