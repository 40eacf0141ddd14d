"""The nvidia_driver role on a Debian 12 target without a GPU: packages, holds, nouveau, units."""

from __future__ import annotations

import re

import pytest

HELD = ["nvidia-driver", "libcuda1", "nvidia-smi", "nvidia-kernel-dkms", "nvidia-persistenced"]


@pytest.mark.parametrize("name", [*HELD, "firmware-misc-nonfree"])
def test_driver_packages_installed(host, name):
    assert host.package(name).is_installed


def test_driver_packages_share_one_version(host):
    versions = {host.package(n).version for n in ("nvidia-driver", "libcuda1", "nvidia-smi", "nvidia-kernel-dkms")}
    assert len(versions) == 1, versions
    assert next(iter(versions)).startswith("535.")


@pytest.mark.parametrize("name", HELD)
def test_driver_packages_held(host, name):
    # Multi-Arch: same packages (libcuda1) are listed with their architecture: libcuda1:amd64.
    package, selection = host.check_output(f"dpkg --get-selections {name}").split()
    assert (package.split(":")[0], selection) == (name, "hold")


def test_nouveau_blacklisted(host):
    conf = host.file("/etc/modprobe.d/airgap-llm-blacklist-nouveau.conf")
    assert conf.is_file
    assert "blacklist nouveau" in conf.content_string
    assert "options nouveau modeset=0" in conf.content_string


UNSIGNED_OK = re.compile(r"trusted\s*=\s*(yes|true)|allow-?unauthenticated", re.IGNORECASE)


def test_local_repo_signed_never_trusted(host):
    src = host.file("/etc/apt/sources.list.d/airgap-llm.list").content_string
    assert "signed-by=/etc/apt/keyrings/airgap-llm-archive-keyring.gpg" in src
    apt = host.check_output("cat /etc/apt/sources.list.d/* /etc/apt/apt.conf.d/* 2>/dev/null || true")
    # Neither a trusted source option nor an unauthenticated-install switch, in any spelling.
    assert not UNSIGNED_OK.search(apt)


def test_persistenced_unit_enabled(host):
    assert host.file("/lib/systemd/system/nvidia-persistenced.service").exists
    assert host.service("nvidia-persistenced").is_enabled


def test_fabric_manager_refused_not_installed(host):
    assert not host.package("nvidia-fabricmanager-535").is_installed


def test_no_module_built_without_headers(host):
    # No GPU and no headers of the (foreign) running kernel: the module is not built, and nothing
    # pretends it was. The DKMS source is registered for a later build.
    assert host.run("modinfo nvidia").rc != 0
    assert "nvidia" in host.check_output("dkms status")
