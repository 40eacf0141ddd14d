"""The plan: what ``plan`` makes of the inventory for one host, in one shape.

Python code passes these objects around; the roles see their JSON form (``as_dict``, set once per run
by playbooks/plan.yml), and ``from_dict`` turns that back into the same objects. The rules that build
them live in ``gpumap``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airgap_llm.apps import APPS, APPS_DIR, REQUIREMENTS_NAME, app_wheel_dir
from airgap_llm.bundle.layout import model_folder, wheel_dir
from airgap_llm.host_layout import PATH_KEYS, HostPaths
from airgap_llm.targets import TARGETS, TargetOS, host_os_packages, manylinux_platforms

ENGINE_KINDS = ("chat", "embedding", "transcription", "ocr", "rerank")
# Kinds served from an app venv of their own (airgap_llm.apps), not from the engine's.
APP_KINDS = ("gateway", "webui")
DEFAULT_CEILING = 0.95
DEFAULT_VLLM_VERSION = "0.32.0"
DEFAULT_MIN_CONCURRENT_SEQS = 4


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


RAY_HEAD_UNIT = "airgap-llm-ray-head.service"
RAY_WORKER_UNIT = "airgap-llm-ray-worker.service"
RAY_PORT = 6379  # the head's GCS port, which workers join
MP_MASTER_PORT = 29501  # vLLM's --master-port default: rank 0's torch.distributed store
DISTRIBUTED_BACKENDS = ("ray", "mp")
# Every port a Ray node listens on, pinned so that a firewall can name them (ray start's flags, Ray 2.48).
# (flag, port, where): the GCS and the Ray client server run on the head only.
RAY_PORTS: tuple[tuple[str, str, str], ...] = (
    ("--port", "6379", "head"),
    ("--ray-client-server-port", "10001", "head"),
    ("--node-manager-port", "6380", "every node"),
    ("--object-manager-port", "6381", "every node"),
    ("--runtime-env-agent-port", "6382", "every node"),
    ("--dashboard-agent-grpc-port", "6383", "every node"),
    ("--dashboard-agent-listen-port", "6384", "every node"),
    ("--metrics-export-port", "6385", "every node"),
    ("--min-worker-port", "10002", "every node"),
    ("--max-worker-port", "10999", "every node"),
)


def ray_ports(head: bool) -> set[int]:
    """The ports a Ray node takes (the worker range whole), for the port rules."""
    taken: set[int] = set()
    for flag, port, where in RAY_PORTS:
        if where == "head" and not head:
            continue
        if flag == "--min-worker-port":
            taken |= set(range(int(port), int(dict((f, p) for f, p, _ in RAY_PORTS)["--max-worker-port"]) + 1))
        elif flag != "--max-worker-port":
            taken.add(int(port))
    return taken


@dataclass(frozen=True)
class ClusterPlan:
    """This host's part in a service that spans several hosts (``nodes: N``).

    The head (rank 0) is the first host of the inventory that defines the service; it serves the API.
    ``address`` is this host's address on the cluster network, ``interface`` its NIC there.
    """

    backend: str  # ray | mp
    nodes: int
    rank: int
    hosts: tuple[str, ...]  # every node, the head first
    head_address: str
    address: str
    interface: str

    @property
    def head(self) -> str:
        return self.hosts[0]

    @property
    def is_head(self) -> bool:
        return self.rank == 0

    @property
    def role(self) -> str:
        """head, worker (Ray) or rank R (mp) as status shows it."""
        if self.is_head:
            return "head"
        return "worker" if self.backend == "ray" else f"rank {self.rank}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "nodes": self.nodes,
            "rank": self.rank,
            "role": self.role,
            "hosts": list(self.hosts),
            "head": self.head,
            "head_address": self.head_address,
            "address": self.address,
            "interface": self.interface,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterPlan:
        return cls(
            backend=str(data["backend"]),
            nodes=int(data["nodes"]),
            rank=int(data["rank"]),
            hosts=tuple(str(h) for h in data["hosts"]),
            head_address=str(data["head_address"]),
            address=str(data["address"]),
            interface=str(data["interface"]),
        )


@dataclass(frozen=True)
class Route:
    """One engine service a gateway routes: clients ask for ``name``; the gateway sends the request to
    ``service`` on ``host`` (its address is the host's, known at install or from the inventory)."""

    name: str  # the model name at the gateway (route_as, else the service name)
    service: str
    host: str
    port: int
    kind: str
    model: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "service": self.service, "host": self.host, "port": self.port,
                "kind": self.kind, "model": self.model}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Route:
        return cls(str(data["name"]), str(data["service"]), str(data["host"]), int(data["port"]), str(data["kind"]),
                   str(data["model"]))


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
    allow_patterns: tuple[str, ...] = ()
    ignore_patterns: tuple[str, ...] = ()
    distributed_backend: str = "ray"  # for nodes > 1: ray | mp
    cluster: ClusterPlan | None = None  # nodes > 1: this host's part, set by the cross-host rules
    route_as: str | None = None  # engine services: the model name at the gateway (default: the service name)
    routes: tuple[Route, ...] = ()  # a gateway (and a web UI): every engine service it routes, by the cross-host rules
    upstream: Route | None = None  # a web UI: the gateway it talks to (kind "gateway"), set by the cross-host rules

    @property
    def uses_engine(self) -> bool:
        return self.kind in ENGINE_KINDS

    @property
    def uses_app(self) -> bool:
        """Served from an app venv of its own (the gateway, the web UI), not from the engine's venv."""
        return self.kind in APP_KINDS

    @property
    def route_name(self) -> str:
        """The model name clients ask the gateway for: ``route_as``, else the service name."""
        return self.route_as or self.name

    @property
    def serves_api(self) -> bool:
        """Whether this host answers the service's port: every host but the other nodes of a multi-node one."""
        return self.cluster is None or self.cluster.is_head

    @property
    def role(self) -> str:
        """single, or the host's part in a multi-node service (head, worker, rank R)."""
        return "single" if self.cluster is None else self.cluster.role

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g) for g in self.gpus)

    @property
    def unit(self) -> str:
        """The unit this host runs for the service: a Ray worker runs the cluster's worker unit only."""
        if self.cluster is not None and self.cluster.backend == "ray" and not self.cluster.is_head:
            return RAY_WORKER_UNIT
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
            "allow_patterns": list(self.allow_patterns),
            "ignore_patterns": list(self.ignore_patterns),
            "distributed_backend": self.distributed_backend,
            "cluster": self.cluster.as_dict() if self.cluster else None,
            "serves_api": self.serves_api,
            "role": self.role,
            "uses_app": self.uses_app,
            "route_as": self.route_as,
            "route_name": self.route_name,
            "routes": [r.as_dict() for r in self.routes],
            "upstream": self.upstream.as_dict() if self.upstream else None,
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
            allow_patterns=tuple(str(p) for p in data.get("allow_patterns", [])),
            ignore_patterns=tuple(str(p) for p in data.get("ignore_patterns", [])),
            distributed_backend=str(data.get("distributed_backend", "ray")),
            cluster=ClusterPlan.from_dict(data["cluster"]) if data.get("cluster") else None,
            route_as=data.get("route_as"),
            routes=tuple(Route.from_dict(r) for r in data.get("routes") or []),
            upstream=Route.from_dict(data["upstream"]) if data.get("upstream") else None,
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
    # Multi-node services: the NIC for NCCL/GLOO/Ray traffic and this host's address on it.
    cluster_interface: str | None = None
    cluster_address: str | None = None
    # Ray's object store on this node (GiB, in /dev/shm); None: Ray's default (30% of memory, capped by /dev/shm).
    ray_object_store_gib: float | None = None
    # A Hugging Face hub already mounted on the host (airgap_llm_models_source): the services' models are
    # linked from it, not copied, and their units require the mount.
    models_source: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def os_packages(self) -> tuple[str, ...]:
        """The OS packages the host's runtime needs (targets.host_os_packages; the driver aside)."""
        if self.target is None or not self.python:
            return ()
        cpu_compiles = any(s.uses_engine and not s.gpus and "--enforce-eager" not in s.extra_args
                           for s in self.services)
        return host_os_packages(self.target, self.python, any(s.uses_engine for s in self.services),
                                any(s.gpus for s in self.services), cpu_compiles)

    @property
    def apps(self) -> list[dict[str, Any]]:
        """The app venvs the host needs, one per app kind among its services (airgap_llm.apps): the bundle's
        wheel set, the venv's live link and what it must import."""
        if self.target is None or not self.python:
            return []
        out = []
        for kind in dict.fromkeys(s.kind for s in self.services if s.uses_app):
            app = APPS[kind]
            out.append({
                "kind": kind,
                "wheel_dir": app_wheel_dir(kind, self.python_tag, manylinux_platforms(self.target.glibc)[0]),
                "requirements": REQUIREMENTS_NAME,
                "venv": self.paths.app_venv(kind),
                "root": f"{self.paths.apps_dir}/{kind}",
                "wheelhouse": f"{self.paths.wheelhouse_dir}/{APPS_DIR}/{kind}",
                "import_check": list(app.import_check),
                "environment": {name: value for name, value, _ in app.environment},
            })
        return out

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
            "apps": self.apps,
            "os_packages": list(self.os_packages),
            "ceiling": self.ceiling,
            "gpus": [u.as_dict() for u in self.gpu_usage()],
            "services": [s.as_dict() for s in self.services],
            "problems": [p.as_dict() for p in self.problems],
            "warnings": list(self.warnings),
            "paths": self.paths.as_dict(),
            "address": self.address,
            "address_source": self.address_source,
            "min_concurrent_seqs": self.min_concurrent_seqs,
            "cluster_interface": self.cluster_interface,
            "cluster_address": self.cluster_address,
            "ray_object_store_gib": self.ray_object_store_gib,
            "models_source": self.models_source,
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
            cluster_interface=data.get("cluster_interface"),
            cluster_address=data.get("cluster_address"),
            ray_object_store_gib=(None if data.get("ray_object_store_gib") is None
                                  else float(data["ray_object_store_gib"])),
            models_source=data.get("models_source") or None,
        )
