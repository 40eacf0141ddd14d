#!/usr/bin/env python3
"""The Debian 12 OS part of a GPU host's bundle, made with the project's bundle code, cached.

    make_bundle.py DIR     writes DIR/os/debian-12 (the runtime prerequisites and the NVIDIA driver
                           as a signed local apt repository, what `bundle build --only os` makes
                           for an inventory with a Debian 12 GPU host) and DIR/extra/ holding a
                           test double of a fabric manager package at another version than the
                           driver, for the refusal check; prints a JSON summary

DIR is meant to be a cache (the scenario uses $AIRGAP_LLM_CACHE/molecule/nvidia_driver): packages
already there and listed in the index are reused, so a rerun downloads nothing. No kernel headers:
DKMS cannot build for the container's (foreign) running kernel anyway, and the scenario checks that
the role says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from airgap_llm.bundle.os_packages import build_os_repo
from airgap_llm.bundle.spec import OsSetSpec
from airgap_llm.nvidia import driver_packages
from airgap_llm.targets import TARGETS

TARGET = TARGETS["debian-12"]


def fake_fabricmanager(out: Path, version: str) -> Path:
    deb = out / f"nvidia-fabricmanager-535_{version}_amd64.deb"
    if deb.is_file():
        return deb
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "DEBIAN").mkdir()
        (Path(tmp) / "DEBIAN" / "control").write_text(
            f"Package: nvidia-fabricmanager-535\nVersion: {version}\nArchitecture: amd64\n"
            "Maintainer: airgap-llm tests <tests@invalid>\nDescription: test double, never installed\n"
        )
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "--build", "--root-owner-group", tmp, str(deb)], check=True, capture_output=True)
    return deb


def main(out: Path) -> int:
    driver = driver_packages("debian-12", headers=())
    os_set = OsSetSpec(TARGET, TARGET.runtime_packages + driver.install, ("target-1",))
    repo = out / os_set.dir
    valid = {f"{os_set.dir}/{p.name}" for p in repo.glob("*.deb")} if (repo / "InRelease").is_file() else set()
    result = build_os_repo(out, os_set, valid)
    fm = fake_fabricmanager(out / "extra", "535.999.01-1")
    summary = {"os_dir": str(repo), "fetched": len(result.fetched), "kept": len(result.kept), "fake_fm": str(fm)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))
