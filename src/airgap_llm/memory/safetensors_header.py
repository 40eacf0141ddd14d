"""The size of a model's weights from its files, reading no tensor data.

A ``.safetensors`` file starts with an 8-byte little-endian header length and a JSON header mapping each
tensor name to ``{"dtype", "shape", "data_offsets"}``: the bytes of every tensor are ``dtype size x
product(shape)``, known from the header alone. Pickled checkpoints (``.bin``, ``.pt``) are counted by
their file size.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from airgap_llm.errors import InputError

# Bytes per element of each safetensors dtype (the format's own list).
DTYPE_BYTES: dict[str, float] = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F4": 0.5,
    "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
}
# A header larger than this is not a real header (the format's readers refuse 100 MB too).
MAX_HEADER_BYTES = 100 * 1024 * 1024
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


@dataclass
class WeightsSize:
    """What a model's weight files hold: bytes per dtype, in the files' own precision."""

    by_dtype: dict[str, int] = field(default_factory=dict)
    files: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_dtype.values())

    def add(self, dtype: str, nbytes: int) -> None:
        self.by_dtype[dtype] = self.by_dtype.get(dtype, 0) + nbytes


def read_header(path: Path) -> dict[str, object]:
    """The JSON header of one safetensors file (8 bytes of length, then that many bytes of JSON)."""
    try:
        with path.open("rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise InputError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            (length,) = struct.unpack("<Q", raw_len)
            if not 2 <= length <= MAX_HEADER_BYTES:
                raise InputError(f"{path}: not a safetensors file (header length {length})")
            raw = f.read(length)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) != length:
        raise InputError(f"{path}: safetensors header cut short ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{path}: safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a JSON object")
    return header


def tensor_bytes(path: Path, header: dict[str, object]) -> WeightsSize:
    """Bytes per dtype of the tensors a header lists (``__metadata__`` skipped)."""
    size = WeightsSize(files=1)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise InputError(f"{path}: tensor {name!r} has no shape in the safetensors header")
        dtype = str(info.get("dtype"))
        if dtype not in DTYPE_BYTES:
            raise InputError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        elements = math.prod(int(d) for d in info["shape"])
        size.add(dtype, math.ceil(elements * DTYPE_BYTES[dtype]))
    return size


INDEX_NAME = "model.safetensors.index.json"


def indexed_files(index: Path) -> set[str] | None:
    """The shard names a ``model.safetensors.index.json`` maps tensors to (None: no usable index)."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return None
    return {str(v) for v in weight_map.values()}


def model_weight_files(model_dir: Path) -> list[Path]:
    """The weight files the engine loads from a model directory: its top level only (vLLM does not look
    in subfolders such as ``original/`` or ``onnx/``), and where an index lists the shards, only those
    (a repo may also hold the same weights as one ``consolidated.safetensors``, as vLLM's own filter
    assumes)."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    listed = indexed_files(model_dir / INDEX_NAME) if (model_dir / INDEX_NAME).is_file() else None
    if listed:
        return [p for p in files if not p.name.endswith(".safetensors") or p.name in listed]
    return files


def weights_size(files: Iterable[Path]) -> WeightsSize:
    """The weights of a model directory's files: safetensors by header, else pickles by file size.

    When a directory holds both formats (many repos do), only the safetensors count: that is what the
    engine loads.
    """
    paths = sorted(files)
    safetensors = [p for p in paths if p.name.endswith(".safetensors")]
    total = WeightsSize()
    if safetensors:
        for p in safetensors:
            part = tensor_bytes(p, read_header(p))
            for dtype, n in part.by_dtype.items():
                total.add(dtype, n)
            total.files += 1
        return total
    for p in paths:
        if p.suffix in PICKLE_SUFFIXES and not p.name.startswith("training_args"):
            total.add("pickle", p.stat().st_size)
            total.files += 1
    return total
