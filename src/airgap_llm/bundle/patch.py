"""``bundle patch OLD DELTA -o NEW``: the full bundle on the far side, from the bundle there and a delta.

Order of work:

1. read the delta (``delta.json``, NEW's manifest; they must agree) and OLD's manifest; work out where
   every file of NEW comes from (``delta.plan_patch``); refuse (exit 1) naming every file that neither
   the delta carries nor OLD holds, before anything is written;
2. an existing NEW: when it holds this delta's manifest, it is only verified again (a rerun after a
   finished patch is a no-op that checks); any other NEW is refused (exit 2), never overwritten;
3. build NEW in ``NEW.partial/`` beside it: each file hard-linked from OLD or the delta when on the same
   file system, else copied, under a ``*.partial`` name then renamed; the snapshot symlinks from the
   manifest; then NEW's manifest.json, SHA256SUMS and signature, byte for byte from the delta. A patch
   interrupted here resumes on the next run (files already in ``NEW.partial/`` at the right size stay);
4. verify ``NEW.partial/`` with the code of ``bundle verify``; only a bundle that passes is renamed to
   NEW. On a failure the damaged files are removed from ``NEW.partial/`` (a rerun places them again)
   and the failures are named (exit 1).

Bundles are never written in place (every writer renames a new file over the old name), so files
shared by hard links between OLD and NEW stay as they are in both.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from airgap_llm.bundle.delta import DELTA_NAME, DeltaInfo, PatchPlan, manifest_digest, plan_patch
from airgap_llm.bundle.layout import PARTIAL_SUFFIX, link_or_copy, scan_tree
from airgap_llm.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, SUMS_NAME, Manifest, load_manifest
from airgap_llm.bundle.verify import StartHashing, VerifyReport, verify_bundle
from airgap_llm.errors import InputError, UsageError

SHOWN = 20  # missing files named in a refusal; the rest are counted


@dataclass
class PatchReport:
    new: Path
    linked: int = 0  # files hard-linked (from OLD or the delta)
    copied: int = 0  # files copied (another file system)
    kept: int = 0  # files already in NEW.partial from an interrupted patch
    from_delta: int = 0
    from_old: int = 0
    links: int = 0
    linked_bytes: int = 0
    copied_bytes: int = 0
    already: bool = False  # NEW held this delta's bundle already: only verified
    verify: VerifyReport | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verify is not None and self.verify.ok


@dataclass
class Delta:
    root: Path
    info: DeltaInfo
    manifest: Manifest
    manifest_bytes: bytes


def read_delta(root: Path) -> Delta:
    """The delta at ``root``: ``UsageError`` when it is not one, ``InputError`` when it is inconsistent."""
    if not root.is_dir():
        raise UsageError(f"delta {root}: no such directory")
    path = root / DELTA_NAME
    if not path.is_file():
        raise UsageError(
            f"delta {root}: no {DELTA_NAME} (not a delta; build one with "
            "'airgap-llm bundle build ... --since OLD/manifest.json -o DELTA')"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise InputError(
            f"delta {root}: {path} is unreadable: {exc} (damaged in transit? copy the delta again)"
        ) from None
    info = DeltaInfo.from_json(data, str(path))
    if not info.finished:
        raise InputError(f"delta {root}: its build did not finish ({path}); run the same 'bundle build --since' again")
    manifest = load_manifest(root)
    text = (root / MANIFEST_NAME).read_bytes()
    if manifest_digest(text) != info.manifest_sha256:
        raise InputError(
            f"delta {root}: {root / MANIFEST_NAME} is not the manifest {path} names (sha256 "
            f"{manifest_digest(text)}, expected {info.manifest_sha256}): changed or mixed up with another delta"
        )
    return Delta(root, info, manifest, text)


def _old_manifest(old: Path) -> tuple[Manifest, str]:
    manifest = load_manifest(old)
    return manifest, manifest_digest((old / MANIFEST_NAME).read_bytes())


def refusal(plan: PatchPlan, old: Path, delta: Delta, old_digest: str) -> InputError:
    """Every file the patch cannot make, named (the first ``SHOWN``), and whether OLD is the delta's base."""
    lines = [f"{a.path} (sha256 {a.sha256}, {a.size} bytes): not in {old}" for a in plan.missing_in_old]
    lines += [f"{p}: carried by the delta per {DELTA_NAME}, but not in {delta.root}" for p in plan.missing_in_delta]
    info = delta.info
    built = f" (built from inventory {info.base_inventory}, {info.base_created})" if info.base_inventory else ""
    if old_digest == info.base_manifest_sha256:
        base = f"{old} is the delta's base (manifest sha256 {old_digest}), but files are gone or damaged"
    else:
        base = (
            f"{old} is not the bundle the delta was built against: its manifest.json has sha256 {old_digest}, "
            f"the delta's base {info.base_manifest_sha256}{built}"
        )
    more = f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    return InputError(
        f"cannot patch: {len(lines)} file(s) of the new bundle are in neither the delta nor OLD; {base}; "
        "nothing was written:\n  " + "\n  ".join(lines[:SHOWN]) + more
    )


