"""Every file the monitoring role writes on a host, laid out from the plan. Pure but for the bcrypt hash.

On every host: node exporter's drop-in (listen on the service address, the textfile collector, the
systemd collector for the airgap-llm units) and, on hosts with GPU services, the GPU metrics script's
service and timer. On the Prometheus host(s): the configuration, the alert rules, the web configuration
(basic auth) and Prometheus's drop-in. Drop-ins replace the packages' ``ExecStart`` and add hardening;
the packages' own units and conffiles stay as shipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml

from airgap_llm.gpumap import HostPlan
from airgap_llm.host_files import HostFile
from airgap_llm.host_layout import NODE_EXPORTER_TEXTFILE_DIR, PROMETHEUS_CONFIG_DIR, PROMETHEUS_DATA_DIR
from airgap_llm.monitoring.rules import UNIT_RE, alert_rules
from airgap_llm.monitoring.scrape import host_port, prometheus_config, web_config
from airgap_llm.monitoring.settings import MonitoringSettings
from airgap_llm.units import NVIDIA_SHARED_DEVICES, command_line

PROMETHEUS_UNIT = "prometheus.service"
NODE_EXPORTER_UNIT = "prometheus-node-exporter.service"
# Debian's own textfile collectors are named prometheus-node-exporter-<what>; ours follows suit (and stays
# out of the airgap-llm-*.service pattern that the inference_service role treats as its services).
GPU_UNIT = "prometheus-node-exporter-airgap-llm-gpu.service"
GPU_TIMER = "prometheus-node-exporter-airgap-llm-gpu.timer"
GPU_SCRIPT = "airgap-llm-gpu-metrics"
GPU_TEXTFILE = f"{NODE_EXPORTER_TEXTFILE_DIR}/airgap_llm_gpu.prom"
CONFIG_FILE = f"{PROMETHEUS_CONFIG_DIR}/airgap-llm.yml"
RULES_FILE = f"{PROMETHEUS_CONFIG_DIR}/airgap-llm-rules.yml"
WEB_CONFIG_FILE = f"{PROMETHEUS_CONFIG_DIR}/airgap-llm-web.yml"
DROP_IN = "airgap-llm.conf"

# Hardening the drop-ins add (the packages' units already set some of it).
COMMON_HARDENING: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "true"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("ProtectSystem", "strict"),
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
    ("MemoryDenyWriteExecute", "true"),
    ("RemoveIPC", "true"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
    ("SystemCallErrorNumber", "EPERM"),
)


def _yaml(managed: str, what: str, data: object) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return f"# {managed}\n# {what}\n{body}"


def _unit(managed: str, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]], comment: str = "") -> str:
    out = [f"# {managed}"] + ([f"# {comment}"] if comment else [])
    for i, (name, items) in enumerate(sections):
        out += ([""] if i else []) + [f"[{name}]"] + [f"{k}={v}" for k, v in items]
    return "\n".join(out) + "\n"


def prometheus_drop_in(settings: MonitoringSettings, managed: str) -> str:
    argv = [
        "/usr/bin/prometheus",
        f"--config.file={CONFIG_FILE}",
        f"--web.config.file={WEB_CONFIG_FILE}",
        f"--web.listen-address={host_port(settings.listen_address, settings.port)}",
        f"--storage.tsdb.path={PROMETHEUS_DATA_DIR}",
        f"--storage.tsdb.retention.time={settings.retention}",
    ]
    if settings.retention_size:
        argv.append(f"--storage.tsdb.retention.size={settings.retention_size}")
    service = [("EnvironmentFile", ""), ("ExecStart", ""), ("ExecStart", command_line(argv)),
               *COMMON_HARDENING, ("ProtectHome", "true"), ("PrivateDevices", "true"),
               ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("UMask", "0077"),
               ("ReadWritePaths", "/var/lib/prometheus")]
    unit = [("After", "network-online.target"), ("Wants", "network-online.target")]
    return _unit(managed, [("Unit", unit), ("Service", service)],
                 "airgap-llm: Prometheus with the generated configuration, on the service address, hardened.")


def node_exporter_drop_in(address: str, settings: MonitoringSettings, managed: str) -> str:
    argv = [
        "/usr/bin/prometheus-node-exporter",
        f"--web.listen-address={host_port(address, settings.node_exporter_port)}",
        f"--collector.textfile.directory={NODE_EXPORTER_TEXTFILE_DIR}",
        "--collector.systemd",
        f"--collector.systemd.unit-include={UNIT_RE}",
    ]
    service = [("EnvironmentFile", ""), ("ExecStart", ""), ("ExecStart", command_line(argv)),
               *COMMON_HARDENING, ("ProtectHome", "read-only"), ("PrivateDevices", "true"),
               ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"), ("UMask", "0077")]
    unit = [("After", "network-online.target"), ("Wants", "network-online.target")]
    return _unit(managed, [("Unit", unit), ("Service", service)],
                 "airgap-llm: node exporter on the service address, with the GPU textfile and the units' states.")


def gpu_args(plan: HostPlan) -> list[str]:
    """The script's --service and --planned arguments: what the plan pins to each GPU."""
    args: list[str] = []
    for svc in plan.services:
        for g in svc.gpus:
            args.append(f"--service={g}={svc.name}")
    for usage in plan.gpu_usage():
        if usage.services:
            args.append(f"--planned={usage.index}={usage.used:.4g}")
    return args


