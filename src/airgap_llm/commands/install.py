"""``airgap-llm install``: drive playbooks/site.yml with a live hosts x steps view and a summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.live import Live

from airgap_llm.bundle.verify import refuse_delta
from airgap_llm.bundle_check import check_bundle_for_plans
from airgap_llm.bundle_signers import bundle_signature_problems
from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.console import console, err_console
from airgap_llm.errors import AirgapLlmError, InputError
from airgap_llm.gpumap import plan_inventory
from airgap_llm.inventory import load_inventory
from airgap_llm.memory.apply import check_memory_fit_from_bundle
from airgap_llm.monitoring.hosts import endpoint_line, prometheus_endpoints
from airgap_llm.progress import RunProgress
from airgap_llm.run_report import failures_text, progress_table, run_result, summary_table
from airgap_llm.runner import run_playbook


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "install",
        help="install everything from a bundle onto the inventory's hosts",
        description="Run playbooks/site.yml (preflight, nvidia, runtime, models, services, monitoring, validate) "
        "with the bundle, showing progress per host and step.",
    )
    add_inventory_argument(parser)
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the bundle directory carried in")
    parser.add_argument("--limit", metavar="HOSTS", help="only these hosts (Ansible --limit pattern)")
    parser.add_argument("--check", action="store_true", help="dry run: report what would change (--check --diff)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result at the end")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output in failures")
    parser.set_defaults(func=run)


def preflight(inventory: str, bundle: Path) -> None:
    """What can be checked on the controller before any host is touched: the GPU map, the memory fit of
    every GPU service from the bundle's model files, then the bundle (a full one, not a delta; signed
    by a trusted key when the inventory sets ``airgap_llm_bundle_signers``).

    Every problem is reported at once. A bundle that cannot be read at all (no such directory, not a
    bundle) keeps its own exit code when the GPU map is fine, and joins the list otherwise.
    """
    inv = load_inventory(inventory)
    plans = plan_inventory(inv)
    if all(plan.ok for plan in plans):
        check_memory_fit_from_bundle(plans, bundle)  # rule memory-fit, from the bundle's model files
    problems = [str(p) for plan in plans for p in plan.problems]
    try:
        refuse_delta(bundle)
        problems += check_bundle_for_plans(bundle, [plan.as_dict() for plan in plans])
        inventory_dir = inv.source if inv.source.is_dir() else inv.source.parent
        problems += bundle_signature_problems(bundle, inv.hosts, inventory_dir.resolve())
    except AirgapLlmError as exc:
        if not problems:
            raise
        problems.append(str(exc))
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) found before contacting any host; nothing was changed:\n  "
            + "\n  ".join(problems)
        )


def prometheus_where(inventory: str) -> list[dict[str, Any]]:
    """Where the monitoring role's Prometheus answers (from the inventory alone)."""
    inv = load_inventory(inventory)
    path = Path(inventory).resolve()
    return prometheus_endpoints(plan_inventory(inv), inv.groups, inv.hosts, str(path if path.is_dir() else path.parent))


def replaced_rollbacks(progress: Any) -> list[str]:
    """A line per host where this install replaced a release that a rollback had made live (roles/release)."""
    lines = []
    for host in progress.hosts:
        rel = progress.facts.get(host, {}).get("airgap_llm_release") or {}
        r = rel.get("replaced_rolled_back")
        if r:
            lines.append(f"{host} had been rolled back ({r['from']} -> {r['to']}); this install replaced that "
                         f"rolled-back release {r['live']} with {rel['live']} (`airgap-llm rollback` goes back to it)")
    return lines


def run(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle).resolve()
    preflight(args.inventory, bundle)
    title = f"install {args.inventory} from {bundle}" + (" (check mode)" if args.check else "")
    with Live(progress_table(RunProgress(), title), console=err_console, refresh_per_second=4, transient=False) as live:
        progress = run_playbook(
            "site.yml",
            Path(args.inventory),
            extravars={"airgap_llm_bundle_dir": str(bundle)},
            limit=args.limit,
            check=args.check,
            on_event=lambda p: live.update(progress_table(p, title)),
            verbosity=args.verbose,
        )
        live.update(progress_table(progress, title, final=True))
    endpoints = prometheus_where(args.inventory) if progress.ok and not args.check else []
    replaced = replaced_rollbacks(progress)
    for line in replaced:
        err_console.print(f"[bold yellow]WARNING[/]: {line}", highlight=False, soft_wrap=True)
    if args.json:
        print(json.dumps({**run_result(progress), "prometheus": endpoints, "replaced_rolled_back": replaced,
                          "releases": {h: progress.facts.get(h, {}).get("airgap_llm_release") for h in progress.hosts}},
                         indent=2))
    else:
        console.print(summary_table(progress))
        if progress.failures or progress.artifacts:
            console.print(failures_text(progress))
        verdict = "installed" if not args.check else "check finished"
        if progress.ok:
            console.print(f"[bold green]{verdict}[/]: {progress.changed_total} change(s)")
            for endpoint in endpoints:
                console.print(endpoint_line(endpoint), highlight=False)
        else:
            console.print("[bold red]install failed[/]: see the failures above")
    return 0 if progress.ok else 1
