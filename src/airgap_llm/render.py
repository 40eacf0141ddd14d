"""What ``install`` would write onto each host, computed on the controller alone (``airgap-llm render``).

The files come from the same functions the inference_service role calls (``host_files``), with the
role's settings read the way Ansible resolves them: the role's ``defaults/main.yml`` first, then the
inventory's values for the host. Secrets are replaced by a placeholder; facts only the host knows
(its address when ``ansible_host`` is a name) get a placeholder and a note saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airgap_llm import gpu_devices
from airgap_llm.gpumap import HostPlan
from airgap_llm.host_files import HostFile, api_key_file, os_files, service_files, webui_secret_files
from airgap_llm.monitoring.files import WEB_CONFIG_FILE
from airgap_llm.monitoring.hosts import files_for_host
from airgap_llm.monitoring.settings import PREFIX as MONITORING_PREFIX
from airgap_llm.monitoring.settings import MonitoringSettings
from airgap_llm.units import ROLE_PREFIX, UnitSettings

SECRET_PLACEHOLDER = "<secret: generated on the controller at install, kept 0600>"


@dataclass
class RenderedHost:
    host: str
    files: list[HostFile]
    notes: list[str] = field(default_factory=list)


def role_defaults(project: Path, role: str = "inference_service") -> dict[str, Any]:
    """A role's defaults (inference_service's: the home of the settings that shape the unit files)."""
    path = project / "roles" / role / "defaults" / "main.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): v for k, v in data.items()}


def managed_string() -> str:
    """Ansible's ``ansible_managed`` as the project's ansible.cfg sets it (the units' first line)."""
    from ansible import constants as C

    return str(C.config.get_config_value("DEFAULT_MANAGED_STR"))


def render_host(plan: HostPlan, hostvars: Mapping[str, Any], defaults: Mapping[str, Any], managed: str,
                addresses: Mapping[str, str] | None = None) -> RenderedHost:
    settings_vars = dict(defaults)
    settings_vars.update({k: v for k, v in hostvars.items() if k.startswith(ROLE_PREFIX)})
    settings = UnitSettings.from_vars(settings_vars)
    notes: list[str] = []
    address = settings.bind_address or plan.address
    if address:
        source = f"the inventory ({ROLE_PREFIX}bind_address)" if settings.bind_address else plan.address_source
        notes.append(f"service address {address}: from {source}")
    else:
        address = f"<address of {plan.host}>"
        notes.append(f"service address: a placeholder; at install it is {plan.address_source}")
    devices = gpu_devices.from_inventory(
        hostvars.get("airgap_llm_gpu") if isinstance(hostvars.get("airgap_llm_gpu"), Mapping) else None,
        hostvars.get("airgap_llm_nvidia_driver_fabricmanager", "auto"),
    )
    files = os_files(plan, managed) + service_files(plan, settings, managed, address, devices, addresses)
    key_file = str(settings_vars.get(f"{ROLE_PREFIX}api_key_file", ""))
    if key_file:
        files.append(api_key_file(plan, SECRET_PLACEHOLDER))
        notes.append("API key: replaced by a placeholder")
    secrets = webui_secret_files(plan, SECRET_PLACEHOLDER, SECRET_PLACEHOLDER, SECRET_PLACEHOLDER)
    if secrets:
        files += secrets
        notes.append("web UI secrets (the key, its session secret, its admin's password): replaced by placeholders")
    if plan.gpu is not None and any(s.gpus for s in plan.services):
        notes.append(
            f"GPU device nodes: minors from {devices.minors_source}; at install the role reads them on the host "
            "(nvidia-smi -q)"
        )
        notes.append(
            f"NVSwitch ({gpu_devices.FABRICMANAGER_UNIT} required): {'yes' if devices.nvswitch else 'no'}, "
            f"{devices.nvswitch_source}"
        )
    return RenderedHost(plan.host, files, notes)


def render_monitoring(plans: Sequence[HostPlan], host: str, hostvars: Mapping[str, Any],
                      defaults: Mapping[str, Any], managed: str, servers: Sequence[str]) -> RenderedHost:
    """The monitoring role's files of ``host`` (node exporter, GPU timer; Prometheus's on a server). Hosts whose
    address only their facts know get a placeholder; the credential's hash is replaced by a placeholder."""
    settings_vars = {k: v for k, v in defaults.items() if k.startswith(MONITORING_PREFIX)}
    settings_vars.update({k: v for k, v in hostvars.items() if k.startswith(MONITORING_PREFIX)})
    addresses = {p.host: p.address or f"<address of {p.host}>" for p in plans}
    facts = {"addresses": addresses, "model_mounts": {p.host: "/" for p in plans}}
    server = host in servers
    settings = MonitoringSettings.from_vars(settings_vars, host)
    files = files_for_host(plans, host, facts, settings_vars, managed, server, "placeholder")
    notes = []
    if server:
        notes.append("Prometheus runs here (group airgap_llm_monitoring, else the first host of group airgap_llm)")
        if settings.basic_auth:
            files = [
                HostFile(f.path, _placeholder_hash(f.content), f.owner, f.group, f.mode, f.service, f.secret)
                if f.path == WEB_CONFIG_FILE else f
                for f in files
            ]
            notes.append("Prometheus credential: its bcrypt hash replaced by a placeholder")
        notes.append("disk alert: the models' mount point is taken as '/' (at install: from the hosts' facts)")
    return RenderedHost(host, files, notes)


def _placeholder_hash(content: str) -> str:
    import re

    return re.sub(r"\$2b\$\d\d\$[./A-Za-z0-9]{53}", "<bcrypt hash of the credential generated at install>", content)


def write_rendered(out: Path, rendered: Sequence[RenderedHost]) -> list[Path]:
    """Write each file at ``out/<host>/<absolute path on the host>``; returns the paths written."""
    written = []
    for host in rendered:
        for f in host.files:
            target = out / host.host / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content, encoding="utf-8")
            target.chmod(0o600 if f.secret else int(f.mode, 8) & 0o644)
            written.append(target)
    return written
