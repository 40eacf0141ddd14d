"""``bundle build``: make a bundle directory hold what the inventory needs, incrementally.

Order of work:

1. load the inventory and plan it; refuse (exit 1, every problem listed) before touching anything;
2. check every part's prerequisites (``bundle.prereqs``: tools, mirrors, package index, the Hub or the
   ``--models-from`` cache, free space for the whole bundle); refuse (exit 2, every problem listed)
   before anything is written or downloaded;
3. check what the directory already holds against its manifest (parallel sha256): files with the
   right hash are kept and not fetched again, damaged ones and leftover ``*.partial`` files removed;
4. per part, the small ones first (collections, os, wheels, then models; ``--only`` picks some): fetch
   what is missing, then re-index that part's directory and rewrite ``manifest.json`` + ``SHA256SUMS``
   atomically, so an interrupted build (even ``kill -9``) loses at most the part in progress and
   resumes from there. Each part's builder takes one ``BuildContext``.

With ``--since OLD/manifest.json`` the directory becomes a delta against OLD (``delta_build``): seeded
from OLD's files before step 3, thinned to what OLD lacks after step 4.

Every file reaches its final name by a rename from a temporary name (``*.partial``).
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from airgap_llm.bundle import prereqs
from airgap_llm.bundle.context import BuildContext, BuildOptions, BuildUI, PartReport, no_space_error
from airgap_llm.bundle.delta import DeltaInfo
from airgap_llm.bundle.delta_build import Base, check_delta_dir, mark_as_delta, read_base, seed_from_base, thin_to_delta
from airgap_llm.bundle.hashing import hash_files
from airgap_llm.bundle.layout import PARTIAL_SUFFIX, scan_tree
from airgap_llm.bundle.manifest import Artifact, Manifest, diff_tree, load_manifest, resolve_link, save_manifest
from airgap_llm.bundle.models import locate_hub
from airgap_llm.bundle.parts import PART_BUILDERS
from airgap_llm.bundle.prereqs import Prerequisites
from airgap_llm.bundle.spec import PARTS, BundleSpec, CollectionSpec, bundle_spec, parse_collections
from airgap_llm.errors import InputError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class BuildReport:
    out: Path
    spec: BundleSpec
    manifest: Manifest
    parts: dict[str, PartReport] = field(default_factory=dict)
    kept: int = 0  # files already present with the right hash
    removed: list[str] = field(default_factory=list)  # damaged or leftover files removed
    seconds: float = 0.0
    delta: DeltaInfo | None = None  # --since: what the delta carries against the full bundle
    notes: list[str] = field(default_factory=list)


def load_collections(path: Path) -> list[CollectionSpec]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file (the collections the playbooks need)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from None
    return parse_collections(data, str(path))


def plan_bundle(opts: BuildOptions) -> BundleSpec:
    """Inventory -> what the bundle must hold; raises before anything is downloaded."""
    from airgap_llm.gpumap import plan_inventory
    from airgap_llm.inventory import load_inventory

    unknown = sorted(set(opts.only) - set(PARTS))
    if unknown:
        raise UsageError(f"--only {', '.join(unknown)}: not a part; choose from {', '.join(PARTS)}")
    inventory = load_inventory(opts.inventory)
    plans = plan_inventory(inventory)
    collections = load_collections(opts.requirements_yml or REPO_ROOT / "requirements.yml")
    return bundle_spec(plans, collections, inventory.hosts)


def remove_partials(out: Path) -> list[str]:
    """Remove what an interrupted build left under temporary names (``*.partial`` files and dirs)."""
    removed = []
    for path in sorted(out.rglob(f"*{PARTIAL_SUFFIX}"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(str(path.relative_to(out)))
    return removed


def check_existing(out: Path, ui: BuildUI) -> tuple[Manifest | None, dict[str, Artifact], list[str]]:
    """The old manifest, the artifacts still intact (by path), and what was removed as damaged."""
    removed = remove_partials(out)
    if not (out / "manifest.json").is_file():
        return None, {}, removed
    try:
        old = load_manifest(out)
    except InputError as exc:
        ui.info(f"ignoring the damaged manifest ({exc}); every file will be hashed again")
        return None, {}, removed
    diff = diff_tree(old, scan_tree(out))
    items = [(a.path, out / a.path, a.size) for a in diff.to_hash]
    with ui.hashing(f"checking {len(items)} files already in the bundle", sum(s for *_, s in items)) as on_bytes:
        result = hash_files(items, on_bytes=on_bytes)
    intact: dict[str, Artifact] = {}
    for art in diff.to_hash:
        if result.digests.get(art.path) == art.sha256:
            intact[art.path] = art
        else:
            (out / art.path).unlink(missing_ok=True)
            removed.append(art.path)
    failed = {f.path for f in diff.failures}
    for failure in diff.failures:  # wrong size, or a regular file where a link belongs: fetch again
        path = out / failure.path
        if failure.problem.value in ("size-mismatch", "bad-link") and (path.is_file() or path.is_symlink()):
            path.unlink()
            removed.append(failure.path)
    for art in old.artifacts.values():
        if art.link is not None and art.path not in failed:
            target = resolve_link(art.path, art.link)
            if target in intact:
                intact[art.path] = art
    return old, intact, removed


def build_bundle(opts: BuildOptions, ui: BuildUI | None = None) -> BuildReport:
    ui = ui or BuildUI()
    started = time.perf_counter()
    spec = plan_bundle(opts)  # refuses before anything is written or downloaded
    parts = [p for p in PARTS if not opts.only or p in opts.only]
    out = opts.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    base = read_base(opts.since) if opts.since is not None else None
    if base is not None:
        check_delta_dir(out, base)
    with ui.busy("checking every part's prerequisites"):
        pre, hub = check_prerequisites(spec, opts, parts)
    pre.raise_if_any()  # exit 2 (or 1), every problem listed, nothing downloaded
    try:
        out.mkdir(parents=True, exist_ok=True)
        notes = _seed_delta(out, base, ui) if base is not None else []
        old, intact, removed = check_existing(out, ui)
        manifest = Manifest(inventory=str(opts.inventory))
        if old is not None:
            for art in old.artifacts.values():
                manifest.add(art)
        report = BuildReport(
            out, spec, manifest, kept=sum(1 for a in intact.values() if not a.is_link), removed=removed, notes=notes
        )
        ctx = BuildContext(out, spec, opts, manifest, intact, ui, hub, pre)
        for part in parts:  # PARTS: the small parts first, the models last
            report.parts[part] = PartReport()
            PART_BUILDERS[part](ctx, report.parts[part])
            manifest.inventory = str(opts.inventory)
            save_manifest(out, manifest)
        if base is not None:
            report.delta = thin_to_delta(out, manifest, base)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise no_space_error(out, exc) from None
        raise
    report.seconds = time.perf_counter() - started
    return report


def _seed_delta(out: Path, base: Base, ui: BuildUI) -> list[str]:
    mark_as_delta(out, base)
    with ui.busy(f"reusing the files of {base.root} (hard links)"):
        seeded = seed_from_base(out, base)
    if seeded.other_file_system:
        return [
            f"{base.root} is on another file system than {out}: its files were not reused, everything was "
            "fetched (the delta still carries only what it lacks)"
        ]
    return [f"{seeded.linked} file(s) of {base.root} reused (hard links), not fetched"] if seeded.linked else []


def check_prerequisites(
    spec: BundleSpec, opts: BuildOptions, parts: Sequence[str]
) -> tuple[Prerequisites, Path | None]:
    """Every part's prerequisites, before anything is downloaded (see ``bundle.prereqs``); and the hub
    directory of ``--models-from``, when given."""
    pre = Prerequisites()
    probe = prereqs.url_problem
    hub = None
    if "collections" in parts:
        prereqs.check_collections(pre, spec.collections)
    if "os" in parts:
        prereqs.check_os(pre, spec.os_sets, opts.os_mirrors, opts.os_keyrings, probe)
    if "wheels" in parts:
        prereqs.check_wheels(pre, spec.wheel_sets, opts.pip_args, lambda d: _dir_bytes(opts.out / d), probe)
    if "models" in parts:
        try:
            hub = locate_hub(opts.models_from) if opts.models_from is not None else None
        except (InputError, UsageError) as exc:
            pre.add("models", str(exc), environment=isinstance(exc, UsageError))
        else:
            prereqs.check_models(pre, spec, hub, opts.hub_endpoint, opts.out)
    prereqs.check_space(pre, opts.out)
    return pre, hub


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*") if p.is_file()) if path.is_dir() else 0
