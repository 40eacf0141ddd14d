"""The end-to-end path of the demo against a real systemd target with no route out.

One target set ("e2e", 10.213.10.0/24) is started for the whole module and always torn down. The
local-cpu inventory is copied and pointed at it, so the shipped group_vars are what gets installed.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
for sub in ("tests/hosts", "tests/fixtures"):
    sys.path.insert(0, str(REPO / sub))

import targets  # noqa: E402
import tiny_models  # noqa: E402

E2E_SUBNET = ipaddress.IPv4Network("10.213.10.0/24")


def cache_dir() -> Path:
    return Path(os.environ.get("AIRGAP_LLM_CACHE", Path.home() / ".cache" / "airgap-llm"))


@pytest.fixture(scope="session")
def target_set() -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests start podman containers: run as root (make test does)")
    subprocess_env = os.environ.setdefault("CONTAINERS_CONF", str(REPO / "tests" / "hosts" / "containers.conf"))
    assert subprocess_env
    ts = targets.TargetSet("e2e", count=1, subnet=E2E_SUBNET, group="airgap_llm")
    ts.down()  # leftovers of an interrupted run
    ts.up()
    try:
        yield ts
    finally:
        ts.down()


@pytest.fixture(scope="session")
def target(target_set: Any) -> Any:
    return target_set.targets[0]


@pytest.fixture(scope="session")
def inventory(tmp_path_factory: pytest.TempPathFactory, target_set: Any, target: Any) -> Path:
    inv = tmp_path_factory.mktemp("inv") / "local-cpu"
    shutil.copytree(REPO / "inventories" / "local-cpu", inv, ignore=shutil.ignore_patterns("credentials"))
    hosts = {
        "airgap_llm": {
            "hosts": {
                target.name: {
                    "ansible_host": str(target.ip),
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(target_set.key_file),
                    "ansible_ssh_common_args": targets.SSH_COMMON_ARGS,
                }
            }
        }
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


@pytest.fixture(scope="session")
def hf_home() -> Path:
    root = cache_dir() / "demo" / "hf"
    tiny_models.all_models_cache(root / "hub")
    return root


@pytest.fixture(scope="session")
def bundle(hf_home: Path) -> Path:
    """The local-cpu bundle (shared with `make demo`: the build is incremental)."""
    from airgap_llm.cli import main

    out = cache_dir() / "demo" / "bundle"
    rc = main(["bundle", "build", "-i", str(REPO / "inventories" / "local-cpu"), "-o", str(out),
               "--models-from", str(hf_home)])
    assert rc == 0
    return out
