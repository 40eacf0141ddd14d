"""Pure helpers of the local targets: addresses, subnet choice, route checks, the inventory.

No I/O here: everything is decided from values passed in, so it is unit-tested without podman.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap_llm.errors import UsageError

# Subnets for target networks are /24 blocks of this pool.
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
# Reserved for the Molecule scenarios (tests/hosts/molecule-run).
MOLECULE_SUBNET = ipaddress.IPv4Network("10.213.7.0/24")
FIRST_TARGET_HOST = 11  # targets get .11, .12, ...; the host side is .1
ANCHOR_HOST = 254
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


class TargetError(UsageError):
    """A target or its network is not as needed (an environment error: exit 2); the message says why."""


@dataclass(frozen=True)
class Target:
    """One started target: container name and internal address."""

    name: str
    ip: ipaddress.IPv4Address


def host_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Interface:
    """The controller's address on the bridge of ``subnet`` (its first host)."""
    return ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")


def target_addresses(subnet: ipaddress.IPv4Network, count: int) -> list[ipaddress.IPv4Address]:
    """Addresses for ``count`` targets: .11, .12, ... of ``subnet``."""
    if count < 1:
        raise TargetError(f"target count must be at least 1, got {count}")
    last = subnet.network_address + FIRST_TARGET_HOST + count - 1
    if last >= subnet.network_address + ANCHOR_HOST:
        raise TargetError(f"{count} targets do not fit in {subnet}")
    return [subnet.network_address + FIRST_TARGET_HOST + i for i in range(count)]


def pick_subnet(
    used: Iterable[ipaddress.IPv4Network],
    pool: ipaddress.IPv4Network = SUBNET_POOL,
    reserved: Iterable[ipaddress.IPv4Network] = (MOLECULE_SUBNET,),
) -> ipaddress.IPv4Network:
    """First /24 of ``pool`` that overlaps no used or reserved network."""
    taken = [*used, *reserved]
    for candidate in pool.subnets(new_prefix=24):
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise TargetError(f"no free /24 left in {pool}: every block overlaps a route or a podman network")


def route_problem(target_ip: str, bridge: str, route: dict[str, Any] | None) -> str | None:
    """Why ``route`` (one entry of ``ip -j route get TARGET``) is unsafe, or None.

    Safe means: the kernel would send packets for the target straight out of
    the test network's bridge, not through any gateway.
    """
    if route is None:
        return f"no route to {target_ip}: expected one through bridge {bridge}"
    if route.get("type") in {"unreachable", "prohibit", "blackhole"}:
        return f"{target_ip} is {route['type']}: expected a route through bridge {bridge}"
    dev = route.get("dev")
    if dev != bridge:
        via = f" via {route['gateway']}" if route.get("gateway") else ""
        return (
            f"{target_ip} would be routed through {dev}{via}, not the test bridge {bridge}: "
            "a connection would leave this machine; refusing to connect"
        )
    if route.get("gateway"):
        return f"{target_ip} is routed via gateway {route['gateway']} on {bridge}: expected a direct route"
    return None


def overlapping_routes(
    subnet: ipaddress.IPv4Network, bridge: str, routes: Iterable[dict[str, Any]]
) -> list[str]:
    """Routes (from ``ip -j route``) other than the bridge's own that overlap ``subnet``."""
    problems = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == bridge:
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet):
            problems.append(f"{dst} dev {route.get('dev')}")
    return problems


def inventory(
    targets: Sequence[Target], key_file: Path, group: str = "targets"
) -> dict[str, Any]:
    """An Ansible inventory (YAML/JSON structure) reaching ``targets`` over SSH as root."""
    return {
        "all": {
            "children": {
                group: {
                    "hosts": {
                        t.name: {
                            "ansible_host": str(t.ip),
                            "ansible_user": "root",
                            "ansible_ssh_private_key_file": str(key_file),
                            "ansible_ssh_common_args": SSH_COMMON_ARGS,
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                        for t in targets
                    }
                }
            }
        }
    }
