"""``bundle build --since OLD/manifest.json -o DELTA``: the I/O around an ordinary build that makes a delta.

1. before the build: ``DELTA`` must be new, empty, or an earlier delta (``delta.json``): a full bundle
   is never thinned out by mistake. ``delta.json`` is written at once (base named, nothing carried
   yet), so an interrupted delta build is recognised and resumed;
2. seeding: the files DELTA's manifest lists (OLD's, on the first run) that DELTA lacks are hard-linked
   from OLD when OLD's files are beside its manifest on the same file system; the build then keeps them
   as intact (it hashes them, as it hashes any bundle it completes) and fetches only what is new. With
   OLD's manifest alone, or OLD on another file system, everything is fetched and the thinning below
   still leaves out what OLD holds;
3. the ordinary incremental build (``build.build_bundle``) runs in DELTA;
4. thinning: every file whose content OLD holds, and every symlink, is removed from DELTA; NEW's
   manifest.json and SHA256SUMS stay, and ``delta.json`` names the base, NEW's manifest and what is
   carried (``delta.describe_delta``).

Hard links are safe here: no writer of the build changes a file in place (each renames a new file over
the old name), so OLD is never changed through DELTA.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from airgap_llm.bundle.delta import DELTA_NAME, DeltaInfo, contents, describe_delta, pending_delta
from airgap_llm.bundle.layout import link_atomic, scan_tree
from airgap_llm.bundle.manifest import (
    BUNDLE_OWN_FILES,
    MANIFEST_NAME,
    SUMS_NAME,
    Manifest,
    atomic_write_text,
    load_manifest,
    render_sha256sums,
    resolve_link,
)
from airgap_llm.errors import AirgapLlmError, InputError, UsageError


@dataclass
class Base:
    """The bundle a delta is built against: its manifest (and the bytes hashed to name it)."""

    root: Path  # the directory of its manifest; its files may or may not be there
    manifest: Manifest
    text: bytes


@dataclass
class SeedReport:
    linked: int = 0
    links: int = 0
    other_file_system: bool = False


def read_base(since: Path) -> Base:
    """``--since OLD/manifest.json`` (or ``OLD``): ``UsageError`` when missing, ``InputError`` when malformed."""
    path = since / MANIFEST_NAME if since.is_dir() else since
    if not path.is_file():
        raise UsageError(f"--since {since}: no such file (the manifest.json of the bundle on the far side)")
    text = path.read_bytes()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--since {path}: unreadable ({exc}); copy the old bundle's manifest.json again") from None
    try:
        manifest = Manifest.from_json(data, str(path))
    except InputError as exc:
        raise InputError(f"--since {path}: not a bundle manifest: {exc}") from None
    return Base(path.parent, manifest, text)


def check_delta_dir(out: Path, base: Base) -> None:
    """DELTA must be new, empty, or an earlier delta; never OLD or another full bundle."""
    if out.exists() and out.resolve() == base.root.resolve():
        raise UsageError(f"-o {out}: is the bundle --since names; a delta goes into a directory of its own")
    if not out.is_dir() or not any(out.iterdir()) or (out / DELTA_NAME).is_file():
        return
    raise UsageError(
        f"-o {out}: holds files and is not a delta (no {DELTA_NAME}); a delta build removes what the old bundle "
        "holds, so it goes into a new directory (or an earlier delta's)"
    )


def mark_as_delta(out: Path, base: Base) -> None:
    """``delta.json`` before anything else, so that an interrupted delta build is taken up again."""
    if not (out / DELTA_NAME).is_file():
        atomic_write_text(out / DELTA_NAME, pending_delta(base.manifest, base.text).dumps())


def seed_from_base(out: Path, base: Base) -> SeedReport:
    """Give DELTA the files of its manifest that it lacks and OLD has (see the module's docstring)."""
    report = SeedReport()
    target: Manifest | None = None
    if (out / MANIFEST_NAME).is_file():
        try:
            target = load_manifest(out)
        except AirgapLlmError:
            target = None
    if target is None:
        target = base.manifest
        atomic_write_text(out / MANIFEST_NAME, base.text.decode("utf-8"))
        atomic_write_text(out / SUMS_NAME, render_sha256sums(base.manifest))
    old_tree = scan_tree(base.root)
    available = {
        content: path
        for content, path in contents(base.manifest).items()
        if (seen := old_tree.get(path)) is not None and seen.link is None and seen.size == content[1]
    }
    tree = scan_tree(out)
    for art in target.files():
        src = available.get((art.sha256, art.size))
        if art.path in tree or src is None:
            continue
        if not link_atomic(base.root / src, out / art.path):
            report.other_file_system = True
            return report
        report.linked += 1
    for art in target.sorted_artifacts():  # the snapshot links to what is now there
        if art.link is None or art.path in tree or not (out / resolve_link(art.path, art.link)).is_file():
            continue
        link = out / art.path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(art.link)
        report.links += 1
    return report


def thin_to_delta(out: Path, new: Manifest, base: Base) -> DeltaInfo:
    """Remove from the full bundle built in ``out`` what OLD holds; write ``delta.json``."""
    info = describe_delta(new, (out / MANIFEST_NAME).read_bytes(), base.manifest, base.text)
    keep = set(info.carried) | BUNDLE_OWN_FILES | {DELTA_NAME}
    for path in scan_tree(out):
        if path not in keep:
            (out / path).unlink()
    for dirpath, _dirs, _files in sorted(os.walk(out), key=lambda d: len(d[0]), reverse=True):
        if Path(dirpath) != out and not os.listdir(dirpath):
            os.rmdir(dirpath)
    atomic_write_text(out / DELTA_NAME, info.dumps())
    return info
