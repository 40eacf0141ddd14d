"""OS packages the hosts lack, as a signed local apt repository under ``os/<distro>-<version>/``.

Debian family (Debian 12, Ubuntu 22.04 and 24.04), done on the connected machine (root, ``apt-get``,
``dpkg-dev``, ``apt-utils``, ``gnupg``; ``mmdebstrap`` for Debian):

1. baseline: the dpkg status of a minimal install of the target release, made once and cached under
   ``$AIRGAP_LLM_CACHE/os/<id>[-<mirror hash>]/status``. Debian: ``mmdebstrap --variant=minbase``.
   Ubuntu: the same set resolved by apt without a chroot (every ``Priority: required`` package and
   ``apt``, at the release's versions), so a Debian build machine needs no Ubuntu userland;
2. a private apt directory with the target's sources (``--os-mirror OS=URL`` or the public archive,
   checked with the release's archive key: ``debian-archive-keyring`` / ``ubuntu-keyring``, or
   ``--os-keyring OS=FILE``) and that status: ``apt-get install --download-only`` of the packages
   downloads exactly what a minimal host lacks, at the target release's versions;
3. ``Packages``, ``Packages.gz`` and ``Release`` (``dpkg-scanpackages``, ``apt-ftparchive``), with
   ``Release.gpg`` and ``InRelease`` signed by the bundle signing key. The private key stays under
   ``$AIRGAP_LLM_CACHE/signing/``; the public key ships as ``airgap-llm-archive-keyring.gpg``, for
   ``deb [signed-by=...] file:/... ./`` on the hosts, signature checks on.

RHEL 9 (and Rocky/Alma 9) needs ``dnf download --resolve`` on a subscribed machine of that release;
it is refused with a message saying so.
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

from airgap_llm.bundle.layout import KEYRING_NAME, PARTIAL_SUFFIX
from airgap_llm.bundle.spec import OsSetSpec
from airgap_llm.errors import InputError, UsageError
from airgap_llm.targets import TargetOS

METADATA = ("Packages", "Packages.gz", "Release", "Release.gpg", "InRelease", KEYRING_NAME)
KEY_UID = "airgap-llm bundle signing key"
APT_TOOLS = ("apt-get", "dpkg-scanpackages", "apt-ftparchive", "gpg")


@dataclass(frozen=True)
class Archive:
    """A distribution's archive: where it lives, how it is signed, what it is split into."""

    mirror: str
    security_mirror: str
    keyring: str
    keyring_package: str
    components: tuple[str, ...]


# Debian: contrib, non-free and non-free-firmware hold the NVIDIA driver (nvidia-driver,
# nvidia-kernel-dkms, nvidia-persistenced, firmware-misc-nonfree). Ubuntu: restricted holds the
# NVIDIA server drivers and precompiled modules, universe python3.11 (jammy), multiverse the fabric
# manager of some branches.
ARCHIVES = {
    "debian": Archive(
        "http://deb.debian.org/debian",
        "http://deb.debian.org/debian-security",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
        "debian-archive-keyring",
        ("main", "contrib", "non-free", "non-free-firmware"),
    ),
    "ubuntu": Archive(
        "http://archive.ubuntu.com/ubuntu",
        "http://security.ubuntu.com/ubuntu",
        "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        "ubuntu-keyring",
        ("main", "restricted", "universe", "multiverse"),
    ),
}


