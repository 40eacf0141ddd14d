"""Render a run's progress and summary for people (rich) and machines (dicts). Pure."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from airgap_llm.progress import CHANGED, FAILED, OK, PENDING, RUNNING, SKIPPED, UNREACHABLE, RunProgress

_CELL = {
    PENDING: ("·", "dim"),
    RUNNING: ("running", "cyan"),
    OK: ("ok", "green"),
    CHANGED: ("changed", "yellow"),
    SKIPPED: ("skipped", "dim"),
    FAILED: ("FAILED", "bold red"),
    UNREACHABLE: ("UNREACHABLE", "bold red"),
}


def progress_table(progress: RunProgress, title: str = "", final: bool = False) -> RenderableType:
    table = Table(title=title or None, title_justify="left")
    table.add_column("host")
    for step in progress.steps:
        table.add_column(step)
    for host in progress.hosts:
        cells = []
        for step in progress.steps:
            text, style = _CELL[progress.state(host, step)]
            cells.append(Text(text, style=style))
        table.add_row(host, *cells)
    if final or not progress.task:
        return table
    return Group(table, Text(f"{progress.step or ''}: {progress.task}", style="dim"))


def summary_table(progress: RunProgress) -> Table:
    table = Table(title="summary", title_justify="left")
    for col in ("host", "result", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col, justify="left" if col in ("host", "result") else "right")
    for host in progress.hosts:
        s = progress.stats.get(host)
        result = result_text(progress, host)
        if s is None:
            table.add_row(host, result, "", "", "", "", "")
            continue
        bad = "bold red" if s.failed or s.unreachable else ""
        table.add_row(
            Text(host, style=bad),
            result,
            str(s.ok),
            str(s.changed),
            Text(str(s.failed), style="bold red" if s.failed else ""),
            Text(str(s.unreachable), style="bold red" if s.unreachable else ""),
            str(s.skipped),
        )
    return table


def result_text(progress: RunProgress, host: str) -> Text:
    """``ok``, ``FAILED in services`` or ``UNREACHABLE in preflight``."""
    result = progress.host_result(host)
    if result in (FAILED, UNREACHABLE):
        where = progress.stopped_at(host)
        return Text(result.upper() + (f" in {where}" if where else ""), style="bold red")
    return Text(result, style="green" if result == OK else "dim")


def outcome_line(progress: RunProgress) -> str:
    """``unreachable: b; failed: c; completed: a``: every host named by how its run ended."""
    groups = [
        ("unreachable", progress.hosts_with(UNREACHABLE)),
        ("failed", progress.hosts_with(FAILED)),
        ("completed", progress.hosts_with(OK)),
        ("not run", progress.hosts_with(PENDING)),
    ]
    return "; ".join(f"{label}: {', '.join(hosts)}" for label, hosts in groups if hosts)


def failures_text(progress: RunProgress) -> RenderableType:
    parts: list[RenderableType] = [Text(outcome_line(progress), style="bold red")]
    for f in progress.failures:
        what = "unreachable" if f.unreachable else "failed"
        parts.append(Text(f"{f.host} {what} in {f.step}, task '{f.task}':", style="bold red"))
        parts.append(Text("  " + f.message.replace("\n", "\n  ")))
    line = evidence_line(progress)
    if line:
        parts.append(Text(line))
    return Group(*parts)


def evidence_line(progress: RunProgress) -> str | None:
    """Where the failed run's ansible-runner artifacts (events, stdout) were kept, if they were."""
    if not progress.artifacts:
        return None
    return f"the run's events and output (ansible-runner artifacts) are kept in {progress.artifacts}"


def run_result(progress: RunProgress) -> dict[str, Any]:
    return {
        "ok": progress.ok,
        "changed": progress.changed_total,
        "unreachable": progress.hosts_with(UNREACHABLE),
        "failed": progress.hosts_with(FAILED),
        "hosts": {
            h: {
                "result": progress.host_result(h),
                "stopped_at": progress.stopped_at(h),
                "steps": {step: progress.state(h, step) for step in progress.steps},
                "stats": vars(progress.stats[h]) if h in progress.stats else None,
                "changed_tasks": progress.changes.get(h, []),
            }
            for h in progress.hosts
        },
        "failures": [vars(f) for f in progress.failures],
        "artifacts": progress.artifacts,
    }
