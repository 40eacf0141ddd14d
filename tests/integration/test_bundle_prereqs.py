"""``bundle build`` checks every part's prerequisites before downloading anything, and lists every
missing one at once (exit 2). Everything the build could reach is a closed port on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import loopback_env

REPO = Path(__file__).resolve().parents[2]


def test_h100_build_without_hub_mirror_or_index_lists_every_missing_prerequisite(
    tmp_path: Path, closed_port: int
) -> None:
    dead = f"http://127.0.0.1:{closed_port}"
    out = tmp_path / "bundle"
    env = loopback_env(tmp_path, dead, offline=False)
    env["AIRGAP_LLM_CACHE"] = str(tmp_path / "cache")
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable, "-m", "airgap_llm.cli", "bundle", "build",
            "-i", str(REPO / "inventories/h100-8x80g"), "-o", str(out),
            "--os-mirror", f"ubuntu-24.04={dead}/ubuntu",
            f"--pip-arg=--index-url={dead}/simple",
        ],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    flat = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "prerequisite(s) missing; nothing was downloaded" in flat
    assert f"os: ubuntu-24.04: the mirror does not answer: {dead}/ubuntu/dists/noble/InRelease is unreachable" in flat
    assert f"wheels: the package index does not answer: {dead}/simple/ is unreachable" in flat
    assert f"models: model Qwen/Qwen3-Embedding-4B revision main (used by h100-hgx-01/embedding): the Hugging " \
        f"Face Hub at {dead} is unreachable" in flat
    assert "(not in the bundle either: Qwen/Qwen3-Embedding-4B@main, " in flat
    assert not out.exists(), "nothing may be written before every prerequisite is there"
    assert seconds < 30, f"took {seconds:.1f} s"
