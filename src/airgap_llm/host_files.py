"""The files a host's services get (units, the target, environment files), laid out from ``units``.

Pure: ``service_files`` returns each file's path on the host, content, owner, group and mode. The
inference_service role writes exactly these (``airgap_llm_service_files`` filter); ``airgap-llm
render`` writes the same content under ``DIR/<host>/<path>``, so the two agree byte for byte.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from airgap_llm import gateway, webui
from airgap_llm.bundle.layout import KEYRING_NAME
from airgap_llm.gpu_devices import DEVICES_HELPER, DEVICES_UNIT, PERSISTENCED_UNIT, GpuDevices
from airgap_llm.gpumap import HostPlan, ServicePlan
from airgap_llm.host_layout import APT_KEYRING_DIR, APT_SOURCE_LIST, NOUVEAU_BLACKLIST
from airgap_llm.plan_model import RAY_HEAD_UNIT, RAY_PORT, RAY_WORKER_UNIT
from airgap_llm.units import (
    HARDENING,
    HEADLESS_MODULE,
    RAY_WAIT_HELPER,
    UnitSettings,
    UnitSpec,
    command_line,
    gateway_config_path,
    gpu_minors,
    ray_unit_spec,
    start_order,
    unit_spec,
)

TARGET_UNIT = "airgap-llm.target"
APP_ORDER = {"gateway": 1, "webui": 2}  # start order on a host: engines, then the gateway, then the web UI
API_KEY_ENV = "api-key.env"
API_KEY_VAR = "VLLM_API_KEY"


@dataclass(frozen=True)
class HostFile:
    path: str
    content: str
    owner: str
    group: str
    mode: str
    service: str | None = None  # the one service this file belongs to; None: every service of the host
    secret: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class HostDir:
    path: str
    owner: str
    group: str
    mode: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# The inference_service role's helpers (its files/<name>): where each goes under the helper directory, and
# its mode. The role lays them out with the units in one module run.
HELPERS: tuple[tuple[str, str], ...] = (
    ("python/airgap_llm_guard.py", "0644"),  # the API key middleware of the engine services
    (f"python/{HEADLESS_MODULE}.py", "0644"),  # the launcher of the headless ranks of a multi-node service (mp)
    ("wait-healthy", "0755"),  # the readiness wait of every unit
    (RAY_WAIT_HELPER, "0755"),  # the Ray head's serving unit waits for the cluster with it
    ("services-to-restart", "0755"),  # finds the services started before a change of what they run
    (DEVICES_HELPER, "0755"),  # loads nvidia-uvm and makes the GPU device nodes
)


def service_dirs(plan: HostPlan, settings: UnitSettings) -> list[HostDir]:
    """The directories the services need, parents first: configuration (root, the service group reads),
    the engines' writable cache, the helpers, and each web UI's data (its accounts, chats and vector store)."""
    paths = plan.paths
    dirs = [
        HostDir(paths.config_dir, "root", settings.group, "0750"),
        HostDir(paths.cache_dir, settings.user, settings.group, "0750"),
        HostDir(paths.libexec_dir, "root", "root", "0755"),
        HostDir(f"{paths.libexec_dir}/python", "root", "root", "0755"),
    ]
    dirs += [HostDir(paths.app_data(s.name), settings.user, settings.group, "0750")
             for s in plan.services if s.kind == "webui"]
    return dirs


def helper_names() -> list[str]:
    """The helpers' file names in the role's files/ directory."""
    return [dest.rsplit("/", 1)[-1] for dest, _ in HELPERS]


def helper_files(plan: HostPlan, sources: Mapping[str, str]) -> list[HostFile]:
    """The helpers under the helper directory; ``sources``: each helper's content by its file name."""
    missing = sorted(set(helper_names()) - set(sources))
    if missing:
        raise ValueError(f"helper sources missing: {', '.join(missing)}")
    return [HostFile(f"{plan.paths.libexec_dir}/{dest}", sources[dest.rsplit('/', 1)[-1]], "root", "root", mode)
            for dest, mode in HELPERS]


