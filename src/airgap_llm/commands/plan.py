"""``airgap-llm plan``: validate the GPU map and print the placement per host and GPU; with model files
at hand (``--models-from`` or ``--bundle``), the memory fit too; ``--suggest`` proposes a map that fits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import RenderableType
from rich.text import Text

from airgap_llm.console import console, err_console
from airgap_llm.gpumap import plan_inventory
from airgap_llm.inventory import load_inventory
from airgap_llm.memory.apply import check_memory_fit
from airgap_llm.memory.model_files import ModelSource, source_from_bundle, source_from_cache
from airgap_llm.memory.report import memory_tables
from airgap_llm.plan_report import plan_result, render_plans

SKIPPED = "memory check skipped: no model files (pass --models-from HF_CACHE or --bundle DIR to check the memory fit)"


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
        help="validate the GPU map, print the placement per host/GPU (and the memory fit, with model files)",
        description=(
            "Validate every host's GPU map and print which service uses which GPU and how much memory. With "
            "the models' files at hand, also check that each service's weights, KV cache and engine overhead "
            "fit its share of its GPUs (rule memory-fit); --suggest proposes a GPU map that fits."
        ),
    )
    add_inventory_argument(parser)
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "--models-from", metavar="HF_CACHE", type=Path, help="a local Hugging Face cache (HF_HOME or its hub/)"
    )
    models.add_argument("--bundle", metavar="DIR", type=Path, help="a built bundle (its models/hub/)")
    parser.add_argument("--suggest", action="store_true", help="propose GPUs and shares that fit, as YAML to paste")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(func=run)


def model_source(args: argparse.Namespace) -> ModelSource | None:
    if args.models_from is not None:
        return source_from_cache(args.models_from)
    if args.bundle is not None:
        return source_from_bundle(args.bundle)
    return None


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory)
    plans = plan_inventory(inventory)
    source = model_source(args)
    if args.suggest:
        from airgap_llm.commands.plan_suggest import run_suggest

        return run_suggest(args, inventory, plans, source)
    assessment = None
    if source is not None:
        assessment, _ = check_memory_fit(plans, source)
    result = plan_result(plans, str(args.inventory))
    result["memory_check"] = SKIPPED if source is None else f"checked from {source.label}"
    if assessment is not None:
        for host, by in assessment.as_dicts().items():
            for svc in result["hosts"][host]["services"]:
                if svc["name"] in by:
                    svc["memory"] = by[svc["name"]]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if assessment is not None and source is not None:
            memory: list[RenderableType] = [*memory_tables(assessment)]
            checked = any(assessment.services.values())
            what = f"memory fit checked from {source.label}" if checked else "memory fit: no GPU service to check"
            memory.append(Text(what, style="dim"))
        else:
            memory = [Text(SKIPPED, style="dim")]
        console.print(render_plans(plans, memory))
        if not result["ok"]:
            err_console.print(f"plan: {len(result['failures'])} problem(s) in {args.inventory}")
    return 0 if result["ok"] else 1
