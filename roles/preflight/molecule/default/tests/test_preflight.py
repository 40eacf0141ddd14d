"""The preflight scenario's targets: what the role's checks rely on is really there."""

from __future__ import annotations

from typing import Any


def test_target_is_debian_12(host: Any) -> None:
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] == "12"


def test_python_is_recent_enough(host: Any) -> None:
    version = host.check_output("python3 -c 'import sys; print(sys.version_info[0], sys.version_info[1])'")
    major, minor = (int(part) for part in version.split())
    assert (major, minor) >= (3, 8)


def test_preflight_changed_nothing(host: Any) -> None:
    # The role is read-only: its disk path is measured, never created.
    assert not host.file("/var/lib/airgap-llm").exists
