"""``nvidia-smi`` output (``--query-gpu`` CSV, ``-q``) and the host's GPUs against the inventory's
``airgap_llm_gpu`` (pure logic)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# --- nvidia-smi and lspci -------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int | None  # None when nvidia-smi says [N/A] (unified memory parts)
    driver_version: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_query_gpu(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits``.

    Tolerates a header line and " MiB" units (the output without ``nounits``/``noheader``).
    """
    gpus = []
    for lineno, line in enumerate(str(text).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("index"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            raise ValueError(f"nvidia-smi --query-gpu line {lineno}: expected 4 fields, got {len(cells)}: {line!r}")
        index, name, memory, driver = cells
        mem = memory.removesuffix("MiB").strip()
        gpus.append(Gpu(int(index), name, int(mem) if mem.isdigit() else None, driver))
    return gpus


def parse_smi_q(text: str) -> dict[str, Any]:
    """The header and per-GPU names of ``nvidia-smi -q``: driver_version, cuda_version (None when
    "Not Found" or "N/A"), attached_gpus, product_names, fb_memory_total_mib."""
    out: dict[str, Any] = {
        "driver_version": None,
        "cuda_version": None,
        "attached_gpus": None,
        "product_names": [],
        "fb_memory_total_mib": [],
    }
    in_fb = False
    for line in str(text).splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            in_fb = line.strip() == "FB Memory Usage" or (in_fb and line.startswith(" " * 8))
            continue
        name, value = key.strip(), value.strip()
        if name == "Driver Version":
            out["driver_version"] = value
        elif name == "CUDA Version":
            out["cuda_version"] = value if re.match(r"^\d+\.\d+", value) else None
        elif name == "Attached GPUs":
            out["attached_gpus"] = int(value) if value.isdigit() else None
        elif name == "Product Name":
            out["product_names"].append(value)
        elif name == "Total" and in_fb:
            mem = value.removesuffix("MiB").strip()
            out["fb_memory_total_mib"].append(int(mem) if mem.isdigit() else None)
            in_fb = False
    return out


_GPU_HEADER = re.compile(r"^GPU\s+(?P<bus>[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f]+)\s*$")
_BUS_ID = re.compile(
    r"^(?:(?P<domain>[0-9A-Fa-f]+):)?(?P<bus>[0-9A-Fa-f]+):(?P<dev>[0-9A-Fa-f]+)\.(?P<fn>[0-9A-Fa-f]+)$"
)


def bus_id_key(bus_id: str) -> tuple[int, int, int, int]:
    """(domain, bus, device, function) of "00000000:3B:00.0" or "0000:3b:00.0": PCI bus order."""
    match = _BUS_ID.match(bus_id.strip())
    if not match:
        raise ValueError(f"not a PCI bus id: {bus_id!r}")
    return (
        int(match.group("domain") or "0", 16),
        int(match.group("bus"), 16),
        int(match.group("dev"), 16),
        int(match.group("fn"), 16),
    )


@dataclass(frozen=True)
class SmiGpu:
    """One GPU block of ``nvidia-smi -q``."""

    bus_id: str
    minor: int


def parse_smi_q_minors(text: str) -> list[SmiGpu]:
    """Each GPU's bus id and "Minor Number" from ``nvidia-smi -q``, in the order printed.

    The bus id is the block's header ("GPU 00000000:00:06.0"), or its "Bus Id" line under "PCI".
    A block without a "Minor Number" (a truncated capture) is an error, naming the bus id.
    """
    blocks: list[dict[str, Any]] = []
    for line in str(text).splitlines():
        header = _GPU_HEADER.match(line.rstrip())
        if header:
            blocks.append({"bus_id": header.group("bus"), "minor": None})
            continue
        if not blocks:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = key.strip(), value.strip()
        if name == "Minor Number":
            if not value.isdigit():
                raise ValueError(f"nvidia-smi -q: GPU {blocks[-1]['bus_id']} has Minor Number {value!r}")
            blocks[-1]["minor"] = int(value)
        elif name == "Bus Id" and value:
            blocks[-1]["bus_id"] = value
    gpus = []
    for block in blocks:
        if block["minor"] is None:
            raise ValueError(f"nvidia-smi -q: GPU {block['bus_id']} has no Minor Number")
        gpus.append(SmiGpu(str(block["bus_id"]), int(block["minor"])))
    return gpus


# --- the inventory's airgap_llm_gpu ---------------------------------------------------------------

MEMORY_TOLERANCE = 0.05  # nvidia-smi reports 81559 MiB (79.6 GiB) for an "80 GB" H100


def _model_tokens(text: str) -> set[str]:
    tokens = set(re.split(r"[^A-Z0-9]+", str(text).upper())) - {"", "NVIDIA", "TESLA"}
    return {t for t in tokens if not re.fullmatch(r"\d+(GB|G|GIB)", t)}


def compare_gpus(gpus: Sequence[Gpu], expected: Mapping[str, Any] | None, host: str = "") -> list[str]:
    """Messages, one per mismatch, between the GPUs nvidia-smi lists and ``airgap_llm_gpu``.

    Count: exact. Model: every word of the inventory's model other than a size ("H100", "NVL";
    not "80GB", which ``memory_gib`` checks) must be a word of nvidia-smi's name. Memory: within
    5% of ``memory_gib`` (nvidia-smi's MiB, in GiB).
    """
    where = f"{host}: " if host else ""
    expected = expected or {}
    count = int(expected.get("count", 0) or 0)
    problems = []
    if len(gpus) != count:
        names = ", ".join(sorted({g.name for g in gpus})) or "none"
        problems.append(f"{where}airgap_llm_gpu.count is {count} but nvidia-smi lists {len(gpus)} GPU(s) ({names})")
    model = str(expected.get("model", "") or "")
    words = _model_tokens(model)
    if words:
        for gpu in gpus:
            missing = words - _model_tokens(gpu.name)
            if missing:
                problems.append(
                    f"{where}GPU {gpu.index} is '{gpu.name}' but airgap_llm_gpu.model is '{model}' "
                    f"({', '.join(sorted(missing))} not in the name)"
                )
    memory = expected.get("memory_gib")
    if memory:
        for gpu in gpus:
            if gpu.memory_mib is None:
                continue
            gib = gpu.memory_mib / 1024
            if abs(gib - float(memory)) > float(memory) * MEMORY_TOLERANCE:
                problems.append(
                    f"{where}GPU {gpu.index} ('{gpu.name}') has {gib:.1f} GiB but airgap_llm_gpu.memory_gib is "
                    f"{float(memory):g} (more than {MEMORY_TOLERANCE:.0%} apart)"
                )
    drivers = sorted({g.driver_version for g in gpus})
    if len(drivers) > 1:
        problems.append(f"{where}nvidia-smi reports several driver versions: {', '.join(drivers)}")
    return problems
