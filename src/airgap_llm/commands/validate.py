"""``airgap-llm validate``: a real request to every service, results per host and service."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.console import console, err_console
from airgap_llm.run_report import failures_text
from airgap_llm.runner import run_playbook


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "validate",
        help="a real request to every service",
        description="Chat completion, embeddings, transcription, OCR and app health checks on every host, "
        "with and without the API key.",
    )
    add_inventory_argument(parser)
    parser.add_argument("--limit", metavar="HOSTS", help="only these hosts (Ansible --limit pattern)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(func=run)


def collect(inventory: str, limit: str | None) -> tuple[dict[str, Any], Any]:
    progress = run_playbook(
        "validate.yml", Path(inventory), extravars={"airgap_llm_validate_fail": False}, limit=limit
    )
    hosts = {h: progress.facts.get(h, {}).get("airgap_llm_validate_results") for h in progress.hosts}
    failures: list[dict[str, Any]] = []
    for host, results in hosts.items():
        if results is None:
            failures.append({"host": host, "service": None, "check": "run", "detail": "validation did not run"})
            continue
        failures += [{"host": host, **r} for r in results if not r["ok"]]
    for f in progress.failures:
        failures.append({"host": f.host, "service": None, "check": "run", "detail": f.message})
    result = {"ok": not failures, "hosts": {h: r or [] for h, r in hosts.items()}, "failures": failures}
    return result, progress


def table(result: dict[str, Any]) -> Table:
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
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        console.print(table(result))
        if progress.failures:
            err_console.print(failures_text(progress))
        n = sum(len(r) for r in result["hosts"].values())
        bad = len(result["failures"])
        console.print(f"[bold {'green' if not bad else 'red'}]{n - bad} of {n} checks passed[/]")
    return 0 if result["ok"] else 1
