"""Re-hash a bundle against its manifest and name every file that is wrong; with an allowed-signers
file, check the manifest's signature first (``bundle.signature``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap_llm.bundle.delta import DELTA_NAME
from airgap_llm.bundle.hashing import Mode, OnBytes, hash_files
from airgap_llm.bundle.layout import is_bundle, scan_tree
from airgap_llm.bundle.manifest import (
    SUMS_NAME,
    Failure,
    Manifest,
    Problem,
    diff_tree,
    hash_failures,
    load_manifest,
    render_sha256sums,
)
from airgap_llm.bundle.signature import signature_failure
from airgap_llm.errors import UsageError

# called once before hashing with (number of files, total bytes); returns the per-chunk callback
StartHashing = Callable[[int, int], OnBytes | None]


@dataclass
class VerifyReport:
    root: Path
    files: int = 0  # regular files hashed
    links: int = 0
    bytes: int = 0
    signers: Path | None = None  # the allowed-signers file the signature was checked against
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bundle": str(self.root),
            "files": self.files,
            "links": self.links,
            "bytes": self.bytes,
            "signers": str(self.signers) if self.signers else None,
            "seconds": round(self.seconds, 3),
            "failures": [f.to_json() for f in self.failures],
        }


def open_bundle(root: Path, allow_delta: bool = False) -> Manifest:
    """The manifest of the bundle at ``root``; ``UsageError`` (exit 2) when it is not a bundle, or is a
    delta (unless ``allow_delta``)."""
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory")
    if not is_bundle(root):
        raise UsageError(f"{root}: not a bundle (no manifest.json); build one with 'airgap-llm bundle build'")
    if not allow_delta:
        refuse_delta(root)
    return load_manifest(root)


def refuse_delta(root: Path) -> None:
    """A delta holds only what its base bundle lacks: ``UsageError`` saying how to make the full bundle."""
    if (root / DELTA_NAME).is_file():
        raise UsageError(
            f"{root}: a delta bundle ({DELTA_NAME}), not a full one; make the full bundle first with "
            f"'airgap-llm bundle patch OLD {root} -o NEW', then use NEW"
        )


def sums_failure(root: Path, manifest: Manifest) -> Failure | None:
    """SHA256SUMS must say exactly what the manifest says."""
    path = root / SUMS_NAME
    if not path.is_file():
        return Failure(SUMS_NAME, Problem.MISSING, "the checksum list beside manifest.json is missing")
    if path.read_text(encoding="utf-8", errors="replace") != render_sha256sums(manifest):
        return Failure(SUMS_NAME, Problem.CORRUPTED, "does not match manifest.json")
    return None


def verify_bundle(
    root: Path,
    workers: int | None = None,
    mode: Mode = "threads",
    start_hashing: StartHashing | None = None,
    signers: Path | None = None,
) -> VerifyReport:
    """Check presence, sizes, links and sha256 of everything the manifest lists; with ``signers``, also
    that ``manifest.json.sig`` is a good signature of the manifest by a key that file trusts."""
    started = time.perf_counter()
    manifest = open_bundle(root)
    report = VerifyReport(root=root, signers=signers)
    if signers is not None:
        bad = signature_failure(root, signers)
        if bad is not None:
            report.failures.append(bad)
    diff = diff_tree(manifest, scan_tree(root))
    report.failures.extend(diff.failures)
    sums = sums_failure(root, manifest)
    if sums is not None:
        report.failures.append(sums)
    report.links = sum(1 for a in manifest.artifacts.values() if a.is_link)
    items = [(a.path, root / a.path, a.size) for a in diff.to_hash]
    total = sum(size for _, _, size in items)
    on_bytes = start_hashing(len(items), total) if start_hashing else None
    result = hash_files(items, workers=workers, mode=mode, on_bytes=on_bytes)
    report.files, report.bytes = len(items), total
    report.failures.extend(hash_failures(diff.to_hash, result.digests))
    report.failures.extend(
        Failure(path, Problem.MISSING, f"cannot be read: {err}") for path, err in sorted(result.errors.items())
    )
    report.failures.sort(key=lambda f: (f.path, f.problem.value))
    report.seconds = time.perf_counter() - started
    return report
