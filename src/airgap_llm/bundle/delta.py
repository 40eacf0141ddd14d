"""Delta bundles, the pure part: what a delta carries, and how ``bundle patch`` places every file.

A delta of bundle NEW against an older bundle OLD is a directory holding

- NEW's ``manifest.json`` and ``SHA256SUMS`` (and ``manifest.json.sig`` when signed);
- ``delta.json``: the sha256 of OLD's manifest (the base), the sha256 of NEW's manifest, and the
  files carried, with the bytes carried against the full bundle;
- only NEW's regular files whose content (sha256 and size) OLD has nowhere: those are the files
  carried. A file OLD holds under another path counts as present, since ``bundle patch`` places files
  by content (hard link or copy from wherever OLD has it); symlinks are never carried (``patch``
  makes them from the manifest's link text).

Here only data in, data out (no file system); ``delta_build`` and ``patch`` do the I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airgap_llm.bundle.manifest import Artifact, Manifest, TreeEntry, check_path
from airgap_llm.errors import InputError

DELTA_NAME = "delta.json"
DELTA_FORMAT = 1

Content = tuple[str, int]  # (sha256, size): how a file is found in OLD


def manifest_digest(text: bytes) -> str:
    """The sha256 naming a manifest: of its bytes as written."""
    return hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class DeltaInfo:
    """``delta.json``: which bundle a delta applies to and what it carries."""

    base_manifest_sha256: str  # OLD's manifest.json
    manifest_sha256: str  # NEW's manifest.json, carried in the delta
    carried: tuple[str, ...]  # the paths of NEW's files the delta holds
    carried_bytes: int
    full_bytes: int  # NEW's regular files, all together
    files: int  # NEW's regular files
    base_inventory: str = ""
    base_created: str = ""

    @property
    def finished(self) -> bool:
        """False while its build runs (the delta is marked as one from the start, NEW's manifest still unknown)."""
        return bool(self.manifest_sha256)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": DELTA_FORMAT,
            "base": {
                "manifest_sha256": self.base_manifest_sha256,
                "created": self.base_created,
                "inventory": self.base_inventory,
            },
            "manifest_sha256": self.manifest_sha256,
            "carried_bytes": self.carried_bytes,
            "full_bytes": self.full_bytes,
            "files": self.files,
            "carried": list(self.carried),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    @classmethod
    def from_json(cls, data: Any, where: str) -> DeltaInfo:
        try:
            if not isinstance(data, dict) or data.get("format") != DELTA_FORMAT:
                raise TypeError(f"not a delta description of format {DELTA_FORMAT}")
            base = data["base"]
            carried = tuple(check_path(str(p), "carried path") for p in data["carried"])
            return cls(
                base_manifest_sha256=str(base["manifest_sha256"]),
                manifest_sha256=str(data["manifest_sha256"]),
                carried=carried,
                carried_bytes=int(data["carried_bytes"]),
                full_bytes=int(data["full_bytes"]),
                files=int(data["files"]),
                base_inventory=str(base.get("inventory", "")),
                base_created=str(base.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise InputError(f"{where}: not a delta description ({exc}); build the delta again") from None


def pending_delta(old: Manifest, old_text: bytes) -> DeltaInfo:
    """What ``delta.json`` says while the delta is being built: its base, nothing carried yet."""
    return DeltaInfo(manifest_digest(old_text), "", (), 0, 0, 0, old.inventory, old.created)


def contents(manifest: Manifest) -> dict[Content, str]:
    """Each content the manifest's regular files hold, with one path holding it (the first in order)."""
    found: dict[Content, str] = {}
    for art in manifest.files():
        found.setdefault((art.sha256, art.size), art.path)
    return found


def carried_files(new: Manifest, old: Manifest) -> list[Artifact]:
    """NEW's regular files whose content OLD holds nowhere: what a delta must carry."""
    have = contents(old)
    return [a for a in new.files() if (a.sha256, a.size) not in have]


def describe_delta(new: Manifest, new_text: bytes, old: Manifest, old_text: bytes) -> DeltaInfo:
    carried = carried_files(new, old)
    return DeltaInfo(
        base_manifest_sha256=manifest_digest(old_text),
        manifest_sha256=manifest_digest(new_text),
        carried=tuple(a.path for a in carried),
        carried_bytes=sum(a.size for a in carried),
        full_bytes=new.total_size(),
        files=len(new.files()),
        base_inventory=old.inventory,
        base_created=old.created,
    )


# --- patch: where every file of NEW comes from ---------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One regular file of NEW and the file it is made from (hard link, else copy)."""

    path: str
    source: str  # "delta" or "old"
    source_path: str


@dataclass
class PatchPlan:
    files: list[Placement] = field(default_factory=list)
    links: list[Artifact] = field(default_factory=list)
    missing_in_old: list[Artifact] = field(default_factory=list)  # content neither carried nor in OLD
    missing_in_delta: list[str] = field(default_factory=list)  # carried per delta.json, absent from DELTA

    @property
    def ok(self) -> bool:
        return not self.missing_in_old and not self.missing_in_delta


def _usable(tree: Mapping[str, TreeEntry], path: str, size: int) -> bool:
    seen = tree.get(path)
    return seen is not None and seen.link is None and seen.size == size


def plan_patch(
    new: Manifest,
    info: DeltaInfo,
    delta_tree: Mapping[str, TreeEntry],
    old: Manifest | None,
    old_tree: Mapping[str, TreeEntry],
) -> PatchPlan:
    """Where each of NEW's files comes from: the delta when it carries it, else any file of OLD with
    that content which OLD's manifest lists and which is there with the right size. What is found
    nowhere is listed (``missing_in_old``), as is a carried file the delta lacks (``missing_in_delta``).

    ``old`` is None when OLD has no readable manifest: then nothing can be taken from it.
    """
    plan = PatchPlan()
    carried = set(info.carried)
    in_old: dict[Content, str] = {}
    if old is not None:
        for art in old.files():
            if _usable(old_tree, art.path, art.size):
                in_old.setdefault((art.sha256, art.size), art.path)
    for art in new.sorted_artifacts():
        if art.is_link:
            plan.links.append(art)
        elif art.path in carried:
            if _usable(delta_tree, art.path, art.size):
                plan.files.append(Placement(art.path, "delta", art.path))
            else:
                plan.missing_in_delta.append(art.path)
        else:
            source = in_old.get((art.sha256, art.size))
            if source is None:
                plan.missing_in_old.append(art)
            else:
                plan.files.append(Placement(art.path, "old", source))
    return plan
