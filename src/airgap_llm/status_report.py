"""Put a host's status report together from what the status role read. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from airgap_llm.monitoring.metrics import loads_from_prometheus, loads_from_readings


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p ... unit...`` output (blocks separated by blank lines) keyed by unit Id."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


def journals(registered: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The journal lines read per unit: a registered ``journalctl -u UNIT`` loop keyed by its item."""
    found: dict[str, list[str]] = {}
    for r in (registered or {}).get("results", []):
        unit = r.get("item")
        if isinstance(unit, Mapping):
            unit = unit.get("unit")
        if not unit or r.get("skipped"):
            continue
        lines = r.get("stdout_lines")
        if lines is None:
            lines = str(r.get("stdout") or "").splitlines()
        found[str(unit)] = [str(line) for line in lines]
    return found


def state_text(service: Mapping[str, Any]) -> str:
    """``failed/failed (start-limit-hit), 3 restarts``: a unit's state as a sysadmin reads it."""
    text = f"{service['active']}/{service['sub']}"
    if service.get("result") not in (None, "", "success"):
        text += f" ({service['result']})"
    if service.get("restarts"):
        text += f", {service['restarts']} restart{'s' if service['restarts'] != 1 else ''}"
    return text


def report(
    plan: Mapping[str, Any],
    systemctl_show: str,
    health: Mapping[str, Any],
    gpu_json: str,
    journal: Mapping[str, Any] | None = None,
    metrics_json: str = "",
    prometheus: Mapping[str, Any] | None = None,
    ray: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry per planned service; a service that is not ok carries the last lines of its journal.

    ``gpu_json``: gpu-usage's output, {"services": {name: MiB}, "gpus": [...]} (or the older {name: MiB});
    ``metrics_json``: engine-metrics' two readings of each engine's /metrics, which give each service's load;
    ``prometheus``: the PromQL answers of ``airgap_llm.monitoring.metrics.PROMQL`` (a registered uri loop),
    which give it instead when Prometheus answered every query;
    ``ray``: on a Ray head, the registered loop of ``ray-wait-cluster`` asked once (its nodes alive).
    """
    units = parse_systemctl_show(systemctl_show)
    try:
        gpu_data = json.loads(gpu_json or "{}")
    except ValueError:
        gpu_data = {}
    if not isinstance(gpu_data, dict):
        gpu_data = {}
    gpu = gpu_data.get("services", {}) if "services" in gpu_data else gpu_data
    gpus = gpu_data.get("gpus", []) if isinstance(gpu_data.get("gpus"), list) else []
    try:
        readings = json.loads(metrics_json or "{}")
    except ValueError:
        readings = {}
    loads = loads_from_readings(readings if isinstance(readings, dict) else {})
    loads.update(loads_from_prometheus(prometheus, str(plan.get("host", ""))))
    health_by_name = {r["item"]["name"]: r for r in health.get("results", []) if "item" in r}
    ray_by_name = {r["item"]["name"]: ray_nodes(r) for r in (ray or {}).get("results", [])
                   if "item" in r and not r.get("skipped")}
    lines_by_unit = journals(journal)
    services = []
    for svc in plan.get("services", []):
        u = units.get(svc["unit"], {})
        h = health_by_name.get(svc["name"], {})
        active = u.get("ActiveState", "unknown")
        serves_api = bool(svc.get("serves_api", True))  # a multi-node service answers on its head only
        healthy = h.get("status") == 200 if serves_api else None
        ray_seen = ray_by_name.get(svc["name"])
        ok = active == "active" and (healthy or not serves_api) and (ray_seen is None or bool(ray_seen["ok"]))
        cluster = svc.get("cluster")
        services.append(
            {
                "name": svc["name"],
                "unit": svc["unit"],
                "kind": svc["kind"],
                "role": svc.get("role", "single"),  # single, or head / worker / rank R of a multi-node service
                "port": svc["port"] if serves_api else None,
                "gpus": svc["gpus"],
                "loaded": u.get("LoadState", "unknown"),
                "active": active,
                "sub": u.get("SubState", "unknown"),
                "result": u.get("Result") or None,
                "restarts": int(u["NRestarts"]) if u.get("NRestarts", "").isdigit() else None,
                "since": u.get("ActiveEnterTimestamp") or None,
                "healthy": healthy,
                "health": (h.get("status") if h.get("status", -1) != -1 else h.get("msg", "no answer"))
                if serves_api else "no API on this node",
                "gpu_memory_mib": gpu.get(svc["name"]),
                "load": loads.get(svc["name"]),
                "cluster": {"backend": cluster["backend"], "nodes": cluster["nodes"], "hosts": list(cluster["hosts"]),
                            "ray": ray_seen} if cluster else None,
                "ok": ok,
                "journal": [] if ok else lines_by_unit.get(svc["unit"], []),
            }
        )
    return {"ok": all(s["ok"] for s in services), "services": services, "gpus": gpus}


_RAY_SEEN = re.compile(r"Ray cluster at \S+: (?:only )?(\d+) of (\d+) nodes")


def ray_nodes(result: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray head's nodes as ``ray-wait-cluster ... 0`` (one look) saw them: alive of wanted, and its words."""
    out = str(result.get("stdout") or "").strip()
    err = [line for line in str(result.get("stderr") or "").strip().splitlines() if line.strip()]
    text = out if result.get("rc") == 0 else (err[-1] if err else f"ray-wait-cluster exited {result.get('rc')}")
    m = _RAY_SEEN.search(text)
    return {"alive": int(m.group(1)) if m else None, "nodes": int(m.group(2)) if m else None,
            "ok": result.get("rc") == 0, "detail": text}


def cluster_states(reports: Mapping[str, Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """Per multi-node service, from every host's report: each node's unit state and, on Ray, the nodes
    the head's cluster has alive. ``ok`` when every node's unit is active (and Ray sees them all)."""
    found: dict[str, dict[str, Any]] = {}
    for rep in reports.values():
        for s in (rep or {}).get("services", []):
            c = s.get("cluster")
            if c and s["name"] not in found:
                found[s["name"]] = {"service": s["name"], "backend": c["backend"], "nodes": c["nodes"],
                                    "hosts": list(c["hosts"])}
    states = []
    for name, c in found.items():
        per_host: dict[str, str] = {}
        ray_seen = None
        for host in c["hosts"]:
            rep = reports.get(host)
            svc = next((s for s in (rep or {}).get("services", []) if s["name"] == name), None)
            if svc is None:
                per_host[host] = "no report"
                continue
            per_host[host] = f"{svc['role']}: {svc['active']}/{svc['sub']}"
            if (svc.get("cluster") or {}).get("ray"):
                ray_seen = svc["cluster"]["ray"]
        active = sum(1 for v in per_host.values() if v.endswith(": active/running"))
        ok = active == len(c["hosts"]) and (c["backend"] != "ray" or bool(ray_seen and ray_seen["ok"]))
        states.append({**c, "units_active": active, "node_units": per_host, "ray": ray_seen, "ok": ok})
    return states
