"""NVSwitch detection (``lspci -nn``, ``nvidia-smi topo -m``), whether a host needs the fabric
manager, and the fabric-manager/driver version check (pure logic)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airgap_llm.nvidia.versions import parse_driver_version

# PCI class 0680 ("Bridge: other") with NVIDIA's vendor id: NVSwitches on HGX/DGX baseboards
# (A100 10de:1af1, H100 10de:22a3). Other NVIDIA 0680 devices are old nForce chipset parts
# (MCP51/MCP61 Ethernet, 10de:0269/03ef): known and not counted.
NVSWITCH_DEVICE_IDS = {"1af1": "A100 NVSwitch (2nd gen)", "22a3": "H100 NVSwitch (3rd gen)"}
_LSPCI_NN = re.compile(r"\[(?P<cls>[0-9a-f]{4})\]:.*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]", re.IGNORECASE)
_NFORCE_BRIDGES = {"0269", "03ef"}


def nvswitches_from_lspci(text: str) -> list[str]:
    """The NVSwitch lines of ``lspci -nn`` (or ``-Dnn``): NVIDIA bridges of class 0680."""
    found = []
    for line in str(text).splitlines():
        match = _LSPCI_NN.search(line)
        if not match or match.group("vendor").lower() != "10de" or match.group("cls") != "0680":
            continue
        if match.group("device").lower() in _NFORCE_BRIDGES:
            continue
        found.append(line.strip())
    return found


def gpus_from_lspci(text: str) -> int:
    """How many NVIDIA display/3D controllers (class 0300/0302) ``lspci -nn`` lists."""
    count = 0
    for line in str(text).splitlines():
        match = _LSPCI_NN.search(line)
        if match and match.group("vendor").lower() == "10de" and match.group("cls") in ("0300", "0302"):
            count += 1
    return count


# Driver 580's ``topo -m`` underlines its header row with terminal escapes even when written to a file.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def nvlinks_from_topo(text: str) -> dict[tuple[int, int], int]:
    """NVLink bonds between GPU pairs from ``nvidia-smi topo -m``: {(0, 1): 12, ...} (i < j)."""
    rows: dict[int, list[str]] = {}
    header: list[int] = []
    for line in _ANSI_ESCAPE.sub("", str(text)).splitlines():
        cells = line.split()
        if not cells:
            continue
        if cells[0].startswith("GPU") and cells[0][3:].isdigit():
            rows[int(cells[0][3:])] = cells[1:]
        elif not header and all(c.startswith(("GPU", "NIC", "mlx", "CPU", "NUMA")) for c in cells[:2]):
            header = [int(c[3:]) for c in cells if c.startswith("GPU") and c[3:].isdigit()]
    links: dict[tuple[int, int], int] = {}
    for i, cells in rows.items():
        columns = header or sorted(rows)
        for j, cell in zip(columns, cells, strict=False):
            match = re.fullmatch(r"NV(\d+)", cell)
            if match and i != j:
                links[(min(i, j), max(i, j))] = int(match.group(1))
    return links


@dataclass(frozen=True)
class FabricDecision:
    needed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"needed": self.needed, "reason": self.reason}


def fabricmanager_needed(setting: str | bool, lspci: str = "", topo: str = "") -> FabricDecision:
    """Whether this host needs nvidia-fabricmanager.

    ``setting`` true/false decides; "auto" detects: NVSwitch bridges in ``lspci -nn`` decide. Without
    them (no pciutils yet, or a VM that hides the switches) ``topo -m`` is a hint: more than two GPUs
    all connected pairwise by NVLink is an NVSwitch board (NVLink bridges join pairs only, and
    H100 NVL / A100 PCIe pairs need no fabric manager).
    """
    if isinstance(setting, bool) or str(setting).lower() in ("true", "false", "yes", "no"):
        value = setting if isinstance(setting, bool) else str(setting).lower() in ("true", "yes")
        return FabricDecision(value, f"airgap_llm_nvidia_driver_fabricmanager is {str(value).lower()}")
    if str(setting).lower() != "auto":
        raise ValueError(f"airgap_llm_nvidia_driver_fabricmanager must be auto, true or false, got {setting!r}")
    switches = nvswitches_from_lspci(lspci)
    if switches:
        return FabricDecision(True, f"{len(switches)} NVSwitch bridge(s) on the PCI bus (lspci class 0680)")
    links = nvlinks_from_topo(topo)
    gpus = sorted({g for pair in links for g in pair})
    pairs = len(gpus) * (len(gpus) - 1) // 2
    if len(gpus) > 2 and len(links) == pairs:
        return FabricDecision(True, f"nvidia-smi topo -m: all {len(gpus)} GPUs linked pairwise (an NVSwitch board)")
    if links:
        return FabricDecision(False, f"NVLink on {len(links)} GPU pair(s) but no NVSwitch: no fabric manager needed")
    return FabricDecision(False, "no NVSwitch found (lspci) and no NVLink mesh (nvidia-smi topo -m)")


def fabricmanager_mismatch(driver: str, fabricmanager: str) -> str | None:
    """A refusal message when the fabric manager's version is not the driver's, else None.

    The fabric manager refuses to run against another driver version ("fabric manager version ...
    and driver version ... don't match"), so the upstream versions ("550.127.05") must be equal,
    string for string: no branch-level or prefix matching. The package revision after the "-" is the
    packager's (Debian "-0+deb12u1", NVIDIA's repository "-1") and is not compared.
    """
    try:
        want = parse_driver_version(driver)
    except ValueError as exc:
        return f"cannot check the fabric manager against the driver: {exc}"
    try:
        have = parse_driver_version(fabricmanager)
    except ValueError as exc:
        return f"cannot check the fabric manager against driver {want.upstream}: {exc}"
    if have.upstream != want.upstream:
        return (
            f"fabric manager {have.package} does not match driver {want.package}: the fabric manager must be "
            f"exactly version {want.upstream} (it refuses to start on another driver version); carry "
            f"nvidia-fabricmanager {want.upstream} in the bundle, or pin the driver to {have.upstream}"
        )
    return None
