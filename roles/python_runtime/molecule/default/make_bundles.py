#!/usr/bin/env python3
"""Small real bundles for the python_runtime scenario, made with the project's bundle code.

    make_bundles.py OUT     writes OUT/a, OUT/b and OUT/broken; prints a JSON summary

- ``a``: the Debian 12 OS part (the runtime prerequisites as a signed local repository, exactly
  what ``airgap-llm bundle build --only os`` makes) and a wheel set of one pure-Python wheel
  (``idna``), with its constraints file;
- ``b``: the same OS part and a wheel set of two wheels (``idna``, ``six``): new constraints, so a
  new venv;
- ``broken``: b's wheels with a constraints file that pins a wheel that is not there, so the offline
  install fails.

Everything is incremental (a second run downloads nothing new and rewrites nothing that is current),
so the scenario can run it on every converge.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from airgap_llm.bundle.layout import CONSTRAINTS_NAME
from airgap_llm.bundle.os_packages import build_os_repo
from airgap_llm.bundle.spec import OsSetSpec, WheelSetSpec
from airgap_llm.bundle.wheels import build_wheel_set
from airgap_llm.targets import TARGETS

TARGET = TARGETS["debian-12"]


def wheel_set(*requirements: str) -> WheelSetSpec:
    return WheelSetSpec(TARGET.python, TARGET.glibc, requirements, (), ("target-1",))


def sync_tree(src: Path, dest: Path) -> None:
    """Make ``dest`` a copy of ``src`` keeping mtimes, touching nothing that is already the same."""
    dest.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in src.iterdir()}
    for old in dest.iterdir():
        if old.name not in names:
            old.unlink()
    for path in src.iterdir():
        target = dest / path.name
        if not (target.is_file() and target.read_bytes() == path.read_bytes()):
            shutil.copy2(path, target)


def main(out: Path) -> int:
    os_set = OsSetSpec(TARGET, TARGET.runtime_packages, ("target-1",))
    a, b, broken = out / "a", out / "b", out / "broken"
    build_os_repo(a, os_set, set())
    for bundle in (b, broken):
        sync_tree(a / os_set.dir, bundle / os_set.dir)

    one, two = wheel_set("idna"), wheel_set("idna", "six")
    build_wheel_set(a, one, set())
    build_wheel_set(b, two, set())
    sync_tree(b / two.dir, broken / two.dir)
    constraints = broken / two.dir / CONSTRAINTS_NAME
    text = (b / two.dir / CONSTRAINTS_NAME).read_text()
    constraints.write_text(text + "airgap-llm-not-in-the-wheelhouse==1.0\n")

    print(json.dumps({"bundles": [str(a), str(b), str(broken)], "wheels_dir": one.dir, "os_dir": os_set.dir}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))
