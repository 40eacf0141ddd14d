"""``airgap-llm status``: units active/failed, GPU memory per service, health and load, per host; GPUs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.host_reports import add_report_arguments, collect_reports, print_result, run_failures
from airgap_llm.status_report import cluster_states, state_text


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "status",
        help="units, GPUs, health and load per host",
        description="Read-only: the state of every service's unit, its GPU memory, its /health answer and its load "
        "(requests running and waiting, KV cache usage, generation tokens per second, time to first token p50/p95, "
        "from two readings of its /metrics a few seconds apart); per GPU, memory used and utilization; per host, "
        "the live and the previous release.",
    )
    add_inventory_argument(parser)
    add_report_arguments(parser)
    parser.set_defaults(func=run)


def collect(inventory: str, limit: str | None) -> tuple[dict[str, Any], Any]:
    hosts, progress = collect_reports("status.yml", inventory, "airgap_llm_status_report", limit)
    failures: list[dict[str, Any]] = []
    for host, rep in hosts.items():
        if rep is None:
            failures.append({"host": host, "service": None, "detail": "no report (host failed or unreachable)"})
            continue
        for s in rep["services"]:
            if not s["ok"]:
                failures.append(
                    {
                        "host": host,
                        "service": s["name"],
                        "detail": f"{state_text(s)}, health {s['health']}",
                        "journal": s.get("journal", []),
                    }
                )
    clusters = cluster_states(hosts)
    for c in clusters:
        if not c["ok"]:
            failures.append({"host": c["hosts"][0], "service": c["service"], "detail": "cluster: " + cluster_text(c)})
    failures += run_failures(progress)
    return {"ok": not failures, "hosts": hosts, "clusters": clusters, "failures": failures}, progress


def cluster_text(c: Mapping[str, Any]) -> str:
    """``2 of 2 node units active; Ray: 2 of 2 nodes alive``: one multi-node service as a sysadmin reads it."""
    text = f"{c['units_active']} of {len(c['hosts'])} node units active"
    if c["backend"] == "ray":
        ray = c.get("ray")
        if ray is None:
            text += "; Ray: the head was not asked"
        elif ray.get("alive") is not None:
            text += f"; Ray: {ray['alive']} of {ray['nodes']} nodes alive"
        else:
            text += f"; Ray: {ray['detail']}"
    return text


def cluster_table(result: Mapping[str, Any]) -> Table | None:
    """Per multi-node service: its backend, each node's part and unit state, and what Ray sees."""
    clusters = result.get("clusters") or []
    if not clusters:
        return None
    t = Table(title="multi-node services", title_justify="left")
    for col in ("service", "backend", "nodes", "state"):
        t.add_column(col)
    for c in clusters:
        nodes = "\n".join(f"{h} ({c['node_units'][h]})" for h in c["hosts"])
        t.add_row(c["service"], c["backend"], nodes,
                  Text(cluster_text(c), style="green" if c["ok"] else "bold red"))
    return t


