"""Signed bundles: an ssh-keygen signature of ``manifest.json``, written beside it as ``manifest.json.sig``.

The manifest names every other file of the bundle with its sha256, so one signature of the manifest
covers the whole bundle once ``bundle verify`` has re-hashed the files against it. ``ssh-keygen`` is on
every host and controller (OpenSSH >= 8.2 for ``-Y``): nothing new to carry across the gap.

- ``bundle sign DIR --key KEY``: ``ssh-keygen -Y sign -f KEY -n airgap-llm-bundle`` over the manifest;
- ``bundle verify DIR --signers ALLOWED_SIGNERS`` (and ``install`` when the inventory sets
  ``airgap_llm_bundle_signers``): ``ssh-keygen -Y find-principals`` names the signer the allowed-signers
  file knows for the signature's key, then ``ssh-keygen -Y verify`` checks the manifest against it.

The checks here return a ``Failure`` naming the file and what to do; ``UsageError`` (exit 2) is kept
for the environment: no ssh-keygen, an allowed-signers file or key that does not exist.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from airgap_llm.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, Failure, Problem, atomic_write_text
from airgap_llm.errors import InputError, UsageError

NAMESPACE = "airgap-llm-bundle"
TIMEOUT_S = 60


def ssh_keygen() -> str:
    """The ssh-keygen program; ``UsageError`` when it is not installed."""
    found = shutil.which("ssh-keygen")
    if found is None:
        raise UsageError("ssh-keygen not found: install the OpenSSH client (openssh-client / openssh-clients)")
    return found


def _run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False)


def _said(proc: subprocess.CompletedProcess[bytes]) -> str:
    """What ssh-keygen printed, on one line, without its 'reading from standard input' chatter."""
    lines = (proc.stderr + proc.stdout).decode(errors="replace").splitlines()
    kept = [line.strip() for line in lines if line.strip() and "standard input" not in line]
    return "; ".join(kept) or f"exit {proc.returncode}"


def sign_manifest(root: Path, key: Path) -> Path:
    """Sign ``root/manifest.json`` with the SSH private key ``key``; write ``manifest.json.sig`` atomically.

    Signs the bytes on disk (read once, signed from standard input), so the file signed is the file
    verified. ``InputError`` when ssh-keygen refuses the key.
    """
    manifest = root / MANIFEST_NAME
    if not key.is_file():
        raise UsageError(f"--key {key}: no such file (an SSH private key, e.g. made with ssh-keygen -t ed25519)")
    data = manifest.read_bytes()
    proc = _run([ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", NAMESPACE], data)
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        raise InputError(f"--key {key}: ssh-keygen could not sign {manifest} with it: {_said(proc)}")
    out = root / SIGNATURE_NAME
    atomic_write_text(out, proc.stdout.decode("ascii"))
    return out


def check_signers_file(signers: Path, what: str = "--signers") -> None:
    """``UsageError`` when the allowed-signers file does not exist."""
    if not signers.is_file():
        raise UsageError(
            f"{what} {signers}: no such file (an allowed_signers file: one line 'PRINCIPAL "
            f'namespaces="{NAMESPACE}" KEYTYPE KEY' + "' per key trusted to sign bundles)"
        )


def signature_failure(root: Path, signers: Path) -> Failure | None:
    """None when ``manifest.json.sig`` is a good signature of ``manifest.json`` by a key that ``signers``
    (an ssh-keygen allowed_signers file) trusts for the namespace ``airgap-llm-bundle``; else the failure,
    naming the file: unsigned, signed by a key the file does not list, or a manifest changed since it
    was signed."""
    check_signers_file(signers)
    sig = root / SIGNATURE_NAME
    manifest = root / MANIFEST_NAME
    if not sig.is_file():
        return Failure(
            SIGNATURE_NAME,
            Problem.UNSIGNED,
            f"the bundle is not signed: no {sig}; sign it where it was built with "
            "'airgap-llm bundle sign DIR --key KEY' and carry the signature with it",
        )
    tool = ssh_keygen()
    found = _run([tool, "-Y", "find-principals", "-s", str(sig), "-f", str(signers)], b"")
    principals = [p for p in found.stdout.decode(errors="replace").splitlines() if p.strip()]
    if found.returncode != 0 or not principals:
        return Failure(
            SIGNATURE_NAME,
            Problem.SIGNATURE,
            f"signed by a key that {signers} does not list ({_said(found)}): a wrong key, or a signature "
            "that is not an ssh-keygen one",
        )
    data = manifest.read_bytes()
    tried = []
    for principal in principals:
        proc = _run([tool, "-Y", "verify", "-f", str(signers), "-I", principal, "-n", NAMESPACE, "-s", str(sig)], data)
        if proc.returncode == 0:
            return None
        tried.append(f"{principal}: {_said(proc)}")
    return Failure(
        MANIFEST_NAME,
        Problem.SIGNATURE,
        f"does not match its signature {sig} ({'; '.join(tried)}): changed since it was signed, or "
        f"signed for another purpose than namespace {NAMESPACE}",
    )
