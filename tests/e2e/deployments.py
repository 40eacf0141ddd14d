"""What an end-to-end module deploys: its own target set, inventory, models and bundle.

Each test module under tests/e2e sets ``DEPLOYMENT = Deployment(...)``; the module-scoped fixtures of
conftest.py read it, so every module starts its own target set and tears it down when its last test
has run (the services of two modules would not fit in this machine's NUMA node at once).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airgap_llm.cli import main

REPO = Path(__file__).resolve().parents[2]
for sub in ("tests/hosts", "tests/fixtures"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))


# Names of the target sets this session started, in order (a module can check its predecessors are gone).
STARTED: list[str] = []


def cache_dir() -> Path:
    return Path(os.environ.get("AIRGAP_LLM_CACHE", Path.home() / ".cache" / "airgap-llm"))


@dataclass(frozen=True)
class Deployment:
    name: str  # the target set: containers <name>-1.., network airgap-llm-<name>
    subnet: ipaddress.IPv4Network  # a /24 of its own
    inventory: Path  # copied for the run, with a hosts.yml pointing at the target set
    cache: str  # <cache>/<cache>/hf (the models' hub) and <cache>/<cache>/bundle
    models: Callable[[Path], object]  # writes the inventory's models into a hub root
    count: int = 1  # targets in the set: <name>-1 ... <name>-<count>, all in the inventory's airgap_llm group
    shared_dir: str | None = None  # a path mounted read-only on every target from one directory here (a shared mount)

    @property
    def hf_home(self) -> Path:
        return cache_dir() / self.cache / "hf"

    @property
    def bundle_dir(self) -> Path:
        return cache_dir() / self.cache / "bundle"


# ---------------------------------------------------------------- talking to the CLI and the target


def demo_bundle(deployment: Deployment, hf_home: Path) -> Path:
    """The demo's bundle (``deployment.cache`` is "demo"), built from the demo's own inventory when it is
    missing, so that it stays the demo's; the modules that share it install other inventories from it."""
    out = deployment.bundle_dir
    if not (out / "manifest.json").is_file():
        rc = main(["bundle", "build", "-i", str(REPO / "inventories" / "local-cpu"), "-o", str(out),
                   "--models-from", str(hf_home)])
        assert rc == 0
    return out


def ansible_env() -> dict[str, str]:
    """The environment plain ``ansible-playbook`` runs in, as a user runs it from the repository."""
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def ansible_playbook(inventory: Path, playbook: str, *args: str,
                     timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Plain ``ansible-playbook -i INVENTORY playbooks/PLAYBOOK ARGS...`` from the repository, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), f"playbooks/{playbook}", *args],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=timeout,
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """Run the CLI in-process; its stdout parsed as JSON when it is JSON."""
    rc = main(list(args))
    out = capsys.readouterr().out
    try:
        return rc, json.loads(out)
    except ValueError:
        return rc, out


def ssh(target_set: Any, target: Any, command: str) -> str:
    return str(target_set.ssh(target, command).stdout).strip()


def unit_props(target_set: Any, target: Any, unit: str, *props: str) -> dict[str, str]:
    names = ",".join(props or ("ActiveState", "MainPID", "NRestarts", "ActiveEnterTimestampMonotonic"))
    out = ssh(target_set, target, f"systemctl show -p {names} {unit}")
    return dict(line.split("=", 1) for line in out.splitlines())
