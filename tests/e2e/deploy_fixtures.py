"""Module-scoped fixtures shared by tests/e2e and tests/proof: each test module sets
``DEPLOYMENT = Deployment(...)`` (deployments.py) and gets its own target set (``count`` targets on its
own internal /24), started for the module and always torn down when the module ends, even when a test
or the start itself failed. The module's inventory is copied and pointed at those targets, so its
shipped group_vars are what gets installed. A conftest.py imports these names to offer them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import deployments  # first: it puts tests/hosts and tests/fixtures on sys.path
import pytest
import targets
import yaml
from deployments import STARTED, Deployment


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest) -> Deployment:
    dep = getattr(request.module, "DEPLOYMENT", None)
    if not isinstance(dep, Deployment):
        raise pytest.UsageError(f"{request.module.__name__} sets no DEPLOYMENT = Deployment(...)")
    return dep


@pytest.fixture(scope="module")
def target_set(deployment: Deployment) -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests start podman containers: run as root (make test does)")
    os.environ.setdefault("CONTAINERS_CONF", str(deployments.REPO / "tests" / "hosts" / "containers.conf"))
    ts = targets.TargetSet(deployment.name, count=deployment.count, subnet=deployment.subnet, group="airgap_llm",
                            shared_dir=deployment.shared_dir)
    ts.down()  # leftovers of an interrupted run
    try:
        STARTED.append(deployment.name)
        ts.up()
        yield ts
    finally:
        ts.down()


@pytest.fixture(scope="module")
def target(target_set: Any) -> Any:
    return target_set.targets[0]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, deployment: Deployment, target_set: Any, target: Any) -> Path:
    inv = tmp_path_factory.mktemp("inv") / deployment.inventory.name
    shutil.copytree(deployment.inventory, inv, ignore=shutil.ignore_patterns("credentials"))
    hosts = {
        "airgap_llm": {
            "hosts": {
                t.name: {
                    "ansible_host": str(t.ip),
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(target_set.key_file),
                    "ansible_ssh_common_args": targets.SSH_COMMON_ARGS,
                }
                for t in target_set.targets
            }
        }
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


@pytest.fixture(scope="module")
def hf_home(deployment: Deployment) -> Path:
    deployment.models(deployment.hf_home / "hub")
    return deployment.hf_home


@pytest.fixture(scope="module")
def bundle(deployment: Deployment, hf_home: Path) -> Path:
    """The deployment's bundle (incremental: a rebuild fetches only what is missing)."""
    from airgap_llm.cli import main

    out = deployment.bundle_dir
    rc = main(["bundle", "build", "-i", str(deployment.inventory), "-o", str(out), "--models-from", str(hf_home)])
    assert rc == 0
    return out
