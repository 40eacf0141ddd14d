"""``airgap-llm bundle patch`` and ``airgap-llm bundle sign``: carrying changes across the gap."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from airgap_llm.bundle.hashing import OnBytes
from airgap_llm.bundle.patch import patch_bundle
from airgap_llm.bundle.progress import byte_progress, human_bytes, thread_safe_advance
from airgap_llm.bundle.signature import NAMESPACE, sign_manifest
from airgap_llm.bundle.verify import open_bundle
from airgap_llm.commands.bundle_report import console, print_verify_report


def register_carry(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    patch = sub.add_parser(
        "patch",
        help="make the full bundle from the bundle on the far side and a delta",
        description=(
            "Make the full bundle NEW from OLD (the bundle the delta was built against) and DELTA (made by "
            "'bundle build --since OLD/manifest.json'): unchanged files are hard-linked from OLD when on the same "
            "file system, else copied; NEW is built in NEW.partial and renamed only once it verifies (the code "
            "of 'bundle verify'). A delta applied to another OLD is refused naming every file that is missing, "
            "before anything is written. An existing NEW holding this delta's bundle is verified again; any other "
            "existing NEW is refused. Exit 0: NEW made and verified; 1: files missing, or NEW fails verification "
            "(named); 2: OLD or DELTA is not a bundle/delta, or NEW exists."
        ),
    )
    patch.add_argument("old", metavar="OLD", type=Path, help="the bundle already on this side")
    patch.add_argument("delta", metavar="DELTA", type=Path, help="the delta carried across")
    patch.add_argument("-o", "--output", required=True, type=Path, metavar="NEW", dest="new", help="the full bundle")
    patch.add_argument("--json", action="store_true", help="print the verification of NEW as JSON")
    patch.set_defaults(func=run_patch)

    sign = sub.add_parser(
        "sign",
        help="sign the bundle's manifest with an SSH key",
        description=(
            f"Sign DIR/manifest.json with 'ssh-keygen -Y sign -n {NAMESPACE}', writing DIR/manifest.json.sig. "
            "The manifest names every file with its sha256, so this one signature covers the bundle (check it "
            "with 'bundle verify DIR --signers ALLOWED_SIGNERS'). Sign again after every build: a rebuilt "
            "manifest no longer matches the old signature. A delta is signed the same way (its manifest is the "
            "full bundle's; 'bundle patch' carries the signature over). Exit 0: signed; 1: ssh-keygen refused "
            "the key; 2: DIR is not a bundle, no such key, or no ssh-keygen."
        ),
    )
    sign.add_argument("dir", metavar="DIR", type=Path, help="the bundle (or delta) directory")
    sign.add_argument("--key", required=True, type=Path, metavar="SSH_PRIVATE_KEY", help="the signing key")
    sign.set_defaults(func=run_sign)


def run_patch(args: argparse.Namespace) -> int:
    with byte_progress("verifying", enabled=not args.json) as progress:

        def start(count: int, total: int) -> OnBytes | None:
            return thread_safe_advance(progress, f"verifying {count} files", total)

        report = patch_bundle(args.old, args.delta, args.new, start_hashing=start)
    assert report.verify is not None
    if not args.json:
        for note in report.notes:
            console.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)
        if report.already:
            console.print(f"{escape(str(args.new))} holds this delta's bundle already: verified again", highlight=False)
        else:
            console.print(
                f"[bold green]patched[/bold green] {escape(str(args.new))}: {report.from_old} file(s) from "
                f"{escape(str(args.old))}, {report.from_delta} from the delta, {report.links} symlinks; "
                f"{report.linked} hard-linked ({human_bytes(report.linked_bytes)}), {report.copied} copied "
                f"({human_bytes(report.copied_bytes)}), {report.kept} kept from an interrupted patch; "
                f"{report.seconds:.1f} s",
                highlight=False,
            )
        if not report.ok:
            console.print(
                f"[red]not renamed to {escape(str(args.new))}[/red]: the files named were removed from "
                f"{escape(str(report.verify.root))}; check OLD with 'bundle verify' or copy the delta again, "
                "then rerun",
                highlight=False,
            )
    return print_verify_report(report.verify, args.json)


def run_sign(args: argparse.Namespace) -> int:
    root: Path = args.dir
    open_bundle(root, allow_delta=True)  # exit 2 when DIR is not a bundle
    sig = sign_manifest(root, args.key)
    console.print(f"[green]signed[/green] {escape(str(root / 'manifest.json'))}: {escape(str(sig))}", highlight=False)
    return 0
