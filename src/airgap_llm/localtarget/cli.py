"""The command line of the local targets (``tests/hosts/targets.py`` runs it; run as root)::

    targets.py up --name demo --count 2   # prints the inventory path
    targets.py down --name demo            # containers, network, bridge, key
    targets.py check-route --network NET IP...
    targets.py net-up --network NET --subnet CIDR  # network + bridge only
    targets.py net-down --network NET
    targets.py cgroups-up --scenario SCENARIO/molecule.yml --base .config/molecule/config.yml
    targets.py cgroups-down --scenario SCENARIO/molecule.yml --base .config/molecule/config.yml
    targets.py cgroups-hold CONTAINER...   # after the containers started
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from airgap_llm.localtarget import cgroups
from airgap_llm.localtarget.addresses import TargetError
from airgap_llm.localtarget.podman import (
    DEFAULT_IMAGE,
    check_network,
    check_route,
    create_network,
    remove_network,
    run,
)
from airgap_llm.localtarget.targetset import TargetSet

DESCRIPTION = "Local targets: systemd containers on an internal podman network, no route out."


def scenario_platforms(scenario: Path, base: Path | None = None) -> list[str]:
    """The platform names of a Molecule scenario file, or of its base config when it has none."""
    for path in (scenario, base):
        if path is None:
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TargetError(f"cannot read the Molecule configuration {path}: {exc}") from exc
        if data.get("platforms"):
            return [str(platform["name"]) for platform in data["platforms"] if "name" in platform]
    return []


def scenario_cgroups(scenario: Path, base: Path | None, up: bool) -> None:
    """Create (``up``) or remove each platform's own cgroup (see airgap_llm.localtarget.cgroups)."""
    if not cgroups.host_has_named_systemd_hierarchy():
        return
    for name in scenario_platforms(scenario, base):
        if up:
            cgroups.prepare(name)
        else:
            for left in cgroups.release(name):
                print(f"targets.py: warning: cgroup {left} still holds processes; left in place", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="targets.py", description=DESCRIPTION)
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
    for verb, what in (("cgroups-up", "create"), ("cgroups-down", "remove")):
        cg = sub.add_parser(verb, help=f"{what} the own name=systemd cgroup of each platform of a Molecule scenario")
        cg.add_argument("--scenario", type=Path, required=True, help="the scenario's molecule.yml")
        cg.add_argument("--base", type=Path, help="the base config (its platforms serve a scenario without any)")
    hold = sub.add_parser("cgroups-hold", help="start the keeper process that holds each container's own cgroup")
    hold.add_argument("containers", nargs="+")
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
        elif args.command == "cgroups-hold":
            if cgroups.host_has_named_systemd_hierarchy():
                for container in args.containers:
                    run(cgroups.keeper_command(container))
        elif args.command in ("cgroups-up", "cgroups-down"):
            scenario_cgroups(args.scenario, args.base, up=args.command == "cgroups-up")
    except TargetError as err:
        print(f"targets.py: error: {err}", file=sys.stderr)
        return 1
    return 0