@dataclass(frozen=True)
class RepoPlan:
    """How the OS part of one target is resolved: sources, key, tools (pure data; no I/O)."""

    target: TargetOS
    mirror: str
    security_mirror: str
    keyring: Path
    keyring_package: str
    components: tuple[str, ...]
    driver: bool

    @property
    def suites(self) -> tuple[str, str, str]:
        c = self.target.codename
        return (c, f"{c}-updates", f"{c}-security")

    @property
    def sources(self) -> list[str]:
        comps = " ".join(self.components)
        release, updates, security = self.suites
        return [
            f"deb [signed-by={self.keyring}] {self.mirror} {release} {comps}",
            f"deb [signed-by={self.keyring}] {self.mirror} {updates} {comps}",
            f"deb [signed-by={self.keyring}] {self.security_mirror} {security} {comps}",
        ]

    @property
    def probe_urls(self) -> list[str]:
        release, updates, security = self.suites
        return [
            f"{self.mirror}/dists/{release}/InRelease",
            f"{self.mirror}/dists/{updates}/InRelease",
            f"{self.security_mirror}/dists/{security}/InRelease",
        ]

    @property
    def tools(self) -> tuple[str, ...]:
        return ("mmdebstrap", *APT_TOOLS) if self.target.distro == "debian" else APT_TOOLS

    @property
    def install_hint(self) -> str:
        base = "dpkg-dev apt-utils gnupg"
        return f"mmdebstrap {base}" if self.target.distro == "debian" else base

    @property
    def keyring_hint(self) -> str:
        return (
            f"apt-get install {self.keyring_package}, or give the mirror's key with --os-keyring {self.target.id}=FILE"
        )

    @property
    def cache_key(self) -> str:
        """The baseline cache's name: the target, and a hash of the sources when not the public archive."""
        if self.mirror == ARCHIVES[self.target.distro].mirror:
            return self.target.id
        return f"{self.target.id}-{hashlib.sha256(chr(10).join(self.sources).encode()).hexdigest()[:12]}"


def repo_plan(os_set: OsSetSpec, mirrors: Mapping[str, str], keyrings: Mapping[str, str] | None = None) -> RepoPlan:
    """The sources and key for one target: ``--os-mirror`` (every suite from it) or the public archive."""
    target = os_set.target
    if target.family != "debian":
        raise UsageError(unsupported_message(os_set))
    archive = ARCHIVES[target.distro]
    mirror = mirrors.get(target.id, "").rstrip("/")
    keyring = (keyrings or {}).get(target.id) or archive.keyring
    return RepoPlan(
        target,
        mirror or archive.mirror,
        mirror or archive.security_mirror,
        Path(keyring),
        archive.keyring_package,
        archive.components,
        os_set.driver,
    )


def parse_os_options(values: list[str], option: str) -> dict[str, str]:
    """``--os-mirror ubuntu-22.04=URL`` (repeatable) -> {"ubuntu-22.04": "URL"}; bad input: ``InputError``."""
    from airgap_llm.targets import TARGETS

    out: dict[str, str] = {}
    for value in values:
        target, sep, rest = value.partition("=")
        if not sep or not rest:
            raise InputError(f"{option} {value!r}: expected OS=VALUE, e.g. {option} ubuntu-22.04=...")
        if target not in TARGETS:
            raise InputError(f"{option} {value!r}: unknown OS {target!r}; use one of {', '.join(sorted(TARGETS))}")
        if option == "--os-mirror" and not re.match(r"^(https?|file)://", rest):
            raise InputError(f"{option} {value!r}: the mirror must be an http://, https:// or file:// URL")
        out[target] = rest
    return out


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


