"""OS packages the hosts lack, as a signed local apt repository under ``os/<distro>-<version>/``.

Debian family, done on the connected machine (root, ``mmdebstrap``, ``apt-get``, ``dpkg-dev``,
``apt-utils``, ``gnupg``):

1. baseline: the dpkg status of a minimal install of the target release (``mmdebstrap
   --variant=minbase``), made once and cached under ``$AIRGAP_LLM_CACHE/os/<id>/status``;
2. a private apt directory with the target's sources and that status: ``apt-get install
   --download-only`` of the runtime packages downloads exactly what a minimal host lacks, at the
   target release's versions (not the build machine's);
3. ``Packages``, ``Packages.gz`` and ``Release`` (``dpkg-scanpackages``, ``apt-ftparchive``), with
   ``Release.gpg`` and ``InRelease`` signed by the bundle signing key. The private key stays under
   ``$AIRGAP_LLM_CACHE/signing/``; the public key ships as ``airgap-llm-archive-keyring.gpg``, for
   ``deb [signed-by=...] file:/... ./`` on the hosts, signature checks on.

Ubuntu and RHEL targets need their own archives, which this build machine may not reach; they fail
with a message saying what the connected machine needs.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airgap_llm.bundle.layout import KEYRING_NAME, PARTIAL_SUFFIX
from airgap_llm.bundle.spec import OsSetSpec
from airgap_llm.errors import InputError, UsageError

_KEYRING = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
# contrib, non-free and non-free-firmware hold the NVIDIA driver (nvidia-driver, nvidia-kernel-dkms,
# nvidia-persistenced, firmware-misc-nonfree); main's packages resolve the same with them listed.
_COMPONENTS = "main contrib non-free non-free-firmware"
DEBIAN_SOURCES = {
    "bookworm": [
        f"deb {_KEYRING} http://deb.debian.org/debian bookworm {_COMPONENTS}",
        f"deb {_KEYRING} http://deb.debian.org/debian bookworm-updates {_COMPONENTS}",
        f"deb {_KEYRING} http://deb.debian.org/debian-security bookworm-security {_COMPONENTS}",
    ]
}
METADATA = ("Packages", "Packages.gz", "Release", "Release.gpg", "InRelease", KEYRING_NAME)
KEY_UID = "airgap-llm bundle signing key"
TOOLS = ("mmdebstrap", "apt-get", "dpkg-scanpackages", "apt-ftparchive", "gpg")


@dataclass
class OsResult:
    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""


def cache_root() -> Path:
    env = os.environ.get("AIRGAP_LLM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "airgap-llm"


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise UsageError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:3])} ...\n{tail}")
    return proc.stdout


def unsupported_message(os_set: OsSetSpec) -> str:
    t = os_set.target
    if t.distro == "ubuntu":
        need = (
            f"an Ubuntu {t.version} ({t.codename}) archive or mirror reachable from the connected machine and "
            "its archive keyring, to resolve against a minimal Ubuntu install"
        )
    else:
        need = (
            f"a RHEL {t.version} machine with an active subscription, using 'dnf download --resolve "
            "--alldeps' against a minimal install and 'createrepo_c' for the repodata"
        )
    return (
        f"OS packages for {t.id} ({' '.join(os_set.packages)}): this builder only resolves Debian targets here; "
        f"it needs {need}. Build the other parts with --only models --only wheels --only collections, "
        "and bring the OS packages from a machine that has that access"
    )


def build_os_repo(
    bundle: Path, os_set: OsSetSpec, valid: set[str], log: Callable[[str], None] = lambda _: None
) -> OsResult:
    if os_set.target.distro != "debian" or os_set.target.codename not in DEBIAN_SOURCES:
        raise UsageError(unsupported_message(os_set))
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise UsageError(
            f"OS packages for {os_set.target.id} need {', '.join(missing)} on this machine "
            "(apt-get install mmdebstrap dpkg-dev apt-utils gnupg)"
        )
    codename = os_set.target.codename
    result = OsResult(source=f"Debian {codename} archive (deb.debian.org), resolved against a minbase install")
    status = baseline_status(os_set, log)
    final = bundle / os_set.dir
    stage = final.with_name(final.name + PARTIAL_SUFFIX)
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "archives" / "partial").mkdir(parents=True)
    final.mkdir(parents=True, exist_ok=True)
    present = {p.name for p in final.glob("*.deb") if f"{os_set.dir}/{p.name}" in valid}
    for name in present:  # apt reuses what is in its archive cache
        os.link(final / name, stage / "archives" / name)
    with tempfile.TemporaryDirectory(prefix="airgap-llm-apt-") as tmp:
        opts = private_apt(Path(tmp), codename, status, stage / "archives")
        _run(["apt-get", *opts, "update"], f"apt-get update for {codename}")
        _run(
            ["apt-get", *opts, "install", "--download-only", "--no-install-recommends", "-y", *os_set.packages],
            f"resolving {' '.join(os_set.packages)} for {os_set.target.id}",
        )
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


def baseline_status(os_set: OsSetSpec, log: Callable[[str], None]) -> Path:
    """The dpkg status file of a minimal install of the target release (cached)."""
    cached = cache_root() / "os" / os_set.target.id / "status"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="airgap-llm-minbase-") as tmp:
        root = Path(tmp) / "root"
        log(f"making the {os_set.target.id} minbase baseline with mmdebstrap (once; cached in {cached.parent})")
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                os_set.target.codename,
                str(root),
                *DEBIAN_SOURCES[os_set.target.codename],
            ],
            f"mmdebstrap of {os_set.target.codename}",
        )
        tmp_status = cached.with_name("status" + PARTIAL_SUFFIX)
        shutil.copyfile(root / "var/lib/dpkg/status", tmp_status)
        os.replace(tmp_status, cached)
    return cached


def private_apt(tmp: Path, codename: str, status: Path, archives: Path) -> list[str]:
    """apt options for a private apt state: target sources, baseline status, own caches."""
    (tmp / "lists" / "partial").mkdir(parents=True)
    (tmp / "cache").mkdir()
    (tmp / "etc" / "preferences.d").mkdir(parents=True)
    (tmp / "etc" / "apt.conf.d").mkdir()
    sources = tmp / "etc" / "sources.list"
    sources.write_text("\n".join(DEBIAN_SOURCES[codename]) + "\n")
    return [
        "-o",
        f"Dir::Etc={tmp / 'etc'}",
        "-o",
        f"Dir::Etc::sourcelist={sources}",
        "-o",
        "Dir::Etc::sourceparts=-",
        "-o",
        f"Dir::State::Lists={tmp / 'lists'}",
        "-o",
        f"Dir::State::status={status}",
        "-o",
        f"Dir::Cache={tmp / 'cache'}",
        "-o",
        f"Dir::Cache::archives={archives}",
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root",
    ]


def signing_home() -> Path:
    """GNUPGHOME holding the bundle signing key (created once; the private key never leaves it)."""
    home = cache_root() / "signing"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    listed = subprocess.run(["gpg", "--batch", "--list-secret-keys", KEY_UID], capture_output=True, env=env)
    if listed.returncode != 0:
        _run(
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
    env = {**os.environ, "GNUPGHOME": str(signing_home())}
    for args, name in ((["--clearsign"], "InRelease"), (["--detach-sign", "--armor"], "Release.gpg")):
        tmp = repo / (name + PARTIAL_SUFFIX)
        _run(
            ["gpg", "--batch", "--yes", "--local-user", KEY_UID, *args, "--output", str(tmp), str(repo / "Release")],
            f"signing {name}",
            env,
        )
        os.replace(tmp, repo / name)
    exported = subprocess.run(["gpg", "--batch", "--export", KEY_UID], capture_output=True, env=env, check=True)
    _atomic(repo / KEYRING_NAME, exported.stdout)


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    tmp.write_bytes(data)
    os.replace(tmp, path)
