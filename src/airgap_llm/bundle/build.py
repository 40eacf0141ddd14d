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

Every file reaches its final name by a rename from a temporary name (``*.partial``).
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from airgap_llm.bundle import prereqs
from airgap_llm.bundle.collections import build_collection, find_installed
from airgap_llm.bundle.hashing import OnBytes, hash_files
from airgap_llm.bundle.index import index_paths, list_under
from airgap_llm.bundle.layout import (
    COLLECTIONS_DIR,
    MODELS_HUB_DIR,
    PARTIAL_SUFFIX,
    WHEELS_DIR,
    free_bytes,
    list_dir_bytes,
    no_space_hint,
    scan_tree,
)
from airgap_llm.bundle.manifest import Artifact, Manifest, diff_tree, load_manifest, resolve_link, save_manifest
from airgap_llm.bundle.models import (
    ModelResult,
    download_model,
    import_model,
    locate_hub,
    prune_models,
)
from airgap_llm.bundle.prereqs import Prerequisites
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.spec import PARTS, BundleSpec, CollectionSpec, bundle_spec, parse_collections
from airgap_llm.bundle.wheels import build_wheel_set
from airgap_llm.errors import InputError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[3]


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


@dataclass
class PartReport:
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BuildReport:
    out: Path
    spec: BundleSpec
    manifest: Manifest
    parts: dict[str, PartReport] = field(default_factory=dict)
    kept: int = 0  # files already present with the right hash
    removed: list[str] = field(default_factory=list)  # damaged or leftover files removed
    seconds: float = 0.0


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


def reindex(
    out: Path,
    manifest: Manifest,
    prefix: str,
    kind: str,
    source: Callable[[str], str],
    intact: dict[str, Artifact],
    ui: BuildUI,
) -> None:
    """Replace the manifest's entries under ``prefix`` with what the directory now holds."""
    manifest.remove_under(prefix)
    paths = list_under(out, prefix)
    fresh = []
    for rel in paths:
        old = intact.get(rel)
        full = out / rel
        if old is not None and old.kind == kind and not old.is_link and not full.is_symlink():
            if full.stat().st_size == old.size:
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


def build_bundle(opts: BuildOptions, ui: BuildUI | None = None) -> BuildReport:
    ui = ui or BuildUI()
    started = time.perf_counter()
    spec = plan_bundle(opts)  # refuses before anything is written or downloaded
    parts = [p for p in PARTS if not opts.only or p in opts.only]
    out = opts.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    with ui.busy("checking every part's prerequisites"):
        pre, hub = check_prerequisites(spec, opts, parts)
    pre.raise_if_any()  # exit 2 (or 1), every problem listed, nothing downloaded
    try:
        out.mkdir(parents=True, exist_ok=True)
        old, intact, removed = check_existing(out, ui)
        manifest = Manifest(inventory=str(opts.inventory))
        if old is not None:
            for art in old.artifacts.values():
                manifest.add(art)
        report = BuildReport(
            out, spec, manifest, kept=sum(1 for a in intact.values() if not a.is_link), removed=removed
        )
        ctx = BuildContext(out, spec, opts, manifest, intact, ui, hub, pre)
        for part in parts:  # PARTS: the small parts first, the models last
            report.parts[part] = PartReport()
            PART_BUILDERS[part](ctx, report.parts[part])
            manifest.inventory = str(opts.inventory)
            save_manifest(out, manifest)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise no_space_error(out, exc) from None
        raise
    report.seconds = time.perf_counter() - started
    return report


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

    def reindex(self, prefix: str, kind: str, source: Callable[[str], str]) -> None:
        reindex(self.out, self.manifest, prefix, kind, source, self.intact, self.ui)


def no_space_error(out: Path, exc: OSError, needed: int | None = None) -> UsageError:
    """Exit 2 (the environment): which file could not be written, how much is free, how much is missing."""
    where = exc.filename or out
    need = f"; this part still needs {human_bytes(needed)}" if needed else ""
    return UsageError(
        f"no space left on device writing {where}: {human_bytes(free_bytes(out))} free on the file system of "
        f"{out}{need}; {no_space_hint(out)}"
    )


def _collections(ctx: BuildContext, part: PartReport) -> None:
    sources: dict[str, str] = {}
    wanted = set()
    for coll in ctx.spec.collections:
        src = find_installed(coll)
        sources[coll.path] = f"installed collection {coll.fqcn} {coll.version}"
        wanted.add(coll.path)
        if coll.path in ctx.intact:
            part.skipped.append(coll.path)
            continue
        build_collection(ctx.out, coll, src)
        part.fetched.append(coll.path)
    for rel in list_under(ctx.out, COLLECTIONS_DIR):
        if rel not in wanted:
            (ctx.out / rel).unlink()
            part.notes.append(f"removed {rel} (not in requirements.yml)")
    ctx.reindex(COLLECTIONS_DIR, "collection", lambda p: sources.get(p, "collection"))


