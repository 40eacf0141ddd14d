"""Which OS packages make up the NVIDIA driver on each target OS: what the bundle fetches and the
``nvidia_driver`` role installs and holds, from the target and the role's settings (branch, open or
proprietary modules, fabric manager) (pure logic)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airgap_llm.errors import InputError
from airgap_llm.targets import TARGETS, TargetOS

# --- the driver's OS packages per target ----------------------------------------------------------

FLAVOURS = ("proprietary", "open")


@dataclass(frozen=True)
class DriverDefaults:
    branch: str
    flavour: str


# Per target: the branch and module flavour the role installs unless the inventory says otherwise.
# Debian 12's archive (bookworm, bookworm-security, non-free/contrib) carries one branch, 535
# (nvidia-driver 535.309.01-0+deb12u1 when this was written), and its nvidia-open-kernel-dkms
# (535.261.03-1) is older than that driver, so apt cannot install the open flavour with it.
DRIVER_DEFAULTS: dict[str, DriverDefaults] = {
    "debian-12": DriverDefaults("535", "proprietary"),
    "ubuntu-22.04": DriverDefaults("570", "open"),
    "ubuntu-24.04": DriverDefaults("570", "open"),
    "rhel-9": DriverDefaults("570", "open"),
}


@dataclass(frozen=True, kw_only=True)
class DriverPackages:
    """What the bundle fetches and the role installs for one target and setting."""

    target: str
    branch: str
    flavour: str
    install: tuple[str, ...]  # every package the role installs from the local repository
    versioned: tuple[str, ...]  # those built from the driver's source: pinned to the driver version
    hold: tuple[str, ...]  # held (apt) / version-locked (dnf) together
    kernel_module: str  # the package providing nvidia.ko (DKMS source or precompiled)
    precompiled: bool
    fabricmanager: tuple[str, ...]  # from the distro's archive; () when carried in as a file
    fabricmanager_carried: bool  # the distro has no fabric manager: bring NVIDIA's .deb/.rpm
    persistenced_unit: str
    fabricmanager_unit: str

    def as_dict(self) -> dict[str, Any]:
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        return data


class DriverSelectionError(InputError, ValueError):
    """A driver setting the target cannot have (exit 1 from the command line)."""


def driver_packages(
    target_id: str,
    *,
    branch: str | int | None = None,
    flavour: str | None = None,
    fabricmanager: bool = False,
    precompiled: bool = True,
    kernel_flavour: str = "generic",
    headers: Sequence[str] | None = None,
) -> DriverPackages:
    """The driver's OS packages for ``target_id`` (debian-12, ubuntu-22.04/24.04, rhel-9).

    ``branch``/``flavour`` default to ``DRIVER_DEFAULTS``; ``precompiled`` takes Ubuntu's signed
    ``linux-modules-nvidia-<branch>-server[-open]-<kernel_flavour>`` instead of DKMS; ``headers``
    (DKMS targets) are the kernel headers DKMS builds against (Debian: ``linux-headers-amd64``).
    """
    target = TARGETS.get(str(target_id))
    if target is None:
        raise DriverSelectionError(f"unknown target OS {target_id!r}; use one of {', '.join(sorted(TARGETS))}")
    defaults = DRIVER_DEFAULTS[target.id]
    branch = str(branch or defaults.branch).strip()
    flavour = str(flavour or defaults.flavour).strip().lower()
    if not re.fullmatch(r"\d{3}", branch):
        raise DriverSelectionError(f"driver branch must be three digits such as 570, got {branch!r}")
    if flavour not in FLAVOURS:
        raise DriverSelectionError(f"kernel module flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    if target.distro == "debian":
        return _debian(target, branch, flavour, fabricmanager, headers)
    if target.distro == "ubuntu":
        return _ubuntu(target, branch, flavour, fabricmanager, precompiled, kernel_flavour, headers)
    return _rhel(target, branch, flavour, fabricmanager, headers)


def _debian(
    target: TargetOS, branch: str, flavour: str, fabricmanager: bool, headers: Sequence[str] | None
) -> DriverPackages:
    archive = DRIVER_DEFAULTS[target.id].branch
    if branch != archive:
        raise DriverSelectionError(
            f"{target.id}: Debian's archive carries driver branch {archive} only (nvidia-driver in non-free); "
            f"branch {branch} needs NVIDIA's own repository, which this bundle builder does not mirror"
        )
    if flavour == "open":
        raise DriverSelectionError(
            f"{target.id}: Debian 12's nvidia-open-kernel-dkms (contrib) lags its nvidia-driver, so apt cannot "
            "install them together; use the proprietary modules (A100 and H100 run on both)"
        )
    module = "nvidia-kernel-dkms"
    versioned = ("nvidia-driver", "libcuda1", "nvidia-smi", module)
    install = (
        *versioned,
        "nvidia-persistenced",
        "firmware-misc-nonfree",
        *(headers if headers is not None else ("linux-headers-amd64",)),
    )
    return DriverPackages(
        target=target.id,
        branch=branch,
        flavour=flavour,
        install=install,
        versioned=versioned,
        hold=(*versioned, "nvidia-persistenced"),
        kernel_module=module,
        precompiled=False,
        fabricmanager=(),
        fabricmanager_carried=fabricmanager,
        persistenced_unit="nvidia-persistenced.service",
        fabricmanager_unit="nvidia-fabricmanager.service",
    )


def _ubuntu(
    target: TargetOS,
    branch: str,
    flavour: str,
    fabricmanager: bool,
    precompiled: bool,
    kernel_flavour: str,
    headers: Sequence[str] | None,
) -> DriverPackages:
    open_ = "-open" if flavour == "open" else ""
    module = (
        f"linux-modules-nvidia-{branch}-server{open_}-{kernel_flavour}"
        if precompiled
        else f"nvidia-dkms-{branch}-server{open_}"
    )
    versioned = (
        f"nvidia-headless-no-dkms-{branch}-server{open_}",
        f"nvidia-utils-{branch}-server",
        f"libnvidia-compute-{branch}-server",
        f"nvidia-compute-utils-{branch}-server",
    )
    fm = (f"nvidia-fabricmanager-{branch}", f"libnvidia-nscq-{branch}") if fabricmanager else ()
    dkms_headers = (
        () if precompiled else tuple(headers if headers is not None else (f"linux-headers-{kernel_flavour}",))
    )
    install = (*versioned, module, *fm, *dkms_headers)
    return DriverPackages(
        target=target.id,
        branch=branch,
        flavour=flavour,
        install=install,
        versioned=versioned,
        hold=(*versioned, module, *fm),
        kernel_module=module,
        precompiled=precompiled,
        fabricmanager=fm,
        fabricmanager_carried=False,
        persistenced_unit="nvidia-persistenced.service",
        fabricmanager_unit="nvidia-fabricmanager.service",
    )


def _rhel(
    target: TargetOS, branch: str, flavour: str, fabricmanager: bool, headers: Sequence[str] | None
) -> DriverPackages:
    module = "kmod-nvidia-open-dkms" if flavour == "open" else "kmod-nvidia-latest-dkms"
    versioned = ("nvidia-driver", "nvidia-driver-cuda", "nvidia-driver-libs", "nvidia-persistenced", module)
    fm = ("nvidia-fabric-manager",) if fabricmanager else ()
    # dkms comes from EPEL; dnf's versionlock plugin (which community.general.dnf_versionlock drives) is
    # python3-dnf-plugin-versionlock on RHEL 9.
    kernel = headers if headers is not None else ("kernel-devel",)
    install = (*versioned, *fm, *kernel, "kernel-headers", "dkms", "python3-dnf-plugin-versionlock")
    return DriverPackages(
        target=target.id,
        branch=branch,
        flavour=flavour,
        install=install,
        versioned=versioned,
        hold=(*versioned, *fm),
        kernel_module=module,
        precompiled=False,
        fabricmanager=fm,
        fabricmanager_carried=False,
        persistenced_unit="nvidia-persistenced.service",
        fabricmanager_unit="nvidia-fabricmanager.service",
    )


# The role's variables the bundle reads from each host, with the role's defaults.
HOST_SETTINGS = {
    "branch": "airgap_llm_nvidia_driver_branch",
    "flavour": "airgap_llm_nvidia_driver_flavour",
    "fabricmanager": "airgap_llm_nvidia_driver_fabricmanager",
    "precompiled": "airgap_llm_nvidia_driver_precompiled",
    "kernel_flavour": "airgap_llm_nvidia_driver_kernel_flavour",
    "headers": "airgap_llm_nvidia_driver_kernel_headers",
}


def host_uses_gpus(hostvars: Mapping[str, Any]) -> bool:
    """True when the host's GPU map gives a service at least one GPU (the role's condition)."""
    gpu = hostvars.get("airgap_llm_gpu") or {}
    if not isinstance(gpu, Mapping) or not int(gpu.get("count", 0) or 0):
        return False
    services = hostvars.get("airgap_llm_services") or {}
    if not isinstance(services, Mapping):
        return False
    return any(isinstance(s, Mapping) and s.get("gpus") for s in services.values())


def host_driver_packages(target_id: str, hostvars: Mapping[str, Any]) -> DriverPackages | None:
    """The driver packages a host needs, from its variables (None for a host without GPU services).

    Fabric manager "auto" is fetched when the distro packages it and the host has more than two
    GPUs (an NVSwitch board is possible; the role decides on the host); Debian's is carried in.
    """
    if not host_uses_gpus(hostvars):
        return None
    if hostvars.get("airgap_llm_nvidia_driver_install", True) in (False, "false", "no"):
        return None
    fm = hostvars.get(HOST_SETTINGS["fabricmanager"], "auto")
    count = int((hostvars.get("airgap_llm_gpu") or {}).get("count", 0) or 0)
    fabric = fm is True or str(fm).lower() in ("true", "yes") or (str(fm).lower() == "auto" and count > 2)
    headers = hostvars.get(HOST_SETTINGS["headers"])
    release = hostvars.get("airgap_llm_kernel_release")
    target = TARGETS.get(str(target_id))
    if headers is None and release and target is not None:  # DKMS builds for the kernel the host runs
        headers = [target.kernel_headers.format(release=str(release).strip())]
    return driver_packages(
        target_id,
        branch=hostvars.get(HOST_SETTINGS["branch"]),
        flavour=hostvars.get(HOST_SETTINGS["flavour"]),
        fabricmanager=fabric,
        precompiled=bool(hostvars.get(HOST_SETTINGS["precompiled"], True)),
        kernel_flavour=str(hostvars.get(HOST_SETTINGS["kernel_flavour"], "generic")),
        headers=tuple(headers) if isinstance(headers, (list, tuple)) else None,
    )


def os_packages_for_hosts(target_id: str, hosts: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The driver packages the hosts of one target OS need together, in a stable order (the union;
    hosts that disagree on branch or flavour are an error, since they share ``os/<distro>-<version>``)."""
    selections = {h: host_driver_packages(target_id, hv) for h, hv in sorted(hosts.items())}
    chosen = {h: s for h, s in selections.items() if s is not None}
    kinds = {(s.branch, s.flavour, s.kernel_module) for s in chosen.values()}
    if len(kinds) > 1:
        detail = "; ".join(f"{h}: branch {s.branch} {s.flavour} ({s.kernel_module})" for h, s in chosen.items())
        raise DriverSelectionError(
            f"{target_id} hosts share one OS package directory but want different drivers ({detail}); "
            "use one branch and module flavour per target OS"
        )
    packages: list[str] = []
    for sel in chosen.values():
        packages += [p for p in sel.install if p not in packages]
    return tuple(packages)


