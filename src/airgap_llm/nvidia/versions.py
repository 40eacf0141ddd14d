"""NVIDIA driver and CUDA versions, and the oldest driver a CUDA build runs on (pure logic).

- driver versions and branches (``"550.127.05"`` -> branch 550; package versions such as
  ``"535.309.01-0+deb12u1"`` or ``"1:550.127.05-0ubuntu1"`` too);
- NVIDIA's CUDA compatibility tables; the CUDA version of a wheel set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# --- versions -------------------------------------------------------------------------------------

_UPSTREAM = re.compile(r"^(?:\d+:)?(?P<upstream>(?P<branch>\d{3,4})(?:\.\d+){1,2})(?:[-+~].*)?$")


@dataclass(frozen=True, order=True)
class DriverVersion:
    """An NVIDIA driver version: ``branch`` 550, ``upstream`` "550.127.05", ``package`` as given."""

    parts: tuple[int, ...]
    upstream: str
    package: str

    @property
    def branch(self) -> int:
        return self.parts[0]


def parse_driver_version(text: str) -> DriverVersion:
    """Parse "550.127.05", "570.86.15-1.el9", "535.309.01-0+deb12u1" or "1:550.127.05-0ubuntu1".

    Raises ``ValueError`` with the text on anything else (an empty string, "N/A", "Not Found").
    """
    raw = str(text).strip()
    match = _UPSTREAM.match(raw)
    if not match:
        raise ValueError(f"not an NVIDIA driver version: {raw!r}")
    upstream = match.group("upstream")
    return DriverVersion(tuple(int(p) for p in upstream.split(".")), upstream, raw)


def driver_branch(text: str) -> int:
    """The driver branch of a version string: "550.127.05" -> 550."""
    return parse_driver_version(text).branch


def parse_cuda_version(text: str) -> tuple[int, int]:
    """ "12.8" or "12.8.90" -> (12, 8); ``ValueError`` otherwise ("Not Found", "N/A")."""
    match = re.match(r"^\s*(\d+)\.(\d+)", str(text))
    if not match:
        raise ValueError(f"not a CUDA version: {str(text).strip()!r}")
    return int(match.group(1)), int(match.group(2))


# --- CUDA -> driver -------------------------------------------------------------------------------
# NVIDIA, "CUDA Compatibility", minor version compatibility (Table 1): CUDA 12.x runs on drivers
# >= 525, CUDA 13.x on >= 580, with a limited feature set (no PTX JIT of newer PTX) below the driver
# released with the toolkit. CUDA Toolkit Release Notes, Table 3 (Linux x86_64, toolkit GA driver).
MINOR_COMPAT_MIN_BRANCH: dict[int, int] = {11: 450, 12: 525, 13: 580}
TOOLKIT_DRIVER: dict[tuple[int, int], str] = {
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 3): "545.23.06",
    (12, 4): "550.54.14",
    (12, 5): "555.42.02",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
}


@dataclass(frozen=True)
class DriverCheck:
    """A driver against a CUDA build: ``ok`` false is a refusal, ``warnings`` are advice."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "warnings": list(self.warnings)}


def check_driver_for_cuda(driver: str, cuda: str) -> DriverCheck:
    """Is ``driver`` new enough for software built with CUDA ``cuda`` (the bundle's vLLM build)?

    Below the major family's minimum (525 for 12.x, 580 for 13.x) it cannot run: a problem. Between
    that and the toolkit's own driver it runs under minor version compatibility, without PTX JIT of
    newer PTX: a warning naming the driver the toolkit was released with.
    """
    try:
        have = parse_driver_version(driver)
    except ValueError as exc:
        return DriverCheck(False, [str(exc)])
    try:
        major, minor = parse_cuda_version(cuda)
    except ValueError as exc:
        return DriverCheck(False, [str(exc)])
    floor = MINOR_COMPAT_MIN_BRANCH.get(major)
    if floor is None:
        return DriverCheck(
            False,
            [
                f"CUDA {major}.{minor}: no known minimum driver (known: "
                f"{', '.join(f'{m}.x' for m in sorted(MINOR_COMPAT_MIN_BRANCH))})"
            ],
        )
    if have.branch < floor:
        return DriverCheck(
            False,
            [
                f"driver {have.upstream} (branch {have.branch}) is too old for CUDA {major}.{minor}: "
                f"CUDA {major}.x needs branch {floor} or newer"
            ],
        )
    warnings = []
    released = TOOLKIT_DRIVER.get((major, minor))
    if released is None:
        known = [v for (ma, mi), v in TOOLKIT_DRIVER.items() if ma == major and mi <= minor]
        released = known[-1] if known else None
    if released is not None and have.parts < parse_driver_version(released).parts:
        warnings.append(
            f"driver {have.upstream} runs CUDA {major}.{minor} only under minor version compatibility "
            f"(no JIT of newer PTX); CUDA {major}.{minor} was released with {released}"
        )
    return DriverCheck(True, [], warnings)


_CUDA_RUNTIME_WHEEL = re.compile(r"nvidia_cuda_runtime(?:_cu(?P<tag>\d+))?-(?P<version>\d+\.\d+)[.\d]*-")


def cuda_from_wheels(names: Iterable[str]) -> str | None:
    """The CUDA version of a wheel set, from its ``nvidia-cuda-runtime`` wheel ("12.8"), or None."""
    found = set()
    for name in names:
        match = _CUDA_RUNTIME_WHEEL.search(name.rsplit("/", 1)[-1].lower())
        if match:
            found.add(parse_cuda_version(match.group("version")))
    if not found:
        return None
    major, minor = max(found)
    return f"{major}.{minor}"
