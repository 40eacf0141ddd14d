"""Delta bundles through the real command line, on real files, with no network.

Bundle A holds a model at one revision; bundle B the same model at a new revision (config.json changed,
a new generation_config.json; the weights unchanged), the same wheels and collections. The delta from A
to B is built with ``--since A/manifest.json``, patched on "the far side" from A, and the result must be
the bundle a direct build of B makes, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIG_REPO, INVENTORY

from airgap_llm.bundle.layout import model_repo_dir, scan_tree
from airgap_llm.tinymodels.hf_cache import write_hf_cache

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = model_repo_dir(BIG_REPO)
WEIGHTS = 4 << 20


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airgap_llm.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "250"},
    )


def model_cache(root: Path, config: dict[str, object], extra: dict[str, str], seed: int = 1) -> Path:
    """A HF_HOME-like root with ``BIG_REPO`` at ``main``: random weights (the same for the same seed)."""
    src = root / "src"
    src.mkdir(parents=True)
    (src / "model.safetensors").write_bytes(random.Random(seed).randbytes(WEIGHTS))
    (src / "config.json").write_text(json.dumps(config))
    for name, text in extra.items():
        (src / name).write_text(text)
    write_hf_cache(src, root / "hub", BIG_REPO, revision="main")
    return root


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("delta-caches")
    return {
        "a": model_cache(root / "a", {"hidden_size": 8}, {}),
        "b": model_cache(root / "b", {"hidden_size": 8, "rope_theta": 10000}, {"generation_config.json": "{}"}),
        "other": model_cache(root / "other", {"hidden_size": 8}, {}, seed=2),
    }


def build(inventory: Path, out: Path, hf: Path, wheel_index: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "bundle", "build", "-i", str(inventory), "-o", str(out), "--models-from", str(hf),
        "--only", "models", "--only", "wheels", "--only", "collections",
        "--pip-arg=--no-index", f"--pip-arg=--find-links={wheel_index}", *extra,
    )


def tree_bytes(root: Path) -> dict[str, object]:
    """Every file's bytes and every link's text, by path."""
    out: dict[str, object] = {}
    for path, entry in scan_tree(root).items():
        out[path] = ("link", entry.link) if entry.link is not None else (root / path).read_bytes()
    return out


def test_delta_patch_makes_the_bundle_a_direct_build_makes(
    tmp_path: Path, caches: dict[str, Path], wheel_index: Path
) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(INVENTORY)
    a, b, delta, new = (tmp_path / n for n in ("a", "b", "delta", "far-side" + os.sep + "b"))
    for out, hf in ((a, caches["a"]), (b, caches["b"])):
        res = build(inventory, out, hf, wheel_index)
        assert res.returncode == 0, res.stdout + res.stderr

    res = build(inventory, delta, caches["b"], wheel_index, "--since", str(a / "manifest.json"))
    assert res.returncode == 0, res.stdout + res.stderr
    info = json.loads((delta / "delta.json").read_text())
    full = json.loads((b / "manifest.json").read_text())
    new_commit = (b / MODEL / "refs/main").read_text()
    # carried: the new revision's ref and its two new blobs; never the weights, never a symlink
    carried = sorted(info["carried"])
    assert carried[-1] == f"{MODEL}/refs/main" and len(carried) == 3, carried
    assert all(p.startswith(f"{MODEL}/blobs/") for p in carried[:2]), carried
    on_disk = sorted(p for p in scan_tree(delta) if p not in ("manifest.json", "SHA256SUMS", "delta.json"))
    assert on_disk == carried
    sizes = {x["path"]: x["size"] for x in full["artifacts"] if "link" not in x}
    assert info["carried_bytes"] == sum(sizes[p] for p in carried) < 2000
    assert info["full_bytes"] == sum(sizes.values()) > WEIGHTS
    assert f"({info['carried_bytes']} bytes, 3 of {info['files']} files)" in " ".join(res.stdout.split()), res.stdout
    assert info["base"]["manifest_sha256"] == hashlib.sha256((a / "manifest.json").read_bytes()).hexdigest()
    assert [x["path"] for x in json.loads((delta / "manifest.json").read_text())["artifacts"]] == [
        x["path"] for x in full["artifacts"]
    ]

    # a delta is not a bundle to verify or install as such
    res = cli("bundle", "verify", str(delta))
    assert res.returncode == 2 and "a delta bundle (delta.json), not a full one" in " ".join(res.stderr.split())

    # the same delta build again: nothing fetched (A's files reused, the carried ones kept)
    again = build(inventory, delta, caches["b"], wheel_index, "--since", str(a / "manifest.json"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert not [line for line in again.stdout.splitlines() if line.startswith("fetched")], again.stdout
    assert sorted(json.loads((delta / "delta.json").read_text())["carried"]) == carried

    # signed where it was built: the signature travels in the delta and patch carries it into NEW
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "builder", "-f", str(key)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'builder namespaces="airgap-llm-bundle" {key.with_suffix(".pub").read_text()}')
    assert cli("bundle", "sign", str(delta), "--key", str(key)).returncode == 0

    # the far side: A plus the delta make B, verified, byte for byte as the direct build
    new.parent.mkdir()
    res = cli("bundle", "patch", str(a), str(delta), "-o", str(new))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"OK {new}" in res.stdout
    res = cli("bundle", "verify", str(new), "--signers", str(signers))
    assert res.returncode == 0, res.stdout + res.stderr
    (new / "manifest.json.sig").unlink()  # the rest is compared with the unsigned direct build
    assert not new.with_name("b.partial").exists()
    got, want = tree_bytes(new), tree_bytes(b)
    manifest_got = json.loads(got.pop("manifest.json"))  # type: ignore[arg-type]
    manifest_want = json.loads(want.pop("manifest.json"))  # type: ignore[arg-type]
    assert got == want  # every file, link and SHA256SUMS
    assert {k: v for k, v in manifest_got.items() if k != "created"} == {
        k: v for k, v in manifest_want.items() if k != "created"
    }
    assert (new / MODEL / "refs/main").read_text() == new_commit
    weights = next(p for p in sizes if p.startswith(f"{MODEL}/blobs/") and sizes[p] == WEIGHTS)
    assert (new / weights).stat().st_ino == (a / weights).stat().st_ino  # hard-linked from A, not copied

    # patching again: NEW holds the delta's bundle already, verified again, nothing written
    res = cli("bundle", "patch", str(a), str(delta), "-o", str(new))
    assert res.returncode == 0 and "holds this delta's bundle already" in res.stdout, res.stdout + res.stderr
    # another NEW that exists is refused, untouched
    res = cli("bundle", "patch", str(a), str(delta), "-o", str(b))
    assert res.returncode == 2 and "exists and is not this delta's bundle" in " ".join(res.stderr.split())


def test_delta_applied_to_the_wrong_old_is_refused_before_writing(
    tmp_path: Path, caches: dict[str, Path], wheel_index: Path
) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(INVENTORY)
    a, other, delta, new = (tmp_path / n for n in ("a", "other", "delta", "new"))
    for out, hf in ((a, caches["a"]), (other, caches["other"])):
        assert build(inventory, out, hf, wheel_index).returncode == 0
    assert build(inventory, delta, caches["b"], wheel_index, "--since", str(a / "manifest.json")).returncode == 0
    full = json.loads((delta / "manifest.json").read_text())
    weights = next(x for x in full["artifacts"] if x["size"] == WEIGHTS and "link" not in x)

    res = cli("bundle", "patch", str(other), str(delta), "-o", str(new))
    err = " ".join(res.stderr.split())
    assert res.returncode == 1, res.stdout + res.stderr
    assert "cannot patch: 1 file(s) of the new bundle are in neither the delta nor OLD" in err, err
    assert f"{weights['path']} (sha256 {weights['sha256']}, {WEIGHTS} bytes): not in {other}" in err, err
    assert f"{other} is not the bundle the delta was built against" in err
    assert "nothing was written" in err
    assert not new.exists() and not new.with_name("new.partial").exists()

    # A with its weights gone: named the same way, nothing written either
    (a / weights["path"]).unlink()
    res = cli("bundle", "patch", str(a), str(delta), "-o", str(new))
    assert res.returncode == 1 and f"{weights['path']} (sha256 {weights['sha256']}" in " ".join(res.stderr.split())
    assert f"{a} is the delta's base" in " ".join(res.stderr.split())
    assert not new.exists() and not new.with_name("new.partial").exists()


def test_delta_build_refuses_a_full_bundle_as_output(
    tmp_path: Path, caches: dict[str, Path], wheel_index: Path
) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(INVENTORY)
    a, b = tmp_path / "a", tmp_path / "b"
    assert build(inventory, a, caches["a"], wheel_index).returncode == 0
    assert build(inventory, b, caches["b"], wheel_index).returncode == 0
    before = tree_bytes(b)
    res = build(inventory, b, caches["b"], wheel_index, "--since", str(a / "manifest.json"))
    assert res.returncode == 2
    assert f"-o {b}: holds files and is not a delta (no delta.json)" in " ".join(res.stderr.split())
    assert tree_bytes(b) == before
    res = build(inventory, a, caches["b"], wheel_index, "--since", str(a / "manifest.json"))
    assert res.returncode == 2 and "is the bundle --since names" in " ".join(res.stderr.split())
    res = build(inventory, tmp_path / "d", caches["b"], wheel_index, "--since", str(tmp_path / "nope.json"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_rebuild_after_the_revision_moved_hashes_the_new_ref(
    tmp_path: Path, caches: dict[str, Path], wheel_index: Path
) -> None:
    """refs/main names the new commit (40 bytes, as before): the incremental build hashes it again
    rather than keeping the old commit's hash because the size did not change."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(INVENTORY)
    out = tmp_path / "bundle"
    assert build(inventory, out, caches["a"], wheel_index).returncode == 0
    res = build(inventory, out, caches["b"], wheel_index)
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli("bundle", "verify", str(out))
    assert res.returncode == 0, res.stdout + res.stderr


