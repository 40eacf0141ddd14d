"""The bundle manifest: what a bundle holds, and how a directory tree is compared with it.

Pure logic, no file-system access except ``load_manifest`` / ``save_manifest``.

``manifest.json``::

    {"format": 1, "created": "2026-11-23T10:00:00+00:00", "inventory": "inventories/local-cpu",
     "artifacts": [{"path": "wheels/cp311-manylinux_2_36_x86_64/rich-14.2.0-py3-none-any.whl",
                    "kind": "wheel", "size": 243373, "sha256": "...", "source": "pip download ..."},
                   {"path": "models/hub/models--org--name/snapshots/<commit>/config.json",
                    "kind": "model", "size": 612, "sha256": "...", "source": "...",
                    "link": "../../blobs/<hash>"}]}

Symlinks (the Hugging Face cache's ``snapshots/<commit>/<file> -> ../../blobs/<hash>``) are
artifacts with a ``link`` key holding the link text exactly as written; their ``size`` and
``sha256`` are those of the file the link points to, so ``sha256sum -c SHA256SUMS`` (which follows
links) checks them too. A link must be relative, stay inside the bundle and point at a regular file
that the manifest lists with the same hash. ``verify`` checks the link text instead of re-reading the
content (the target's own entry is hashed once), and reports a link that is missing, not a link,
retargeted or dangling.

``manifest.json``, ``SHA256SUMS`` and ``manifest.json.sig`` (the signature, when signed) are not
listed; every other file in the bundle must be (anything else is reported as extra). Directories are
not listed.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from airgap_llm.errors import InputError, UsageError

FORMAT = 1
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
# ``bundle sign`` writes the ssh-keygen signature of manifest.json beside it; the manifest covers every
# other file by sha256, so the signature covers the bundle. It is not listed in the manifest.
SIGNATURE_NAME = "manifest.json.sig"
# Every file is written under a temporary name ending so, then renamed: a build killed midway leaves
# only such names behind, and the next build removes them before anything else.
PARTIAL_SUFFIX = ".partial"
BUNDLE_OWN_FILES = frozenset({MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME})
KINDS = ("wheel", "model", "os-package", "collection", "tool")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BAD_CHARS = ("\\", "\n", "\r", "\0")


def check_path(path: str, what: str = "path") -> str:
    """Return ``path`` if it is a safe bundle-relative POSIX path, else raise ``InputError``.

    Safe: not empty, not absolute, no ``.``/``..``/empty parts, no backslash or line break (which
    ``sha256sum`` would escape), not one of the bundle's own files.
    """
    if not isinstance(path, str) or not path:
        raise InputError(f"{what} is empty")
    for char in _BAD_CHARS:
        if char in path:
            raise InputError(f"{what} {path!r} contains a forbidden character {char!r}")
    if path.startswith("/"):
        raise InputError(f"{what} {path!r} is absolute; bundle paths are relative to the bundle root")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{what} {path!r} has an empty, '.' or '..' part")
    if path in BUNDLE_OWN_FILES:
        raise InputError(f"{what} {path!r} is reserved for the bundle's own index")
    return path


def resolve_link(path: str, link: str) -> str:
    """The bundle-relative path a relative symlink at ``path`` with text ``link`` points to.

    Raises ``InputError`` when the link is absolute or leaves the bundle.
    """
    if not link or link.startswith("/"):
        raise InputError(f"link {path!r} -> {link!r} must be relative to its directory")
    target = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
    if target == ".." or target.startswith("../") or target == ".":
        raise InputError(f"link {path!r} -> {link!r} points outside the bundle")
    return target


@dataclass(frozen=True)
class Artifact:
    """One file (or symlink) of the bundle."""

    path: str
    kind: str
    size: int
    sha256: str
    source: str
    link: str | None = None

    def __post_init__(self) -> None:
        check_path(self.path)
        if self.kind not in KINDS:
            raise InputError(f"artifact {self.path!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InputError(f"artifact {self.path!r}: size {self.size!r} is not a non-negative integer")
        if not isinstance(self.sha256, str) or not _SHA256_RE.match(self.sha256):
            raise InputError(f"artifact {self.path!r}: sha256 {self.sha256!r} is not 64 lower-case hex digits")
        if self.link is not None:
            resolve_link(self.path, self.link)

    @property
    def is_link(self) -> bool:
        return self.link is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "source": self.source,
        }
        if self.link is not None:
            out["link"] = self.link
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Artifact:
        if not isinstance(data, dict):
            raise InputError(f"{where}: an artifact must be an object, got {type(data).__name__}")
        required = ("path", "kind", "size", "sha256", "source")
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"{where}: artifact is missing {', '.join(missing)}")
        unknown = sorted(set(data) - {*required, "link"})
        if unknown:
            raise InputError(f"{where}: artifact has unknown keys {', '.join(unknown)}")
        try:
            return cls(
                path=data["path"],
                kind=data["kind"],
                size=data["size"],
                sha256=data["sha256"],
                source=str(data["source"]),
                link=data.get("link"),
            )
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class Manifest:
    """The whole manifest; ``artifacts`` is kept keyed by path."""

    inventory: str
    created: str = field(default_factory=utc_now)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    format: int = FORMAT

    def add(self, artifact: Artifact) -> None:
        """Add or replace the entry for ``artifact.path``."""
        self.artifacts[artifact.path] = artifact

    def remove_under(self, prefix: str) -> list[str]:
        """Drop every entry at or below ``prefix`` (a directory path); return the paths dropped."""
        prefix = prefix.rstrip("/")
        gone = [p for p in self.artifacts if p == prefix or p.startswith(prefix + "/")]
        for p in gone:
            del self.artifacts[p]
        return gone

    def sorted_artifacts(self) -> list[Artifact]:
        return [self.artifacts[p] for p in sorted(self.artifacts)]

    def files(self) -> list[Artifact]:
        """Regular files only (links excluded)."""
        return [a for a in self.sorted_artifacts() if not a.is_link]

    def total_size(self) -> int:
        """Bytes on disk: regular files only, links count nothing."""
        return sum(a.size for a in self.artifacts.values() if not a.is_link)

    def counts_by_kind(self) -> dict[str, int]:
        counts = {k: 0 for k in KINDS}
        for a in self.artifacts.values():
            if not a.is_link:
                counts[a.kind] += 1
        return counts

    def link_problems(self) -> list[str]:
        """Links whose target is not a listed regular file with the link's hash (static check)."""
        problems = []
        for a in self.sorted_artifacts():
            if a.link is None:
                continue
            target_path = resolve_link(a.path, a.link)
            target = self.artifacts.get(target_path)
            if target is None or target.is_link:
                problems.append(f"link {a.path} -> {a.link}: the target {target_path} is not a listed file")
            elif target.sha256 != a.sha256 or target.size != a.size:
                problems.append(f"link {a.path} -> {a.link}: size/sha256 differ from the target's entry")
        return problems

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "created": self.created,
            "inventory": self.inventory,
            "artifacts": [a.to_json() for a in self.sorted_artifacts()],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: Any, where: str = MANIFEST_NAME) -> Manifest:
        if not isinstance(data, dict):
            raise InputError(f"{where}: the manifest must be a JSON object")
        if data.get("format") != FORMAT:
            raise InputError(f"{where}: unsupported format {data.get('format')!r} (this version reads {FORMAT})")
        artifacts = data.get("artifacts")
        if not isinstance(artifacts, list):
            raise InputError(f"{where}: 'artifacts' must be a list")
        manifest = cls(
            inventory=str(data.get("inventory", "")),
            created=str(data.get("created", "")),
        )
        for i, raw in enumerate(artifacts):
            art = Artifact.from_json(raw, f"{where}: artifacts[{i}]")
            if art.path in manifest.artifacts:
                raise InputError(f"{where}: artifacts[{i}]: path {art.path!r} is listed twice")
            manifest.add(art)
        problems = manifest.link_problems()
        if problems:
            raise InputError(f"{where}: {problems[0]}")
        return manifest


