"""Turn files already in the bundle directory into manifest artifacts (hashing them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from airgap_llm.bundle.hashing import OnBytes, hash_files
from airgap_llm.bundle.layout import PARTIAL_SUFFIX, scan_tree
from airgap_llm.bundle.manifest import Artifact, resolve_link
from airgap_llm.errors import InputError


def index_paths(
    root: Path,
    paths: list[str],
    kind: str,
    source: Callable[[str], str],
    on_bytes: OnBytes | None = None,
) -> list[Artifact]:
    """Artifacts for the given bundle-relative paths (regular files hashed in parallel; symlinks
    recorded with their link text and their target's size and hash)."""
    files: list[tuple[str, Path, int]] = []
    links: dict[str, str] = {}
    for rel in paths:
        full = root / rel
        if full.is_symlink():
            links[rel] = os.readlink(full)
        else:
            files.append((rel, full, full.stat().st_size))
    result = hash_files(files, on_bytes=on_bytes)
    if result.errors:
        path, err = next(iter(sorted(result.errors.items())))
        raise InputError(f"{root / path}: cannot be read: {err}")
    by_path = {rel: (size, result.digests[rel]) for rel, _, size in files}
    out = [Artifact(rel, kind, size, sha, source(rel)) for rel, (size, sha) in by_path.items()]
    for rel, link in links.items():
        target = resolve_link(rel, link)
        if target not in by_path:
            full = root / target
            if not full.is_file() or full.is_symlink():
                raise InputError(f"{root / rel}: symlink to {link} does not point at a regular file of the bundle")
            files_extra = hash_files([(target, full, full.stat().st_size)])
            by_path[target] = (full.stat().st_size, files_extra.digests[target])
        size, sha = by_path[target]
        out.append(Artifact(rel, kind, size, sha, source(rel), link=link))
    return sorted(out, key=lambda a: a.path)


def list_under(root: Path, prefix: str) -> list[str]:
    """Bundle-relative paths of files and links below ``prefix``, leaving out partial downloads."""
    base = root / prefix
    if not base.exists():
        return []
    return sorted(f"{prefix}/{rel}" for rel in scan_tree(base) if not rel.endswith(PARTIAL_SUFFIX))
