from __future__ import annotations

import pytest

from airgap_llm.targets import TARGETS, manylinux_platforms, target_for_facts


def test_manylinux_tags_cover_2_5_up_to_the_target_glibc() -> None:
    tags = manylinux_platforms((2, 36))
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_5_x86_64" in tags and "manylinux_2_37_x86_64" not in tags
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert len([t for t in tags if t.startswith("manylinux_2_")]) == 32


def test_targets_table() -> None:
    assert TARGETS["debian-12"].python_tag == "cp311"
    assert TARGETS["ubuntu-24.04"].glibc == (2, 39)
    assert "libnuma1" in TARGETS["ubuntu-22.04"].runtime_packages


@pytest.mark.parametrize(
    ("dist", "ver", "major", "expected"),
    [
        ("Debian", "12.7", "12", "debian-12"),
        ("Ubuntu", "22.04", "22", "ubuntu-22.04"),
        ("Ubuntu", "24.04", "24", "ubuntu-24.04"),
        ("RedHat", "9.4", "9", "rhel-9"),
        ("Rocky", "9.3", "9", "rhel-9"),
    ],
)
def test_target_for_facts(dist: str, ver: str, major: str, expected: str) -> None:
    t = target_for_facts(dist, ver, major)
    assert t is not None and t.id == expected


def test_unsupported_facts() -> None:
    assert target_for_facts("Ubuntu", "20.04", "20") is None
    assert target_for_facts("Debian", "11", "11") is None
