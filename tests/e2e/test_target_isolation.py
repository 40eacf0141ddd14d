"""Two target sets side by side: taking one down (or rebooting one target) leaves the other usable.

On a host with cgroup v1 hierarchies, podman's systemd mode once let every target's systemd manage the
host's whole name=systemd tree, and a target going down removed the other containers' cgroups:
``podman exec`` into them then failed (see airgap_llm.localtarget.cgroups). Two tiny sets, no vLLM.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from airgap_llm.localtarget import TargetSet, podman_env
from airgap_llm.localtarget.cgroups import NAMED_SYSTEMD, TARGETS_CGROUP, host_has_named_systemd_hierarchy


@pytest.fixture(scope="module")
def two_sets() -> Iterator[tuple[TargetSet, TargetSet]]:
    if os.geteuid() != 0:
        pytest.skip("starts podman containers: run as root (make test does)")
    podman_env()
    sets = (TargetSet("iso-a", count=1), TargetSet("iso-b", count=1))
    for ts in sets:
        ts.down()  # leftovers of an interrupted run
    try:
        for ts in sets:
            ts.up()
        yield sets
    finally:
        for ts in sets:
            ts.down()


def test_taking_one_set_down_leaves_the_other_usable(two_sets: tuple[TargetSet, TargetSet]) -> None:
    first, second = two_sets
    (survivor,) = second.targets
    (other,) = first.targets
    first.restart(other)  # a reboot of a target in the other set must not hurt either
    second.exec(survivor, "true")
    first.down()
    proc = second.exec(survivor, "systemctl", "is-system-running", "--wait")
    assert proc.stdout.strip() in {"running", "degraded"}
    second.ssh(survivor, "true")


def test_each_target_has_a_cgroup_tree_of_its_own(two_sets: tuple[TargetSet, TargetSet]) -> None:
    if not host_has_named_systemd_hierarchy():
        pytest.skip("no cgroup v1 name=systemd hierarchy on this host: podman's own systemd mode is used")
    second = two_sets[1]
    (target,) = second.targets
    cgroup = second.exec(target, "cat", "/proc/1/cgroup").stdout
    line = next(entry for entry in cgroup.splitlines() if ":name=systemd:" in entry)
    assert line.endswith(f"/airgap-llm-targets/{target.name}/init.scope"), line
    assert (TARGETS_CGROUP / target.name / "init.scope").is_dir()
    own = subprocess.run(["podman", "inspect", "--format", "{{.State.CgroupPath}}", target.name],
                         capture_output=True, text=True, check=True).stdout.strip()
    procs = (NAMED_SYSTEMD / own.lstrip("/") / "cgroup.procs").read_text().split()
    assert procs, f"nothing holds the container's own cgroup {own}: a trim elsewhere could remove it"
