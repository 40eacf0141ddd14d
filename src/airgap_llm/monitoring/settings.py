"""The monitoring role's settings (``airgap_llm_monitoring_*``; its defaults/main.yml is their home), checked.

Every bad value is reported with the variable's name and the host it was read for, all at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

PREFIX = "airgap_llm_monitoring_"
# Prometheus's duration syntax (model.ParseDuration): units from the largest to the smallest, each once.
DURATION_RE = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
SIZE_RE = re.compile(r"^\d+(B|KB|MB|GB|TB|PB|EB)$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
WILDCARDS = ("0.0.0.0", "::", "[::]", "")

# The seeds' figures: GPU memory alert at 85 %, temperature limit 83 °C; the rest from the issue.
DEFAULT_ALERTS: dict[str, float | str] = {
    "service_down_for": "2m",  # an engine's /metrics or its unit down this long
    "kv_cache_usage": 0.90,  # vllm:kv_cache_usage_perc above this ...
    "kv_cache_for": "5m",  # ... this long
    "waiting_for": "5m",  # requests waiting and their number growing this long
    "gpu_memory_used": 0.85,  # GPU memory used / total above this
    "gpu_memory_for": "5m",
    "gpu_temperature_c": 83.0,
    "gpu_temperature_for": "5m",
    "disk_free": 0.10,  # free space under this fraction where the models live
    "disk_for": "10m",
    "host_down_for": "2m",  # a host of a service spanning hosts (a Ray worker) gone this long
}
FRACTION_ALERTS = ("kv_cache_usage", "gpu_memory_used", "disk_free")


class MonitoringInputError(ValueError):
    """Bad monitoring settings or input; the message lists every problem (each one in ``problems``)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