def unsupported_message(os_set: OsSetSpec) -> str:
    t = os_set.target
    return (
        f"OS packages for {t.id} ({' '.join(os_set.packages)}): RHEL-family parts are not built here; they need "
        f"a RHEL {t.version} (or Rocky/Alma {t.version}) machine with its repositories (BaseOS, AppStream, EPEL "
        "for dkms, NVIDIA's CUDA repository for the driver), using 'dnf download --resolve --alldeps' against "
        "a minimal install and 'createrepo_c' for the repodata. Build the other parts with --only models "
        "--only wheels --only collections, and bring the OS packages from a machine that has that access"
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
        _run(["apt-get", *opts, "update"], f"apt-get update for {codename}")
        what = f"resolving {' '.join(os_set.packages)} for {os_set.target.id}"
        try:
            _run(
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


def baseline_status(plan: RepoPlan, log: Callable[[str], None]) -> Path:
    """The dpkg status file of a minimal install of the target release (cached per target and sources)."""
    cached = cache_root() / "os" / plan.cache_key / "status"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_status = cached.with_name("status" + PARTIAL_SUFFIX)
    with tempfile.TemporaryDirectory(prefix="airgap-llm-minbase-") as tmp:
        log(f"making the {plan.target.id} minimal baseline (once; cached in {cached.parent})")
        if plan.target.distro == "debian":
            root = Path(tmp) / "root"
            _run(
                ["mmdebstrap", "--variant=minbase", "--quiet", plan.target.codename, str(root), *plan.sources],
                f"mmdebstrap of {plan.target.codename}",
            )
            shutil.copyfile(root / "var/lib/dpkg/status", tmp_status)
        else:
            tmp_status.write_text(resolved_baseline(Path(tmp), plan), encoding="utf-8")
    os.replace(tmp_status, cached)
    return cached


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs (``Packages`` files, dpkg status) as dicts; continuation lines kept."""
    stanzas: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            stanzas.append(fields)
    return stanzas


def minbase_names(stanzas: list[dict[str, str]]) -> list[str]:
    """What ``--variant=minbase`` installs: every ``Essential: yes`` or ``Priority: required`` package, and apt."""
    names = {s["Package"] for s in stanzas if s.get("Essential") == "yes" or s.get("Priority") == "required"}
    return sorted(names | {"apt"})


_INST = re.compile(r"^Inst (?P<name>\S+) (?:\[\S+\] )?\((?P<version>\S+) ", re.MULTILINE)
_STATUS_FIELDS = (
    "Package",
    "Essential",
    "Priority",
    "Section",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Breaks",
    "Conflicts",
)


def status_text(stanzas: list[dict[str, str]], installed: Mapping[str, str]) -> str:
    """A dpkg status file saying ``installed`` (name -> version) are installed, from their stanzas."""
    out = []
    for s in stanzas:
        if installed.get(s["Package"]) != s.get("Version"):
            continue
        lines = [f"Package: {s['Package']}", "Status: install ok installed"]
        lines += [f"{k}: {s[k]}" for k in _STATUS_FIELDS[1:] if k in s]
        out.append("\n".join(lines))
        installed = {k: v for k, v in installed.items() if k != s["Package"]}  # one stanza per package
    return "\n\n".join(out) + "\n"


def resolved_baseline(tmp: Path, plan: RepoPlan) -> str:
    """The minbase set, resolved by apt against an empty system (no chroot, no maintainer scripts)."""
    empty = tmp / "empty-status"
    empty.write_text("")
    archives = tmp / "archives"
    (archives / "partial").mkdir(parents=True)
    apt = tmp / "apt"
    opts = private_apt(apt, plan, empty, archives)
    _run(["apt-get", *opts, "update"], f"apt-get update for {plan.target.codename}")
    stanzas = parse_stanzas(_run(["apt-cache", *opts, "dumpavail"], f"listing the {plan.target.codename} archive"))
    names = minbase_names(stanzas)
    simulated = _run(
        ["apt-get", *opts, "install", "-s", "--no-install-recommends", "-y", *names],
        f"resolving the minimal {plan.target.id} install",
    )
    installed = {m.group("name"): m.group("version") for m in _INST.finditer(simulated)}
    if not installed:
        raise UsageError(
            f"{plan.target.id}: apt resolved no minimal install from {plan.mirror}; "
            f"is it an archive of {plan.target.codename}?"
        )
    return status_text(stanzas, installed)


def private_apt(tmp: Path, plan: RepoPlan, status: Path, archives: Path) -> list[str]:
    """apt options for a private apt state: target sources, baseline status, own caches."""
    (tmp / "lists" / "partial").mkdir(parents=True)
    (tmp / "cache").mkdir()
    (tmp / "etc" / "preferences.d").mkdir(parents=True)
    (tmp / "etc" / "apt.conf.d").mkdir()
    sources = tmp / "etc" / "sources.list"
    sources.write_text("\n".join(plan.sources) + "\n")
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
        "-o",
        "Acquire::Languages=none",
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
