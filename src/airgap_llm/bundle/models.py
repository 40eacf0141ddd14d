"""Model weights into ``models/hub/`` in the Hugging Face cache layout.

Two sources:

- the Hub, through ``huggingface_hub.snapshot_download(repo_id, revision=..., cache_dir=...)``,
  pinned to the inventory's revision (a 40-hex commit, a branch or a tag);
- ``--models-from ROOT``: an existing local cache (a ``HF_HOME``-like directory holding ``hub/``, or
  the hub directory itself), with no network. Blobs are copied (temp name, then rename) and the
  snapshot's relative symlinks recreated.

Either way the bundle ends with ``models--ORG--NAME/{blobs/, snapshots/<commit>/, refs/<revision>}``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airgap_llm.bundle.layout import (
    MODEL_FOLDER_PREFIX,
    MODELS_HUB_DIR,
    PARTIAL_SUFFIX,
    copy_atomic,
    link_to_blob,
    model_folder,
)
from airgap_llm.bundle.model_files import as_allow_patterns
from airgap_llm.bundle.spec import ModelSpec
from airgap_llm.errors import InputError, UsageError

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class ModelResult:
    spec: ModelSpec
    commit: str
    copied: int = 0  # blobs fetched or copied
    skipped: int = 0  # blobs already in the bundle
    source: str = ""


def locate_hub(root: Path) -> Path:
    """The hub directory of a local cache root: ``ROOT/hub`` or ``ROOT`` itself."""
    if not root.is_dir():
        raise UsageError(f"--models-from {root}: no such directory")
    if (root / "hub").is_dir():
        return root / "hub"
    if any(p.name.startswith(MODEL_FOLDER_PREFIX) for p in root.iterdir()):
        return root
    raise InputError(
        f"--models-from {root}: not a Hugging Face cache (no hub/ directory and no models--ORG--NAME folders)"
    )


def resolve_commit(repo_dir: Path, spec: ModelSpec) -> str:
    """The commit a revision names in a cache repo folder; ``InputError`` naming what was looked for."""
    where = f"model {spec.repo_id} revision {spec.revision}"
    if not repo_dir.is_dir():
        raise InputError(f"{where}: not in the local cache: {repo_dir} does not exist")
    if COMMIT_RE.match(spec.revision) and (repo_dir / "snapshots" / spec.revision).is_dir():
        return spec.revision
    ref = repo_dir / "refs" / spec.revision
    if not ref.is_file():
        have = sorted(p.name for p in (repo_dir / "refs").glob("*")) if (repo_dir / "refs").is_dir() else []
        snaps = sorted(p.name for p in (repo_dir / "snapshots").glob("*")) if (repo_dir / "snapshots").is_dir() else []
        raise InputError(
            f"{where}: not in the local cache: no {ref} and no snapshots/{spec.revision} "
            f"(refs there: {', '.join(have) or 'none'}; snapshots: {', '.join(snaps) or 'none'})"
        )
    commit = ref.read_text(encoding="utf-8").strip()
    if not (repo_dir / "snapshots" / commit).is_dir():
        raise InputError(f"{where}: {ref} names commit {commit} but {repo_dir / 'snapshots' / commit} is missing")
    return commit


def cache_blob(snapshot: Path, path: Path) -> tuple[Path, str]:
    """The file holding a snapshot entry's content, and the blob name it gets in the bundle."""
    if path.is_symlink():
        blob = path.resolve()
        return blob, blob.name
    # a snapshot holding plain files: store it as a blob named after its path
    return path, "file-" + "-".join(path.relative_to(snapshot).parts)


