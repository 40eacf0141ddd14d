"""The NVIDIA device nodes a GPU service's unit allows, and the NVIDIA daemons it starts after.

Pure logic, no I/O. ``DeviceAllow=`` takes device nodes, and a GPU's node is ``/dev/nvidia<minor>``
where the minor is the driver's "Minor Number" of that GPU. The GPU map speaks of CUDA indices in
PCI bus order (the units set ``CUDA_DEVICE_ORDER=PCI_BUS_ID``), and the two need not agree: the
driver numbers GPUs as it probes them. So the role reads ``nvidia-smi -q`` on the host (each GPU's
"Bus Id" and "Minor Number"), sorts by bus id to get the CUDA index, and allows each service the
minors of its own GPUs. ``airgap-llm render`` has no host to ask: it takes the inventory's
``airgap_llm_gpu.minors`` when given, else the index, and says which.

NVSwitch boards (HGX/DGX A100 and H100) need ``nvidia-fabricmanager`` up before CUDA initialises
("system not yet initialized" otherwise); the GPU units then require it. Whether a host is one comes
from the inventory (``airgap_llm_gpu.nvswitch``) or, at install, from the host's own detection
(``airgap_llm.nvidia.fabricmanager_needed``, as the nvidia_driver role decides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airgap_llm.nvidia.smi import SmiGpu, bus_id_key, parse_smi_q_minors

__all__ = ["SmiGpu", "bus_id_key", "parse_smi_q_minors"]  # parsed beside the rest of nvidia-smi -q

NVIDIA_MAJOR = 195  # /dev/nvidia<minor>, /dev/nvidiactl (255), /dev/nvidia-modeset (254)
CTL_MINOR = 255
MODESET_MINOR = 254
PERSISTENCED_UNIT = "nvidia-persistenced.service"
FABRICMANAGER_UNIT = "nvidia-fabricmanager.service"
# Loads nvidia-uvm and makes the device nodes before any GPU unit starts. A oneshot of its own, not an
# ExecStartPre=+ of each unit: systemd resolves DeviceAllow= paths when it sets up the unit's device
# policy, before ExecStartPre= runs, so a node made by ExecStartPre= stays denied for that start (and the
# unit's own closed policy refuses the mknod). The dot keeps the name apart from every service's unit
# (service names have no dot) and from the stale-unit clean-up (airgap-llm-*.service).
DEVICES_UNIT = "airgap-llm.nvidia-devices.service"
DEVICES_HELPER = "nvidia-devices"

INDEX_SOURCE = "the CUDA index (no minor numbers known: /dev/nvidia<N> taken for GPU N)"
INVENTORY_MINORS_SOURCE = "the inventory (airgap_llm_gpu.minors)"
HOST_MINORS_SOURCE = "the host (nvidia-smi -q: Minor Number of each Bus Id, in PCI bus order)"

def minors_by_index(gpus: Sequence[SmiGpu]) -> list[int]:
    """The minor of CUDA index 0, 1, ... with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``: sorted by bus id."""
    ordered = sorted(gpus, key=lambda g: bus_id_key(g.bus_id))
    minors = [g.minor for g in ordered]
    if len(set(minors)) != len(minors):
        raise ValueError(f"nvidia-smi -q lists a minor number twice: {minors}")
    return minors


@dataclass(frozen=True)
class GpuDevices:
    """What a host's GPU units need from the host: minors per CUDA index, and NVSwitch or not."""

    minors: tuple[int, ...] = ()  # minors[i] is CUDA index i's minor; () or short: the index itself
    minors_source: str = INDEX_SOURCE
    nvswitch: bool = False
    nvswitch_source: str = "not known: no fabric manager ordering"

    def minor(self, index: int) -> int:
        return self.minors[index] if 0 <= index < len(self.minors) else index

    def node(self, index: int) -> str:
        return f"/dev/nvidia{self.minor(index)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "minors": list(self.minors),
            "minors_source": self.minors_source,
            "nvswitch": self.nvswitch,
            "nvswitch_source": self.nvswitch_source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GpuDevices:
        if not data:
            return cls()
        return cls(
            tuple(int(m) for m in data.get("minors") or ()),
            str(data.get("minors_source") or INDEX_SOURCE),
            bool(data.get("nvswitch", False)),
            str(data.get("nvswitch_source") or ""),
        )


