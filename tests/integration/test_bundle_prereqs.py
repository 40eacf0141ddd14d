"""``bundle build`` checks every part's prerequisites before downloading anything, and lists every
missing one at once (exit 2). Everything the build could reach is a closed port on loopback."""

from __future__ import annotations

import subprocess
import sys
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
    proc = subprocess.run(
        [
            sys.executable, "-m", "airgap_llm.cli", "bundle", "build",
            "-i", str(REPO / "inventories/h100-8x80g"), "-o", str(out),
            "--os-mirror", f"ubuntu-24.04={dead}/ubuntu",
            f"--pip-arg=--index-url={dead}/simple",
        ],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    flat = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "prerequisite(s) missing; nothing was downloaded" in flat
    assert f"os: ubuntu-24.04: the mirror does not answer: {dead}/ubuntu/dists/noble/InRelease is unreachable" in flat
    assert f"wheels: the package index does not answer: {dead}/simple/ is unreachable" in flat
    assert f"models: model Qwen/Qwen3-Embedding-4B revision main (used by h100-hgx-01/embedding): the Hugging " \
        f"Face Hub at {dead} is unreachable" in flat
    assert "(not in the bundle either: Qwen/Qwen3-Embedding-4B@main, " in flat
    assert not out.exists(), "nothing may be written before every prerequisite is there"


def test_rhel_os_part_is_refused_up_front_saying_what_it_needs(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  hosts:\n    rocky-1:\n      ansible_host: 127.0.0.1\n  vars:\n    airgap_llm_target_os: rhel-9\n"
        "    airgap_llm_services:\n      emb: {kind: embedding, model: o/m, port: 8001, gpus: []}\n"
    )
    out = tmp_path / "bundle"
    env = loopback_env(tmp_path, "http://127.0.0.1:9", offline=True)
    proc = subprocess.run(
        [sys.executable, "-m", "airgap_llm.cli", "bundle", "build", "-i", str(inv), "-o", str(out), "--only", "os"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    flat = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    # A CPU engine that compiles (no --enforce-eager) needs the compiler and headers too.
    assert "os: OS packages for rhel-9 (python3.11 ca-certificates numactl-libs rsync gcc python3.11-devel " \
        "gcc-c++): RHEL-family parts are not built here" in flat
    assert "EPEL for dkms" in flat and "--only models --only wheels --only collections" in flat
    assert not out.exists()
