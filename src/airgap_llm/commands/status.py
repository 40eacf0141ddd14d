"""``airgap-llm status``: units active/failed, GPU memory per service, health, per host."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.host_reports import add_report_arguments, collect_reports, print_result, run_failures
from airgap_llm.status_report import state_text


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "status",
        help="units, GPUs and health per host",
        description="Read-only: the state of every service's unit, its GPU memory and its /health answer.",
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
    failures += run_failures(progress)
    return {"ok": not failures, "hosts": hosts, "failures": failures}, progress


def table(result: Mapping[str, Any]) -> Table:
    t = Table(title="status", title_justify="left")
    for col in ("host", "service", "kind", "port", "GPUs", "unit", "restarts", "GPU MiB", "health"):
        t.add_column(col)
    for host, rep in result["hosts"].items():
        if rep is None:
            t.add_row(host, Text("no report", style="bold red"), "", "", "", "", "", "", "")
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
            )
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
    journal = journals_text(result)
    return t if journal is None else Group(t, journal)


def _kind_role(s: dict[str, Any]) -> str:
    """The kind, with this host's part of a multi-node service (head, worker, rank R)."""
    role = s.get("role", "single")
    return str(s["kind"]) if role == "single" else f"{s['kind']} ({role})"
