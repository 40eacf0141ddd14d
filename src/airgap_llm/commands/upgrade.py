"""``airgap-llm upgrade``: a rolling install of a bundle, canary first, with automatic rollback.

Each batch (airgap_llm.upgrade_plan) is installed with install's path (playbooks/site.yml without its
validate step), then validated with validate's path. When a host of the batch fails either, the batch
goes back (rollback's path): a host whose install finished, with a new release recorded, to its previous
release; a host whose install stopped half-way, to the release recorded before it. Then it is validated
again, the upgrade stops, and the exit is 1 naming the host, the step and the reason. Later batches are
not touched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.markup import escape

from airgap_llm.commands import validate
from airgap_llm.commands.install import preflight
from airgap_llm.commands.plan import add_inventory_argument
from airgap_llm.commands.rollback import result_line, rollback_hosts
from airgap_llm.console import console, err_console
from airgap_llm.gpumap import plan_inventory
from airgap_llm.inventory import load_inventory
from airgap_llm.progress import OK, RunProgress
from airgap_llm.run_report import failures_text, progress_table
from airgap_llm.runner import run_playbook
from airgap_llm.upgrade_plan import parse_serial, plan_batches


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "upgrade",
        help="rolling install of a bundle: canary first, validate each host, roll back on failure",
        description="Install the bundle on the canary host (default: the first host), validate it, then on the "
        "other hosts SERIAL at a time. A host that fails its install or validation goes back to its previous "
        "release on its own and the upgrade stops (exit 1, naming the host, step and reason); hosts not reached "
        "are untouched. The hosts of a multi-node service move together.",
    )
    add_inventory_argument(parser)
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the bundle directory carried in")
    parser.add_argument("--canary", metavar="HOST", help="the host upgraded first, alone (default: the first host)")
    parser.add_argument("--serial", metavar="N|N%", help="hosts upgraded at a time after the canary (default 1)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result at the end")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output in failures")
    parser.set_defaults(func=run)


def batches_for(inventory: str, canary: str | None, serial_text: str | None) -> list[tuple[str, ...]]:
    """The upgrade's batches from the inventory; bad --canary/--serial or a bad GPU map are input errors."""
    serial = parse_serial(serial_text)
    plans = plan_inventory(load_inventory(inventory))
    together = [svc.cluster.hosts for p in plans for svc in p.services if svc.cluster is not None]
    return plan_batches([p.host for p in plans], canary, serial, together)


def _install(inventory: str, bundle: Path, batch: tuple[str, ...], title: str, verbosity: int) -> RunProgress:
    with Live(progress_table(RunProgress(), title), console=err_console, refresh_per_second=4, transient=False) as live:
        progress = run_playbook(
            "site.yml", Path(inventory), extravars={"airgap_llm_bundle_dir": str(bundle)}, limit=",".join(batch),
            skip_tags="validate", on_event=lambda p: live.update(progress_table(p, title)), verbosity=verbosity,
        )
        live.update(progress_table(progress, title, final=True))
    return progress


def _release(progress: RunProgress, host: str) -> dict[str, Any]:
    fact = progress.facts.get(host, {}).get("airgap_llm_release")
    return dict(fact) if isinstance(fact, dict) else {}


def _install_failure(progress: RunProgress, batch: tuple[str, ...]) -> dict[str, Any] | None:
    for host in batch:
        if progress.host_result(host) != OK:
            f = next((f for f in progress.failures if f.host == host), None)
            step = f"install ({f.step})" if f is not None and f.step else "install"
            ended = f"the host ended {progress.host_result(host)}"
            reason = f"task '{f.task}': {f.message}" if f is not None else ended
            return {"host": host, "step": step, "reason": reason}
    return None


def _validate_failure(result: dict[str, Any], batch: tuple[str, ...]) -> dict[str, Any] | None:
    for host in batch:
        bad = [f for f in result["failures"] if f.get("host") == host]
        if bad or host not in result["hosts"]:
            reason = "; ".join(f"{f.get('service') or ''} {f.get('check') or ''}: {f.get('detail')}".strip()
                               for f in bad) or "validation did not run"
            return {"host": host, "step": "validate", "reason": reason}
    return None


