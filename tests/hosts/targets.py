#!/usr/bin/env python3
"""Test targets for the host-based tests: the command line and names of ``airgap_llm.localtarget``.

The code lives in the package (``airgap-llm demo`` uses it too); this file only puts this checkout's
``src/`` first on ``sys.path`` and re-exports, so that ``tests/hosts/molecule-run``, Molecule's
prepare playbook, the e2e and proof tests and the benchmarks keep calling it as before::

    tests/hosts/targets.py up --name demo --count 2   # prints the inventory path
    tests/hosts/targets.py down --name demo            # containers, network, bridge, key
    tests/hosts/targets.py check-route --network NET IP...
    tests/hosts/targets.py net-up --network NET --subnet CIDR  # network + bridge only
    tests/hosts/targets.py net-down --network NET

From Python (``sys.path`` must contain ``tests/hosts``): ``from targets import TargetSet``; see
``airgap_llm.localtarget.targetset`` for the API.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[2] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from airgap_llm.localtarget.addresses import (  # noqa: E402
    ANCHOR_HOST,
    FIRST_TARGET_HOST,
    MOLECULE_SUBNET,
    SSH_COMMON_ARGS,
    SUBNET_POOL,
    Target,
    TargetError,
    host_address,
    inventory,
    overlapping_routes,
    pick_subnet,
    route_problem,
    target_addresses,
)
from airgap_llm.localtarget.cli import main  # noqa: E402
from airgap_llm.localtarget.podman import (  # noqa: E402
    CONTAINERS_CONF,
    DEFAULT_IMAGE,
    LABEL,
    bridge_of,
    check_network,
    check_route,
    create_network,
    ensure_image,
    network_info,
    remove_network,
)
from airgap_llm.localtarget.targetset import TargetSet, run_dir  # noqa: E402

__all__ = [
    "ANCHOR_HOST", "CONTAINERS_CONF", "DEFAULT_IMAGE", "FIRST_TARGET_HOST", "LABEL", "MOLECULE_SUBNET",
    "SSH_COMMON_ARGS", "SUBNET_POOL", "Target", "TargetError", "TargetSet",
    "bridge_of", "check_network", "check_route", "create_network", "ensure_image", "host_address",
    "inventory", "main", "network_info", "overlapping_routes", "pick_subnet", "remove_network",
    "route_problem", "run_dir", "target_addresses",
]

if __name__ == "__main__":
    sys.exit(main())
