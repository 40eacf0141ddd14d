"""Count (and drop) every packet a target set sends anywhere but back to the controller.

An nftables table of its own, ``inet airgap_llm_proof_<subnet>``, hooks prerouting on the set's bridge
(after conntrack, before routing, so it sees a packet whether the host would forward it, deliver it or
drop it) with four named counters:

- ``dns``: any packet to port 53 (TCP or UDP), to any address;
- ``outbound``: any IPv4 packet from the subnet to an address outside it;
- ``to_host``: a new connection from the subnet to the controller's own bridge address (the controller's
  SSH sessions are connections it opened, so their replies are never "new");
- ``ipv6``: any IPv6 packet to an address that is not link-local.

Every counted packet is dropped, so nothing leaves the machine. The targets of an internal network have
no default route, so an attempt would fail inside the target before sending anything; ``route_out``
gives a target a default route through the controller's bridge address for the duration, so that an
attempt really leaves the target and is counted here.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

COUNTERS = ("dns", "outbound", "to_host", "ipv6")


def table_name(subnet: ipaddress.IPv4Network) -> str:
    return "airgap_llm_proof_" + str(subnet.network_address).replace(".", "_")


def ruleset(subnet: ipaddress.IPv4Network, bridge: str, host: ipaddress.IPv4Address) -> str:
    """The nft script creating the table (``nft -f -``)."""
    name = table_name(subnet)
    counters = "\n".join(f"  counter {c} {{ }}" for c in COUNTERS)
    return f"""table inet {name} {{
{counters}
  chain prerouting {{
    type filter hook prerouting priority -150; policy accept;
    iifname "{bridge}" meta l4proto {{ tcp, udp }} th dport 53 counter name "dns" drop
    iifname "{bridge}" ip saddr {subnet} ip daddr != {subnet} counter name "outbound" drop
    iifname "{bridge}" ip saddr {subnet} ip daddr {host} ct state new counter name "to_host" drop
    iifname "{bridge}" meta nfproto ipv6 ip6 daddr != {{ fe80::/10, ff02::/16 }} counter name "ipv6" drop
  }}
}}
"""


def parse_counters(nft_json: str) -> dict[str, int]:
    """Packets per counter from ``nft -j list counters table inet NAME``."""
    found: dict[str, int] = {}
    for item in json.loads(nft_json).get("nftables", []):
        counter = item.get("counter")
        if counter:
            found[counter["name"]] = int(counter["packets"])
    return found


def _nft(*args: str, script: str | None = None) -> str:
    proc = subprocess.run(["nft", *args], input=script, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`nft {' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


class EgressCounter:
    def __init__(self, subnet: ipaddress.IPv4Network, bridge: str, host: ipaddress.IPv4Address) -> None:
        self.subnet, self.bridge, self.host = subnet, bridge, host
        self.table = table_name(subnet)

    def install(self) -> None:
        self.remove()
        _nft("-f", "-", script=ruleset(self.subnet, self.bridge, self.host))

    def remove(self) -> None:
        listed = subprocess.run(["nft", "list", "table", "inet", self.table], capture_output=True, check=False)
        if listed.returncode == 0:
            _nft("delete", "table", "inet", self.table)

    def counts(self) -> dict[str, int]:
        found = parse_counters(_nft("-j", "list", "counters", "table", "inet", self.table))
        missing = set(COUNTERS) - set(found)
        if missing:
            raise RuntimeError(f"nft table inet {self.table} lacks the counters {sorted(missing)}")
        return found

    def reset(self) -> None:
        _nft("reset", "counters", "table", "inet", self.table)


def _in_netns(pid: int, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], text=True, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` in the netns of {pid} failed: {proc.stderr.strip()}")
    return proc


@contextmanager
def route_out(pid: int, via: ipaddress.IPv4Address) -> Iterator[None]:
    """A default route via ``via`` in the network namespace of ``pid``, removed afterwards."""
    _in_netns(pid, "ip", "route", "replace", "default", "via", str(via))
    try:
        yield
    finally:
        _in_netns(pid, "ip", "route", "del", "default", "via", str(via), check=False)


@contextmanager
def counting(subnet: ipaddress.IPv4Network, bridge: str, host: ipaddress.IPv4Address) -> Iterator[EgressCounter]:
    counter = EgressCounter(subnet, bridge, host)
    counter.install()
    try:
        yield counter
    finally:
        counter.remove()
