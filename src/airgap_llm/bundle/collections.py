"""Ansible collection tarballs for ``ansible-galaxy collection install --offline``.

Galaxy is not reachable from either side, so the tarballs are built from the collections installed
with the pinned ``ansible`` package (``site-packages/ansible_collections/NS/NAME``). The ``ansible``
package strips some files from the collections it ships, so their ``FILES.json`` lists files that
are not there; the tarball gets a ``FILES.json`` describing exactly the files it holds (with their
sha256) and a ``MANIFEST.json`` whose ``file_manifest_file`` checksum matches it, which is what
``ansible-galaxy`` checks when it installs. The archive is deterministic (sorted members, fixed
times and owners), so a rebuild gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from airgap_llm.bundle.layout import PARTIAL_SUFFIX
from airgap_llm.bundle.spec import CollectionSpec
from airgap_llm.errors import InputError, UsageError

SKIP_DIRS = frozenset({"__pycache__", ".git", ".github", ".azure-pipelines", "tests"})
FIXED_MTIME = 1_700_000_000


def installed_roots() -> list[Path]:
    """Where ``ansible_collections`` is installed for this interpreter."""
    try:
        import ansible_collections
    except ImportError:
        return []
    return [Path(p) for p in ansible_collections.__path__]


def find_installed(spec: CollectionSpec, roots: list[Path] | None = None) -> Path:
    """The installed collection directory of ``spec`` at exactly its version."""
    roots = installed_roots() if roots is None else roots
    looked = []
    for root in roots:
        path = root / spec.namespace / spec.name
        looked.append(str(path))
        manifest = path / "MANIFEST.json"
        if manifest.is_file():
            version = json.loads(manifest.read_text(encoding="utf-8"))["collection_info"]["version"]
            if version != spec.version:
                raise InputError(
                    f"collection {spec.fqcn}: requirements.yml pins {spec.version} but {path} is {version}; "
                    f"install the ansible package that carries {spec.version} or change the pin"
                )
            return path
    raise UsageError(
        f"collection {spec.fqcn} {spec.version} is not installed "
        f"(looked in {', '.join(looked) or 'no ansible_collections'}); "
        "install the pinned 'ansible' package (pip install -e '.[dev]')"
    )


def _members(src: Path) -> tuple[list[str], list[str]]:
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        rel = os.path.relpath(dirpath, src)
        if rel != ".":
            dirs.append(rel.replace(os.sep, "/"))
        for name in sorted(filenames):
            if name in ("MANIFEST.json", "FILES.json") and rel == ".":
                continue
            if name.endswith((".pyc", ".pyo")):
                continue
            files.append((name if rel == "." else f"{rel}/{name}").replace(os.sep, "/"))
    return sorted(dirs), sorted(files)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collection_archive(src: Path) -> bytes:
    """The bytes of a deterministic, installable ``.tar.gz`` of the collection at ``src``."""
    dirs, files = _members(src)
    dir_set = set(dirs)
    entries = [{"name": ".", "ftype": "dir", "chksum_type": None, "chksum_sha256": None, "format": 1}]
    for name in sorted(dirs + files):
        if name in dir_set:
            entries.append({"name": name, "ftype": "dir", "chksum_type": None, "chksum_sha256": None, "format": 1})
        else:
            entries.append(
                {
                    "name": name,
                    "ftype": "file",
                    "chksum_type": "sha256",
                    "chksum_sha256": _sha256(src / name),
                    "format": 1,
                }
            )
    files_json = json.dumps({"files": entries, "format": 1}, indent=4).encode()
    manifest = json.loads((src / "MANIFEST.json").read_text(encoding="utf-8"))
    manifest["file_manifest_file"] = {
        "name": "FILES.json",
        "ftype": "file",
        "chksum_type": "sha256",
        "chksum_sha256": hashlib.sha256(files_json).hexdigest(),
        "format": 1,
    }
    manifest_json = json.dumps(manifest, indent=4).encode()

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes | None, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))

        add("MANIFEST.json", manifest_json, 0o644)
        add("FILES.json", files_json, 0o644)
        for name in sorted(dirs + files):
            if name in dir_set:
                add(name, None, 0o755)
            else:
                path = src / name
                add(name, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def build_collection(bundle: Path, spec: CollectionSpec, src: Path) -> Path:
    """Write ``collections/<ns>-<name>-<version>.tar.gz`` (temp name, then rename)."""
    dst = bundle / spec.path
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + PARTIAL_SUFFIX)
    tmp.write_bytes(collection_archive(src))
    os.replace(tmp, dst)
    return dst