def run(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle).resolve()
    batches = batches_for(args.inventory, args.canary, args.serial)  # input errors before any host
    preflight(args.inventory, bundle)
    hosts: dict[str, dict[str, Any]] = {h: {"result": "untouched"} for b in batches for h in b}
    out: dict[str, Any] = {"ok": False, "batches": [list(b) for b in batches], "hosts": hosts, "failure": None}
    if not args.json:
        plan_text = " then ".join("[" + ", ".join(b) + "]" for b in batches)
        console.print(f"upgrade {args.inventory} to {bundle}: canary {batches[0][0]}; batches {plan_text}",
                      highlight=False)
    for n, batch in enumerate(batches, 1):
        label = f"batch {n}/{len(batches)}" + (" (canary)" if n == 1 else "")
        progress = _install(args.inventory, bundle, batch, f"upgrade {label}: install {', '.join(batch)}", args.verbose)
        releases = {h: _release(progress, h) for h in batch}
        for h in batch:
            hosts[h] = {"result": "installed", "release": releases[h].get("live"),
                        "previous": releases[h].get("previous"), "release_changed": releases[h].get("changed")}
        failure = _install_failure(progress, batch)
        vresult: dict[str, Any] | None = None
        if failure is None:
            vresult, _ = validate.collect(args.inventory, ",".join(batch))
            failure = _validate_failure(vresult, batch)
        if failure is None:
            for h in batch:
                hosts[h]["result"] = "upgraded"
            if not args.json:
                console.print(f"[green]{label}[/]: {', '.join(batch)} installed and validated", highlight=False)
            continue
        # Back: a host whose install recorded a new release goes to the previous one; any other host of the
        # batch (stopped half-way, or nothing changed) to the release recorded before this upgrade.
        to = {h: "previous" if (failure["step"] == "validate" or progress.host_result(h) == OK)
              and releases[h].get("changed") else "live" for h in batch}
        back, _ = rollback_hosts(args.inventory, list(batch), to, f"upgrade {label}: rollback {', '.join(batch)}",
                                 args.verbose)
        again, _ = validate.collect(args.inventory, ",".join(batch))
        for h in batch:
            r = back.get(h, {"ok": False, "refused": "the rollback did not run"})
            answers = h in again["hosts"] and not [f for f in again["failures"] if f.get("host") == h]
            hosts[h].update(result="rolled-back" if r.get("ok") else "rollback-failed", rollback=r, answers=answers)
        bad = failure["host"]
        failure.update(rolled_back_to=back.get(bad, {}).get("release"), answers=hosts[bad]["answers"],
                       not_reached=[h for b in batches[n:] for h in b])
        out["failure"] = failure
        if vresult is not None and failure["step"] == "validate":
            out["validate"] = vresult
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            if failure["step"].startswith("install"):
                console.print(failures_text(progress))
            for h in batch:
                console.print(result_line(h, hosts[h]["rollback"]) + ("; answers" if hosts[h]["answers"]
                                                                      else "; DOES NOT ANSWER"), highlight=False)
        where = f"{bad} failed at {failure['step']}: {failure['reason']}"
        state = (f"{bad} went back to release {failure['rolled_back_to']} and "
                 + ("answers" if failure["answers"] else "DOES NOT ANSWER")) if back.get(bad, {}).get("ok") \
            else f"{bad} could not be rolled back: {result_line(bad, back.get(bad, {}))}"
        untouched = f"; not reached (untouched): {', '.join(failure['not_reached'])}" if failure["not_reached"] else ""
        err_console.print(f"[bold red]upgrade stopped[/]: {escape(where)}; {escape(state)}{escape(untouched)}",
                          highlight=False, soft_wrap=True)
        return 1
    out["ok"] = True
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        console.print(f"[bold green]upgraded[/]: {', '.join(hosts)}", highlight=False)
    return 0

