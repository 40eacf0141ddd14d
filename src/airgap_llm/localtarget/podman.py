"""Podman and ``ip`` calls behind the local targets: the internal network, its bridge, the image.

Podman 4.3 (netavark) gives the host side of an internal network's bridge no address, so the host
would route "the target's address" out through its default gateway. The bridge is therefore created
here with a host-side address before the first container starts, and ``check_route`` fails loudly
unless ``ip route get`` names that bridge; nothing connects to a target before that check.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airgap_llm.localtarget.addresses import (
    FIRST_TARGET_HOST,
    TargetError,
    host_address,
    overlapping_routes,
    route_problem,
)

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"
BUILD_IMAGE = HERE / "build-image"
DEFAULT_IMAGE = os.environ.get("AIRGAP_LLM_TARGET_IMAGE", "localhost/airgap-llm-target:debian-12")
LABEL = "airgap-llm.targets"


def run(args: Sequence[str], check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), text=True, capture_output=capture, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise TargetError(f"`{' '.join(args)}` failed (exit {proc.returncode}): {detail}")
    return proc


def podman_env() -> None:
    """Point podman at the package's containers.conf unless the caller chose one."""
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))


def network_info(network: str) -> dict[str, Any] | None:
    """``podman network inspect`` of ``network``, or None when it does not exist."""
    podman_env()
    proc = run(["podman", "network", "inspect", network], check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data[0] if data else None


def used_subnets() -> list[ipaddress.IPv4Network]:
    """Networks already in use: every route's destination and every podman subnet."""
    nets: list[ipaddress.IPv4Network] = []
    for route in json.loads(run(["ip", "-j", "route"]).stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    names = run(["podman", "network", "ls", "--format", "{{.Name}}"]).stdout.split()
    for name in names:
        info = network_info(name) or {}
        for sub in info.get("subnets", []):
            net = ipaddress.ip_network(sub["subnet"], strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                nets.append(net)
    return nets


def bridge_of(network: str) -> str:
    info = network_info(network)
    if info is None:
        raise TargetError(f"podman network {network} does not exist")
    return str(info["network_interface"])


def ensure_bridge(bridge: str, address: ipaddress.IPv4Interface) -> None:
    """Create ``bridge`` if missing and give it ``address`` (idempotent)."""
    if run(["ip", "link", "show", "dev", bridge], check=False).returncode != 0:
        run(["ip", "link", "add", bridge, "type", "bridge"])
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show", "dev", bridge]).stdout or "[]")
    have = {f"{a['local']}/{a['prefixlen']}" for entry in addrs for a in entry.get("addr_info", [])}
    if str(address) not in have:
        run(["ip", "addr", "add", str(address), "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def check_network(network: str) -> str:
    """Fail unless ``network`` is internal with DNS off; return its bridge."""
    info = network_info(network)
    if info is None:
        raise TargetError(f"podman network {network} does not exist")
    if not info.get("internal"):
        raise TargetError(f"podman network {network} is not --internal: its targets would have a route out")
    if info.get("dns_enabled"):
        raise TargetError(f"podman network {network} has DNS enabled: its resolver would forward names outside")
    return str(info["network_interface"])


def check_route(target_ip: str, bridge: str) -> None:
    """Fail loudly unless ``ip route get target_ip`` names ``bridge`` (sends nothing)."""
    proc = run(["ip", "-j", "route", "get", target_ip], check=False)
    routes = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
    problem = route_problem(target_ip, bridge, routes[0] if routes else None)
    if problem:
        raise TargetError(f"route check failed: {problem}")


def create_network(network: str, subnet: ipaddress.IPv4Network) -> str:
    """Create the internal network (no DNS) and its addressed bridge; return the bridge."""
    podman_env()
    info = network_info(network)
    if info is None:
        run([
            "podman", "network", "create", "--internal", "--disable-dns",
            "--subnet", str(subnet), "--label", f"{LABEL}={network}", network,
        ])
    else:
        subnets = [s["subnet"] for s in info.get("subnets", [])]
        if subnets != [str(subnet)]:
            raise TargetError(f"podman network {network} exists with subnets {subnets}, expected {subnet}")
    bridge = check_network(network)
    clashes = overlapping_routes(subnet, bridge, json.loads(run(["ip", "-j", "route"]).stdout or "[]"))
    if clashes:
        raise TargetError(f"subnet {subnet} of {network} overlaps existing routes: {', '.join(clashes)}")
    ensure_bridge(bridge, host_address(subnet))
    check_route(str(subnet.network_address + FIRST_TARGET_HOST), bridge)
    return bridge


def remove_network(network: str) -> None:
    """Remove every container on ``network``, the network and its bridge (idempotent)."""
    podman_env()
    info = network_info(network)
    if info is None:
        return
    ids = run(["podman", "ps", "-aq", "--filter", f"network={network}"]).stdout.split()
    if ids:
        run(["podman", "rm", "-f", "-t", "0", *ids])
    run(["podman", "network", "rm", "-f", network])
    bridge = str(info.get("network_interface", ""))
    if bridge and run(["ip", "link", "show", "dev", bridge], check=False).returncode == 0:
        run(["ip", "link", "delete", bridge])


def ensure_image(image: str) -> None:
    """Build the target image with ``build-image`` (cached; minutes from nothing) when podman lacks it."""
    if run(["podman", "image", "exists", image], check=False).returncode == 0:
        return
    if image != DEFAULT_IMAGE:
        raise TargetError(f"image {image} does not exist (build-image builds {DEFAULT_IMAGE} only)")
    proc = subprocess.run(["bash", str(BUILD_IMAGE)], text=True, check=False)
    if proc.returncode != 0:
        raise TargetError(f"{BUILD_IMAGE} failed (exit {proc.returncode}); see its output above")
