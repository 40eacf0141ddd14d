"""What monitoring needs to know about every host besides its plan: the address to scrape it at and the
mount point where its models live (from the facts Ansible gathered). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airgap_llm.gpumap import HostPlan
from airgap_llm.host_files import HostFile
from airgap_llm.monitoring.files import node_files, server_files
from airgap_llm.monitoring.rules import mount_of
from airgap_llm.monitoring.scrape import host_port
from airgap_llm.monitoring.settings import PREFIX, WILDCARDS, MonitoringInputError, MonitoringSettings


def host_facts(plans: Sequence[HostPlan], facts_by_host: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{"addresses": {host: address}, "model_mounts": {host: mount point}}.

    The address is the plan's (ansible_host as an IP address, or the bind address), else the host's
    default IPv4 address from its facts; a host whose facts were not gathered (outside ``--limit``) and
    whose plan has none gets no address (an error when a configuration needs it).
    """
    addresses: dict[str, str] = {}
    mounts: dict[str, str] = {}
    for plan in plans:
        facts = facts_by_host.get(plan.host) or {}
        address = plan.address if plan.address and plan.address not in WILDCARDS else ""
        if not address:
            address = str((facts.get("default_ipv4") or {}).get("address") or "")
        if address:
            addresses[plan.host] = address
        mounts[plan.host] = mount_of(plan.paths.hub_dir, [str(m.get("mount", "")) for m in facts.get("mounts") or []])
    return {"addresses": addresses, "model_mounts": mounts}


def files_for_host(plans: Sequence[HostPlan], host: str, facts: Mapping[str, Any], variables: Mapping[str, Any],
                   managed: str, server: bool, password: str | None) -> list[HostFile]:
    """Every monitoring file of ``host``: node exporter's (and the GPU timer's), and Prometheus's on a server."""
    by_host = {p.host: p for p in plans}
    if host not in by_host:
        raise MonitoringInputError(f"host {host} is not in the plan (not in the inventory's airgap_llm hosts?)")
    plan = by_host[host]
    settings = MonitoringSettings.from_vars(variables, host)
    addresses = dict(facts.get("addresses") or {})
    address = addresses.get(host, "")
    if not address:
        raise MonitoringInputError(f"host {host}: no address for node exporter and Prometheus: set ansible_host to "
                                   "an IP address or airgap_llm_inference_service_bind_address")
    files = node_files(plan, address, settings, managed)
    if server:
        missing = [p.host for p in plans if p.host not in addresses]
        if missing:
            raise MonitoringInputError(
                f"Prometheus on {host} cannot scrape {', '.join(missing)}: no address known (ansible_host is not an "
                "IP address and the host's facts were not gathered in this run; do not --limit the monitoring play "
                "to part of the hosts, or set ansible_host to their IP addresses)"
            )
        files += server_files(plans, plan, addresses, settings.with_listen_address(address), managed, password,
                              dict(facts.get("model_mounts") or {}))
    return files


def monitoring_servers(plans: Sequence[HostPlan], groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The Prometheus hosts as the monitoring role picks them: group airgap_llm_monitoring, else the first host of
    group airgap_llm (the plans are in the inventory's order)."""
    chosen = [p.host for p in plans if p.host in set(groups.get("airgap_llm_monitoring", ()))]
    default = [p.host for p in plans if p.host in set(groups.get("airgap_llm", ()))] or [p.host for p in plans]
    return chosen or default[:1]


def prometheus_endpoints(plans: Sequence[HostPlan], groups: Mapping[str, Sequence[str]],
                         hostvars: Mapping[str, Mapping[str, Any]], inventory_dir: str) -> list[dict[str, Any]]:
    """Where each Prometheus answers, for install's last lines: host, url (None when only the host's facts know
    its address), user and the credential's file on the controller (None without basic auth)."""
    out = []
    by_host = {p.host: p for p in plans}
    for host in monitoring_servers(plans, groups):
        hv = hostvars.get(host, {})
        if hv.get(PREFIX + "enabled") is False:
            continue
        try:
            settings = MonitoringSettings.from_vars(hv, host)
        except MonitoringInputError:
            continue  # the plan reported it
        address = settings.listen_address or (by_host[host].address if settings.basic_auth else "127.0.0.1")
        password_file = str(hv.get(PREFIX + "password_file") or
                            f"{inventory_dir}/credentials/airgap_llm_monitoring_password")
        out.append({
            "host": host,
            "url": f"http://{host_port(address, settings.port)}" if address else None,
            "port": settings.port,
            "user": settings.auth_user if settings.basic_auth else None,
            "password_file": password_file if settings.basic_auth else None,
        })
    return out


def endpoint_line(endpoint: Mapping[str, Any]) -> str:
    where = endpoint["url"] or f"{endpoint['host']}, port {endpoint['port']} (its service address)"
    if endpoint["user"]:
        return f"Prometheus on {endpoint['host']}: {where} (user {endpoint['user']}, password in " \
               f"{endpoint['password_file']})"
    return f"Prometheus on {endpoint['host']}: {where} (no auth, loopback only: ssh -L {endpoint['port']}:" \
           f"127.0.0.1:{endpoint['port']} {endpoint['host']})"
