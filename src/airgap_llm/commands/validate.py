"""``airgap-llm validate``: a real request to every service, results per host and service."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.host_reports import add_report_arguments, collect_reports, print_result, run_failures


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "validate",
        help="a real request to every service",
        description="Chat completion, embeddings, transcription, OCR and app health checks on every host, "
        "with and without the API key.",
    )
    add_inventory_argument(parser)
    add_report_arguments(parser)
    parser.set_defaults(func=run)


def collect(inventory: str, limit: str | None) -> tuple[dict[str, Any], Any]:
    hosts, progress = collect_reports(
        "validate.yml", inventory, "airgap_llm_validate_results", limit, {"airgap_llm_validate_fail": False}
    )
    failures: list[dict[str, Any]] = []
    for host, results in hosts.items():
        if results is None:
            failures.append({"host": host, "service": None, "check": "run", "detail": "validation did not run"})
            continue
        failures += [{"host": host, **r} for r in results if not r["ok"]]
    failures += [{**f, "check": "run"} for f in run_failures(progress)]
    result = {"ok": not failures, "hosts": {h: r or [] for h, r in hosts.items()}, "failures": failures}
    return result, progress


def table(result: Mapping[str, Any]) -> Table:
    t = Table(title="validate", title_justify="left")
    for col in ("host", "service", "kind", "check", "result", "detail", "seconds"):
        t.add_column(col)
    for host, results in result["hosts"].items():
        for r in results:
            secs = r.get("seconds")
            t.add_row(
                host, r["service"], r["kind"], r["check"],
                Text("ok", style="green") if r["ok"] else Text("FAIL", style="bold red"),
                str(r["detail"]), f"{secs:g}" if isinstance(secs, (int, float)) else "",
            )
    return t


def run(args: argparse.Namespace) -> int:
    result, progress = collect(args.inventory, args.limit)
    n = sum(len(r) for r in result["hosts"].values())
    bad = len(result["failures"])
    footer = f"[bold {'green' if not bad else 'red'}]{n - bad} of {n} checks passed[/]"
    return print_result(args, result, table, progress, footer)
