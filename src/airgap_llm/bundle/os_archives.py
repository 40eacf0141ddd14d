"""The archives the OS part is resolved against: where each distribution's archive lives, its key and
components, and the sources of one target (``--os-mirror``, ``--os-keyring``) (pure logic, no I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from airgap_llm.bundle.spec import OsSetSpec
from airgap_llm.errors import InputError, UsageError
from airgap_llm.targets import TargetOS

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


def unsupported_message(os_set: OsSetSpec) -> str:
    t = os_set.target
    return (
        f"OS packages for {t.id} ({' '.join(os_set.packages)}): RHEL-family parts are not built here; they need "
        f"a RHEL {t.version} (or Rocky/Alma {t.version}) machine with its repositories (BaseOS, AppStream, EPEL "
        "for dkms, NVIDIA's CUDA repository for the driver), using 'dnf download --resolve --alldeps' against "
        "a minimal install and 'createrepo_c' for the repodata. Build the other parts with --only models "
        "--only wheels --only collections, and bring the OS packages from a machine that has that access"
    )
