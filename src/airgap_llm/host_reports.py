"""Shared by the read-only commands (status, validate): run a playbook that leaves a report per host in a
fact, collect the reports, and print them as a table or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import RenderableType

from airgap_llm.console import console, err_console
from airgap_llm.progress import RunProgress
from airgap_llm.run_report import failures_text
from airgap_llm.runner import run_playbook


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", metavar="HOSTS", help="only these hosts (Ansible --limit pattern)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")


def collect_reports(
    playbook: str, inventory: str, fact: str, limit: str | None, extravars: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], RunProgress]:
    """Run ``playbook`` and return ``{host: value of fact or None}`` with the run's progress."""
    progress = run_playbook(playbook, Path(inventory), extravars=extravars, limit=limit)
    return {h: progress.facts.get(h, {}).get(fact) for h in progress.hosts}, progress


def run_failures(progress: RunProgress) -> list[dict[str, Any]]:
    return [{"host": f.host, "service": None, "detail": f.message} for f in progress.failures]


def print_result(
    args: argparse.Namespace,
    result: Mapping[str, Any],
    table: Callable[[Mapping[str, Any]], RenderableType],
    progress: RunProgress,
    footer: str | None = None,
) -> int:
    if args.json:
        print(json.dumps({**result, "artifacts": progress.artifacts}, indent=2))
    else:
        console.print(table(result))
        if progress.failures or progress.artifacts:
            err_console.print(failures_text(progress))
        if footer:
            console.print(footer)
    return 0 if result["ok"] else 1
