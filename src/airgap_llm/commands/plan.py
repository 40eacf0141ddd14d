"""``airgap-llm plan``: validate the GPU map and print the placement per host and GPU."""

from __future__ import annotations

import argparse
import json

from airgap_llm.console import console, err_console
from airgap_llm.gpumap import plan_inventory
from airgap_llm.inventory import load_inventory
from airgap_llm.plan_report import plan_result, render_plans


def add_inventory_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i",
        "--inventory",
        required=True,
        metavar="INVENTORY",
        help="Ansible inventory (directory with hosts.yml and group_vars/, or a hosts file)",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "plan",
        help="validate the GPU map, print the placement per host/GPU",
        description="Validate every host's GPU map and print which service uses which GPU and how much memory.",
    )
    add_inventory_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory)
    plans = plan_inventory(inventory)
    result = plan_result(plans, str(args.inventory))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        console.print(render_plans(plans))
        if not result["ok"]:
            err_console.print(f"plan: {len(result['failures'])} problem(s) in {args.inventory}")
    return 0 if result["ok"] else 1