def _setting_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes"):
        return True
    if text in ("false", "no"):
        return False
    return None


def from_inventory(gpu: Mapping[str, Any] | None, fabricmanager: Any = "auto") -> GpuDevices:
    """What ``render`` knows with no host: ``airgap_llm_gpu.minors`` and ``.nvswitch`` when given,
    else ``airgap_llm_nvidia_driver_fabricmanager`` when it is true or false."""
    gpu = gpu or {}
    minors = gpu.get("minors")
    if minors:
        minors_t, minors_source = tuple(int(m) for m in minors), INVENTORY_MINORS_SOURCE
    else:
        minors_t, minors_source = (), INDEX_SOURCE
    nvswitch = gpu.get("nvswitch")
    if isinstance(nvswitch, bool):
        source = f"from the inventory (airgap_llm_gpu.nvswitch: {str(nvswitch).lower()})"
        return GpuDevices(minors_t, minors_source, nvswitch, source)
    forced = _setting_bool(fabricmanager)
    if forced is not None:
        source = f"from the inventory (airgap_llm_nvidia_driver_fabricmanager: {str(forced).lower()})"
        return GpuDevices(minors_t, minors_source, forced, source)
    return GpuDevices(
        minors_t,
        minors_source,
        False,
        "not known from the inventory (set airgap_llm_gpu.nvswitch): rendered without the fabric manager; "
        "at install the host's detection decides (NVSwitch bridges on the PCI bus, or an NVLink mesh)",
    )


def from_host(smi_q: str, gpu: Mapping[str, Any] | None, fabric: Mapping[str, Any] | None) -> GpuDevices:
    """What the role passes to the unit files: minors read on the host (``nvidia-smi -q``; when it
    printed nothing, the inventory's or the index), NVSwitch from the inventory or the host's
    detection (``fabric``: ``nvidia.fabricmanager_needed(...).as_dict()``)."""
    inventory = from_inventory(gpu, "auto")
    if str(smi_q).strip():
        minors = tuple(minors_by_index(parse_smi_q_minors(smi_q)))
        minors_source = HOST_MINORS_SOURCE
    else:
        minors, minors_source = inventory.minors, inventory.minors_source
    nvswitch_setting = (gpu or {}).get("nvswitch")
    if isinstance(nvswitch_setting, bool):
        return GpuDevices(minors, minors_source, inventory.nvswitch, inventory.nvswitch_source)
    fabric = fabric or {}
    return GpuDevices(
        minors,
        minors_source,
        bool(fabric.get("needed", False)),
        f"from the host: {fabric.get('reason', 'no detection ran')}",
    )


def inventory_problems(gpu: Mapping[str, Any], count: int) -> list[str]:
    """Problems with the optional ``nvswitch`` and ``minors`` keys of ``airgap_llm_gpu``."""
    problems = []
    nvswitch = gpu.get("nvswitch")
    if nvswitch is not None and not isinstance(nvswitch, bool):
        problems.append(f"airgap_llm_gpu.nvswitch must be true or false, got {nvswitch!r}")
    minors = gpu.get("minors")
    if minors is None:
        return problems
    if not isinstance(minors, Sequence) or isinstance(minors, (str, bytes)) or not all(
        isinstance(m, int) and not isinstance(m, bool) and 0 <= m < MODESET_MINOR for m in minors
    ):
        problems.append(
            f"airgap_llm_gpu.minors must be a list of device minor numbers 0..{MODESET_MINOR - 1} "
            f"(one per GPU, in CUDA index order), got {minors!r}"
        )
    elif len(minors) != count:
        problems.append(f"airgap_llm_gpu.minors lists {len(minors)} minor(s) for {count} GPU(s): give one per GPU")
    elif len(set(minors)) != len(minors):
        problems.append(f"airgap_llm_gpu.minors lists a minor twice: {list(minors)}")
    return problems


def nodes_for(gpus: Sequence[int], devices: GpuDevices) -> list[str]:
    """The ``/dev/nvidia<minor>`` nodes of a service's GPUs."""
    return [devices.node(g) for g in gpus]