def _num(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def load_cells(load: Mapping[str, Any] | None) -> list[str]:
    """run/wait, KV %, tok/s, TTFT p50/p95 of one service ('' where there is nothing to show)."""
    if not load:
        return ["", "", "", ""]
    if load.get("error"):
        return ["no /metrics", "", "", ""]
    run_wait = f"{_num(load.get('requests_running'), '.0f')}/{_num(load.get('requests_waiting'), '.0f')}"
    kv = load.get("kv_cache_usage")
    ttft = ""
    if load.get("ttft_p50_s") is not None:
        ttft = f"{load['ttft_p50_s'] * 1000:.0f}/{load['ttft_p95_s'] * 1000:.0f} ms"
    return [run_wait, "" if kv is None else f"{kv * 100:.1f}", _num(load.get("generation_tokens_per_s"), ".1f"), ttft]


def table(result: Mapping[str, Any]) -> Table:
    t = Table(title="status", title_justify="left")
    for col in ("host", "service", "kind", "port", "GPUs", "unit", "restarts", "GPU MiB", "health", "run/wait",
                "KV %", "tok/s", "TTFT p50/p95"):
        t.add_column(col)
    for host, rep in result["hosts"].items():
        if rep is None:
            t.add_row(host, Text("no report", style="bold red"), *[""] * 11)
            continue
        for s in rep["services"]:
            state = f"{s['active']}/{s['sub']}" + (
                f" ({s['result']})" if s.get("result") not in (None, "", "success") else ""
            )
            t.add_row(
                host, s["name"], _kind_role(s), "" if s["port"] is None else str(s["port"]),
                ",".join(str(g) for g in s["gpus"]) or "cpu",
                Text(state, style="green" if s["active"] == "active" else "bold red"),
                "" if s["restarts"] is None else str(s["restarts"]),
                "" if s["gpu_memory_mib"] is None else str(s["gpu_memory_mib"]),
                Text(str(s["health"]), style="bold red" if s["healthy"] is False else "green"),
                *load_cells(s.get("load")),
            )
    return t


def gpu_table(result: Mapping[str, Any]) -> Table | None:
    """Per GPU: memory used of total and utilization (hosts where nvidia-smi answered)."""
    rows = [(host, g) for host, rep in result["hosts"].items() if rep for g in rep.get("gpus") or []]
    if not rows:
        return None
    t = Table(title="GPUs", title_justify="left")
    for col in ("host", "GPU", "memory used MiB", "of MiB", "used %", "utilization %"):
        t.add_column(col)
    for host, g in rows:
        used, total = g.get("memory_used_mib"), g.get("memory_total_mib")
        share = f"{used / total * 100:.1f}" if used is not None and total else ""
        t.add_row(host, str(g.get("index")), _num(used, ".0f"), _num(total, ".0f"), share,
                  _num(g.get("utilization_pct"), ".0f"))
    return t


def release_cell(release: Mapping[str, Any] | None) -> str:
    """A release as one cell: its id, venv, models and when it was made."""
    if not release:
        return "none"
    models = ", ".join(f"{svc}@{snap[:10]}" for svc, snap in (release.get("models") or {}).items())
    made = release.get("created") or ""
    return f"{release['id']} (venv {release.get('venv') or '?'}; {models or 'no models'}; {made})"


def release_table(result: Mapping[str, Any]) -> Table | None:
    """Per host: the live and the previous release (roles/release), and whether a rollback put the live one there."""
    rows = [(host, rep.get("releases")) for host, rep in result["hosts"].items() if rep]
    if not rows:
        return None
    t = Table(title="releases", title_justify="left")
    for col in ("host", "live", "previous", "note"):
        t.add_column(col)
    for host, rel in rows:
        if not rel:
            t.add_row(host, "none recorded", "", "installed before releases were kept, or never installed")
            continue
        back = rel.get("rolled_back")
        note = f"rolled back from {back['from']}" if back else ""
        t.add_row(host, release_cell(rel.get("live")), release_cell(rel.get("previous")), note)
    return t


def journals_text(result: Mapping[str, Any]) -> RenderableType | None:
    """Under the table: each service that is not ok, its state and the last lines of its journal."""
    parts: list[RenderableType] = []
    for f in result["failures"]:
        if f.get("service") is None:
            continue
        lines = f.get("journal") or []
        head = f"{f['host']} {f['service']}: {f['detail']}"
        head += f"; the last {len(lines)} lines of its journal:" if lines else "; no journal lines read"
        parts.append(Text(head, style="bold red"))
        if lines:
            parts.append(Text("  " + "\n  ".join(lines)))
    return Group(*parts) if parts else None


def run(args: argparse.Namespace) -> int:
    result, progress = collect(args.inventory, args.limit)
    return print_result(args, result, lambda r: _with_journals(table(r), r), progress)


def _with_journals(t: Table, result: Mapping[str, Any]) -> RenderableType:
    parts: list[RenderableType] = [t]
    for extra in (cluster_table(result), gpu_table(result), release_table(result)):
        if extra is not None:
            parts.append(extra)
    journal = journals_text(result)
    if journal is not None:
        parts.append(journal)
    return parts[0] if len(parts) == 1 else Group(*parts)


def _kind_role(s: dict[str, Any]) -> str:
    """The kind, with this host's part of a multi-node service (head, worker, rank R)."""
    role = s.get("role", "single")
    return str(s["kind"]) if role == "single" else f"{s['kind']} ({role})"