def gpu_units(plan: HostPlan, settings: MonitoringSettings, managed: str) -> list[HostFile]:
    paths = plan.paths
    argv = ["/usr/bin/python3", f"{paths.libexec_dir}/{GPU_SCRIPT}", f"--out={GPU_TEXTFILE}", *gpu_args(plan)]
    count = plan.gpu.count if plan.gpu else 0
    devices = [f"/dev/nvidia{i} rw" for i in range(count)] + [f"{d} rw" for d in NVIDIA_SHARED_DEVICES]
    # nvidia-smi and NVML are not run under this unit on a GPU host in the tests (none at hand): the
    # system-call filter is the plain @system-service one, and MemoryDenyWriteExecute is left out.
    hardening = [(k, v) for k, v in COMMON_HARDENING
                 if k != "MemoryDenyWriteExecute" and (k, v) != ("SystemCallFilter", "~@privileged @resources")]
    service = [("Type", "oneshot"), ("ExecStart", command_line(argv)), ("TimeoutStartSec", "60"),
               *hardening, ("SystemCallFilter", "~@privileged"), ("ProtectHome", "true"), ("PrivateNetwork", "true"),
               ("RestrictAddressFamilies", "AF_UNIX"), ("UMask", "0022"), ("DevicePolicy", "closed"),
               *[("DeviceAllow", d) for d in devices], ("DeviceAllow", "char-nvidia-caps r"),
               ("ReadWritePaths", NODE_EXPORTER_TEXTFILE_DIR)]
    unit_text = _unit(managed, [
        ("Unit", [("Description", "airgap-llm GPU metrics for node exporter (nvidia-smi)"),
                  ("Documentation", f"file://{paths.libexec_dir}/{GPU_SCRIPT}")]),
        ("Service", service),
    ])
    timer_text = _unit(managed, [
        ("Unit", [("Description", "airgap-llm GPU metrics every " + str(settings.gpu_interval_s) + " s")]),
        ("Timer", [("OnBootSec", "10s"), ("OnUnitActiveSec", f"{settings.gpu_interval_s}s"),
                   ("AccuracySec", "1s")]),
        ("Install", [("WantedBy", "timers.target")]),
    ])
    return [HostFile(f"{paths.unit_dir}/{GPU_UNIT}", unit_text, "root", "root", "0644"),
            HostFile(f"{paths.unit_dir}/{GPU_TIMER}", timer_text, "root", "root", "0644")]


def node_files(plan: HostPlan, address: str, settings: MonitoringSettings, managed: str) -> list[HostFile]:
    """Files every host gets: node exporter's drop-in; the GPU timer where the plan has GPU services."""
    files = [HostFile(f"{plan.paths.unit_dir}/{NODE_EXPORTER_UNIT}.d/{DROP_IN}",
                      node_exporter_drop_in(address, settings, managed), "root", "root", "0644")]
    if any(s.gpus for s in plan.services):
        files += gpu_units(plan, settings, managed)
    return files


def server_files(plans: Sequence[HostPlan], plan: HostPlan, addresses: Mapping[str, str],
                 settings: MonitoringSettings, managed: str, password: str | None,
                 model_mounts: Mapping[str, str]) -> list[HostFile]:
    """Files of a Prometheus host. ``settings.listen_address`` must be resolved (``with_listen_address``)."""
    config = prometheus_config(plans, addresses, settings, RULES_FILE)
    rules = alert_rules(plans, settings, model_mounts)
    web = web_config(settings, password)
    return [
        HostFile(CONFIG_FILE, _yaml(managed, "airgap-llm: every host's node exporter and engines, from the plan.",
                                    config), "root", "prometheus", "0640"),
        HostFile(RULES_FILE, _yaml(managed, "airgap-llm alert rules (airgap_llm_monitoring_alerts).", rules),
                 "root", "prometheus", "0640"),
        HostFile(WEB_CONFIG_FILE, _yaml(managed, "airgap-llm: basic auth of Prometheus's web and API.", web),
                 "root", "prometheus", "0640", secret=bool(web)),
        HostFile(f"{plan.paths.unit_dir}/{PROMETHEUS_UNIT}.d/{DROP_IN}", prometheus_drop_in(settings, managed),
                 "root", "root", "0644"),
    ]