def _header(managed: str) -> str:
    return f"# {managed}\n"


def common_env(plan: HostPlan, settings: UnitSettings, address: str, managed: str) -> str:
    paths = plan.paths
    lines = [
        "# Environment shared by every airgap-llm service on this host.",
        f"HF_HOME={paths.hf_home}",
        f"HF_MODULES_CACHE={paths.cache_dir}/hf-modules",
        f"VLLM_CACHE_ROOT={paths.cache_dir}/vllm",
        f"TRITON_CACHE_DIR={paths.cache_dir}/triton",
        f"TORCHINDUCTOR_CACHE_DIR={paths.cache_dir}/torchinductor",
        f"XDG_CACHE_HOME={paths.cache_dir}/xdg",
        f"VLLM_HOST_IP={address}",
        f"VLLM_ENGINE_READY_TIMEOUT_S={settings.ready_timeout_s}",
        f"AIRGAP_LLM_OPEN_PATHS={' '.join(settings.open_paths)}",
    ]
    lines += [f"{name}={value}" for name, value in settings.common_env]
    return _header(managed) + "\n".join(lines) + "\n"


def service_env(svc: ServicePlan, managed: str, app_lines: Sequence[str] = ()) -> str:
    """A service's environment file; ``app_lines``: an app's configuration from the plan (the web UI's)."""
    what = f": {svc.model}@{svc.revision}" if svc.model else ""
    lines = [f"# airgap-llm service {svc.name} ({svc.kind}{what})"]
    if svc.gpus:
        lines += ["CUDA_DEVICE_ORDER=PCI_BUS_ID", f"CUDA_VISIBLE_DEVICES={svc.cuda_visible_devices}"]
    else:
        lines.append("CUDA_VISIBLE_DEVICES=")
    cluster = svc.cluster
    if cluster is not None:
        traffic = "NCCL, Gloo and Ray" if cluster.backend == "ray" else "NCCL and Gloo"
        lines += [
            f"# {cluster.role} of {cluster.nodes} nodes ({', '.join(cluster.hosts)}), backend {cluster.backend}:",
            f"# this host's address and NIC on the cluster network, where the {traffic} traffic stays.",
            f"VLLM_HOST_IP={cluster.address}",
            f"NCCL_SOCKET_IFNAME={cluster.interface}",
            f"GLOO_SOCKET_IFNAME={cluster.interface}",
        ]
        if cluster.backend == "ray":
            lines.append(f"RAY_ADDRESS={cluster.head_address}:{RAY_PORT}")
    if svc.kind == "gateway":
        lines += gateway.environment_text(svc)
    lines += app_lines
    lines += [f"{name}={value}" for name, value in sorted(svc.env.items())]
    return _header(managed) + "\n".join(lines) + "\n"


def _comment(spec: UnitSpec, key: str) -> list[str]:
    if key not in spec.comments:
        return []
    return [f"# {line}" for line in textwrap.wrap(spec.comments[key], 98)]