def _models(ctx: BuildContext, part: PartReport) -> None:
    out, hub = ctx.out, ctx.hub
    part.notes += ctx.pre.notes
    results: list[ModelResult] = []
    saved = 0
    for model in ctx.spec.models:
        files = ctx.pre.models.get((model.repo_id, model.revision))
        chosen = sorted(files.chosen) if files is not None else None
        saved += files.saved_bytes if files is not None else 0
        with ctx.ui.busy(f"model {model.repo_id}@{model.revision}"):
            try:
                if hub is not None:
                    res = import_model(model, hub, out, chosen)
                else:
                    res = download_model(model, out, ctx.opts.hub_endpoint, chosen)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                wanted = sum(f.chosen_bytes for f in ctx.pre.models.values())
                left = max(wanted - sum(list_dir_bytes(out).values()), 0) if wanted else None
                raise no_space_error(out, exc, left) from None
        results.append(res)
        label = f"{model.repo_id}@{model.revision} ({res.commit[:12]})"
        (part.fetched if res.copied else part.skipped).append(
            f"{label}: {res.copied} blobs fetched, {res.skipped} kept"
        )
    if saved:
        part.notes.append(
            f"the file filter left out {human_bytes(saved)} that vLLM does not load (original/ checkpoints, "
            "duplicate weight formats, ...); a service's allow_patterns / ignore_patterns change what is taken"
        )
    for gone in prune_models(out, [(r.spec, r.commit) for r in results]):
        part.notes.append(f"removed {gone} (no longer in the inventory)")
    sources = {r.spec.dir: r.source for r in results}

    def source(rel: str) -> str:
        return next((s for d, s in sources.items() if rel.startswith(d + "/")), "model")

    ctx.reindex(MODELS_HUB_DIR, "model", source)


def _wheels(ctx: BuildContext, part: PartReport) -> None:
    out, manifest = ctx.out, ctx.manifest
    wanted_dirs = {w.dir for w in ctx.spec.wheel_sets}
    for ws in ctx.spec.wheel_sets:
        with ctx.ui.busy(f"pip download {' '.join(ws.requirements)} for {ws.dir}"):
            res = build_wheel_set(out, ws, set(ctx.intact), ctx.opts.pip_args, log=ctx.ui.info)
        if res.skipped_pip:
            part.skipped.append(f"{ws.dir}: {len(res.wheels)} wheels present with the right hash (pip not run)")
        else:
            part.fetched += [f"{ws.dir}/{n}" for n in res.fetched]
            kept = len(res.wheels) - len(res.fetched)
            part.skipped.append(f"{ws.dir}: {kept} wheels already present")
        if ws.excluded:
            note = f"{ws.dir}: left out {', '.join(ws.excluded)} (they break imports beside the CPU torch)"
            if res.excluded:
                note += f": {', '.join(res.excluded)}"
            part.notes.append(note)
        if res.missing_companions:
            part.notes.append(
                f"{ws.dir}: {', '.join(res.missing_companions)} not on the package index: FlashInfer would fetch its "
                "prebuilt kernels from the internet at first use; on the hosts, choose attention and sampling "
                "backends that need no download (or pass an index that has them with --pip-arg)"
            )
        reqs = " ".join(ws.requirements)

        def source(rel: str, reqs: str = reqs, tag: str = ws.dir.split("/", 1)[1]) -> str:
            if rel.endswith(".txt"):
                return f"generated: pins of the wheels downloaded for {reqs}"
            return f"pip download {reqs} ({tag})"

        ctx.reindex(ws.dir, "wheel", source)
    wheels_root = out / WHEELS_DIR
    if wheels_root.is_dir():
        for d in sorted(wheels_root.iterdir()):
            if f"{WHEELS_DIR}/{d.name}" not in wanted_dirs:
                shutil.rmtree(d) if d.is_dir() else d.unlink()
                manifest.remove_under(f"{WHEELS_DIR}/{d.name}")
                part.notes.append(f"removed {WHEELS_DIR}/{d.name} (no host needs it)")


def _os(ctx: BuildContext, part: PartReport) -> None:
    from airgap_llm.bundle.os_packages import build_os_repo

    for os_set in ctx.spec.os_sets:
        with ctx.ui.busy(f"OS packages for {os_set.target.id}"):
            res = build_os_repo(
                ctx.out, os_set, set(ctx.intact), ctx.ui.info, ctx.opts.os_mirrors, ctx.opts.os_keyrings
            )
        part.fetched += res.fetched
        part.skipped += [f"{os_set.dir}: {n} packages already present" for n in [len(res.kept)] if n]
        part.notes += res.notes
        ctx.reindex(os_set.dir, "os-package", _constant(res.source))


def _constant(text: str) -> Callable[[str], str]:
    return lambda _path: text


PART_BUILDERS: dict[str, Callable[[BuildContext, PartReport], None]] = {
    "collections": _collections,
    "os": _os,
    "wheels": _wheels,
    "models": _models,
}
