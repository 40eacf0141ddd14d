"""``airgap-llm render``: every file install would write onto each host, for review, no host contacted."""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path

from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.console import console, err_console
from airgap_llm.errors import InputError, UsageError
from airgap_llm.gpumap import plan_inventory
from airgap_llm.inventory import load_inventory
from airgap_llm.monitoring.hosts import monitoring_servers
from airgap_llm.render import managed_string, render_host, render_monitoring, role_defaults, write_rendered
from airgap_llm.runner import project_root


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "render",
        help="write every file install would put on each host under DIR/<host>/<path>, no host contacted",
        description="Render the units, the airgap-llm target and the environment files of every host from the "
        "inventory alone (no bundle, no host), at DIR/<host>/<absolute path on the host>, secrets replaced by a "
        "placeholder: what to review before an install.",
    )
    add_inventory_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--limit", metavar="HOSTS", help="only these hosts (comma-separated names or globs)")
    parser.add_argument("--json", action="store_true", help="print the files and notes per host as JSON")
    parser.set_defaults(func=run)


def _selected(host: str, limit: str | None) -> bool:
    if not limit:
        return True
    return any(fnmatch.fnmatch(host, pattern.strip()) for pattern in limit.split(",") if pattern.strip())


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory)
    plans = plan_inventory(inventory)
    problems = [str(p) for plan in plans for p in plan.problems]
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) in the GPU map; nothing was rendered:\n  " + "\n  ".join(problems)
        )
    chosen = [p for p in plans if _selected(p.host, args.limit)]
    if not chosen:
        raise UsageError(f"--limit {args.limit}: no host of {args.inventory} matches")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    defaults = role_defaults(project_root())
    managed = managed_string()
    addresses = {p.host: p.address or f"<address of {p.host}>" for p in plans}  # a gateway routes every host's
    rendered = [render_host(p, inventory.hosts[p.host], defaults, managed, addresses) for p in chosen]
    monitoring_defaults = role_defaults(project_root(), "monitoring")
    servers = monitoring_servers(plans, inventory.groups)
    for r, p in zip(rendered, chosen, strict=True):
        if inventory.hosts[p.host].get("airgap_llm_monitoring_enabled", True) is False:
            continue
        extra = render_monitoring(plans, p.host, inventory.hosts[p.host], monitoring_defaults, managed, servers)
        r.files += extra.files
        r.notes += extra.notes
    try:
        write_rendered(out, rendered)
    except OSError as exc:
        raise UsageError(f"-o {out}: cannot write: {exc}") from exc
    if args.json:
        print(json.dumps({
            "ok": True,
            "output": str(out),
            "hosts": {r.host: {"files": [f.path for f in r.files], "notes": r.notes} for r in rendered},
        }, indent=2))
        return 0
    for r in rendered:
        console.print(f"[bold]{r.host}[/]: {len(r.files)} file(s) under {out / r.host}", highlight=False)
        for f in r.files:
            console.print(f"  {f.path}  ({f.owner}:{f.group} {f.mode})", highlight=False)
        for note in r.notes:
            console.print(f"  note: {note}", highlight=False)
    err_console.print(f"rendered {sum(len(r.files) for r in rendered)} file(s) for {len(rendered)} host(s); "
                      "no host was contacted")
    return 0
