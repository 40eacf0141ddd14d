#!/usr/bin/env python3
"""Test targets: systemd containers on an internal podman network, no route out.

Each target is a container from the image that ``tests/hosts/build-image``
makes (minimal Debian 12, systemd as PID 1, sshd), attached to an
``--internal`` podman network: targets reach each other and the controller
reaches them over SSH on their own addresses, but they have no default route,
no resolver that forwards outside, and nothing they send can leave the
machine.

Podman 4.3 (netavark) gives the host side of an internal network's bridge no
address, so the host would route "the target's address" out through its
default gateway. This module therefore creates the bridge itself with a
host-side address before the first container starts, keeps it alive with a
tiny anchor container (netavark deletes the bridge when its last container
stops, e.g. on a target restart), and checks with ``ip route get`` that every
target address is routed through that bridge before any connection, failing
loudly otherwise.

Command line (run as root, from the repository)::

    tests/hosts/targets.py up --name demo --count 2   # prints the inventory path
    tests/hosts/targets.py down --name demo            # containers, network, bridge, key
    tests/hosts/targets.py check-route --network NET IP...
    tests/hosts/targets.py net-up --network NET --subnet CIDR  # network + bridge only
    tests/hosts/targets.py net-down --network NET

``up`` writes ``<run dir>/inventory.json`` (an Ansible inventory; the run dir
is ``$AIRGAP_LLM_TARGETS_DIR/<name>``, default ``/tmp/airgap-llm-targets/<name>``)
with, for every target, ``ansible_host``, ``ansible_user=root``,
``ansible_ssh_private_key_file`` (an ed25519 key made for this run) and
``ansible_ssh_common_args`` (no host key checking, no known_hosts file)::

    ansible-playbook -i /tmp/airgap-llm-targets/demo/inventory.json site.yml

From Python (``sys.path`` must contain ``tests/hosts``)::

    from targets import TargetSet

    targets = TargetSet("demo", count=2)
    try:
        hosts = targets.up()              # list[Target], started and reachable by SSH
        ip = hosts[0].ip                  # the target's address (ipaddress.IPv4Address)
        targets.exec(hosts[0], "systemctl", "is-system-running")   # podman exec
        targets.ssh(hosts[0], "ip route")                          # over SSH, route-checked
        targets.restart(hosts[0])         # `podman restart`: a reboot of the target
        inventory_path = targets.inventory_path
    finally:
        targets.down()                    # always: containers, network, bridge, key

The podman settings come from ``tests/hosts/containers.conf`` through
``CONTAINERS_CONF`` (set here when the caller has not set it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGE = os.environ.get("AIRGAP_LLM_TARGET_IMAGE", "localhost/airgap-llm-target:debian-12")
LABEL = "airgap-llm.targets"
# Subnets for test networks are /24 blocks of this pool.
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
# Reserved for the Molecule scenarios (tests/hosts/molecule-run).
MOLECULE_SUBNET = ipaddress.IPv4Network("10.213.7.0/24")
FIRST_TARGET_HOST = 11  # targets get .11, .12, ...; the host side is .1
ANCHOR_HOST = 254
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
TARGET_RUN_OPTIONS = (
    "--systemd=always",
    "--cgroupns=private",
    "--tmpfs=/sys/fs/cgroup",
    "--shm-size=1g",
)


class TargetError(RuntimeError):
    """A target or its network is not as the tests need it; the message says why."""


# --- pure helpers (unit-tested in tests/unit/test_hosts_targets.py) ---------


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


# --- I/O --------------------------------------------------------------------


def _run(args: Sequence[str], check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), text=True, capture_output=capture, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise TargetError(f"`{' '.join(args)}` failed (exit {proc.returncode}): {detail}")
    return proc


def _podman_env() -> None:
    os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))


def network_info(network: str) -> dict[str, Any] | None:
    """``podman network inspect`` of ``network``, or None when it does not exist."""
    _podman_env()
    proc = _run(["podman", "network", "inspect", network], check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data[0] if data else None


def used_subnets() -> list[ipaddress.IPv4Network]:
    """Networks already in use: every route's destination and every podman subnet."""
    nets: list[ipaddress.IPv4Network] = []
    for route in json.loads(_run(["ip", "-j", "route"]).stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    names = _run(["podman", "network", "ls", "--format", "{{.Name}}"]).stdout.split()
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
    if _run(["ip", "link", "show", "dev", bridge], check=False).returncode != 0:
        _run(["ip", "link", "add", bridge, "type", "bridge"])
    addrs = json.loads(_run(["ip", "-j", "-4", "addr", "show", "dev", bridge]).stdout or "[]")
    have = {f"{a['local']}/{a['prefixlen']}" for entry in addrs for a in entry.get("addr_info", [])}
    if str(address) not in have:
        _run(["ip", "addr", "add", str(address), "dev", bridge])
    _run(["ip", "link", "set", bridge, "up"])


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
    proc = _run(["ip", "-j", "route", "get", target_ip], check=False)
    routes = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
    problem = route_problem(target_ip, bridge, routes[0] if routes else None)
    if problem:
        raise TargetError(f"route check failed: {problem}")


def create_network(network: str, subnet: ipaddress.IPv4Network) -> str:
    """Create the internal network (no DNS) and its addressed bridge; return the bridge."""
    _podman_env()
    info = network_info(network)
    if info is None:
        _run([
            "podman", "network", "create", "--internal", "--disable-dns",
            "--subnet", str(subnet), "--label", f"{LABEL}={network}", network,
        ])
    else:
        subnets = [s["subnet"] for s in info.get("subnets", [])]
        if subnets != [str(subnet)]:
            raise TargetError(f"podman network {network} exists with subnets {subnets}, expected {subnet}")
    bridge = check_network(network)
    clashes = overlapping_routes(subnet, bridge, json.loads(_run(["ip", "-j", "route"]).stdout or "[]"))
    if clashes:
        raise TargetError(f"subnet {subnet} of {network} overlaps existing routes: {', '.join(clashes)}")
    ensure_bridge(bridge, host_address(subnet))
    check_route(str(subnet.network_address + FIRST_TARGET_HOST), bridge)
    return bridge


def remove_network(network: str) -> None:
    """Remove every container on ``network``, the network and its bridge (idempotent)."""
    _podman_env()
    info = network_info(network)
    if info is None:
        return
    ids = _run(["podman", "ps", "-aq", "--filter", f"network={network}"]).stdout.split()
    if ids:
        _run(["podman", "rm", "-f", "-t", "0", *ids])
    _run(["podman", "network", "rm", "-f", network])
    bridge = str(info.get("network_interface", ""))
    if bridge and _run(["ip", "link", "show", "dev", bridge], check=False).returncode == 0:
        _run(["ip", "link", "delete", bridge])


def ensure_image(image: str) -> None:
    """Build the target image with ``build-image`` (cached; minutes from nothing) when podman lacks it."""
    if _run(["podman", "image", "exists", image], check=False).returncode == 0:
        return
    if image != DEFAULT_IMAGE:
        raise TargetError(f"image {image} does not exist (tests/hosts/build-image builds {DEFAULT_IMAGE})")
    proc = subprocess.run([str(HERE / "build-image")], text=True, check=False)
    if proc.returncode != 0:
        raise TargetError(f"tests/hosts/build-image failed (exit {proc.returncode}); see its output above")


def run_dir(name: str) -> Path:
    return Path(os.environ.get("AIRGAP_LLM_TARGETS_DIR", "/tmp/airgap-llm-targets")) / name


class TargetSet:
    """``count`` targets named ``<name>-1`` ... on their own internal network ``airgap-llm-<name>``."""

    def __init__(
        self,
        name: str,
        count: int = 1,
        image: str = DEFAULT_IMAGE,
        subnet: ipaddress.IPv4Network | None = None,
        group: str = "targets",
    ) -> None:
        if not name.replace("-", "").isalnum():
            raise TargetError(f"target set name {name!r} must be letters, digits and '-'")
        _podman_env()
        self.name = name
        self.count = count
        self.image = image
        self.group = group
        self.network = f"airgap-llm-{name}"
        self.dir = run_dir(name)
        self.key_file = self.dir / "id_ed25519"
        self.inventory_path = self.dir / "inventory.json"
        self._subnet = subnet

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        if self._subnet is None:
            info = network_info(self.network)
            if info is None:
                raise TargetError(f"network {self.network} is not up; call up() first")
            self._subnet = ipaddress.IPv4Network(info["subnets"][0]["subnet"])
        return self._subnet

    @property
    def targets(self) -> list[Target]:
        return [
            Target(f"{self.name}-{i + 1}", ip)
            for i, ip in enumerate(target_addresses(self.subnet, self.count))
        ]

    def up(self) -> list[Target]:
        """Start the network and the targets, install the SSH key, wait for sshd."""
        ensure_image(self.image)
        if self._subnet is None and network_info(self.network) is None:
            self._subnet = pick_subnet(used_subnets())
        create_network(self.network, self.subnet)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"airgap-llm-{self.name}",
                  "-f", str(self.key_file)])
        anchor = f"{self.name}-anchor"
        if _run(["podman", "container", "exists", anchor], check=False).returncode != 0:
            _run(["podman", "run", "-d", "--name", anchor, "--label", f"{LABEL}={self.name}",
                  "--network", self.network, "--ip", str(self.subnet.network_address + ANCHOR_HOST),
                  self.image, "/bin/sleep", "infinity"])
        for target in self.targets:
            if _run(["podman", "container", "exists", target.name], check=False).returncode != 0:
                _run(["podman", "run", "-d", "--name", target.name, "--hostname", target.name,
                      "--label", f"{LABEL}={self.name}", "--network", self.network,
                      "--ip", str(target.ip), *TARGET_RUN_OPTIONS, self.image])
            self.install_key(target)
        for target in self.targets:
            self.wait_for_ssh(target)
        self.inventory_path.write_text(
            json.dumps(inventory(self.targets, self.key_file, self.group), indent=2) + "\n"
        )
        return self.targets

    def install_key(self, target: Target) -> None:
        pub = self.key_file.with_suffix(".pub").read_text()
        self.exec(target, "sh", "-c",
                  "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
                  input_text=pub)

    def exec(self, target: Target, *cmd: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside ``target`` with ``podman exec`` (no network involved)."""
        args = ["podman", "exec", *(["-i"] if input_text is not None else []), target.name, *cmd]
        proc = subprocess.run(args, input=input_text, text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise TargetError(f"`{' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc

    def ssh_command(self, target: Target, command: str = "") -> list[str]:
        """The ``ssh`` argv reaching ``target`` as root (check the route before using it)."""
        return ["ssh", "-i", str(self.key_file), *SSH_COMMON_ARGS.split(), "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", f"root@{target.ip}", *([command] if command else [])]

    def ssh(self, target: Target, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``target`` over SSH, after the route check."""
        check_route(str(target.ip), bridge_of(self.network))
        return _run(self.ssh_command(target, command))

    def wait_for_ssh(self, target: Target, timeout_s: float = 60.0) -> None:
        check_route(str(target.ip), bridge_of(self.network))
        deadline = time.monotonic() + timeout_s
        while True:
            proc = _run(self.ssh_command(target, "true"), check=False)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TargetError(f"{target.name} ({target.ip}) did not accept SSH within {timeout_s:.0f} s: "
                                  f"{proc.stderr.strip()}")
            time.sleep(0.5)

    def restart(self, target: Target) -> None:
        """Restart the container (a reboot of the host) and wait for SSH again."""
        _run(["podman", "restart", target.name])
        ensure_bridge(bridge_of(self.network), host_address(self.subnet))
        self.wait_for_ssh(target)

    def down(self) -> None:
        """Remove the targets, the network, its bridge and the run dir (key, inventory)."""
        ids = _run(["podman", "ps", "-aq", "--filter", f"label={LABEL}={self.name}"]).stdout.split()
        if ids:
            _run(["podman", "rm", "-f", "-t", "0", *ids])
        remove_network(self.network)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- command line -----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="targets.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start N targets; prints the inventory path")
    up.add_argument("--name", required=True)
    up.add_argument("--count", type=int, default=1)
    up.add_argument("--image", default=DEFAULT_IMAGE)
    up.add_argument("--subnet", type=ipaddress.IPv4Network)
    up.add_argument("--group", default="targets", help="inventory group of the targets")
    down = sub.add_parser("down", help="remove the targets, network, bridge and key")
    down.add_argument("--name", required=True)
    check = sub.add_parser("check-route", help="fail unless each IP is routed through NET's bridge")
    check.add_argument("--network", required=True)
    check.add_argument("ips", nargs="+")
    net_up = sub.add_parser("net-up", help="create the internal network and its addressed bridge")
    net_up.add_argument("--network", required=True)
    net_up.add_argument("--subnet", type=ipaddress.IPv4Network, required=True)
    net_down = sub.add_parser("net-down", help="remove a network, its containers and bridge")
    net_down.add_argument("--network", required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            targets = TargetSet(args.name, args.count, args.image, args.subnet, args.group)
            for t in targets.up():
                print(f"{t.name} {t.ip}", file=sys.stderr)
            print(targets.inventory_path)
        elif args.command == "down":
            TargetSet(args.name).down()
        elif args.command == "check-route":
            bridge = check_network(args.network)
            for ip in args.ips:
                check_route(ip, bridge)
                print(f"route ok: {ip} dev {bridge}")
        elif args.command == "net-up":
            print(create_network(args.network, args.subnet))
        elif args.command == "net-down":
            remove_network(args.network)
    except TargetError as err:
        print(f"targets.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
