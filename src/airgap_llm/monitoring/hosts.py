"""What monitoring needs to know about every host besides its plan: the address to scrape it at and the
mount point where its models live (from the facts Ansible gathered). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airgap_llm.gpumap import HostPlan
from airgap_llm.host_files import HostFile
from airgap_llm.monitoring.files import node_files, server_files
from airgap_llm.monitoring.rules import mount_of
from airgap_llm.monitoring.settings import WILDCARDS, MonitoringInputError, MonitoringSettings


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
