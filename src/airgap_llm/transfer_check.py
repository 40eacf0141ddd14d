"""What a host's copy of a bundle directory must hold for a transfer to have nothing to do.

The roles push flat directories of the bundle with rsync on every run: the OS package repository
(content decides: it may first have been copied without times), the wheelhouse and each app's wheel set
(rsync's own quick check: size and time). On a rerun that would move nothing, the rsync still costs the controller a
module run and an rsync and ssh process per host. These listings let the host's layout module
(``airgap_llm_files``, option ``compare``) say first whether its directory already holds exactly them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def local_dir_entries(path: Path) -> dict[str, dict[str, int]] | None:
    """Each regular file directly in the controller's directory ``path``: its size and time (whole seconds), what
    rsync's quick check compares. ``None`` when the directory is missing or holds anything else (a
    subdirectory, a link): then only the transfer itself can say."""
    try:
        with os.scandir(path) as scan:
            found = list(scan)
    except OSError:
        return None
    if not all(e.is_file(follow_symlinks=False) for e in found):
        return None
    entries: dict[str, dict[str, int]] = {}
    for e in found:
        st = e.stat(follow_symlinks=False)
        entries[e.name] = {"size": st.st_size, "mtime": int(st.st_mtime)}
    return entries


def manifest_dir_entries(manifest: Mapping[str, Any], subdir: str) -> dict[str, dict[str, Any]] | None:
    """Each file the manifest lists directly under ``subdir`` (such as ``os/debian-12``): its size and sha256.
    ``None`` when the manifest lists none there, or a link or something deeper."""
    prefix = subdir.strip("/") + "/"
    entries: dict[str, dict[str, Any]] = {}
    for a in manifest.get("artifacts", []):
        path = str(a.get("path", ""))
        if not path.startswith(prefix):
            continue
        name = path[len(prefix):]
        if "/" in name or "link" in a:
            return None
        entries[name] = {"size": int(a["size"]), "sha256": str(a["sha256"])}
    return entries or None
