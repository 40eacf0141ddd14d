"""The manifest model, SHA256SUMS rendering, path safety and tree diffing (pure logic)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from airgap_llm.bundle.manifest import (
    Artifact,
    Manifest,
    Problem,
    TreeEntry,
    check_path,
    diff_tree,
    hash_failures,
    load_manifest,
    parse_sha256sums,
    render_sha256sums,
    resolve_link,
    save_manifest,
)
from airgap_llm.errors import InputError

H1 = "a" * 64
H2 = "b" * 64


def art(path: str, size: int = 3, sha: str = H1, kind: str = "model", link: str | None = None) -> Artifact:
    return Artifact(path=path, kind=kind, size=size, sha256=sha, source="test", link=link)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("wheels/../../etc", "'..' part"),
        ("wheels//x.whl", "empty, '.' or '..'"),
        ("./x", "'.'"),
        ("a\\b", "forbidden character"),
        ("a\nb", "forbidden character"),
        ("manifest.json", "reserved"),
        ("SHA256SUMS", "reserved"),
    ],
)
def test_check_path_rejects_unsafe_paths(path: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_path(path)


def test_check_path_accepts_nested_relative_paths() -> None:
    assert check_path("models/hub/models--a--b/blobs/abc") == "models/hub/models--a--b/blobs/abc"


def test_resolve_link_follows_hf_layout_and_refuses_escapes() -> None:
    assert resolve_link("m/snapshots/c/sub/f.json", "../../../blobs/h") == "m/blobs/h"
    with pytest.raises(InputError, match="outside the bundle"):
        resolve_link("m/f", "../../etc/passwd")
    with pytest.raises(InputError, match="relative"):
        resolve_link("m/f", "/etc/passwd")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "binary", "kind 'binary' is not one of"),
        ("size", -1, "not a non-negative integer"),
        ("sha256", "ABC", "not 64 lower-case hex"),
        ("path", "../x", "'..' part"),
    ],
)
def test_artifact_validation_names_the_field(field: str, value: object, message: str) -> None:
    raw = {"path": "wheels/x.whl", "kind": "wheel", "size": 1, "sha256": H1, "source": "s", field: value}
    with pytest.raises(InputError, match=r"artifacts\[0\].*" + message):
        Manifest.from_json({"format": 1, "artifacts": [raw]})


def test_manifest_rejects_unknown_keys_duplicates_and_bad_links() -> None:
    good = {"path": "a", "kind": "wheel", "size": 1, "sha256": H1, "source": "s"}
    with pytest.raises(InputError, match="unknown keys colour"):
        Manifest.from_json({"format": 1, "artifacts": [{**good, "colour": 1}]})
    with pytest.raises(InputError, match="listed twice"):
        Manifest.from_json({"format": 1, "artifacts": [good, good]})
    with pytest.raises(InputError, match="unsupported format 2"):
        Manifest.from_json({"format": 2, "artifacts": []})
    dangling = {**good, "path": "m/snap/f", "kind": "model", "link": "../blobs/zz"}
    with pytest.raises(InputError, match="m/blobs/zz is not a listed file"):
        Manifest.from_json({"format": 1, "artifacts": [dangling]})


def test_roundtrip_and_atomic_save(tmp_path: Path) -> None:
    m = Manifest(inventory="inventories/local-cpu", created="2026-11-23T00:00:00+00:00")
    m.add(art("m/blobs/h"))
    m.add(art("m/snapshots/c/f", link="../../blobs/h"))
    m.add(art("wheels/cp311-x/a.whl", kind="wheel", sha=H2, size=10))
    save_manifest(tmp_path, m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256SUMS", "manifest.json"]
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["format"] == 1 and data["inventory"] == "inventories/local-cpu"
    assert [a["path"] for a in data["artifacts"]] == ["m/blobs/h", "m/snapshots/c/f", "wheels/cp311-x/a.whl"]
    assert data["artifacts"][1]["link"] == "../../blobs/h" and "link" not in data["artifacts"][0]
    again = load_manifest(tmp_path)
    assert again.to_json() == m.to_json()
    assert m.total_size() == 13  # the link counts nothing
    assert m.counts_by_kind()["model"] == 1 and m.counts_by_kind()["wheel"] == 1


def test_load_manifest_reports_bad_json_with_path(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match=r"manifest\.json is unreadable: Expecting property name"):
        load_manifest(tmp_path)


def test_sha256sums_is_what_sha256sum_checks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    files = {"d/one.bin": b"one", "two with space.txt": b"two"}
    m = Manifest(inventory="x")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        m.add(art(name, size=len(data), sha=hashlib.sha256(data).hexdigest()))
    text = render_sha256sums(m)
    assert text.splitlines()[0] == f"{hashlib.sha256(b'one').hexdigest()}  d/one.bin"
    assert parse_sha256sums(text) == {a.path: a.sha256 for a in m.sorted_artifacts()}
    (tmp_path / "SHA256SUMS").write_text(text)
    ok = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (tmp_path / "d/one.bin").write_bytes(b"0ne")
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and "d/one.bin: FAILED" in bad.stdout


def test_parse_sha256sums_names_the_bad_line() -> None:
    with pytest.raises(InputError, match="line 2"):
        parse_sha256sums(f"{H1}  a\nnonsense\n")


def test_diff_tree_reports_every_kind_of_difference() -> None:
    m = Manifest(inventory="x")
    for a in (
        art("ok", size=3),
        art("gone", size=3),
        art("short", size=3),
        art("m/blobs/h", size=3),
        art("m/s/c/good", link="../../blobs/h"),
        art("m/s/c/retargeted", link="../../blobs/h"),
        art("m/s/c/dangling", link="../../blobs/h"),
        art("m/s/c/flattened", link="../../blobs/h"),
    ):
        m.add(a)
    tree = {
        "ok": TreeEntry(3),
        "short": TreeEntry(2),
        "m/blobs/h": TreeEntry(3),
        "m/s/c/good": TreeEntry(link="../../blobs/h"),
        "m/s/c/retargeted": TreeEntry(link="../../blobs/other"),
        "m/s/c/dangling": TreeEntry(link="../../blobs/h", link_ok=False),
        "m/s/c/flattened": TreeEntry(3),
        "stray.partial": TreeEntry(9),
        "manifest.json": TreeEntry(100),
        "SHA256SUMS": TreeEntry(100),
    }
    diff = diff_tree(m, tree)
    got = {(f.path, f.problem) for f in diff.failures}
    assert got == {
        ("gone", Problem.MISSING),
        ("short", Problem.SIZE),
        ("m/s/c/retargeted", Problem.LINK),
        ("m/s/c/dangling", Problem.LINK),
        ("m/s/c/flattened", Problem.LINK),
        ("stray.partial", Problem.EXTRA),
    }
    assert sorted(a.path for a in diff.to_hash) == ["m/blobs/h", "ok"]
    messages = {f.path: str(f) for f in diff.failures}
    assert messages["short"] == "size-mismatch: short (2 bytes, expected 3)"
    assert "points to ../../blobs/other, expected ../../blobs/h" in messages["m/s/c/retargeted"]
    assert "dangling" in messages["m/s/c/dangling"]


def test_hash_failures_names_corrupted_files() -> None:
    arts = [art("a", sha=H1), art("b", sha=H1)]
    failures = hash_failures(arts, {"a": H1, "b": H2})
    assert [(f.path, f.problem) for f in failures] == [("b", Problem.CORRUPTED)]
    assert H2 in failures[0].detail


def test_remove_under_drops_a_directory_only() -> None:
    m = Manifest(inventory="x")
    for p in ("wheels/a/x.whl", "wheels/a/constraints.txt", "wheels/ab/y.whl"):
        m.add(art(p, kind="wheel"))
    assert sorted(m.remove_under("wheels/a")) == ["wheels/a/constraints.txt", "wheels/a/x.whl"]
    assert list(m.artifacts) == ["wheels/ab/y.whl"]
