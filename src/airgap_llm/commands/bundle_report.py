"""What the ``bundle`` commands print: the verdict of a verify (also after a patch), and a delta's size."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape

from airgap_llm.bundle.delta import DeltaInfo
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.verify import VerifyReport

console = Console(soft_wrap=True)


def print_verify_report(report: VerifyReport, as_json: bool) -> int:
    """The verdict of ``bundle verify`` (also printed by ``bundle patch``); the exit code."""
    root = report.root
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
        return 0 if report.ok else 1
    for failure in report.failures:
        console.print(f"[red]FAIL[/red] {escape(str(failure))}", highlight=False)
    rate = report.bytes / report.seconds / 1e9 if report.seconds > 0 else 0.0
    summary = (
        f"{report.files} files + {report.links} links, {human_bytes(report.bytes)} "
        f"in {report.seconds:.1f} s ({rate:.2f} GB/s)"
    )
    if report.signers is not None and report.ok:
        summary += f"; manifest signed by a key of {report.signers}"
    if report.ok:
        console.print(f"[green]OK[/green] {escape(str(root))}: {summary}", highlight=False)
        return 0
    console.print(f"[red]{len(report.failures)} problem(s)[/red] in {escape(str(root))}: {summary}", highlight=False)
    return 1



def print_delta(out: object, info: DeltaInfo) -> None:
    """The bytes a delta carries against the full bundle it stands for."""
    share = info.carried_bytes / info.full_bytes * 100 if info.full_bytes else 0.0
    console.print(
        f"[bold green]delta[/bold green] {escape(str(out))}: carries {human_bytes(info.carried_bytes)} "
        f"({info.carried_bytes} bytes, {len(info.carried)} of {info.files} files) of the full bundle's "
        f"{human_bytes(info.full_bytes)} ({info.full_bytes} bytes): {share:.2f}%; base manifest sha256 "
        f"{info.base_manifest_sha256}",
        highlight=False,
    )
