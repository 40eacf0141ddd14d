"""Where things live inside a bundle, and a scan of a bundle directory.

```
manifest.json  SHA256SUMS
wheels/<python-tag>-<platform>/   wheels + constraints.txt
models/hub/models--ORG--NAME/     Hugging Face cache layout (blobs/, snapshots/<commit>/, refs/)
os/<distro>-<version>/            .deb files + Packages, Packages.gz, Release, Release.gpg, InRelease,
                                  airgap-llm-archive-keyring.gpg
collections/                      <namespace>-<name>-<version>.tar.gz
```
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from airgap_llm.bundle import manifest
from airgap_llm.bundle.manifest import MANIFEST_NAME, TreeEntry

WHEELS_DIR = "wheels"
MODELS_HUB_DIR = "models/hub"
OS_DIR = "os"
COLLECTIONS_DIR = "collections"
CONSTRAINTS_NAME = "constraints.txt"
KEYRING_NAME = "airgap-llm-archive-keyring.gpg"
PARTIAL_SUFFIX = manifest.PARTIAL_SUFFIX  # temporary names; removed by the next build


def wheel_dir(python_tag: str, platform: str) -> str:
    """``wheels/cp311-manylinux_2_36_x86_64``: the newest platform tag names the directory."""
    return f"{WHEELS_DIR}/{python_tag}-{platform}"


MODEL_FOLDER_PREFIX = "models--"


def model_folder(repo_id: str) -> str:
    """``ORG/NAME`` -> ``models--ORG--NAME``: huggingface_hub's folder naming, written here only (the
    roles get it through the plan's ``model_folder`` of each service)."""
    return MODEL_FOLDER_PREFIX + "--".join(repo_id.split("/"))


def model_repo_dir(repo_id: str) -> str:
    """``models/hub/models--ORG--NAME``: a model's folder inside the bundle."""
    return f"{MODELS_HUB_DIR}/{model_folder(repo_id)}"


def os_dir(distro: str, version: str) -> str:
    return f"{OS_DIR}/{distro}-{version}"


def collection_tarball(namespace: str, name: str, version: str) -> str:
    return f"{COLLECTIONS_DIR}/{namespace}-{name}-{version}.tar.gz"


def link_to_blob(link: Path, blob: Path) -> None:
    """Make ``link`` a relative symlink to ``blob`` (the HF snapshot layout); leave it when it already is."""
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, link.parent)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through ``dst.partial`` and a rename; on failure nothing stays behind.

    An error while writing names the destination (shutil's own names the source first): on a full
    disk the message must say where the space ran out, not which cache file was being read.
    """
    tmp = dst.with_name(dst.name + PARTIAL_SUFFIX)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# hard links fail so across file systems (EXDEV), or where the file system or its policy has none
NOT_LINKABLE = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def link_atomic(src: Path, dst: Path) -> bool:
    """Make ``dst`` a hard link to ``src`` through ``dst.partial`` and a rename; False (nothing written)
    when the two cannot share an inode (another file system), so the caller copies instead."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + PARTIAL_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError as exc:
        if exc.errno in NOT_LINKABLE:
            return False
        raise
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def link_or_copy(src: Path, dst: Path) -> bool:
    """``dst`` with ``src``'s content, never half-written under its name: hard-linked when on one file
    system (True), else copied."""
    if link_atomic(src, dst):
        return True
    dst.parent.mkdir(parents=True, exist_ok=True)
    copy_atomic(src, dst)
    return False


def is_bundle(root: Path) -> bool:
    return (root / MANIFEST_NAME).is_file()


def scan_tree(root: Path) -> dict[str, TreeEntry]:
    """Every regular file and symlink under ``root`` as bundle-relative POSIX paths.

    Symlinks are not followed (a link to a directory is reported as a link); other kinds of files
    (sockets, fifos) are reported as size 0 entries so that they show up as extra.
    """
    out: dict[str, TreeEntry] = {}
    root_s = str(root)
    for dirpath, dirnames, filenames in os.walk(root_s, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root_s)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        names = list(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if os.path.islink(full):
                link = os.readlink(full)
                out[prefix + name] = TreeEntry(size=0, link=link, link_ok=os.path.isfile(full))
            else:
                out[prefix + name] = TreeEntry(size=st.st_size)
    return out


def free_bytes(path: Path) -> int:
    """Free space (for an unprivileged writer) on the file system that holds, or will hold, ``path``."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def list_dir_bytes(out: Path) -> dict[str, int]:
    """Bytes of the blobs already under each ``models/hub/models--ORG--NAME`` of a bundle, by folder."""
    hub = out / MODELS_HUB_DIR
    if not hub.is_dir():
        return {}
    return {
        repo.name: sum(b.stat().st_size for b in (repo / "blobs").glob("*") if b.is_file())
        for repo in hub.iterdir()
        if repo.is_dir()
    }


def no_space_hint(out: Path) -> str:
    return (
        f"free some space on the file system of {out} or build into another directory (-o DIR); "
        "a rerun resumes where this build stopped"
    )