def test_patch_renames_only_a_bundle_that_verifies_and_a_rerun_completes_it(
    tmp_path: Path, caches: dict[str, Path], wheel_index: Path
) -> None:
    """OLD's weights damaged (same size, one byte flipped): the patched tree fails verification, is not
    renamed to NEW, and loses the bad file; once OLD is repaired, the same command completes NEW."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(INVENTORY)
    a, delta, new = tmp_path / "a", tmp_path / "delta", tmp_path / "new"
    assert build(inventory, a, caches["a"], wheel_index).returncode == 0
    assert build(inventory, delta, caches["b"], wheel_index, "--since", str(a / "manifest.json")).returncode == 0
    weights = next(
        x["path"] for x in json.loads((a / "manifest.json").read_text())["artifacts"]
        if x["size"] == WEIGHTS and "link" not in x
    )
    blob = a / weights
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))  # in place: the size is right, only the hash tells

    res = cli("bundle", "patch", str(a), str(delta), "-o", str(new), "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [(weights, "corrupted")]
    assert not new.exists()
    partial = tmp_path / "new.partial"
    assert partial.is_dir() and not (partial / weights).exists()

    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    res = cli("bundle", "patch", str(a), str(delta), "-o", str(new))
    assert res.returncode == 0, res.stdout + res.stderr
    kept = re.search(r"(\d+) kept from an interrupted patch", " ".join(res.stdout.split()))
    assert kept is not None and int(kept.group(1)) > 0, res.stdout  # only the removed file placed again
    assert not partial.exists()
    assert cli("bundle", "verify", str(new)).returncode == 0
