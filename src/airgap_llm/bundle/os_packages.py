"""OS packages the hosts lack, as a signed local apt repository under ``os/<distro>-<version>/``.

Debian family (Debian 12, Ubuntu 22.04 and 24.04), done on the connected machine (root, ``apt-get``,
``dpkg-dev``, ``apt-utils``, ``gnupg``; ``mmdebstrap`` for Debian):

1. baseline: the dpkg status of a minimal install of the target release (``apt_baseline``);
2. a private apt directory with the target's sources (``os_archives``: ``--os-mirror OS=URL`` or the
   public archive, checked with the release's archive key) and that status: ``apt-get install
   --download-only`` of the packages downloads exactly what a minimal host lacks, at the target
   release's versions (``-updates`` and ``-security`` included);
3. ``Packages``, ``Packages.gz`` and ``Release`` (``dpkg-scanpackages``, ``apt-ftparchive``), with
   ``Release.gpg`` and ``InRelease`` signed by the bundle signing key. The private key stays under
   ``$AIRGAP_LLM_CACHE/signing/``; the public key ships as ``airgap-llm-archive-keyring.gpg``, for
   ``deb [signed-by=...] file:/... ./`` on the hosts, signature checks on.

RHEL 9 (and Rocky/Alma 9) needs ``dnf download --resolve`` on a machine of that release; it is
refused with a message saying so (``os_archives.unsupported_message``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airgap_llm.bundle.apt_baseline import baseline_status, cache_root, private_apt, run_tool
from airgap_llm.bundle.layout import KEYRING_NAME, PARTIAL_SUFFIX
from airgap_llm.bundle.os_archives import repo_plan
from airgap_llm.bundle.spec import OsSetSpec
from airgap_llm.errors import InputError, UsageError

METADATA = ("Packages", "Packages.gz", "Release", "Release.gpg", "InRelease", KEYRING_NAME)
KEY_UID = "airgap-llm bundle signing key"


@dataclass
class OsResult:
    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""


_UNKNOWN = re.compile(r"^E: Unable to locate package (\S+)$", re.MULTILINE)


def unknown_packages(apt_output: str) -> list[str]:
    """The packages apt says the archive does not have."""
    return sorted(set(_UNKNOWN.findall(apt_output)))


def unknown_packages_message(os_set: OsSetSpec, mirror: str, missing: list[str]) -> str:
    """Exit 1: the inventory asks for a package the release does not have; name where it came from."""
    t = os_set.target
    hints = []
    for name in missing:
        if name.startswith(("linux-headers-", "kernel-devel-")):
            hints.append(f"{name} comes from airgap_llm_kernel_release: is that a kernel of {t.codename}?")
        elif name.startswith(("nvidia-", "linux-modules-nvidia-", "libnvidia-")):
            hints.append(f"{name} comes from the driver settings (airgap_llm_nvidia_driver_branch/_flavour)")
    return (
        f"{t.id}: the archive at {mirror} has no package {', '.join(missing)} ({t.codename}, -updates, -security)"
        + ("; " + "; ".join(hints) if hints else "")
    )


def build_os_repo(
    bundle: Path,
    os_set: OsSetSpec,
    valid: set[str],
    log: Callable[[str], None] = lambda _: None,
    mirrors: Mapping[str, str] | None = None,
    keyrings: Mapping[str, str] | None = None,
) -> OsResult:
    plan = repo_plan(os_set, mirrors or {}, keyrings)
    codename = os_set.target.codename
    result = OsResult(
        source=f"{os_set.target.distro} {codename} archive ({plan.mirror}), resolved against a minimal install"
    )
    status = baseline_status(plan, log)
    final = bundle / os_set.dir
    stage = final.with_name(final.name + PARTIAL_SUFFIX)
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "archives" / "partial").mkdir(parents=True)
    final.mkdir(parents=True, exist_ok=True)
    present = {p.name for p in final.glob("*.deb") if f"{os_set.dir}/{p.name}" in valid}
    for name in present:  # apt reuses what is in its archive cache
        os.link(final / name, stage / "archives" / name)
    with tempfile.TemporaryDirectory(prefix="airgap-llm-apt-") as tmp:
        opts = private_apt(Path(tmp), plan, status, stage / "archives")
        run_tool(["apt-get", *opts, "update"], f"apt-get update for {codename}")
        what = f"resolving {' '.join(os_set.packages)} for {os_set.target.id}"
        try:
            run_tool(
                ["apt-get", *opts, "install", "--download-only", "--no-install-recommends", "-y", *os_set.packages],
                what,
            )
        except UsageError as exc:
            missing = unknown_packages(str(exc))
            if missing:
                raise InputError(unknown_packages_message(os_set, plan.mirror, missing)) from None
            raise
    debs = sorted(p.name for p in (stage / "archives").glob("*.deb"))
    if not debs:
        raise InputError(f"{os_set.target.id}: apt found nothing to download for {' '.join(os_set.packages)}")
    for name in debs:
        (result.kept if name in present else result.fetched).append(name if name in present else f"{os_set.dir}/{name}")
        os.replace(stage / "archives" / name, final / name)
    for old in final.iterdir():
        if old.name not in debs and old.name not in METADATA:
            old.unlink()
    shutil.rmtree(stage, ignore_errors=True)
    write_repo_metadata(final, codename)
    return result


def signing_home() -> Path:
    """GNUPGHOME holding the bundle signing key (created once; the private key never leaves it)."""
    home = cache_root() / "signing"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    listed = subprocess.run(["gpg", "--batch", "--list-secret-keys", KEY_UID], capture_output=True, env=env)
    if listed.returncode != 0:
        run_tool(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never"],
            "creating the bundle signing key",
            env,
        )
    return home


def write_repo_metadata(repo: Path, codename: str) -> None:
    """Packages, Packages.gz, Release, Release.gpg, InRelease and the public keyring, atomically each."""
    proc = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"dpkg-scanpackages failed in {repo}: {proc.stderr.strip()}")
    packages = proc.stdout
    env = {**os.environ, "GNUPGHOME": str(signing_home())}
    keyring = subprocess.run(["gpg", "--batch", "--export", KEY_UID], capture_output=True, env=env, check=True).stdout
    if _metadata_current(repo, packages.encode(), keyring):
        # Same packages, same key: the signed metadata stays as it is, byte for byte, so a rebuild is
        # reproducible and a delta bundle carries no OS file when no package changed.
        return
    _atomic(repo / "Packages", packages.encode())
    _atomic(repo / "Packages.gz", gzip.compress(packages.encode(), mtime=0))
    for name in ("Release", "Release.gpg", "InRelease"):
        (repo / name).unlink(missing_ok=True)
    release = subprocess.run(
        [
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=airgap-llm",
            "-o",
            "APT::FTPArchive::Release::Label=airgap-llm",
            "-o",
            f"APT::FTPArchive::Release::Codename={codename}",
            "-o",
            "APT::FTPArchive::Release::Suite=airgap-llm",
            "release",
            ".",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if release.returncode != 0:
        raise UsageError(f"apt-ftparchive release failed in {repo}: {release.stderr.strip()}")
    _atomic(repo / "Release", release.stdout.encode())
    for args, name in ((["--clearsign"], "InRelease"), (["--detach-sign", "--armor"], "Release.gpg")):
        tmp = repo / (name + PARTIAL_SUFFIX)
        run_tool(
            ["gpg", "--batch", "--yes", "--local-user", KEY_UID, *args, "--output", str(tmp), str(repo / "Release")],
            f"signing {name}",
            env,
        )
        os.replace(tmp, repo / name)
    _atomic(repo / KEYRING_NAME, keyring)


def _metadata_current(repo: Path, packages: bytes, keyring: bytes) -> bool:
    """True when ``repo`` already has this Packages index and keyring, and its Release is signed by that key."""
    names = ("Packages", "Packages.gz", "Release", "InRelease", "Release.gpg", KEYRING_NAME)
    if not all((repo / n).is_file() for n in names):
        return False
    if (repo / "Packages").read_bytes() != packages or (repo / KEYRING_NAME).read_bytes() != keyring:
        return False
    release = (repo / "Release").read_text(errors="replace")
    if not all(hashlib.sha256((repo / n).read_bytes()).hexdigest() in release for n in ("Packages", "Packages.gz")):
        return False
    for args in ([str(repo / "InRelease")], [str(repo / "Release.gpg"), str(repo / "Release")]):
        check = subprocess.run(["gpgv", "--keyring", str(repo / KEYRING_NAME), *args], capture_output=True)
        if check.returncode != 0:
            return False
    return True


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    tmp.write_bytes(data)
    os.replace(tmp, path)
