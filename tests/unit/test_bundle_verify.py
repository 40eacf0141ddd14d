"""bundle verify on real files and symlinks in a temporary directory (no hosts, no network)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from airgap_llm.bundle.hashing import hash_files, sha256_file
from airgap_llm.bundle.index import index_paths, list_under
from airgap_llm.bundle.manifest import Manifest, Problem, save_manifest
from airgap_llm.bundle.verify import verify_bundle
from airgap_llm.commands import bundle as bundle_cmd
from airgap_llm.errors import UsageError


def make_bundle(root: Path) -> Manifest:
    """A small bundle: two wheels, a model in HF cache layout with relative symlinks."""
    wheels = root / "wheels/cp311-manylinux_2_36_x86_64"
    wheels.mkdir(parents=True)
    (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"A" * 5000)
    (wheels / "b-2.0-py3-none-any.whl").write_bytes(os.urandom(300_000))
    (wheels / "constraints.txt").write_text("a==1.0\nb==2.0\n")
    repo = root / "models/hub/models--org--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs/h1").write_bytes(b'{"x": 1}')
    (repo / "blobs/h2").write_bytes(os.urandom(2_000_000))
    snap = repo / "snapshots/c0ffee/sub"
    snap.mkdir(parents=True)
    (snap.parent / "config.json").symlink_to("../../blobs/h1")
    (snap.parent / "model.safetensors").symlink_to("../../blobs/h2")
    (snap / "nested.json").symlink_to("../../../blobs/h1")
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text("c0ffee")
    m = Manifest(inventory="test")
    for a in index_paths(root, list_under(root, "wheels"), "wheel", lambda p: "test"):
        m.add(a)
    for a in index_paths(root, list_under(root, "models/hub"), "model", lambda p: "test"):
        m.add(a)
    save_manifest(root, m)
    return m


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="airgap-llm")
    subs = parser.add_subparsers(required=True)
    bundle_cmd.register(subs)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def problems(root: Path) -> set[tuple[str, Problem]]:
    return {(f.path, f.problem) for f in verify_bundle(root).failures}


def test_intact_bundle_verifies_and_sha256sum_agrees(tmp_path: Path) -> None:
    m = make_bundle(tmp_path)
    links = [a for a in m.sorted_artifacts() if a.is_link]
    assert len(links) == 3 and links[0].sha256 == sha256_file(tmp_path / "models/hub/models--org--m/blobs/h1")
    report = verify_bundle(tmp_path)
    assert report.ok and report.files == 6 and report.links == 3
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path).returncode == 0
    assert run_cli("bundle", "verify", str(tmp_path)) == 0


def test_flipped_byte_is_named_and_sha256sum_agrees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bundle(tmp_path)
    blob = tmp_path / "models/hub/models--org--m/blobs/h2"
    data = bytearray(blob.read_bytes())
    data[123_456] ^= 0x01
    blob.write_bytes(bytes(data))
    assert problems(tmp_path) == {("models/hub/models--org--m/blobs/h2", Problem.CORRUPTED)}
    assert run_cli("bundle", "verify", str(tmp_path)) == 1
    assert "corrupted: models/hub/models--org--m/blobs/h2" in capsys.readouterr().out
    out = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 1
    failed = {line.split(": ")[0] for line in out.stdout.splitlines() if line.endswith("FAILED")}
    # sha256sum follows the snapshot link to the same blob, so it names both
    repo = "models/hub/models--org--m"
    assert failed == {f"{repo}/blobs/h2", f"{repo}/snapshots/c0ffee/model.safetensors"}


def test_missing_extra_and_truncated_files_are_all_named(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    w = tmp_path / "wheels/cp311-manylinux_2_36_x86_64"
    (w / "a-1.0-py3-none-any.whl").unlink()
    (w / "c-3.0-py3-none-any.whl.partial").write_bytes(b"half")
    with (w / "b-2.0-py3-none-any.whl").open("r+b") as fh:
        fh.truncate(10)
    assert problems(tmp_path) == {
        ("wheels/cp311-manylinux_2_36_x86_64/a-1.0-py3-none-any.whl", Problem.MISSING),
        ("wheels/cp311-manylinux_2_36_x86_64/c-3.0-py3-none-any.whl.partial", Problem.EXTRA),
        ("wheels/cp311-manylinux_2_36_x86_64/b-2.0-py3-none-any.whl", Problem.SIZE),
    }


def test_retargeted_dangling_and_replaced_links_fail(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    snap = tmp_path / "models/hub/models--org--m/snapshots/c0ffee"
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to("../../blobs/h2")
    (snap / "sub/nested.json").unlink()
    (snap / "sub/nested.json").symlink_to("../../../blobs/gone")
    (snap / "model.safetensors").unlink()
    (snap / "model.safetensors").write_bytes(b"copy")
    got = problems(tmp_path)
    base = "models/hub/models--org--m/snapshots/c0ffee/"
    assert got == {
        (base + "config.json", Problem.LINK),
        (base + "sub/nested.json", Problem.LINK),
        (base + "model.safetensors", Problem.LINK),
    }


def test_blob_removed_makes_links_dangling(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    (tmp_path / "models/hub/models--org--m/blobs/h1").unlink()
    got = problems(tmp_path)
    assert ("models/hub/models--org--m/blobs/h1", Problem.MISSING) in got
    assert ("models/hub/models--org--m/snapshots/c0ffee/config.json", Problem.LINK) in got


def test_edited_sha256sums_is_reported(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("a-1.0", "a-1.1"))
    assert problems(tmp_path) == {("SHA256SUMS", Problem.CORRUPTED)}


def test_json_output_has_ok_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bundle(tmp_path)
    (tmp_path / "models/hub/models--org--m/refs/main").write_text("deadbe")
    assert run_cli("bundle", "verify", "--json", str(tmp_path)) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["failures"] == [
        {"path": "models/hub/models--org--m/refs/main", "problem": "corrupted", "detail": data["failures"][0]["detail"]}
    ]


def test_not_a_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a bundle"):
        run_cli("bundle", "verify", str(tmp_path))
    with pytest.raises(UsageError, match="no such directory"):
        run_cli("bundle", "verify", str(tmp_path / "nope"))


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_parallel_hashing_matches_single_stream(tmp_path: Path, mode: str) -> None:
    items = []
    for i in range(6):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(100_000 * (i + 1)))
        items.append((p.name, p, p.stat().st_size))
    seen: list[int] = []
    result = hash_files(items, workers=3, mode=mode, on_bytes=seen.append)  # type: ignore[arg-type]
    assert result.digests == {name: sha256_file(p) for name, p, _ in items}
    assert sum(seen) == sum(size for _, _, size in items)
