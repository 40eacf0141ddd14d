"""The python_runtime scenario's target after converge, idempotence and side_effect.

Converge built a venv from bundle a (one wheel); side_effect switched to bundle b (two wheels),
tried the broken bundle (a pinned wheel missing: the install failed) and reran b.
"""

from __future__ import annotations

import json
import re
from typing import Any

ROOT = "/opt/airgap-llm"
LINK = f"{ROOT}/venv"
KEYRING = "/etc/apt/keyrings/airgap-llm-archive-keyring.gpg"
APT_LIST = "/etc/apt/sources.list.d/airgap-llm.list"


def side_effect(host: Any) -> dict[str, str]:
    return json.loads(host.file("/root/side-effect.json").content_string)


def test_prerequisites_installed(host: Any) -> None:
    for name in ("python3-venv", "ca-certificates", "libnuma1", "rsync"):
        assert host.package(name).is_installed, name


def test_prerequisites_came_from_the_local_repository(host: Any) -> None:
    # apt-cache policy lists where the installed version is available: only our repository.
    out = host.check_output(
        f"apt-cache -o Dir::Etc::sourcelist={APT_LIST} -o Dir::Etc::sourceparts=- policy libnuma1 python3-venv"
    )
    assert out.count("file:/var/lib/airgap-llm/os-repo ./ Packages") >= 2, out
    assert "Installed: (none)" not in out, out


def test_apt_source_is_signed_and_checked(host: Any) -> None:
    line = host.file(APT_LIST).content_string
    assert f"[signed-by={KEYRING}]" in line
    assert not re.search(r"trusted\s*=\s*(yes|true)", line, re.IGNORECASE)
    assert "file:/var/lib/airgap-llm/os-repo ./" in line
    assert host.file(KEYRING).is_file and host.file(KEYRING).mode == 0o644
    assert host.file("/var/lib/airgap-llm/os-repo/InRelease").is_file


def test_live_venv_is_bundle_bs(host: Any) -> None:
    link = host.file(LINK)
    assert link.is_symlink
    venv_b = side_effect(host)["venv_b"]
    assert link.linked_to == venv_b
    assert venv_b.startswith(f"{ROOT}/venvs/py3.11-")
    assert host.file(f"{venv_b}/.airgap-llm-complete").is_file


def test_live_venv_imports_its_packages_offline(host: Any) -> None:
    out = host.check_output(f"{LINK}/bin/python -c 'import idna, six, os, sys; print(os.path.realpath(sys.prefix))'")
    assert out == side_effect(host)["venv_b"]
    freeze = host.check_output(f"{LINK}/bin/python -m pip --isolated freeze --all")
    pinned = {line for line in freeze.splitlines() if line.startswith(("idna==", "six=="))}
    assert len(pinned) == 2, freeze


def test_previous_venv_is_kept_for_rollback(host: Any) -> None:
    venv_a = side_effect(host)["venv_a"]
    assert venv_a != side_effect(host)["venv_b"]
    assert host.file(f"{venv_a}/.airgap-llm-complete").is_file
    assert host.run(f"{venv_a}/bin/python -c 'import idna'").rc == 0
    assert host.run(f"{venv_a}/bin/python -c 'import six'").rc != 0  # bundle a had idna only


def test_failed_install_left_no_venv_behind(host: Any) -> None:
    venvs = host.file(f"{ROOT}/venvs").listdir()
    kept = {side_effect(host)["venv_a"].rsplit("/", 1)[1], side_effect(host)["venv_b"].rsplit("/", 1)[1]}
    assert set(venvs) == kept


def test_wheelhouse_matches_the_bundle(host: Any) -> None:
    names = set(host.file("/var/lib/airgap-llm/wheelhouse/cp311-manylinux_2_36_x86_64").listdir())
    assert "constraints.txt" in names
    assert {n.split("-")[0] for n in names if n.endswith(".whl")} == {"idna", "six"}
