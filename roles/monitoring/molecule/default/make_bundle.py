#!/usr/bin/env python3
"""The monitoring scenario's bundle, made with the project's bundle code: the Debian 12 OS part with the
monitoring packages (prometheus, prometheus-node-exporter and what a minimal host lacks for them), as a
signed local repository, exactly what ``airgap-llm bundle build --only os`` puts there for them.

    make_bundle.py OUT     writes OUT/os/debian-12/; incremental (a second run fetches nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

from airgap_llm.bundle.os_packages import build_os_repo
from airgap_llm.bundle.spec import OsSetSpec
from airgap_llm.monitoring.packages import monitoring_packages
from airgap_llm.targets import TARGETS

TARGET = TARGETS["debian-12"]


def main(out: Path) -> int:
    build_os_repo(out, OsSetSpec(TARGET, monitoring_packages(TARGET), ("target-1",)), set())
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))
