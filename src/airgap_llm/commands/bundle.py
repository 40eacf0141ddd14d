"""``airgap-llm bundle build`` and ``airgap-llm bundle verify``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from airgap_llm.bundle.hashing import OnBytes
from airgap_llm.bundle.progress import byte_progress, human_bytes, thread_safe_advance
from airgap_llm.bundle.verify import verify_bundle

console = Console()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bundle",
        help="build or verify the offline bundle carried across the air gap",
        description="Build the offline bundle on a connected machine, or verify one after carrying it.",
    )
    sub = parser.add_subparsers(dest="bundle_command", metavar="{build,verify}", required=True)

    verify = sub.add_parser(
        "verify",
        help="re-hash everything against the manifest",
        description=(
            "Re-hash every file of the bundle against manifest.json, in parallel on all cores, and name "
            "every missing, extra, size-mismatched or corrupted file and every bad symlink. "
            "Exit 0: intact; 1: something is wrong; 2: DIR is not a bundle."
        ),
    )
    verify.add_argument("dir", metavar="DIR", type=Path, help="the bundle directory")
    verify.add_argument("--json", action="store_true", help="print {ok, failures, ...} as JSON")
    verify.add_argument("--workers", type=int, default=None, help="hashing threads (default: all cores)")
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    root: Path = args.dir
    with byte_progress("verifying", enabled=not args.json) as progress:

        def start(count: int, total: int) -> OnBytes | None:
            return thread_safe_advance(progress, f"sha256 of {count} files", total)

        report = verify_bundle(root, workers=args.workers, start_hashing=start)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return 0 if report.ok else 1
    for failure in report.failures:
        console.print(f"[red]FAIL[/red] {escape(str(failure))}", highlight=False)
    rate = report.bytes / report.seconds / 1e9 if report.seconds > 0 else 0.0
    summary = (
        f"{report.files} files + {report.links} links, {human_bytes(report.bytes)} "
        f"in {report.seconds:.1f} s ({rate:.2f} GB/s)"
    )
    if report.ok:
        console.print(f"[green]OK[/green] {escape(str(root))}: {summary}", highlight=False)
        return 0
    console.print(f"[red]{len(report.failures)} problem(s)[/red] in {escape(str(root))}: {summary}", highlight=False)
    return 1