@dataclass(frozen=True)
class MonitoringSettings:
    listen_address: str = ""  # empty: the host's service address; never a wildcard
    port: int = 9090
    retention: str = "15d"
    retention_size: str = ""  # empty: no size limit (Prometheus's --storage.tsdb.retention.size)
    basic_auth: bool = True  # false: Prometheus listens on loopback only
    auth_user: str = "airgap-llm"
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    node_exporter_port: int = 9100
    gpu_interval_s: int = 15
    alerts: Mapping[str, float | str] = field(default_factory=lambda: dict(DEFAULT_ALERTS))
    extra_rules: tuple[Mapping[str, Any], ...] = ()
    app_metrics: tuple[str, ...] = ()  # app services that export Prometheus metrics at /metrics

    @classmethod
    def from_vars(cls, variables: Mapping[str, Any], where: str = "") -> MonitoringSettings:
        """From role variables; unset ones keep the default. Raises ``MonitoringInputError`` naming each problem."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        at = f" (host {where})" if where else ""
        for f in fields(cls):
            name = PREFIX + f.name
            if name not in variables or variables[name] is None:
                continue
            value = variables[name]
            if isinstance(value, str) and "{{" in value:
                continue
            default = getattr(cls(), f.name)
            if f.name == "alerts":
                value = _alerts(value, name, at, problems)
            elif f.name == "extra_rules":
                value = _extra_rules(value, name, at, problems)
            elif f.name == "app_metrics":
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    problems.append(f"{name}{at} must be a list of app service names, got {value!r}")
                    continue
                value = tuple(value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    problems.append(f"{name}{at} must be true or false, got {value!r}")
                    continue
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) and not (
                    isinstance(value, str) and value.isdigit()
                ):
                    problems.append(f"{name}{at} must be a whole number, got {value!r}")
                    continue
                value = int(value)
            else:
                value = str(value)
            values[f.name] = value
        settings = cls(**values)
        problems += settings.problems(at)
        if problems:
            raise MonitoringInputError("monitoring settings: " + "; ".join(problems), problems)
        return settings

    def problems(self, at: str = "") -> list[str]:
        out = []
        for name in ("retention", "scrape_interval", "evaluation_interval"):
            value = getattr(self, name)
            if not value or not DURATION_RE.match(value) or not re.search(r"\d", value):
                out.append(f"{PREFIX}{name}{at} must be a Prometheus duration such as 15d, 12h or 30s, got {value!r}")
        if self.retention_size and not SIZE_RE.match(self.retention_size):
            out.append(f"{PREFIX}retention_size{at} must be a size such as 50GB or 512MB (or empty), "
                       f"got {self.retention_size!r}")
        for name in ("port", "node_exporter_port"):
            value = getattr(self, name)
            if not 1 <= value <= 65535:
                out.append(f"{PREFIX}{name}{at} must be a TCP port (1-65535), got {value}")
        if self.port == self.node_exporter_port:
            out.append(f"{PREFIX}port and {PREFIX}node_exporter_port{at} are both {self.port}")
        if not 5 <= self.gpu_interval_s <= 3600:
            out.append(f"{PREFIX}gpu_interval_s{at} must be between 5 and 3600 seconds, got {self.gpu_interval_s}")
        if not USER_RE.match(self.auth_user):
            out.append(f"{PREFIX}auth_user{at} must be 1-64 letters, digits, '_', '.' or '-', got {self.auth_user!r}")
        if self.listen_address:
            out += listen_address_problems(self.listen_address, self.basic_auth, f"{PREFIX}listen_address{at}")
        return out

    def with_listen_address(self, service_address: str) -> MonitoringSettings:
        """The settings with the address Prometheus listens on resolved (loopback without basic auth)."""
        if self.listen_address:
            return self
        return replace(self, listen_address=service_address if self.basic_auth else "127.0.0.1")


# Role variables that are not file-shaping settings (the plan, which hosts, the credential's file, ...).
ROLE_ONLY_VARS = ("plan", "servers", "password_file", "ready_timeout_s", "enabled")


def known_variables() -> tuple[str, ...]:
    return tuple(PREFIX + n for n in (*(f.name for f in fields(MonitoringSettings)), *ROLE_ONLY_VARS))


def check_host_vars(hostvars: Mapping[str, Any]) -> list[str]:
    """The monitoring problems of one host's inventory variables, for the plan (before any host is contacted):
    bad values, and ``airgap_llm_monitoring_*`` names the role does not read (a typo would be ignored)."""
    import difflib

    known = known_variables()
    problems = []
    for key in hostvars:
        if str(key).startswith(PREFIX) and key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(known)})"
            problems.append(f"variable '{key}' is not one the monitoring role reads{hint}")
    try:
        MonitoringSettings.from_vars(hostvars)
    except MonitoringInputError as exc:
        problems += exc.problems
    return problems


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address == "localhost"


def listen_address_problems(address: str, basic_auth: bool, what: str) -> list[str]:
    if address in WILDCARDS:
        return [f"{what} is {address!r}: Prometheus never listens on every address; give the host's service "
                "address or 127.0.0.1"]
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return [f"{what} must be an IP address, got {address!r}"]
    if not basic_auth and not is_loopback(address):
        return [f"{what} is {address}, but {PREFIX}basic_auth is false: without basic auth Prometheus "
                "listens on loopback only (127.0.0.1)"]
    return []


def _alerts(value: Any, name: str, at: str, problems: list[str]) -> dict[str, float | str]:
    merged = dict(DEFAULT_ALERTS)
    if not isinstance(value, Mapping):
        problems.append(f"{name}{at} must be a mapping of {', '.join(DEFAULT_ALERTS)}, got {type(value).__name__}")
        return merged
    for key, item in value.items():
        if key not in DEFAULT_ALERTS:
            problems.append(f"{name}{at} has unknown key {key!r} (known: {', '.join(DEFAULT_ALERTS)})")
        elif isinstance(DEFAULT_ALERTS[key], str):
            if not isinstance(item, str) or not DURATION_RE.match(item) or not re.search(r"\d", item):
                problems.append(f"{name}.{key}{at} must be a Prometheus duration such as 5m, got {item!r}")
            else:
                merged[str(key)] = str(item)
        elif isinstance(item, bool) or not isinstance(item, int | float):
            problems.append(f"{name}.{key}{at} must be a number, got {item!r}")
        elif key in FRACTION_ALERTS and not 0 < item < 1:
            problems.append(f"{name}.{key}{at} is a fraction between 0 and 1 (0.9 for 90 %), got {item!r}")
        else:
            merged[str(key)] = float(item)
    return merged


def _extra_rules(value: Any, name: str, at: str, problems: list[str]) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        problems.append(f"{name}{at} must be a list of Prometheus alerting rules, got {type(value).__name__}")
        return ()
    for i, rule in enumerate(value):
        if not isinstance(rule, Mapping) or not isinstance(rule.get("alert"), str) or not isinstance(
            rule.get("expr"), str
        ):
            problems.append(f"{name}[{i}]{at} must be a mapping with 'alert' and 'expr' strings, got {rule!r}")
    import json

    # Plain values only (the inventory's strings may be str subclasses that a YAML dump refuses).
    return tuple(json.loads(json.dumps(dict(r), default=str)) for r in value if isinstance(r, Mapping))