def render_sha256sums(manifest: Manifest) -> str:
    """SHA256SUMS in ``sha256sum -c`` format: ``<hash>  <path>`` (two spaces: text mode), sorted."""
    return "".join(f"{a.sha256}  {a.path}\n" for a in manifest.sorted_artifacts())


def parse_sha256sums(text: str) -> dict[str, str]:
    """Parse ``sha256sum`` output back into ``{path: sha256}`` (used by tests and checks)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        m = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
        if not m:
            raise InputError(f"{SUMS_NAME} line {n}: not '<sha256>  <path>': {line!r}")
        out[m.group(2)] = m.group(1)
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_manifest(root: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` and ``SHA256SUMS`` atomically (each by temp file + rename)."""
    atomic_write_text(root / MANIFEST_NAME, manifest.dumps())
    atomic_write_text(root / SUMS_NAME, render_sha256sums(manifest))


def load_manifest(root: Path) -> Manifest:
    """Read the manifest of the bundle at ``root`` (the one reader: build, verify, install, preflight).

    ``UsageError`` (exit 2) when ``root`` is not a bundle directory; ``InputError`` (exit 1) naming the
    file and what is wrong when the manifest is unreadable or malformed.
    """
    if not root.is_dir():
        raise UsageError(f"bundle {root}: no such directory")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise UsageError(f"bundle {root}: no {MANIFEST_NAME} (not a bundle? build one with 'airgap-llm bundle build')")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise InputError(
            f"bundle {root}: {MANIFEST_NAME} is unreadable: {exc} (damaged or cut short in transit? copy the "
            "bundle again and check it with 'airgap-llm bundle verify')"
        ) from None
    if not isinstance(data, dict):
        why = f"a JSON {type(data).__name__}, not an object"
    elif data.get("format") != FORMAT:
        why = f"format {data.get('format')!r}, this airgap-llm reads format {FORMAT}"
    elif not isinstance(data.get("artifacts"), list):
        why = "no artifacts list"
    else:
        return Manifest.from_json(data, str(path))
    raise InputError(f"bundle {root}: {path} is not a bundle manifest ({why}); rebuild the bundle")