def unit_text(spec: UnitSpec, plan: HostPlan, settings: UnitSettings, managed: str) -> str:
    svc, paths = spec.service, plan.paths
    limits = ["StartLimitIntervalSec=0"]
    if spec.start_limit:
        limits = [f"StartLimitIntervalSec={settings.start_limit_interval_s}",
                  f"StartLimitBurst={settings.start_limit_burst}"]
    out = [
        "[Unit]",
        f"Description={spec.description}",
        f"Documentation=file://{paths.config_dir}/{svc.name}.env",
        f"After={' '.join(spec.after)}",
        f"Wants={' '.join(spec.wants)}",
        *([f"Requires={' '.join(spec.requires)}"] if spec.requires else []),
        *([f"RequiresMountsFor={' '.join(spec.mounts)}"] if spec.mounts else []),
        f"PartOf={' '.join([TARGET_UNIT, *spec.part_of])}",
        *limits,
        "",
        "[Service]",
        f"Type={spec.service_type}",
        f"User={settings.user}",
        f"Group={settings.group}",
        f"EnvironmentFile={paths.config_dir}/common.env",
        f"EnvironmentFile={paths.config_dir}/{svc.name}.env",
        *([f"EnvironmentFile=-{paths.config_dir}/{API_KEY_ENV}"] if spec.api_key else []),
        *([f"EnvironmentFile={spec.secret_env}"] if spec.secret_env else []),
        f"WorkingDirectory={paths.cache_dir}",
    ]
    for name, value in spec.environment:
        if name in spec.comments:
            out += [f"# {line}" for line in textwrap.wrap(spec.comments[name], 98)]
        out.append(f"Environment={name}={value}")
    if spec.exec_start_pre:
        out += _comment(spec, "ExecStartPre")
        out.append(f"ExecStartPre={command_line(spec.exec_start_pre)}")
    out += _comment(spec, "ExecStart")
    out.append(f"ExecStart={command_line(spec.exec_start)}")
    if spec.exec_start_post:
        out.append(f"ExecStartPost={command_line(spec.exec_start_post)}")
    unit_name = spec.unit or svc.unit
    out += [
        f"TimeoutStartSec={settings.ready_timeout_s + 60}",
        f"TimeoutStopSec={settings.stop_timeout_s}",
        "KillMode=mixed",
        f"Restart={spec.restart}",
        f"RestartSec={settings.restart_sec}",
        f"LimitNOFILE={settings.limit_nofile}",
        f"SyslogIdentifier={unit_name.removesuffix('.service')}",
        "",
        "# Hardening (scored with systemd-analyze security). Left out on purpose: MemoryDenyWriteExecute",
        "# (PyTorch, Triton and the CUDA driver JIT compile code at run time), PrivateUsers and",
        "# ProcSubset=pid (the engine reads /proc/cpuinfo, /proc/meminfo and the GPU driver's /proc entries).",
    ]
    out += [f"{k}={v}" for k, v in HARDENING]
    out.append(f"ReadWritePaths={' '.join([paths.cache_dir, *spec.rw_paths])}")
    if spec.devices:
        out.append("# The GPUs of this service only (plus the control and UVM devices every CUDA process needs).")
        if "DeviceAllow" in spec.comments:
            for paragraph in spec.comments["DeviceAllow"].splitlines():
                out += [f"# {line}" for line in textwrap.wrap(paragraph, 98)]
        out.append("DevicePolicy=closed")
        out += [f"DeviceAllow={d}" for d in spec.devices]
    else:
        out.append("PrivateDevices=true")
    out += ["", "[Install]", f"WantedBy={TARGET_UNIT}"]
    return _header(managed) + "\n".join(out) + "\n"


def devices_unit_text(plan: HostPlan, devices: GpuDevices | None, managed: str) -> str:
    """The oneshot every GPU unit requires: nvidia-uvm loaded and the nodes of the host's GPUs made."""
    minors = gpu_minors(plan, devices)
    out = [
        "[Unit]",
        "Description=airgap-llm: load nvidia-uvm and make the NVIDIA device nodes of the GPU services",
        f"After={PERSISTENCED_UNIT} systemd-modules-load.service",
        "",
        "[Service]",
        "# Runs as root before every start of a GPU unit (they Require= it), so a node exists when systemd",
        "# sets up that unit's device policy: DeviceAllow= paths are resolved then, and the units themselves",
        "# can neither load modules (ProtectKernelModules=) nor run the setuid nvidia-modprobe (NoNewPrivileges=).",
        "Type=oneshot",
        f"ExecStart={command_line([f'{plan.paths.libexec_dir}/{DEVICES_HELPER}', *(str(m) for m in minors)])}",
        f"SyslogIdentifier={DEVICES_UNIT.removesuffix('.service')}",
    ]
    return _header(managed) + "\n".join(out) + "\n"


