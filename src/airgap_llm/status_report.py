"""Put a host's status report together from what the status role read. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p ... unit...`` output (blocks separated by blank lines) keyed by unit Id."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


def report(plan: Mapping[str, Any], systemctl_show: str, health: Mapping[str, Any], gpu_json: str) -> dict[str, Any]:
    units = parse_systemctl_show(systemctl_show)
    try:
        gpu = json.loads(gpu_json or "{}")
    except ValueError:
        gpu = {}
    health_by_name = {r["item"]["name"]: r for r in health.get("results", []) if "item" in r}
    services = []
    for svc in plan.get("services", []):
        u = units.get(svc["unit"], {})
        h = health_by_name.get(svc["name"], {})
        active = u.get("ActiveState", "unknown")
        healthy = h.get("status") == 200
        services.append(
            {
                "name": svc["name"],
                "unit": svc["unit"],
                "kind": svc["kind"],
                "port": svc["port"],
                "gpus": svc["gpus"],
                "loaded": u.get("LoadState", "unknown"),
                "active": active,
                "sub": u.get("SubState", "unknown"),
                "restarts": int(u["NRestarts"]) if u.get("NRestarts", "").isdigit() else None,
                "since": u.get("ActiveEnterTimestamp") or None,
                "healthy": healthy,
                "health": h.get("status") if h.get("status", -1) != -1 else h.get("msg", "no answer"),
                "gpu_memory_mib": gpu.get(svc["name"]),
                "ok": active == "active" and healthy,
            }
        )
    return {"ok": all(s["ok"] for s in services), "services": services}
