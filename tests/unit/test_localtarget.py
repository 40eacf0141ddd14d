"""Pure helpers of airgap_llm.localtarget (addresses, subnet choice, route checks, inventory), and
tests/hosts/targets.py as a thin front over the package."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import airgap_llm.localtarget.addresses as targets
from airgap_llm.localtarget import TargetSet

TARGETS_PY = Path(__file__).resolve().parents[1] / "hosts" / "targets.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hosts_targets", TARGETS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hosts_targets"] = module
    spec.loader.exec_module(module)
    return module


def test_tests_hosts_targets_is_the_package() -> None:
    script = _load_script()
    assert script.TargetSet is TargetSet
    assert script.route_problem is targets.route_problem
    assert script.TargetError is targets.TargetError


def test_tests_hosts_targets_command_line_runs() -> None:
    proc = subprocess.run([sys.executable, str(TARGETS_PY), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for command in ("up", "down", "check-route", "net-up", "net-down"):
        assert command in proc.stdout


def test_package_imports_nothing_from_tests() -> None:
    """Product code must not reach into tests/ (no sys.path games, no test-helper modules)."""
    src = Path(__file__).resolve().parents[2] / "src" / "airgap_llm"
    pattern = re.compile(r"sys\.path|^\s*(import|from)\s+(targets|tiny_models|hf_cache|deployments)\b", re.M)
    offenders = [str(path.relative_to(src)) for path in src.rglob("*.py") if pattern.search(path.read_text())]
    assert offenders == []


NET = ipaddress.IPv4Network("10.213.9.0/24")


def test_host_side_address_is_the_first_host() -> None:
    assert str(targets.host_address(NET)) == "10.213.9.1/24"


def test_targets_start_at_dot_11() -> None:
    assert [str(a) for a in targets.target_addresses(NET, 3)] == ["10.213.9.11", "10.213.9.12", "10.213.9.13"]


@pytest.mark.parametrize(
    ("count", "message"), [(0, "at least 1, got 0"), (300, "300 targets do not fit in 10.213.9.0/24")]
)
def test_target_count_out_of_range(count: int, message: str) -> None:
    with pytest.raises(targets.TargetError, match=message):
        targets.target_addresses(NET, count)


def test_pick_subnet_skips_used_and_reserved_blocks() -> None:
    used = [ipaddress.IPv4Network("10.213.0.0/23"), ipaddress.IPv4Network("192.0.2.0/24")]
    reserved = [ipaddress.IPv4Network("10.213.2.0/24")]
    assert str(targets.pick_subnet(used, reserved=reserved)) == "10.213.3.0/24"


def test_pick_subnet_never_takes_the_molecule_block() -> None:
    used = [ipaddress.IPv4Network(f"10.213.{i}.0/24") for i in range(7)]
    assert str(targets.pick_subnet(used)) == "10.213.8.0/24"


def test_pick_subnet_fails_when_the_pool_is_full() -> None:
    with pytest.raises(targets.TargetError, match="no free /24 left in 10.213.0.0/16"):
        targets.pick_subnet([ipaddress.IPv4Network("10.0.0.0/8")])


def test_route_through_the_bridge_is_safe() -> None:
    route = {"dst": "10.213.9.11", "dev": "podman3", "prefsrc": "10.213.9.1"}
    assert targets.route_problem("10.213.9.11", "podman3", route) is None


def test_route_through_the_default_gateway_is_refused() -> None:
    route = {"dst": "10.213.9.11", "gateway": "192.0.2.1", "dev": "eth0", "prefsrc": "192.0.2.2"}
    problem = targets.route_problem("10.213.9.11", "podman3", route)
    assert problem is not None
    assert "routed through eth0 via 192.0.2.1, not the test bridge podman3" in problem
    assert "would leave this machine" in problem


def test_gateway_on_the_bridge_is_refused() -> None:
    route = {"dst": "10.213.9.11", "gateway": "10.213.9.1", "dev": "podman3"}
    assert targets.route_problem("10.213.9.11", "podman3", route) == (
        "10.213.9.11 is routed via gateway 10.213.9.1 on podman3: expected a direct route"
    )


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (None, "no route to 10.213.9.11: expected one through bridge podman3"),
        ({"type": "unreachable", "dst": "10.213.9.11"}, "10.213.9.11 is unreachable"),
    ],
)
def test_missing_route_is_refused(route: dict[str, str] | None, message: str) -> None:
    problem = targets.route_problem("10.213.9.11", "podman3", route)
    assert problem is not None and problem.startswith(message)


def test_overlapping_routes_ignore_the_bridge_and_default() -> None:
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "10.213.9.0/24", "dev": "podman3"},
        {"dst": "10.213.0.0/16", "dev": "wg0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
    ]
    assert targets.overlapping_routes(NET, "podman3", routes) == ["10.213.0.0/16 dev wg0"]


def test_inventory_reaches_each_target_over_ssh_as_root() -> None:
    hosts = [targets.Target("demo-1", ipaddress.IPv4Address("10.213.9.11")),
             targets.Target("demo-2", ipaddress.IPv4Address("10.213.9.12"))]
    inv = targets.inventory(hosts, Path("/run/k/id_ed25519"), group="demo")
    entries = inv["all"]["children"]["demo"]["hosts"]
    assert list(entries) == ["demo-1", "demo-2"]
    assert entries["demo-2"]["ansible_host"] == "10.213.9.12"
    assert entries["demo-1"]["ansible_user"] == "root"
    assert entries["demo-1"]["ansible_ssh_private_key_file"] == "/run/k/id_ed25519"
    args = entries["demo-1"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=no" in args and "UserKnownHostsFile=/dev/null" in args
