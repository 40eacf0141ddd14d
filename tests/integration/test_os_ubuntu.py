"""The OS part for Ubuntu 22.04 and 24.04, built from an Ubuntu-layout mirror served on loopback.

The mirror (tests/fixtures/ubuntu_mirror.py) holds dummy .debs with the real names and dependencies,
under the release's suites, signed with a test key. What this shows: the sources, suites and
components the builder uses, the minimal baseline resolved without a chroot, the prerequisites and
driver packages resolved against it (the -updates version winning), and the signed flat repository.
What only the real archive can show: that the real dependency closure resolves."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap_llm.bundle.apt_baseline import parse_stanzas

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from ubuntu_mirror import build_mirror, make_test_key  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("dpkg-deb", "dpkg-scanpackages", "apt-ftparchive", "apt-get", "gpg", "gpgv")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS),
    reason=f"needs root and {', '.join(TOOLS)}",
)

INVENTORY = """\
all:
  hosts:
    gpu-box:
      ansible_host: 127.0.0.1
  vars:
    airgap_llm_target_os: {target}
    airgap_llm_vllm_version: "0.32.0"{extra}
    airgap_llm_gpu: {{model: H100-80GB, count: 8, memory_gib: 80}}
    airgap_llm_services:
      llm:
        kind: chat
        model: org/llm
        revision: main
        port: 8003
        gpus: [0, 1]
        gpu_memory_utilization: 0.9
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served by ``python -m http.server`` on 127.0.0.1; yields (dir, URL)."""
    root = tmp_path / "mirror"
    root.mkdir()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield root, f"http://127.0.0.1:{port}/ubuntu"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("target", "codename", "python"), [("ubuntu-22.04", "jammy", "3.11"), ("ubuntu-24.04", "noble", "3")]
)
def test_ubuntu_os_part_from_a_loopback_mirror(
    tmp_path: Path, served: tuple[Path, str], target: str, codename: str, python: str
) -> None:
    root, url = served
    key = make_test_key(tmp_path / "gnupg")
    build_mirror(root / "ubuntu", codename, tmp_path / "gnupg")
    inv = tmp_path / "inv.yml"
    # vLLM 0.32 needs Python >= 3.11: jammy's venv is built with its python3.11
    extra = '\n    airgap_llm_target_python: "3.11"' if codename == "jammy" else ""
    inv.write_text(INVENTORY.format(target=target, extra=extra))
    out = tmp_path / "bundle"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(AIRGAP_LLM_CACHE=str(tmp_path / "cache"), NO_PROXY="*")
    proc = subprocess.run(
        [sys.executable, "-m", "airgap_llm.cli", "bundle", "build", "-i", str(inv), "-o", str(out), "--only", "os",
         "--os-mirror", f"{target}={url}", "--os-keyring", f"{target}={key}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repo = out / "os" / target
    debs = {p.name.split("_")[0]: p.name.split("_")[1] for p in repo.glob("*.deb")}
    wanted = {
        "python3-venv", "ca-certificates", "libnuma1", "rsync", "gcc", "libc6-dev", f"python{python}-dev",
        "nvidia-headless-no-dkms-570-server-open", "nvidia-utils-570-server", "libnvidia-compute-570-server",
        "nvidia-compute-utils-570-server", "linux-modules-nvidia-570-server-open-generic",
        "linux-modules-nvidia-570-server-open-6.8.0-49-generic", "nvidia-fabricmanager-570", "libnvidia-nscq-570",
        "gcc-11", "openssl", "prometheus", "prometheus-node-exporter",
    }  # fmt: skip
    if codename == "jammy":
        wanted |= {"python3.11", "python3.11-venv", "python3.11-dev", "libpython3.11-dev"}
    assert wanted <= set(debs), sorted(wanted - set(debs))
    # the minimal baseline is not carried; nor is what nothing asked for
    assert not {"libc6", "base-files", "dpkg", "apt", "nvidia-driver-535-server"} & set(debs)
    assert debs["rsync"] == "3.2.7-0ubuntu0.2", "the -updates suite's version wins"
    listed = {s["Package"] for s in parse_stanzas((repo / "Packages").read_text())}
    assert listed == set(debs)
    keyring = repo / "airgap-llm-archive-keyring.gpg"
    check = subprocess.run(["gpgv", "--keyring", str(keyring), str(repo / "InRelease")], capture_output=True)
    assert check.returncode == 0, check.stderr


def test_repo_metadata_is_rewritten_only_when_the_packages_change(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild with the same packages and key leaves the signed metadata byte for byte (a delta bundle then
    carries no OS file); a new package, a corrupted signature or a lost keyring rewrites and re-signs it."""
    from ubuntu_mirror import Deb, _deb

    from airgap_llm.bundle.os_packages import KEYRING_NAME, write_repo_metadata

    monkeypatch.setenv("AIRGAP_LLM_CACHE", str(tmp_path / "cache"))  # a signing key of the test's own
    repo = tmp_path / "repo"
    repo.mkdir()
    _deb(repo, Deb("hello", "1.0"))
    names = ("Packages", "Packages.gz", "Release", "InRelease", "Release.gpg", KEYRING_NAME)

    def files() -> dict[str, bytes]:
        return {n: (repo / n).read_bytes() for n in names}

    write_repo_metadata(repo, "noble")
    first = files()
    time.sleep(1.1)  # Release's Date: would differ if it were written again
    write_repo_metadata(repo, "noble")
    assert files() == first

    (repo / "InRelease").write_bytes(first["InRelease"].replace(b"Suite: airgap-llm", b"Suite: airgap-LLM"))
    write_repo_metadata(repo, "noble")
    assert files()["Release"] != first["Release"]
    second = files()
    check = subprocess.run(["gpgv", "--keyring", str(repo / KEYRING_NAME), str(repo / "InRelease")],
                           capture_output=True)
    assert check.returncode == 0, check.stderr

    _deb(repo, Deb("world", "2.0"))
    write_repo_metadata(repo, "noble")
    assert b"Package: world" in (repo / "Packages").read_bytes() and files()["Release"] != second["Release"]