def unit_names(plan: HostPlan) -> list[str]:
    """Every unit of the host's services in start order: a Ray head before the serving unit it drives, a
    gateway after the engines it routes, a web UI after the gateway."""
    names: list[str] = []
    for svc in sorted(plan.services, key=lambda s: APP_ORDER.get(s.kind, 0)):
        if svc.cluster is not None and svc.cluster.backend == "ray" and svc.cluster.is_head:
            names.append(RAY_HEAD_UNIT)
        names.append(svc.unit)
    return names


def target_text(plan: HostPlan, managed: str) -> str:
    out = [
        "[Unit]",
        "Description=airgap-llm model-serving services",
        f"Wants={' '.join(unit_names(plan))}",
        "After=network-online.target",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return _header(managed) + "\n".join(out) + "\n"


def service_files(plan: HostPlan, settings: UnitSettings, managed: str, address: str,
                  devices: GpuDevices | None = None, addresses: Mapping[str, str] | None = None) -> list[HostFile]:
    """Every file of the services on ``plan.host`` but the API key, in a stable order.

    ``devices``: the host's GPU minors and NVSwitch decision (``gpu_devices``); None: minors are the
    CUDA index and there is no fabric manager. ``addresses``: every host's service address, for a gateway
    that routes services of other hosts (this host's is ``address``).
    """
    paths = plan.paths
    group = settings.group
    after = start_order(plan.services)
    files = [HostFile(f"{paths.config_dir}/common.env", common_env(plan, settings, address, managed), "root", group,
                      "0640")]
    where = {**(addresses or {}), plan.host: address}
    for svc in plan.services:
        app_lines = webui.environment_lines(svc, where, paths.app_data(svc.name)) if svc.kind == "webui" else []
        files.append(HostFile(f"{paths.config_dir}/{svc.name}.env", service_env(svc, managed, app_lines), "root",
                              group, "0640", service=svc.name))
    for svc in plan.services:
        if svc.cluster is not None and svc.cluster.backend == "ray":
            ray = ray_unit_spec(plan, svc, settings, devices)
            files.append(HostFile(f"{paths.unit_dir}/{ray.unit}", unit_text(ray, plan, settings, managed), "root",
                                  "root", "0644", service=svc.name))
            if svc.unit == RAY_WORKER_UNIT:
                continue  # a Ray worker serves no API: its share of the engine runs as Ray actors
        spec = unit_spec(plan, svc, settings, address, after[svc.name], devices)
        files.append(HostFile(f"{paths.unit_dir}/{svc.unit}", unit_text(spec, plan, settings, managed), "root",
                              "root", "0644", service=svc.name))
        if svc.kind == "gateway":
            files.append(HostFile(gateway_config_path(plan, svc), gateway.config_text(svc, where, managed), "root",
                                  group, "0640", service=svc.name))
    if any(s.gpus for s in plan.services):
        files.append(HostFile(f"{paths.unit_dir}/{DEVICES_UNIT}", devices_unit_text(plan, devices, managed), "root",
                              "root", "0644"))
    files.append(HostFile(f"{paths.unit_dir}/{TARGET_UNIT}", target_text(plan, managed), "root", "root", "0644"))
    return files


def apt_source(managed: str, repo_dir: str, keyring: str) -> str:
    """The sources list of the bundle's local repository (Debian family), signature checked."""
    return (
        _header(managed)
        + "# The airgap-llm bundle's OS packages: a local repository, signature checked.\n"
        + f"deb [signed-by={keyring}] file:{repo_dir} ./\n"
    )


def nouveau_blacklist(managed: str) -> str:
    return _header(managed) + "# nouveau must not claim the GPUs before the NVIDIA driver.\nblacklist nouveau\n" \
        "options nouveau modeset=0\n"


def os_files(plan: HostPlan, managed: str) -> list[HostFile]:
    """The OS configuration install writes: the local repository's apt source (Debian family), and the
    nouveau blacklist on hosts whose services use GPUs."""
    files = []
    if plan.target is not None and plan.target.family == "debian":
        keyring = f"{APT_KEYRING_DIR}/{KEYRING_NAME}"
        files.append(HostFile(APT_SOURCE_LIST, apt_source(managed, plan.paths.os_repo_dir, keyring), "root", "root",
                              "0644"))
    if any(s.gpus for s in plan.services):
        files.append(HostFile(NOUVEAU_BLACKLIST, nouveau_blacklist(managed), "root", "root", "0644"))
    return files


def api_key_file(plan: HostPlan, key: str) -> HostFile:
    """The API key's environment file: 0600, read by systemd before it drops privileges."""
    return HostFile(f"{plan.paths.config_dir}/{API_KEY_ENV}", f"{API_KEY_VAR}={key}\n", "root", "root", "0600",
                    secret=True)


def webui_secret_files(plan: HostPlan, key: str, session_secret: str, admin_password: str) -> list[HostFile]:
    """Each web UI's secrets file (0600, root): what the inference_service role writes from the credentials."""
    return [HostFile(webui.secret_path(plan.paths.config_dir, svc), webui.secret_text(key, session_secret,
                     admin_password), "root", "root", "0600", service=svc.name, secret=True)
            for svc in plan.services if svc.kind == "webui"]


def secret_files(plan: HostPlan, api_key: str, session_secret: str, admin_password: str) -> list[HostFile]:
    """What the role writes 0600 from the controller's credentials: the API key file (when the host serves
    with a key: ``api_key`` not empty) and each web UI's secrets (with no key it calls the gateway with
    ``none``)."""
    files = [api_key_file(plan, api_key)] if api_key else []
    return files + webui_secret_files(plan, api_key or "none", session_secret, admin_password)


def restart_inputs(plan: HostPlan) -> dict[str, list[str]]:
    """For each unit, the paths on the host whose change means the running service is stale.

    Its unit and environment files, the API key file, the helpers the unit runs, the live venv link
    (the venv it runs) and its model link (the snapshot it serves). See the role's services-to-restart.
    """
    paths = plan.paths
    inputs: dict[str, list[str]] = {}
    for svc in plan.services:
        cluster = svc.cluster
        if cluster is not None and cluster.backend == "ray":
            ray_unit = RAY_HEAD_UNIT if cluster.is_head else RAY_WORKER_UNIT
            inputs[ray_unit] = [f"{paths.unit_dir}/{ray_unit}", f"{paths.config_dir}/common.env",
                                f"{paths.config_dir}/{svc.name}.env", paths.venv]
            if not cluster.is_head:
                continue
        files = [
            f"{paths.unit_dir}/{svc.unit}",
            f"{paths.config_dir}/common.env",
            f"{paths.config_dir}/{svc.name}.env",
            f"{paths.config_dir}/{API_KEY_ENV}",
            f"{paths.libexec_dir}/wait-healthy",
        ]
        if cluster is not None and cluster.backend == "ray":
            files.append(f"{paths.libexec_dir}/{RAY_WAIT_HELPER}")
        if not svc.serves_api:
            files.append(f"{paths.libexec_dir}/python/{HEADLESS_MODULE}.py")
        if svc.uses_engine:
            files += [f"{paths.libexec_dir}/python/airgap_llm_guard.py", paths.venv, f"{paths.models_dir}/{svc.name}"]
        elif svc.kind == "webui":  # its venv and its secrets (the key, the session secret, the admin's password)
            files += [paths.app_venv(svc.kind), webui.secret_path(paths.config_dir, svc)]
        elif svc.uses_app:  # its venv and its configuration (the routed services, their addresses)
            files += [paths.app_venv(svc.kind), gateway_config_path(plan, svc)]
        elif not svc.command[0].startswith("/"):
            files.append(paths.venv)
        inputs[svc.unit] = files
    return inputs
