"""``airgap-llm plan --suggest``: print an ``airgap_llm_services`` map that fits, as YAML to paste, with
its memory table. The map is checked again (GPU map rules and memory fit) before it is printed."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml
from rich.text import Text

from airgap_llm.console import console, err_console
from airgap_llm.errors import UsageError
from airgap_llm.gpumap import HostPlan, plan_hosts
from airgap_llm.inventory import Inventory
from airgap_llm.memory.check import assess_memory
from airgap_llm.memory.model_files import ModelSource, find_models
from airgap_llm.memory.report import memory_tables
from airgap_llm.memory.suggest import Suggestion, suggest_host, suggested_services


def start_order_comments(plan: HostPlan) -> list[str]:
    """One comment line per shared GPU: the order its services start in (the map's order)."""
    lines = []
    for usage in plan.gpu_usage():
        if len(usage.services) > 1:
            names = " -> ".join(n for n, _ in usage.services)
            lines.append(f"# GPU {usage.index} is shared; its services start one after another: {names}")
    return lines


def changes(before: HostPlan, after: HostPlan) -> list[str]:
    """What moved or changed share, service by service: what an install restarts."""
    old = {s.name: s for s in before.services}
    out = []
    for svc in after.services:
        was = old.get(svc.name)
        if was is None or (was.gpus, was.memory_fraction, was.tensor_parallel_size) == (
            svc.gpus,
            svc.memory_fraction,
            svc.tensor_parallel_size,
        ):
            continue
        out.append(
            f"{svc.name} GPUs {','.join(map(str, was.gpus))} at {was.memory_fraction} -> "
            f"{','.join(map(str, svc.gpus))} at {svc.memory_fraction}"
        )
    return out


def suggestion_yaml(services: dict[str, Any], before: HostPlan, plan: HostPlan, hosts: list[str]) -> str:
    head = [f"# airgap-llm plan --suggest, for {', '.join(hosts)} (group_vars, or host_vars per host)"]
    if plan.gpu is not None and plan.gpu.failed:
        head.append(f"# leaves out the failed GPU(s) {', '.join(map(str, plan.gpu.failed))}")
    moved = changes(before, plan)
    head.append(
        f"# moved or resized (what an install restarts): {'; '.join(moved)}" if moved else "# unchanged: the map fits"
    )
    head += start_order_comments(plan)
    body = yaml.safe_dump({"airgap_llm_services": services}, sort_keys=False, default_flow_style=None)
    return "\n".join(head) + "\n" + body


def run_suggest(
    args: argparse.Namespace, inventory: Inventory, plans: list[HostPlan], source: ModelSource | None
) -> int:
    if source is None:
        raise UsageError("plan --suggest needs the models' files: pass --models-from HF_CACHE or --bundle DIR")
    models, missing = find_models(source, plans)
    if missing:
        for p in missing:
            err_console.print(f"error: {p}", highlight=False, soft_wrap=True)
        return 1
    suggestions: dict[str, Suggestion] = {p.host: suggest_host(p, models) for p in plans}
    new_vars: dict[str, dict[str, Any]] = {}
    for host, hostvars in inventory.hosts.items():
        raw = hostvars.get("airgap_llm_services") or {}
        new_vars[host] = {**hostvars, "airgap_llm_services": suggested_services(raw, suggestions[host])}
    new_plans = plan_hosts(new_vars)
    assessment = assess_memory(new_plans, models)
    unplaced = [p for s in suggestions.values() for p in s.unplaced]
    # Once a service is left unplaced the map keeps its old placement: its re-check would only repeat that.
    problems = [] if unplaced else [p for plan in new_plans for p in plan.problems] + assessment.problems
    failures = unplaced + problems
    ok = not failures

    by_text: dict[str, list[str]] = {}
    docs: dict[str, HostPlan] = {}
    for plan in new_plans:
        text = yaml.safe_dump(new_vars[plan.host]["airgap_llm_services"], sort_keys=False)
        by_text.setdefault(text, []).append(plan.host)
        docs.setdefault(text, plan)
    if args.json:
        result = {
            "ok": ok,
            "inventory": str(args.inventory),
            "failures": [p.as_dict() for p in failures],
            "hosts": {
                plan.host: {
                    "airgap_llm_services": new_vars[plan.host]["airgap_llm_services"],
                    "memory": assessment.as_dicts().get(plan.host, {}),
                }
                for plan in new_plans
            },
        }
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    before = {p.host: p for p in plans}
    for text, hosts in by_text.items():
        plan = docs[text]
        yaml_text = suggestion_yaml(new_vars[plan.host]["airgap_llm_services"], before[plan.host], plan, hosts)
        console.print(yaml_text, highlight=False, markup=False, soft_wrap=True)
    for table in memory_tables(assessment):
        console.print(table)
    for problem in failures:
        err_console.print(f"error: {problem}", highlight=False, soft_wrap=True, markup=False)
    if not ok:
        err_console.print(Text("plan --suggest: no map fits; see the reasons above", style="bold red"))
        return 1
    console.print(Text(f"suggested map fits (memory from {source.label})", style="bold green"))
    return 0
