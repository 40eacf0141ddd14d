"""What every part of ``bundle build`` works with: the options, the user interface, the context object
each part's builder takes, and the re-indexing of a part's directory into the manifest."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from airgap_llm.bundle.hashing import OnBytes
from airgap_llm.bundle.index import index_paths, list_under
from airgap_llm.bundle.layout import free_bytes, no_space_hint
from airgap_llm.bundle.manifest import Artifact, Manifest
from airgap_llm.bundle.prereqs import Prerequisites
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.spec import BundleSpec
from airgap_llm.errors import UsageError


@dataclass
class BuildOptions:
    inventory: Path
    out: Path
    models_from: Path | None = None
    only: Sequence[str] = ()
    pip_args: Sequence[str] = ()
    requirements_yml: Path | None = None
    hub_endpoint: str | None = None
    os_mirrors: Mapping[str, str] = field(default_factory=dict)  # --os-mirror OS=URL
    os_keyrings: Mapping[str, str] = field(default_factory=dict)  # --os-keyring OS=FILE
    since: Path | None = None  # --since OLD/manifest.json: build a delta against that bundle


@dataclass
class PartReport:
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class BuildUI:
    """What the build tells its user; the command line gives it rich output."""

    def info(self, message: str) -> None:
        pass

    @contextmanager
    def hashing(self, description: str, total: int) -> Iterator[OnBytes | None]:
        yield None

    @contextmanager
    def busy(self, description: str) -> Iterator[None]:
        yield


Stamp = tuple[int, int]  # (inode, mtime in ns): a file replaced by a rename since it was hashed differs


def file_stamp(path: Path) -> Stamp:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def reindex(
    out: Path,
    manifest: Manifest,
    prefix: str,
    kind: str,
    source: Callable[[str], str],
    intact: dict[str, Artifact],
    ui: BuildUI,
    stamps: Mapping[str, Stamp] | None = None,
) -> None:
    """Replace the manifest's entries under ``prefix`` with what the directory now holds.

    A file found intact keeps its hash only while it is the file that was hashed (``stamps``): one a
    part replaced since (a model's ``refs/main`` naming a new commit, of the same size) is hashed again.
    """
    manifest.remove_under(prefix)
    paths = list_under(out, prefix)
    fresh = []
    for rel in paths:
        old = intact.get(rel)
        full = out / rel
        if old is not None and old.kind == kind and not old.is_link and not full.is_symlink():
            same_file = stamps is None or stamps.get(rel) == file_stamp(full)
            if full.stat().st_size == old.size and same_file:
                manifest.add(Artifact(rel, kind, old.size, old.sha256, source(rel)))
                continue
        fresh.append(rel)
    if fresh:
        total = sum((out / p).stat().st_size for p in fresh if not (out / p).is_symlink())
        with ui.hashing(f"hashing {len(fresh)} new files under {prefix}", total) as on_bytes:
            for art in index_paths(out, fresh, kind, source, on_bytes=on_bytes):
                manifest.add(art)
    # links whose target was reused need the target's entry: index them too if missing
    for rel in paths:
        if rel not in manifest.artifacts:
            for art in index_paths(out, [rel], kind, source):
                manifest.add(art)


@dataclass
class BuildContext:
    """What every part's builder works with: the bundle directory, what it must hold, the manifest being
    rewritten, the files found intact, the user interface, and the prerequisites found."""

    out: Path
    spec: BundleSpec
    opts: BuildOptions
    manifest: Manifest
    intact: dict[str, Artifact]
    ui: BuildUI
    hub: Path | None
    pre: Prerequisites
    stamps: dict[str, Stamp] = field(default_factory=dict)  # of the intact files, when they were hashed

    def __post_init__(self) -> None:
        if not self.stamps:
            self.stamps = {p: file_stamp(self.out / p) for p, a in self.intact.items() if not a.is_link}

    def reindex(self, prefix: str, kind: str, source: Callable[[str], str]) -> None:
        reindex(self.out, self.manifest, prefix, kind, source, self.intact, self.ui, self.stamps)


def no_space_error(out: Path, exc: OSError, needed: int | None = None) -> UsageError:
    """Exit 2 (the environment): which file could not be written, how much is free, how much is missing."""
    where = exc.filename or out
    need = f"; this part still needs {human_bytes(needed)}" if needed else ""
    return UsageError(
        f"no space left on device writing {where}: {human_bytes(free_bytes(out))} free on the file system of "
        f"{out}{need}; {no_space_hint(out)}"
    )
