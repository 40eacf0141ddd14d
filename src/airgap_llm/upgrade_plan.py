"""The order of a rolling upgrade (``airgap-llm upgrade``). Pure: no I/O.

The canary goes first, alone (with the other hosts of its multi-node services), then the other hosts
``serial`` at a time in the inventory's order. The hosts of a service that spans several hosts
(``nodes: N``) are one unit: they are always in the same batch, and a batch may exceed ``serial`` to
keep them together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from airgap_llm.errors import InputError

_SERIAL = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


@dataclass(frozen=True)
class Serial:
    """How many hosts move at a time after the canary: a count, or a percentage of those hosts."""

    value: int
    percent: bool = False

    def size(self, hosts: int) -> int:
        """The batch size for ``hosts`` hosts (a percentage rounds down, at least one host)."""
        if not self.percent:
            return self.value
        return max(1, hosts * self.value // 100)

    def __str__(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


def parse_serial(text: str | None) -> Serial:
    """``--serial N`` or ``N%``; None means one host at a time. Refused: 0, 0%, over 100%, anything else."""
    if text is None:
        return Serial(1)
    m = _SERIAL.match(text)
    if m is None:
        raise InputError(f"--serial {text!r}: expected a number of hosts (N >= 1) or a percentage (N%, 1-100)")
    value, percent = int(m.group(1)), bool(m.group(2))
    if value == 0:
        raise InputError(f"--serial {text!r}: at least one host must move at a time (N >= 1, or 1%-100%)")
    if percent and value > 100:
        raise InputError(f"--serial {text!r}: a percentage is at most 100%")
    return Serial(value, percent)


def host_units(hosts: Sequence[str], together: Iterable[Sequence[str]]) -> list[tuple[str, ...]]:
    """The hosts grouped so that each multi-node service's hosts form one unit, in the inventory's order
    (a unit sits where its first host is; services sharing a host merge into one unit)."""
    owner: dict[str, int] = {h: i for i, h in enumerate(hosts)}
    groups: dict[int, set[str]] = {i: {h} for i, h in enumerate(hosts)}

    def find(h: str) -> int:
        return owner[h]

    for group in together:
        members = [h for h in group if h in owner]
        if not members:
            continue
        keep = min(find(h) for h in members)
        for h in members:
            old = find(h)
            if old != keep:
                for moved in groups.pop(old):
                    owner[moved] = keep
                    groups[keep].add(moved)
    order = {h: i for i, h in enumerate(hosts)}
    return [tuple(sorted(groups[k], key=order.__getitem__)) for k in sorted(groups)]


def plan_batches(
    hosts: Sequence[str],
    canary: str | None,
    serial: Serial,
    together: Iterable[Sequence[str]] = (),
) -> list[tuple[str, ...]]:
    """The batches of an upgrade: the canary's unit first, then the other units ``serial`` hosts at a time.

    ``hosts`` in the inventory's order; ``canary`` None means the first host; ``together`` the host
    lists of the multi-node services. An unknown canary is an input error naming the hosts there are.
    """
    if not hosts:
        raise InputError("the inventory has no hosts to upgrade")
    if canary is None:
        canary = hosts[0]
    if canary not in hosts:
        raise InputError(f"--canary {canary!r}: no such host in the inventory (hosts: {', '.join(hosts)})")
    units = host_units(hosts, together)
    first = next(u for u in units if canary in u)
    rest = [u for u in units if u is not first]
    size = serial.size(sum(len(u) for u in rest))
    batches: list[tuple[str, ...]] = [first]
    current: list[str] = []
    for unit in rest:
        if current and len(current) + len(unit) > size:
            batches.append(tuple(current))
            current = []
        current.extend(unit)
    if current:
        batches.append(tuple(current))
    return batches
