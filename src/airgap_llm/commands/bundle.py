"""``airgap-llm bundle build`` and ``airgap-llm bundle verify`` (``patch`` and ``sign``: ``bundle_carry``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.markup import escape

from airgap_llm.bundle.build import BuildReport, build_bundle
from airgap_llm.bundle.context import BuildOptions, BuildUI
from airgap_llm.bundle.hashing import OnBytes
from airgap_llm.bundle.os_archives import parse_os_options
from airgap_llm.bundle.progress import byte_progress, stderr_console, thread_safe_advance
from airgap_llm.bundle.spec import PARTS
from airgap_llm.bundle.verify import verify_bundle
from airgap_llm.commands.bundle_carry import register_carry
from airgap_llm.commands.bundle_report import console, print_delta, print_verify_report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bundle",
        help="build or verify the offline bundle carried across the air gap",
        description="Build the offline bundle on a connected machine, or verify one after carrying it.",
    )
    sub = parser.add_subparsers(dest="bundle_command", metavar="{build,verify,patch,sign}", required=True)

    verify = sub.add_parser(
        "verify",
        help="re-hash everything against the manifest",
        description=(
            "Re-hash every file of the bundle against manifest.json, in parallel on all cores, and name "
            "every missing, extra, size-mismatched or corrupted file and every bad symlink. With --signers, "
            "also check manifest.json.sig (ssh-keygen -Y find-principals, then -Y verify): an unsigned bundle, "
            "a key the file does not list, or a manifest changed since signing is a failure. "
            "Exit 0: intact; 1: something is wrong; 2: DIR is not a bundle (or is a delta), or no --signers file."
        ),
    )
    verify.add_argument("dir", metavar="DIR", type=Path, help="the bundle directory")
    verify.add_argument(
        "--signers",
        type=Path,
        metavar="ALLOWED_SIGNERS",
        help="an ssh-keygen allowed_signers file: the bundle must be signed ('bundle sign') by a key it lists",
    )
    verify.add_argument("--json", action="store_true", help="print {ok, failures, ...} as JSON")
    verify.add_argument("--workers", type=int, default=None, help="hashing threads (default: all cores)")
    verify.set_defaults(func=run_verify)

    build = sub.add_parser(
        "build",
        help="build the offline bundle from the inventory (on a connected machine)",
        description=(
            "Fetch everything the inventory's hosts need into DIR: model weights (Hugging Face cache "
            "layout, revision-pinned), the wheelhouse for the targets' Python and platform, the OS "
            "packages the hosts lack (a signed local apt repository), and the Ansible collections. "
            "Incremental: what is present with the right hash is not fetched again. The inventory "
            "must pass 'airgap-llm plan' first; nothing is downloaded otherwise. Interrupted (even by "
            "kill -9), it leaves only *.partial files, and a rerun resumes. Exit 0: built; 1: the "
            "inventory, a model id or revision, or a wheel is wrong (the message names it); 2: a problem of the "
            "environment (no space left, the Hub or a mirror unreachable, HF_HUB_OFFLINE set, a missing tool). "
            "Every part's prerequisites are checked before anything is downloaded, every missing one listed at once."
        ),
    )
    build.add_argument(
        "-i",
        "--inventory",
        required=True,
        type=Path,
        metavar="INVENTORY",
        help="the Ansible inventory (directory or hosts file)",
    )
    build.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="DIR",
        dest="out",
        help="the bundle directory (created, or completed when it exists)",
    )
    build.add_argument(
        "--models-from",
        type=Path,
        metavar="HF_CACHE_ROOT",
        help="import the models from this local Hugging Face cache instead of the Hub (no network): a "
        "HF_HOME-like directory holding hub/, or the hub directory itself (holding models--ORG--NAME)",
    )
    build.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        default=[],
        metavar="KIND",
        help=f"build only this part ({', '.join(PARTS)}); repeatable",
    )
    build.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        metavar="ARG",
        dest="pip_args",
        help="passed verbatim to pip download (repeatable), e.g. --pip-arg=--extra-index-url=URL",
    )
    build.add_argument(
        "--os-mirror",
        action="append",
        default=[],
        metavar="OS=URL",
        dest="os_mirrors",
        help="the archive mirror for one target OS, every suite (release, -updates, -security) from it; "
        "repeatable, e.g. --os-mirror ubuntu-22.04=http://mirror.example/ubuntu (default: the public archive)",
    )
    build.add_argument(
        "--os-keyring",
        action="append",
        default=[],
        metavar="OS=FILE",
        dest="os_keyrings",
        help="the key that signs that mirror (default: the release's archive keyring, from "
        "debian-archive-keyring / ubuntu-keyring)",
    )
    build.add_argument(
        "--requirements",
        type=Path,
        default=None,
        metavar="FILE",
        help="the collections file (default: requirements.yml of the project)",
    )
    build.add_argument(
        "--since",
        type=Path,
        metavar="OLD/manifest.json",
        help="build a delta: DIR keeps only the files that bundle lacks (by sha256), with the new bundle's full "
        "manifest.json, SHA256SUMS and a delta.json; 'airgap-llm bundle patch OLD DIR -o NEW' makes the full "
        "bundle on the far side. DIR must be new or an earlier delta",
    )
    build.set_defaults(func=run_build)
    register_carry(sub)


def run_verify(args: argparse.Namespace) -> int:
    root: Path = args.dir
    with byte_progress("verifying", enabled=not args.json) as progress:

        def start(count: int, total: int) -> OnBytes | None:
            return thread_safe_advance(progress, f"sha256 of {count} files", total)

        report = verify_bundle(root, workers=args.workers, start_hashing=start, signers=args.signers)
    return print_verify_report(report, args.json)


class RichBuildUI(BuildUI):
    def info(self, message: str) -> None:
        stderr_console.print(escape(message), style="dim", highlight=False)

    @contextmanager
    def hashing(self, description: str, total: int) -> Iterator[OnBytes | None]:
        if total == 0:
            yield None
            return
        with byte_progress(description) as progress:
            yield thread_safe_advance(progress, description, total)

    @contextmanager
    def busy(self, description: str) -> Iterator[None]:
        stderr_console.print(f"[bold]→[/bold] {escape(description)}", highlight=False)
        with stderr_console.status(escape(description)):
            yield


def run_build(args: argparse.Namespace) -> int:
    opts = BuildOptions(
        inventory=args.inventory,
        out=args.out,
        models_from=args.models_from,
        only=args.only,
        pip_args=args.pip_args,
        requirements_yml=args.requirements,
        os_mirrors=parse_os_options(args.os_mirrors, "--os-mirror"),
        os_keyrings=parse_os_options(args.os_keyrings, "--os-keyring"),
        since=args.since,
    )
    report = build_bundle(opts, RichBuildUI())
    print_build_report(report)
    return 0


def print_build_report(report: BuildReport) -> None:
    for line in report.spec.describe():
        console.print(f"  {escape(line)}", highlight=False)
    if report.removed:
        console.print(
            f"removed {len(report.removed)} damaged or partial file(s): " + escape(", ".join(report.removed[:10])),
            highlight=False,
        )
    for name, part in report.parts.items():
        for item in part.fetched:
            console.print(f"[green]fetched[/green] {name}: {escape(item)}", highlight=False)
        for item in part.skipped:
            console.print(f"[cyan]skipped[/cyan] {name}: {escape(item)}", highlight=False)
        for item in part.notes:
            console.print(f"[yellow]note[/yellow] {name}: {escape(item)}", highlight=False)
    for item in report.notes:
        console.print(f"[yellow]note[/yellow] {escape(item)}", highlight=False)
    counts = report.manifest.counts_by_kind()
    per_kind = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    fetched = sum(len(p.fetched) for p in report.parts.values())
    console.print(
        f"[bold green]bundle[/bold green] {escape(str(report.out))}: {per_kind or 'empty'}; "
        f"{report.manifest.total_size() / 1e9:.2f} GB; {report.kept} file(s) kept, {fetched} item(s) fetched; "
        f"{report.seconds:.1f} s",
        highlight=False,
    )
    if report.delta is not None:
        print_delta(report.out, report.delta)