def _place_link(dst: Path, text: str) -> None:
    if dst.is_symlink() and os.readlink(dst) == text:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + PARTIAL_SUFFIX)
    tmp.unlink(missing_ok=True)
    os.symlink(text, tmp)
    os.replace(tmp, dst)


def _copy_own_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + PARTIAL_SUFFIX)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def staging_dir(new: Path) -> Path:
    return new.with_name(new.name + PARTIAL_SUFFIX)


def _already_patched(new: Path, delta: Delta, start_hashing: StartHashing | None) -> PatchReport | None:
    if not new.exists() and not new.is_symlink():
        return None
    manifest = new / MANIFEST_NAME
    if new.is_dir() and manifest.is_file() and manifest.read_bytes() == delta.manifest_bytes:
        report = PatchReport(new, already=True)
        report.verify = verify_bundle(new, start_hashing=start_hashing)
        return report
    raise UsageError(
        f"-o {new}: exists and is not this delta's bundle; nothing was written (remove it or choose another "
        "directory: patch never writes over a bundle)"
    )


def patch_bundle(old: Path, delta_dir: Path, new: Path, start_hashing: StartHashing | None = None) -> PatchReport:
    """Make the full bundle ``new`` from the bundle ``old`` and the delta ``delta_dir``, then verify it."""
    started = time.perf_counter()
    delta = read_delta(delta_dir)
    if not old.is_dir():
        raise UsageError(f"OLD {old}: no such directory (the bundle the delta was built against)")
    old_manifest, old_digest = _old_manifest(old)
    done = _already_patched(new, delta, start_hashing)
    if done is not None:
        done.seconds = time.perf_counter() - started
        return done
    plan = plan_patch(delta.manifest, delta.info, scan_tree(delta_dir), old_manifest, scan_tree(old))
    if not plan.ok:
        raise refusal(plan, old, delta, old_digest)

    report = PatchReport(new)
    if old_digest != delta.info.base_manifest_sha256:
        report.notes.append(
            f"{old} is not the delta's base (manifest sha256 {old_digest}, the base "
            f"{delta.info.base_manifest_sha256}), but it holds every file the delta leaves out"
        )
    stage = staging_dir(new)
    stage.mkdir(parents=True, exist_ok=True)
    sizes = {a.path: a.size for a in delta.manifest.files()}
    for place in plan.files:
        src = (delta_dir if place.source == "delta" else old) / place.source_path
        dst = stage / place.path
        if place.source == "delta":
            report.from_delta += 1
        else:
            report.from_old += 1
        if dst.is_file() and not dst.is_symlink() and dst.stat().st_size == sizes[place.path]:
            report.kept += 1
            continue
        if link_or_copy(src, dst):
            report.linked += 1
            report.linked_bytes += sizes[place.path]
        else:
            report.copied += 1
            report.copied_bytes += sizes[place.path]
    for art in plan.links:
        assert art.link is not None
        _place_link(stage / art.path, art.link)
        report.links += 1
    for name in (SUMS_NAME, SIGNATURE_NAME, MANIFEST_NAME):  # the manifest last: it marks a complete tree
        if (delta_dir / name).is_file():
            _copy_own_file(delta_dir / name, stage / name)
        elif name == SIGNATURE_NAME:
            (stage / name).unlink(missing_ok=True)
    report.verify = verify_bundle(stage, start_hashing=start_hashing)
    if report.verify.ok:
        os.rename(stage, new)
        report.verify.root = new
    else:
        for failure in report.verify.failures:
            target = stage / failure.path
            if target.is_file() or target.is_symlink():
                target.unlink()
    report.seconds = time.perf_counter() - started
    return report
