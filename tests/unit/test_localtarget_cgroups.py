"""Each local target's own name=systemd cgroup: host detection, podman options, clean-up, and the
Molecule platforms using the same options as the package's target sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airgap_llm.localtarget import cgroups
from airgap_llm.localtarget.cli import scenario_platforms

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(REPO.glob("roles/*/molecule/*/molecule.yml")) + [REPO / ".config" / "molecule" / "config.yml"]

V1_MOUNTINFO = """\
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
35 31 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:13 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:15 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:16 - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_named_systemd_hierarchy_is_detected_on_v1_and_hybrid_hosts_only() -> None:
    assert cgroups.has_named_systemd_hierarchy(V1_MOUNTINFO)
    assert not cgroups.has_named_systemd_hierarchy(V2_MOUNTINFO)
    assert not cgroups.has_named_systemd_hierarchy("garbage without separator\n")


def test_v1_targets_get_their_own_cgroup_and_no_podman_systemd_mode(tmp_path: Path) -> None:
    opts = cgroups.run_options("demo-1", named_systemd=True, root=tmp_path)
    assert "--systemd=false" in opts
    assert "--systemd=always" not in opts
    assert f"--volume={tmp_path / 'demo-1'}:/sys/fs/cgroup/systemd" in opts
    assert {"--cgroupns=private", "--tmpfs=/sys/fs/cgroup", "--tmpfs=/run", "--shm-size=1g"} <= set(opts)


def test_v2_targets_keep_podman_systemd_mode() -> None:
    opts = cgroups.run_options("demo-1", named_systemd=False)
    assert "--systemd=always" in opts
    assert not any(opt.startswith("--volume=") for opt in opts)


def test_the_keeper_is_a_podman_exec_in_the_container() -> None:
    assert cgroups.keeper_command("demo-1") == ["podman", "exec", "-d", "demo-1", "/bin/sleep", "infinity"]


def test_release_removes_empty_trees_deepest_first_and_leaves_busy_ones(tmp_path: Path) -> None:
    root = tmp_path / "targets"
    (root / "t-1" / "system.slice" / "ssh.service").mkdir(parents=True)
    (root / "t-1" / "init.scope").mkdir()
    assert cgroups.release("t-1", root=root) == []
    assert not (root / "t-1").exists()
    busy = root / "t-2" / "system.slice"
    busy.mkdir(parents=True)
    (busy / "pid").write_text("1")  # a plain directory that is not empty stands for a busy cgroup
    assert cgroups.release("t-2", root=root) == [busy, root / "t-2"]
    assert cgroups.release("absent", root=root) == []


def test_prepare_needs_the_hierarchy(tmp_path: Path) -> None:
    cgroups.prepare("t-1", root=tmp_path / "missing" / "targets")
    assert not (tmp_path / "missing").exists()
    cgroups.prepare("t-1", root=tmp_path / "targets")
    assert (tmp_path / "targets" / "t-1").is_dir()


BASE = REPO / ".config" / "molecule" / "config.yml"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: str(p.relative_to(REPO)))
def test_molecule_platforms_use_the_target_options(scenario: Path) -> None:
    platforms = (yaml.safe_load(scenario.read_text()) or {}).get("platforms") or []
    if not platforms:
        assert scenario_platforms(scenario, BASE) == scenario_platforms(BASE)
        pytest.skip("the scenario runs on the base config's platforms (checked there)")
    assert [p["name"] for p in platforms] == scenario_platforms(scenario, BASE)
    for platform in platforms:
        expected = cgroups.run_options(platform["name"], named_systemd=True)
        assert platform["systemd"] == "false", platform["name"]  # the schema wants a string
        # beyond the target's own options, only device rules (the GPU-shaped target's NVIDIA majors)
        extra = [o for o in platform["extra_opts"] if not o.startswith("--device-cgroup-rule=")]
        assert sorted([*extra, "--systemd=false"]) == sorted(expected), platform["name"]


def test_the_base_config_has_a_platform() -> None:
    assert scenario_platforms(BASE) == ["target-1"]
