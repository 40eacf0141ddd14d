"""The Prometheus configuration, laid out from the plan of every host. Pure.

Scraped: every engine service's ``/metrics`` at its bind address and port (vLLM serves it without the
API key), node exporter on every host (its textfile collector carries the GPU metrics of GPU hosts).
Service kinds that export no metrics (so far the gateway and web UI) are not scraped; ``app`` services
(custom programs) are when ``airgap_llm_monitoring_app_metrics`` names them.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airgap_llm.gpumap import ENGINE_KINDS, HostPlan, ServicePlan
from airgap_llm.monitoring.settings import WILDCARDS, MonitoringInputError, MonitoringSettings

ENGINE_JOB = "airgap_llm_engine"
APP_JOB = "airgap_llm_app"
NODE_JOB = "node"
# Kinds whose servers export Prometheus metrics at /metrics.
METRICS_KINDS = ENGINE_KINDS


@dataclass(frozen=True)
class EngineTarget:
    host: str
    service: str
    kind: str
    address: str  # host:port

    @property
    def labels(self) -> dict[str, str]:
        return {"host": self.host, "service": self.service, "kind": self.kind}


def head_hosts(plans: Sequence[HostPlan]) -> dict[str, str]:
    """For each service spanning hosts, its head (the first host that defines it; the engine runs there)."""
    heads: dict[str, str] = {}
    for plan in plans:
        for svc in plan.services:
            if svc.nodes > 1:
                heads.setdefault(svc.name, plan.host)
    return heads


def exports_metrics(plan: HostPlan, svc: ServicePlan, heads: Mapping[str, str]) -> bool:
    if svc.kind not in METRICS_KINDS:
        return False
    return svc.nodes == 1 or heads.get(svc.name) == plan.host


def host_port(address: str, port: int) -> str:
    address = str(address)
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _address(host: str, addresses: Mapping[str, str]) -> str:
    address = addresses.get(host, "")
    if address in WILDCARDS:
        raise MonitoringInputError(
            f"host {host}: no address to scrape (got {address!r}); set ansible_host to an IP address or "
            "airgap_llm_inference_service_bind_address"
        )
    return address


def engine_targets(plans: Sequence[HostPlan], addresses: Mapping[str, str]) -> list[EngineTarget]:
    heads = head_hosts(plans)
    return [
        EngineTarget(str(plan.host), str(svc.name), str(svc.kind), host_port(_address(plan.host, addresses), svc.port))
        for plan in plans
        for svc in plan.services
        if exports_metrics(plan, svc, heads)
    ]


def ray_workers(plans: Sequence[HostPlan]) -> dict[str, list[str]]:
    """Host -> the services spanning hosts for which it is a worker (not the head)."""
    heads = head_hosts(plans)
    workers: dict[str, list[str]] = {}
    for plan in plans:
        for svc in plan.services:
            if svc.nodes > 1 and heads[svc.name] != plan.host:
                workers.setdefault(plan.host, []).append(svc.name)
    return workers


def app_targets(plans: Sequence[HostPlan], addresses: Mapping[str, str], names: Sequence[str]) -> list[EngineTarget]:
    """The ``app`` services named in ``airgap_llm_monitoring_app_metrics``; a name no host has is an error."""
    found = [
        EngineTarget(str(plan.host), str(svc.name), str(svc.kind), host_port(_address(plan.host, addresses), svc.port))
        for plan in plans
        for svc in plan.services
        if svc.kind == "app" and svc.name in names
    ]
    unknown = sorted(set(names) - {t.service for t in found})
    if unknown:
        raise MonitoringInputError(
            f"airgap_llm_monitoring_app_metrics names {', '.join(unknown)}, which no host of the plan has as an "
            "app service"
        )
    return found


def prometheus_config(plans: Sequence[HostPlan], addresses: Mapping[str, str], settings: MonitoringSettings,
                      rules_path: str) -> dict[str, Any]:
    """The whole prometheus.yml as a dict (``yaml.safe_dump`` it)."""
    engine_configs = [{"targets": [t.address], "labels": t.labels} for t in engine_targets(plans, addresses)]
    app_configs = [{"targets": [t.address], "labels": t.labels}
                   for t in app_targets(plans, addresses, settings.app_metrics)]
    workers = ray_workers(plans)
    node_configs = []
    for plan in plans:
        labels = {"host": str(plan.host)}
        if plan.host in workers:
            labels["ray_worker_of"] = ",".join(str(w) for w in workers[plan.host])
        if any(s.gpus for s in plan.services):
            labels["gpu_host"] = "true"
        node_configs.append({
            "targets": [host_port(_address(plan.host, addresses), settings.node_exporter_port)],
            "labels": labels,
        })
    jobs: list[dict[str, Any]] = []
    if engine_configs:
        jobs.append({"job_name": ENGINE_JOB, "metrics_path": "/metrics", "static_configs": engine_configs})
    if app_configs:
        jobs.append({"job_name": APP_JOB, "metrics_path": "/metrics", "static_configs": app_configs})
    jobs.append({"job_name": NODE_JOB, "static_configs": node_configs})
    return {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.evaluation_interval,
        },
        "rule_files": [rules_path],
        "scrape_configs": jobs,
    }


# bcrypt through the system's crypt(3) (libxcrypt on Debian and Ubuntu, glibc's on RHEL 9).
_BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _bcrypt_salt(secret: str, cost: int) -> str:
    """A salt derived from the secret, so that the same credential always gives the same hash (a rerun
    writes the same web config and restarts nothing). 22 characters of bcrypt's base64 alphabet, the last
    one from the four values whose low bits are zero, as bcrypt encodes 16 bytes."""
    digest = hmac.new(secret.encode(), b"airgap-llm prometheus web config", "sha256").digest()
    chars = [_BCRYPT_B64[b % 64] for b in digest[:21]] + [_BCRYPT_B64[(digest[21] % 4) * 16]]
    return f"$2b${cost:02d}${''.join(chars)}"


def bcrypt_hash(secret: str, cost: int = 10) -> str:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("crypt")
    if not name:
        raise RuntimeError("libcrypt not found on the controller: cannot hash the Prometheus credential")
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    out = lib.crypt(secret.encode(), _bcrypt_salt(secret, cost).encode())
    if not out or not out.startswith(b"$2b$"):
        raise RuntimeError("the controller's crypt(3) does not support bcrypt ($2b$): cannot hash the Prometheus "
                           "credential")
    return str(out.decode())


def web_config(settings: MonitoringSettings, password: str | None) -> dict[str, Any]:
    """Prometheus's --web.config.file: basic auth with the credential's bcrypt hash (empty without auth)."""
    if not settings.basic_auth:
        return {}
    if not password:
        raise MonitoringInputError("airgap_llm_monitoring_basic_auth is true but the credential is empty")
    return {"basic_auth_users": {str(settings.auth_user): bcrypt_hash(str(password))}}