def import_model(spec: ModelSpec, hub: Path, bundle: Path, files: Iterable[str] | None = None) -> ModelResult:
    """Copy one model revision (only ``files`` of it, when given) from a local cache ``hub`` into the
    bundle (no network)."""
    wanted = set(files) if files is not None else None
    src_repo = hub / model_folder(spec.repo_id)
    commit = resolve_commit(src_repo, spec)
    dst_repo = bundle / MODELS_HUB_DIR / model_folder(spec.repo_id)
    result = ModelResult(spec, commit, source=f"local cache {src_repo}")
    src_snap = src_repo / "snapshots" / commit
    dst_snap = dst_repo / "snapshots" / commit
    (dst_repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(src_snap.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(src_snap)
        if wanted is not None and rel.as_posix() not in wanted:
            continue
        if not path.exists():
            raise InputError(f"model {spec.repo_id} revision {spec.revision}: {path} is a dangling link in the cache")
        blob_src, blob_name = cache_blob(src_snap, path)
        blob_dst = dst_repo / "blobs" / blob_name
        if blob_dst.is_file() and blob_dst.stat().st_size == blob_src.stat().st_size:
            result.skipped += 1
        else:
            copy_atomic(blob_src, blob_dst)
            result.copied += 1
        link_to_blob(dst_snap / rel, blob_dst)
    _write_ref(dst_repo, spec.revision, commit)
    return result


def _write_ref(repo: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if ref.is_file() and ref.read_text(encoding="utf-8") == commit:
        return
    tmp = ref.with_name(ref.name + PARTIAL_SUFFIX)
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, ref)


def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub address a download goes to: ``endpoint``, else ``HF_ENDPOINT``, else the public Hub."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids huggingface_hub any request."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextmanager
def hub_errors(spec: ModelSpec, endpoint: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's errors into ours, naming the model id, the revision, the hosts/services
    that use it and the Hub address, and saying what to do (fix the inventory, set HF_TOKEN, or import
    with --models-from): ``InputError`` for the inventory, ``UsageError`` for the environment."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = hub_endpoint(endpoint)
    used_by = f" (used by {', '.join(spec.used_by)})" if spec.used_by else ""
    where = f"model {spec.repo_id} revision {spec.revision}{used_by}"
    hint = "on a machine without access to the Hub, import from a local cache with --models-from HF_CACHE_ROOT"
    offline = (
        f"{where}: not in the bundle yet, and HF_HUB_OFFLINE is set, so the Hub at {url} cannot be asked "
        f"for it; unset HF_HUB_OFFLINE to download, or {hint}"
    )
    try:
        yield
    except GatedRepoError as exc:
        raise InputError(
            f"{where}: gated on the Hub at {url}; accept its terms on the model's page and set HF_TOKEN "
            f"({_first_line(exc)})"
        ) from None
    except RevisionNotFoundError:
        raise InputError(
            f"{where}: the Hub at {url} has no revision {spec.revision!r} of {spec.repo_id}; set the service's "
            "revision in the inventory to a commit sha, branch or tag the model has"
        ) from None
    except RepositoryNotFoundError:
        raise InputError(
            f"{where}: the Hub at {url} has no model {spec.repo_id!r} (or it is private or gated: set HF_TOKEN); "
            "check the service's model in the inventory"
        ) from None
    except OfflineModeIsEnabled:
        raise UsageError(offline) from None
    except LocalEntryNotFoundError as exc:  # the Hub did not answer and the bundle has no copy
        if hub_offline():
            raise UsageError(offline) from None
        raise UsageError(f"{where}: the Hugging Face Hub at {url} is unreachable ({_cause(exc)}); {hint}") from None
    except OSError as exc:  # connection and HTTP errors of the client are OSErrors or wrap them
        if exc.errno == errno.ENOSPC:
            raise
        raise UsageError(
            f"{where}: the Hugging Face Hub at {url} is unreachable or failed: {_cause(exc)}; {hint}"
        ) from None
    except Exception as exc:  # httpx errors of huggingface_hub >= 1.0 are not OSErrors
        if not type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise
        raise UsageError(f"{where}: the Hugging Face Hub at {url} is unreachable ({_cause(exc)}); {hint}") from None


def download_model(
    spec: ModelSpec, bundle: Path, endpoint: str | None = None, files: Iterable[str] | None = None
) -> ModelResult:
    """Fetch one model revision (only ``files`` of it, when given) from the Hub into the bundle's cache
    layout; errors as ``hub_errors``."""
    from huggingface_hub import snapshot_download

    hub = bundle / MODELS_HUB_DIR
    repo_dir = hub / model_folder(spec.repo_id)
    before = {p.name for p in (repo_dir / "blobs").glob("*")} if (repo_dir / "blobs").is_dir() else set()
    allow = as_allow_patterns(files) if files is not None else None
    try:  # (offline or with the Hub unreachable, a revision the bundle already holds is found there)
        with hub_errors(spec, endpoint):
            snap = Path(
                str(
                    snapshot_download(
                        spec.repo_id, revision=spec.revision, cache_dir=hub, endpoint=endpoint, allow_patterns=allow
                    )
                )
            )
    finally:
        shutil.rmtree(hub / ".locks", ignore_errors=True)
    commit = snap.name
    after = {p.name for p in (repo_dir / "blobs").glob("*")}
    result = ModelResult(spec, commit, source=f"{hub_endpoint(endpoint)} {spec.repo_id}@{spec.revision}")
    result.copied = len(after - before)
    result.skipped = len(after & before)
    return result


def _cause(exc: BaseException) -> str:
    """The innermost reason of an exception chain, on one line (e.g. "Connection refused")."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    return _first_line(seen if seen is not exc else exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def prune_snapshot(bundle: Path, spec: ModelSpec, commit: str, keep: set[str]) -> list[str]:
    """Remove a snapshot's links to files not in ``keep`` (their blobs go with ``prune_models``)."""
    snap = bundle / spec.dir / "snapshots" / commit
    removed = []
    for link in sorted(snap.rglob("*"), reverse=True):
        rel = link.relative_to(snap).as_posix()
        if link.is_symlink() or link.is_file():
            if rel not in keep:
                link.unlink()
                removed.append(f"{spec.dir}/snapshots/{commit}/{rel}")
        elif link.is_dir() and not any(link.iterdir()):
            link.rmdir()
    return removed


def prune_models(bundle: Path, keep: list[tuple[ModelSpec, str]]) -> list[str]:
    """Remove model folders, snapshots, refs and blobs the inventory no longer uses; return what went."""
    hub = bundle / MODELS_HUB_DIR
    if not hub.is_dir():
        return []
    removed: list[str] = []
    wanted: dict[str, dict[str, str]] = {}
    for spec, commit in keep:
        wanted.setdefault(model_folder(spec.repo_id), {})[spec.revision] = commit
    for repo in sorted(hub.iterdir()):
        if repo.name not in wanted:
            _remove(repo)
            removed.append(f"{MODELS_HUB_DIR}/{repo.name}")
            continue
        commits = set(wanted[repo.name].values())
        for snap in sorted((repo / "snapshots").glob("*")):
            if snap.name not in commits:
                _remove(snap)
                removed.append(f"{MODELS_HUB_DIR}/{repo.name}/snapshots/{snap.name}")
        for ref in sorted((repo / "refs").glob("*")):
            if ref.name not in wanted[repo.name]:
                _remove(ref)
                removed.append(f"{MODELS_HUB_DIR}/{repo.name}/refs/{ref.name}")
        used = {
            os.path.basename(os.readlink(p))
            for c in commits
            for p in (repo / "snapshots" / c).rglob("*")
            if p.is_symlink()
        }
        for blob in sorted((repo / "blobs").glob("*")):
            if blob.name not in used:
                _remove(blob)
                removed.append(f"{MODELS_HUB_DIR}/{repo.name}/blobs/{blob.name}")
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
