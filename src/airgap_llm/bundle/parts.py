"""The builders of the bundle's parts, each taking one ``BuildContext``: collections, os, wheels and
models (``PART_BUILDERS``, in the order a build runs them: the small parts first, the models last)."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from airgap_llm.apps import (
    APPS,
    APPS_DIR,
    REQUIREMENTS_NAME,
    missing_for_target,
    refused,
    render_requirements,
    wheel_hashes,
)
from airgap_llm.bundle.collections import build_collection, find_installed
from airgap_llm.bundle.context import BuildContext, PartReport, no_space_error
from airgap_llm.bundle.index import list_under
from airgap_llm.bundle.layout import COLLECTIONS_DIR, CONSTRAINTS_NAME, MODELS_HUB_DIR, WHEELS_DIR, list_dir_bytes
from airgap_llm.bundle.manifest import atomic_write_text
from airgap_llm.bundle.models import ModelResult, download_model, import_model, prune_models, prune_snapshot
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.spec import AppSetSpec
from airgap_llm.bundle.wheels import build_wheel_set
from airgap_llm.errors import InputError


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
        if chosen is not None:  # a file an earlier build took and the filter now leaves out
            for gone in prune_snapshot(out, model, res.commit, set(chosen)):
                part.notes.append(f"removed {gone} (left out by the file filter)")
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
        part.notes.append(f"removed {gone} (no model of the inventory uses it)")
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
    for app_set in ctx.spec.app_sets:
        _app_set(ctx, part, app_set)
    apps_root = out / APPS_DIR
    wanted_apps = {a.dir for a in ctx.spec.app_sets}
    if apps_root.is_dir():
        for kind_dir in sorted(p for p in apps_root.iterdir() if p.is_dir()):
            for d in sorted(kind_dir.iterdir()):
                rel = f"{APPS_DIR}/{kind_dir.name}/{d.name}"
                if rel not in wanted_apps:
                    shutil.rmtree(d) if d.is_dir() else d.unlink()
                    manifest.remove_under(rel)
                    part.notes.append(f"removed {rel} (no host needs it)")
            if not any(kind_dir.iterdir()):
                kind_dir.rmdir()
    wheels_root = out / WHEELS_DIR
    if wheels_root.is_dir():
        for d in sorted(wheels_root.iterdir()):
            if f"{WHEELS_DIR}/{d.name}" not in wanted_dirs:
                shutil.rmtree(d) if d.is_dir() else d.unlink()
                manifest.remove_under(f"{WHEELS_DIR}/{d.name}")
                part.notes.append(f"removed {WHEELS_DIR}/{d.name} (no host needs it)")


def _app_set(ctx: BuildContext, part: PartReport, app_set: AppSetSpec) -> None:
    """One app's wheel set: pip download of its pins (resolved on their own), then ``requirements.txt``
    pinning every wheel with its sha256, which the host installs with ``--require-hashes``."""
    app = APPS[app_set.app]
    final = ctx.out / app_set.dir
    # The dependencies an earlier build found the hosts' Python needs (below) are asked for again, so that
    # a rebuild with nothing changed matches the set's constraints header and does not run pip.
    known = _recorded_requirements(final / CONSTRAINTS_NAME)
    if known and list(known[: len(app_set.requirements)]) == list(app_set.requirements):
        app_set = replace(app_set, requirements=tuple(known))
    for _ in range(5):
        with ctx.ui.busy(f"pip download {' '.join(app_set.requirements)} for {app_set.dir}"):
            res = build_wheel_set(ctx.out, app_set, set(ctx.intact), ctx.opts.pip_args, log=ctx.ui.info)
        more = missing_for_target(final, app_set.requirements, app_set.python_full)
        if not more:
            break
        part.notes.append(f"{app_set.dir}: added {', '.join(more)}: the hosts' Python {app_set.python_full} needs "
                          "them, which pip, evaluating markers for the Python it runs on, left out")
        app_set = replace(app_set, requirements=(*app_set.requirements, *more))
    else:
        raise InputError(f"{app_set.dir}: the wheel set is still incomplete for Python {app_set.python_full}: "
                         f"{', '.join(more)}")
    bad = refused(app, res.wheels)
    if bad:
        raise InputError(f"{app_set.dir}: the resolved set holds releases known to be malicious, never built: "
                         f"{', '.join(bad)}")
    text = render_requirements(app, wheel_hashes(final, res.wheels))
    target = final / REQUIREMENTS_NAME
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        atomic_write_text(target, text)
    if res.skipped_pip:
        part.skipped.append(f"{app_set.dir}: {len(res.wheels)} wheels present with the right hash (pip not run)")
    else:
        part.fetched += [f"{app_set.dir}/{n}" for n in res.fetched]
    size = sum((final / n).stat().st_size for n in res.wheels)
    part.notes.append(f"{app_set.dir}: {app_set.app} ({' '.join(app_set.requirements)}): {len(res.wheels)} wheels, "
                      f"{human_bytes(size)}, each pinned with its sha256 in {REQUIREMENTS_NAME}")
    reqs = " ".join(app_set.requirements)

    def source(rel: str, reqs: str = reqs) -> str:
        if rel.endswith(".txt"):
            return f"generated: pins (and sha256) of the wheels downloaded for {reqs}"
        return f"pip download {reqs} ({app_set.dir})"

    ctx.reindex(app_set.dir, "wheel", source)


def _recorded_requirements(constraints: Path) -> list[str]:
    """The ``# requirements:`` of a wheel set's constraints header (what its last build asked pip for)."""
    if not constraints.is_file():
        return []
    for line in constraints.read_text(encoding="utf-8").splitlines():
        if line.startswith("# requirements: "):
            return line.removeprefix("# requirements: ").split()
    return []


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
