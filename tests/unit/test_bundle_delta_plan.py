"""The pure part of delta bundles: what a delta carries, and where ``bundle patch`` takes each file."""

from __future__ import annotations

import pytest

from airgap_llm.bundle.delta import DeltaInfo, carried_files, describe_delta, plan_patch
from airgap_llm.bundle.manifest import Artifact, Manifest, TreeEntry
from airgap_llm.errors import InputError

BLOBS = "models/hub/models--org--m/blobs"
SNAP = "models/hub/models--org--m/snapshots"


def art(path: str, sha: str, size: int, link: str | None = None) -> Artifact:
    return Artifact(path, "model", size, sha * 64, "test", link)


def manifest(*arts: Artifact) -> Manifest:
    m = Manifest(inventory="inv", created="2026-11-30T00:00:00+00:00")
    for a in arts:
        m.add(a)
    return m


OLD = manifest(
    art(f"{BLOBS}/w", "a", 1000),
    art(f"{BLOBS}/c1", "b", 10),
    art("models/hub/models--org--m/refs/main", "c", 40),
    art(f"{SNAP}/1/model.safetensors", "a", 1000, "../../blobs/w"),
    art("wheels/cp311-x/old-place.whl", "d", 500),
)
NEW = manifest(
    art(f"{BLOBS}/w", "a", 1000),
    art(f"{BLOBS}/c2", "e", 12),
    art("models/hub/models--org--m/refs/main", "f", 40),
    art(f"{SNAP}/2/model.safetensors", "a", 1000, "../../blobs/w"),
    art(f"{SNAP}/2/config.json", "e", 12, "../../blobs/c2"),
    art("wheels/cp311-x/new-place.whl", "d", 500),  # OLD holds the content under another path
)


def tree(m: Manifest, *, drop: tuple[str, ...] = (), resize: tuple[str, ...] = ()) -> dict[str, TreeEntry]:
    return {
        a.path: TreeEntry(size=a.size + (1 if a.path in resize else 0), link=a.link)
        for a in m.sorted_artifacts()
        if a.path not in drop
    }


def test_a_delta_carries_only_content_old_has_nowhere() -> None:
    assert [a.path for a in carried_files(NEW, OLD)] == [f"{BLOBS}/c2", "models/hub/models--org--m/refs/main"]
    info = describe_delta(NEW, b"new", OLD, b"old")
    assert info.carried_bytes == 52 and info.full_bytes == 1552 and info.files == 4
    assert DeltaInfo.from_json(info.to_json(), "delta.json") == info


def test_patch_takes_carried_files_from_the_delta_and_the_rest_from_old_by_content() -> None:
    info = describe_delta(NEW, b"new", OLD, b"old")
    delta_tree = {p: TreeEntry(size=NEW.artifacts[p].size) for p in info.carried}
    plan = plan_patch(NEW, info, delta_tree, OLD, tree(OLD))
    assert plan.ok
    sources = {p.path: (p.source, p.source_path) for p in plan.files}
    assert sources["wheels/cp311-x/new-place.whl"] == ("old", "wheels/cp311-x/old-place.whl")
    assert sources[f"{BLOBS}/w"] == ("old", f"{BLOBS}/w")
    assert sources[f"{BLOBS}/c2"] == ("delta", f"{BLOBS}/c2")
    assert [a.path for a in plan.links] == [f"{SNAP}/2/config.json", f"{SNAP}/2/model.safetensors"]


@pytest.mark.parametrize("how", ["missing", "wrong-size", "not-in-old-manifest"])
def test_patch_names_what_old_lacks(how: str) -> None:
    info = describe_delta(NEW, b"new", OLD, b"old")
    delta_tree = {p: TreeEntry(size=NEW.artifacts[p].size) for p in info.carried}
    old, old_tree = OLD, tree(OLD)
    if how == "missing":
        old_tree = tree(OLD, drop=(f"{BLOBS}/w",))
    elif how == "wrong-size":
        old_tree = tree(OLD, resize=(f"{BLOBS}/w",))
    else:
        old = manifest(*(a for a in OLD.sorted_artifacts() if a.sha256 != "a" * 64))
    plan = plan_patch(NEW, info, delta_tree, old, old_tree)
    assert not plan.ok and [a.path for a in plan.missing_in_old] == [f"{BLOBS}/w"]


def test_patch_names_a_carried_file_the_delta_lacks() -> None:
    info = describe_delta(NEW, b"new", OLD, b"old")
    plan = plan_patch(NEW, info, {}, OLD, tree(OLD))
    assert plan.missing_in_delta == [f"{BLOBS}/c2", "models/hub/models--org--m/refs/main"]


@pytest.mark.parametrize(
    "data",
    [[], {"format": 2}, {"format": 1, "base": {}}, {"format": 1, "base": {"manifest_sha256": "x"},
     "manifest_sha256": "y", "carried": ["../etc/passwd"], "carried_bytes": 1, "full_bytes": 1, "files": 1}],
)
def test_a_malformed_delta_description_is_refused(data: object) -> None:
    with pytest.raises(InputError, match="delta.json: not a delta description"):
        DeltaInfo.from_json(data, "delta.json")
