"""Render plans for people (rich tables) and for machines (JSON). Pure: returns renderables/dicts."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from airgap_llm.gpumap import HostPlan


def plan_result(plans: list[HostPlan], source: str) -> dict[str, Any]:
    """The machine-readable result: ``ok``, a ``failures`` list, and every host's placement."""
    failures = [p.as_dict() for plan in plans for p in plan.problems]
    return {
        "ok": not failures,
        "inventory": source,
        "failures": failures,
        "warnings": [w for plan in plans for w in plan.warnings],
        "hosts": {plan.host: plan.as_dict() for plan in plans},
    }


def _gib(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def _fraction(x: float) -> str:
    """Two decimals, or three where the inventory gives three (0.175)."""
    return f"{x:.2f}" if round(x, 2) == x else f"{x:.3f}"


def host_table(plan: HostPlan) -> Table:
    """One host: GPU -> services -> memory, with the headroom left under the ceiling."""
    if plan.gpu is not None and plan.gpu.count:
        title = f"{plan.host}: {plan.gpu.count}x {plan.gpu.model} ({plan.gpu.memory_gib:g} GiB each)"
    else:
        title = f"{plan.host}: no GPU"
    title += f", {plan.engine} {plan.vllm_version}"
    if plan.target is not None:
        title += f", {plan.target.id} (Python {plan.python})"
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("GPU", justify="right")
    table.add_column("service")
    table.add_column("kind")
    table.add_column("port", justify="right")
    table.add_column("GiB", justify="right")
    table.add_column("fraction", justify="right")
    table.add_column("model")

    by_name = {s.name: s for s in plan.services}
    for usage in plan.gpu_usage():
        if not usage.services:
            table.add_row(str(usage.index), Text("spare", style="dim"), "", "", "", "", "")
        for name, fraction in usage.services:
            svc = by_name[name]
            shared = f" (TP {svc.tensor_parallel_size})" if svc.tensor_parallel_size > 1 else ""
            nodes = f" x{svc.nodes} hosts" if svc.nodes > 1 else ""
            table.add_row(
                str(usage.index),
                name + shared + nodes,
                svc.kind,
                str(svc.port),
                _gib(fraction * usage.memory_gib),
                _fraction(fraction),
                f"{svc.model}@{svc.revision}" if svc.model else "",
            )
        if usage.services:
            style = "green" if usage.headroom >= 0 else "bold red"
            table.add_row(
                "",
                Text("headroom", style=style),
                "",
                "",
                Text(_gib(usage.headroom * usage.memory_gib), style=style),
                Text(f"{usage.headroom:.2f}", style=style),
                Text(
                    f"used {usage.used:.2f} of ceiling {usage.ceiling:g}; "
                    f"{_gib((1 - usage.used) * usage.memory_gib)} GiB of the GPU unallocated",
                    style="dim",
                ),
            )
        table.add_section()
    for svc in plan.services:
        if svc.gpus:
            continue
        what = svc.model and f"{svc.model}@{svc.revision}" or " ".join(svc.command)
        table.add_row("cpu", svc.name, svc.kind, str(svc.port), "", "", what)
    return table


def render_plans(plans: list[HostPlan], more: list[RenderableType] | None = None) -> RenderableType:
    """Every host's table, warnings and problems, then ``more`` (such as the memory fit), then the verdict."""
    parts: list[RenderableType] = []
    for plan in plans:
        parts.append(host_table(plan))
        for w in plan.warnings:
            parts.append(Text(f"warning: {w}", style="yellow"))
        for p in plan.problems:
            parts.append(Text(f"error: {p}", style="bold red"))
        parts.append(Text(""))
    parts.extend(more or [])
    bad = sum(len(p.problems) for p in plans)
    if bad:
        parts.append(Text(f"{bad} problem(s) in the GPU map: nothing was changed on any host.", style="bold red"))
    else:
        parts.append(Text(f"GPU map OK for {len(plans)} host(s).", style="bold green"))
    return Group(*parts)
