"""``airgap-llm rollback``: every host (or --limit) back to its previous release (playbooks/rollback.yml)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.console import console, err_console
from airgap_llm.errors import InputError
from airgap_llm.gpumap import plan_inventory
from airgap_llm.inventory import load_inventory
from airgap_llm.progress import RunProgress
from airgap_llm.run_report import failures_text, progress_table
from airgap_llm.runner import run_playbook


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "rollback",
        help="put each host back on its previous release",
        description="Each host goes to its previous release (venv link, model snapshots, unit and environment "
        "files); only the services whose release changed restart, each waiting for /health. Live and previous "
        "swap, so a second rollback goes back; a host with no previous release is refused.",
    )
    add_inventory_argument(parser)
    parser.add_argument("--limit", metavar="HOSTS", help="only these hosts (Ansible --limit pattern)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result at the end")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output in failures")
    parser.set_defaults(func=run)


def rollback_hosts(
    inventory: str, hosts: list[str] | None, to: Mapping[str, str] | None = None, title: str = "rollback",
    verbosity: int = 0,
) -> tuple[dict[str, Any], RunProgress]:
    """Run playbooks/rollback.yml on ``hosts`` (None: all, or a --limit pattern in a one-item list); ``to``
    maps a host to ``previous`` (the default) or ``live``. Returns ``{host: the helper's result}`` and the run."""
    extravars = {"airgap_llm_release_rollback_to": dict(to)} if to else None
    limit = ",".join(hosts) if hosts else None
    with Live(progress_table(RunProgress(), title), console=err_console, refresh_per_second=4, transient=False) as live:
        progress = run_playbook("rollback.yml", Path(inventory), extravars=extravars, limit=limit,
                                on_event=lambda p: live.update(progress_table(p, title)), verbosity=verbosity)
        live.update(progress_table(progress, title, final=True))
    results: dict[str, Any] = {}
    for host in progress.hosts:
        fact = progress.facts.get(host, {}).get("airgap_llm_rollback")
        if fact is None:
            failure = next((f.message for f in progress.failures if f.host == host), "the rollback did not run")
            fact = {"ok": False, "refused": failure}
        results[host] = fact
    return results, progress


def result_line(host: str, r: Mapping[str, Any]) -> str:
    """One host's rollback in words."""
    if r.get("refused"):
        return f"{host}: refused: {r['refused']}"
    if not r.get("ok"):
        return f"{host}: FAILED: {r.get('failed_unit')} did not come back: {r.get('detail', '')}"
    moved = "restarted " + ", ".join(r["restarted"]) if r.get("restarted") else "no service restarted"
    if r.get("started"):
        moved += "; started " + ", ".join(r["started"])
    return f"{host}: release {r.get('from')} -> {r.get('release')} ({moved})"


def table(results: Mapping[str, Any]) -> Table:
    t = Table(title="rollback", title_justify="left")
    for col in ("host", "result", "from", "to", "restarted", "started", "detail"):
        t.add_column(col)
    for host, r in results.items():
        ok = bool(r.get("ok"))
        detail = r.get("refused") or (f"{r.get('failed_unit')}: {r.get('detail', '')}" if not ok else "")
        t.add_row(host, Text("ok" if ok else "FAILED", style="green" if ok else "bold red"),
                  str(r.get("from") or ""), str(r.get("release") or ""), ", ".join(r.get("restarted") or []),
                  ", ".join(r.get("started") or []), str(detail))
    return t


def run(args: argparse.Namespace) -> int:
    inv = load_inventory(args.inventory)
    plans = plan_inventory(inv)
    problems = [str(p) for plan in plans for p in plan.problems]
    if problems:
        raise InputError(f"{len(problems)} problem(s) found before contacting any host; nothing was changed:\n  "
                         + "\n  ".join(problems))
    results, progress = rollback_hosts(args.inventory, [args.limit] if args.limit else None,
                                       verbosity=args.verbose)
    ok = bool(results) and all(r.get("ok") for r in results.values()) and progress.ok
    if args.json:
        print(json.dumps({"ok": ok, "hosts": results, "artifacts": progress.artifacts}, indent=2))
    else:
        console.print(table(results))
        if not ok:
            console.print(failures_text(progress))
        console.print("[bold green]rolled back[/]" if ok else "[bold red]rollback failed[/]: see above")
    return 0 if ok else 1
