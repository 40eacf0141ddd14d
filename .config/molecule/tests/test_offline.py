"""The offline promise, proven from inside every target without sending anything.

Run by every scenario's verify step (see ``additional_files_or_dirs`` in
``.config/molecule/config.yml``). Nothing here sends a packet: route lookups
(``ip route get``) are answered by the target's kernel, and the resolver
configuration is read from files and the socket table.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

# Outside addresses, looked up in the routing table only.
OUTSIDE_V4 = ("1.1.1.1", "8.8.8.8", "192.0.2.1")
OUTSIDE_V6 = ("2606:4700:4700::1111",)


def _routes(host: Any, *args: str) -> list[dict[str, Any]]:
    return json.loads(host.check_output("ip -j " + " ".join(args)) or "[]")


def test_systemd_is_pid_1_and_running(host: Any) -> None:
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded"}, state


def test_no_default_route(host: Any) -> None:
    assert _routes(host, "-4", "route", "show", "default") == []
    assert _routes(host, "-6", "route", "show", "default") == []


def test_outside_addresses_are_unreachable(host: Any) -> None:
    for addr in OUTSIDE_V4:
        lookup = host.run("ip -4 route get %s", addr)
        assert lookup.rc != 0 and "unreachable" in lookup.stderr.lower(), (addr, lookup.stdout)
    for addr in OUTSIDE_V6:
        lookup = host.run("ip -6 route get %s", addr)
        assert lookup.rc != 0 and "unreachable" in lookup.stderr.lower(), (addr, lookup.stdout)


def test_no_resolver_forwards_outside(host: Any) -> None:
    resolv = host.file("/etc/resolv.conf")
    nameservers = []
    if resolv.exists:
        for line in resolv.content_string.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                nameservers.append(fields[1].split("%")[0])
    for ns in nameservers:
        addr = ipaddress.ip_address(ns)
        # A resolver on the target itself could forward elsewhere: there must be none.
        assert not addr.is_loopback, f"local resolver {ns} configured"
        family = "-4" if addr.version == 4 else "-6"
        lookup = host.run(f"ip {family} route get %s", ns)
        assert lookup.rc != 0 and "unreachable" in lookup.stderr.lower(), (
            f"nameserver {ns} is reachable: {lookup.stdout.strip()}"
        )
    listeners = host.check_output("ss -Hlntu 'sport = :53'")
    assert listeners.strip() == "", f"something listens on port 53: {listeners}"
