"""The dpkg status of a minimal install of a Debian-family release, and apt run against it privately.

Debian: ``mmdebstrap --variant=minbase``. Ubuntu: the same set resolved by apt without a chroot (every
``Essential: yes`` or ``Priority: required`` package, and ``apt``), so that a Debian build machine needs
no Ubuntu userland. Cached under ``$AIRGAP_LLM_CACHE/os/<id>[-<sources hash>]/status``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from airgap_llm.bundle.layout import PARTIAL_SUFFIX
from airgap_llm.bundle.os_archives import RepoPlan
from airgap_llm.errors import UsageError


def cache_root() -> Path:
    env = os.environ.get("AIRGAP_LLM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "airgap-llm"


def run_tool(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise UsageError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:3])} ...\n{tail}")
    return proc.stdout


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
            run_tool(
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
    run_tool(["apt-get", *opts, "update"], f"apt-get update for {plan.target.codename}")
    stanzas = parse_stanzas(run_tool(["apt-cache", *opts, "dumpavail"], f"listing the {plan.target.codename} archive"))
    names = minbase_names(stanzas)
    simulated = run_tool(
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