def os_packages_for_plans(
    target_id: str, plans: Iterable[Any], hostvars: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[str, ...]:
    """``os_packages_for_hosts`` from ``gpumap.HostPlan`` objects (the bundle spec's input): the GPU
    map decides which hosts need the driver; the role's settings (branch, flavour, ...) and
    ``airgap_llm_kernel_release`` come from each host's variables when given, else the target's defaults."""
    settings = (*HOST_SETTINGS.values(), "airgap_llm_nvidia_driver_install", "airgap_llm_kernel_release")
    hosts = {
        plan.host: {
            **{k: v for k, v in (hostvars or {}).get(plan.host, {}).items() if k in settings},
            "airgap_llm_gpu": {"count": plan.gpu.count if plan.gpu else 0},
            "airgap_llm_services": {s.name: {"gpus": list(s.gpus)} for s in plan.services},
        }
        for plan in plans
    }
    return os_packages_for_hosts(target_id, hosts)


def kernel_problem(target_id: str, hostvars: Mapping[str, Any], host: str, running: str) -> tuple[str, str]:
    """Where the driver is built by DKMS, the host must run the kernel whose headers the bundle carries.

    Returns (problem, note): a problem when ``airgap_llm_kernel_release`` names another kernel than the
    one the host runs; a note when it names none (the bundle then carries the archive's newest headers,
    which build the module only on a host that runs that kernel). Both empty for hosts without DKMS.
    """
    selection = host_driver_packages(target_id, hostvars)
    if selection is None or selection.precompiled or not running:
        return "", ""
    release = str(hostvars.get("airgap_llm_kernel_release") or "").strip()
    if not release:
        headers = ", ".join(p for p in selection.install if "headers" in p or "devel" in p) or "none"
        return "", (
            f"{host} runs kernel {running} and builds the NVIDIA module with DKMS; the inventory names no "
            f"airgap_llm_kernel_release, so the bundle carries {headers} (the archive's newest at build time): "
            f"set airgap_llm_kernel_release: {running} to carry this kernel's headers"
        )
    if release != running:
        return (
            f"{host} runs kernel {running}, but the bundle carries DKMS headers for airgap_llm_kernel_release "
            f"{release}; boot {release}, or set airgap_llm_kernel_release: {running} and rebuild the bundle"
        ), ""
    return "", ""