# --- comparing a tree with the manifest ------------------------------------------------------


@dataclass(frozen=True)
class TreeEntry:
    """What a directory scan saw at one path: a regular file (size) or a symlink (link text)."""

    size: int = 0
    link: str | None = None
    link_ok: bool = True  # for links: the target exists and is a regular file


class Problem(StrEnum):
    MISSING = "missing"
    EXTRA = "extra"
    SIZE = "size-mismatch"
    CORRUPTED = "corrupted"
    LINK = "bad-link"
    UNSIGNED = "unsigned"
    SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class Failure:
    path: str
    problem: Problem
    detail: str

    def __str__(self) -> str:
        return f"{self.problem.value}: {self.path} ({self.detail})"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem.value, "detail": self.detail}


@dataclass
class TreeDiff:
    failures: list[Failure]
    to_hash: list[Artifact]  # regular files present with the right size: their content must be hashed


def diff_tree(manifest: Manifest, tree: Mapping[str, TreeEntry]) -> TreeDiff:
    """Compare a scan of the bundle with the manifest, without reading contents.

    Reports missing, extra, size-mismatched entries and bad links; returns the regular files that
    still need hashing.
    """
    failures: list[Failure] = []
    to_hash: list[Artifact] = []
    for art in manifest.sorted_artifacts():
        seen = tree.get(art.path)
        if seen is None:
            what = "symlink" if art.is_link else "file"
            failures.append(Failure(art.path, Problem.MISSING, f"listed {what} is not in the bundle"))
        elif art.is_link:
            if seen.link is None:
                detail = f"expected a symlink to {art.link}, found a regular file"
                failures.append(Failure(art.path, Problem.LINK, detail))
            elif seen.link != art.link:
                failures.append(Failure(art.path, Problem.LINK, f"points to {seen.link}, expected {art.link}"))
            elif not seen.link_ok:
                failures.append(Failure(art.path, Problem.LINK, f"dangling: {art.link} does not exist"))
        elif seen.link is not None:
            failures.append(Failure(art.path, Problem.LINK, f"expected a regular file, found a symlink to {seen.link}"))
        elif seen.size != art.size:
            failures.append(Failure(art.path, Problem.SIZE, f"{seen.size} bytes, expected {art.size}"))
        else:
            to_hash.append(art)
    for path in sorted(set(tree) - set(manifest.artifacts) - BUNDLE_OWN_FILES):
        entry = tree[path]
        what = f"symlink to {entry.link}" if entry.link is not None else f"{entry.size} bytes"
        failures.append(Failure(path, Problem.EXTRA, f"not listed in the manifest ({what})"))
    return TreeDiff(failures, to_hash)


def hash_failures(expected: Iterable[Artifact], actual: Mapping[str, str]) -> list[Failure]:
    """Compare computed hashes with the manifest's."""
    out = []
    for art in expected:
        got = actual.get(art.path)
        if got is not None and got != art.sha256:
            out.append(Failure(art.path, Problem.CORRUPTED, f"sha256 {got}, expected {art.sha256}"))
    return out
