"""The builders of the bundle's parts, each taking one ``BuildContext``: collections, os, wheels and
models (``PART_BUILDERS``, in the order a build runs them: the small parts first, the models last)."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable

from airgap_llm.bundle.collections import build_collection, find_installed
from airgap_llm.bundle.context import BuildContext, PartReport, no_space_error
from airgap_llm.bundle.index import list_under
from airgap_llm.bundle.layout import COLLECTIONS_DIR, MODELS_HUB_DIR, WHEELS_DIR, list_dir_bytes
from airgap_llm.bundle.models import ModelResult, download_model, import_model, prune_models, prune_snapshot
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.wheels import build_wheel_set


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
