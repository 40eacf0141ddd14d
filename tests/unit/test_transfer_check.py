"""What a host's copy of a flat bundle directory must hold for its push to have nothing to move."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airgap_llm.transfer_check import local_dir_entries, manifest_dir_entries


def test_local_entries_are_the_files_by_size_and_whole_seconds(tmp_path: Path) -> None:
    (tmp_path / "a.whl").write_bytes(b"abc")
    (tmp_path / "constraints.txt").write_text("x==1\n")
    os.utime(tmp_path / "a.whl", (1700000000.7, 1700000000.7))
    entries = local_dir_entries(tmp_path)
    assert entries is not None
    assert entries["a.whl"] == {"size": 3, "mtime": 1700000000}
    assert sorted(entries) == ["a.whl", "constraints.txt"]


def test_local_entries_leave_a_directory_with_more_than_files_to_the_transfer(tmp_path: Path) -> None:
    assert local_dir_entries(tmp_path / "missing") is None
    (tmp_path / "a.whl").write_bytes(b"abc")
    (tmp_path / "link.whl").symlink_to(tmp_path / "a.whl")
    assert local_dir_entries(tmp_path) is None
    (tmp_path / "link.whl").unlink()
    (tmp_path / "sub").mkdir()
    assert local_dir_entries(tmp_path) is None


def test_manifest_entries_are_the_files_directly_under_the_subdirectory() -> None:
    arts = [{"path": "os/debian-12/Release", "size": 9, "sha256": "a" * 64},
            {"path": "os/debian-12/x.deb", "size": 5, "sha256": "b" * 64},
            {"path": "os/debian-120/y.deb", "size": 1, "sha256": "c" * 64},
            {"path": "wheels/cp311-x/z.whl", "size": 1, "sha256": "d" * 64}]
    assert manifest_dir_entries({"artifacts": arts}, "os/debian-12") == {
        "Release": {"size": 9, "sha256": "a" * 64}, "x.deb": {"size": 5, "sha256": "b" * 64}}
    assert manifest_dir_entries({"artifacts": arts}, "os/rhel-9") is None
    deeper = [*arts, {"path": "os/debian-12/pool/q.deb", "size": 1, "sha256": "e" * 64}]
    assert manifest_dir_entries({"artifacts": deeper}, "os/debian-12") is None
    linked = [*arts, {"path": "os/debian-12/l", "size": 9, "sha256": "a" * 64, "link": "Release"}]
    assert manifest_dir_entries({"artifacts": linked}, "os/debian-12/") is None


def test_the_filter_leaves_a_bundle_part_without_a_manifest_to_the_transfer(
    tmp_path: Path, airgap_llm_filters: dict[str, Callable[..., Any]]
) -> None:
    """local_repo is also given OS parts made for it alone (no manifest.json): the push decides there."""
    entries = airgap_llm_filters["airgap_llm_bundle_dir_entries"]
    assert entries(str(tmp_path), "os/debian-12") is None
    art = {"path": "os/debian-12/Release", "kind": "os-package", "size": 9, "sha256": "a" * 64, "source": "t"}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "artifacts": [art]}))
    assert entries(str(tmp_path), "os/debian-12") == {"Release": {"size": 9, "sha256": "a" * 64}}
