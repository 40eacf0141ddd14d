"""NVIDIA driver facts and checks (pure logic, no I/O): the single source the ``nvidia_driver``
role, the ``preflight`` role and the bundle builder read.

- driver versions and branches (``"550.127.05"`` -> branch 550; package versions such as
  ``"535.309.01-0+deb12u1"`` or ``"1:550.127.05-0ubuntu1"`` too);
- the oldest driver a CUDA build runs on (NVIDIA's CUDA compatibility tables);
- ``nvidia-smi`` output (``--query-gpu`` CSV, ``-q``, ``topo -m``) and ``lspci -nn`` output;
- NVSwitch detection (fabric manager needed) and the fabric-manager/driver version check;
- the host's GPUs against the inventory's ``airgap_llm_gpu``;
- which OS packages make up the driver on each target OS (what the bundle fetches and the role
  installs and holds), from the target and the role's settings (branch, open or proprietary modules,
  fabric manager).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airgap_llm.errors import InputError
from airgap_llm.targets import TARGETS, TargetOS

# --- versions -------------------------------------------------------------------------------------

_UPSTREAM = re.compile(r"^(?:\d+:)?(?P<upstream>(?P<branch>\d{3,4})(?:\.\d+){1,2})(?:[-+~].*)?$")


@dataclass(frozen=True, order=True)
class DriverVersion:
    """An NVIDIA driver version: ``branch`` 550, ``upstream`` "550.127.05", ``package`` as given."""

    parts: tuple[int, ...]
    upstream: str
    package: str

    @property
    def branch(self) -> int:
        return self.parts[0]


def parse_driver_version(text: str) -> DriverVersion:
    """Parse "550.127.05", "570.86.15-1.el9", "535.309.01-0+deb12u1" or "1:550.127.05-0ubuntu1".

    Raises ``ValueError`` with the text on anything else (an empty string, "N/A", "Not Found").
    """
    raw = str(text).strip()
    match = _UPSTREAM.match(raw)
    if not match:
        raise ValueError(f"not an NVIDIA driver version: {raw!r}")
    upstream = match.group("upstream")
    return DriverVersion(tuple(int(p) for p in upstream.split(".")), upstream, raw)


def driver_branch(text: str) -> int:
    """The driver branch of a version string: "550.127.05" -> 550."""
    return parse_driver_version(text).branch


def parse_cuda_version(text: str) -> tuple[int, int]:
    """ "12.8" or "12.8.90" -> (12, 8); ``ValueError`` otherwise ("Not Found", "N/A")."""
    match = re.match(r"^\s*(\d+)\.(\d+)", str(text))
    if not match:
        raise ValueError(f"not a CUDA version: {str(text).strip()!r}")
    return int(match.group(1)), int(match.group(2))


# --- CUDA -> driver -------------------------------------------------------------------------------
# NVIDIA, "CUDA Compatibility", minor version compatibility (Table 1): CUDA 12.x runs on drivers
# >= 525, CUDA 13.x on >= 580, with a limited feature set (no PTX JIT of newer PTX) below the driver
# released with the toolkit. CUDA Toolkit Release Notes, Table 3 (Linux x86_64, toolkit GA driver).
MINOR_COMPAT_MIN_BRANCH: dict[int, int] = {11: 450, 12: 525, 13: 580}
TOOLKIT_DRIVER: dict[tuple[int, int], str] = {
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 3): "545.23.06",
    (12, 4): "550.54.14",
    (12, 5): "555.42.02",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
}


@dataclass(frozen=True)
class DriverCheck:
    """A driver against a CUDA build: ``ok`` false is a refusal, ``warnings`` are advice."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "warnings": list(self.warnings)}


def check_driver_for_cuda(driver: str, cuda: str) -> DriverCheck:
    """Is ``driver`` new enough for software built with CUDA ``cuda`` (the bundle's vLLM build)?

    Below the major family's minimum (525 for 12.x, 580 for 13.x) it cannot run: a problem. Between
    that and the toolkit's own driver it runs under minor version compatibility, without PTX JIT of
    newer PTX: a warning naming the driver the toolkit was released with.
    """
    try:
        have = parse_driver_version(driver)
    except ValueError as exc:
        return DriverCheck(False, [str(exc)])
    try:
        major, minor = parse_cuda_version(cuda)
    except ValueError as exc:
        return DriverCheck(False, [str(exc)])
    floor = MINOR_COMPAT_MIN_BRANCH.get(major)
    if floor is None:
        return DriverCheck(
            False,
            [
                f"CUDA {major}.{minor}: no known minimum driver (known: "
                f"{', '.join(f'{m}.x' for m in sorted(MINOR_COMPAT_MIN_BRANCH))})"
            ],
        )
    if have.branch < floor:
        return DriverCheck(
            False,
            [
                f"driver {have.upstream} (branch {have.branch}) is too old for CUDA {major}.{minor}: "
                f"CUDA {major}.x needs branch {floor} or newer"
            ],
        )
    warnings = []
    released = TOOLKIT_DRIVER.get((major, minor))
    if released is None:
        known = [v for (ma, mi), v in TOOLKIT_DRIVER.items() if ma == major and mi <= minor]
        released = known[-1] if known else None
    if released is not None and have.parts < parse_driver_version(released).parts:
        warnings.append(
            f"driver {have.upstream} runs CUDA {major}.{minor} only under minor version compatibility "
            f"(no JIT of newer PTX); CUDA {major}.{minor} was released with {released}"
        )
    return DriverCheck(True, [], warnings)


_CUDA_RUNTIME_WHEEL = re.compile(r"nvidia_cuda_runtime(?:_cu(?P<tag>\d+))?-(?P<version>\d+\.\d+)[.\d]*-")


def cuda_from_wheels(names: Iterable[str]) -> str | None:
    """The CUDA version of a wheel set, from its ``nvidia-cuda-runtime`` wheel ("12.8"), or None."""
    found = set()
    for name in names:
        match = _CUDA_RUNTIME_WHEEL.search(name.rsplit("/", 1)[-1].lower())
        if match:
            found.add(parse_cuda_version(match.group("version")))
    if not found:
        return None
    major, minor = max(found)
    return f"{major}.{minor}"


# --- nvidia-smi and lspci -------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int | None  # None when nvidia-smi says [N/A] (unified memory parts)
    driver_version: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_query_gpu(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits``.

    Tolerates a header line and " MiB" units (the output without ``nounits``/``noheader``).
    """
    gpus = []
    for lineno, line in enumerate(str(text).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("index"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            raise ValueError(f"nvidia-smi --query-gpu line {lineno}: expected 4 fields, got {len(cells)}: {line!r}")
        index, name, memory, driver = cells
        mem = memory.removesuffix("MiB").strip()
        gpus.append(Gpu(int(index), name, int(mem) if mem.isdigit() else None, driver))
    return gpus


def parse_smi_q(text: str) -> dict[str, Any]:
    """The header and per-GPU names of ``nvidia-smi -q``: driver_version, cuda_version (None when
    "Not Found" or "N/A"), attached_gpus, product_names, fb_memory_total_mib."""
    out: dict[str, Any] = {
        "driver_version": None,
        "cuda_version": None,
        "attached_gpus": None,
        "product_names": [],
        "fb_memory_total_mib": [],
    }
    in_fb = False
    for line in str(text).splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            in_fb = line.strip() == "FB Memory Usage" or (in_fb and line.startswith(" " * 8))
            continue
        name, value = key.strip(), value.strip()
        if name == "Driver Version":
            out["driver_version"] = value
        elif name == "CUDA Version":
            out["cuda_version"] = value if re.match(r"^\d+\.\d+", value) else None
        elif name == "Attached GPUs":
            out["attached_gpus"] = int(value) if value.isdigit() else None
        elif name == "Product Name":
            out["product_names"].append(value)
        elif name == "Total" and in_fb:
            mem = value.removesuffix("MiB").strip()
            out["fb_memory_total_mib"].append(int(mem) if mem.isdigit() else None)
            in_fb = False
    return out


# PCI class 0680 ("Bridge: other") with NVIDIA's vendor id: NVSwitches on HGX/DGX baseboards
# (A100 10de:1af1, H100 10de:22a3). Other NVIDIA 0680 devices are old nForce chipset parts
# (MCP51/MCP61 Ethernet, 10de:0269/03ef): known and not counted.
NVSWITCH_DEVICE_IDS = {"1af1": "A100 NVSwitch (2nd gen)", "22a3": "H100 NVSwitch (3rd gen)"}
_LSPCI_NN = re.compile(r"\[(?P<cls>[0-9a-f]{4})\]:.*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]", re.IGNORECASE)
_NFORCE_BRIDGES = {"0269", "03ef"}


def nvswitches_from_lspci(text: str) -> list[str]:
    """The NVSwitch lines of ``lspci -nn`` (or ``-Dnn``): NVIDIA bridges of class 0680."""
    found = []
    for line in str(text).splitlines():
        match = _LSPCI_NN.search(line)
        if not match or match.group("vendor").lower() != "10de" or match.group("cls") != "0680":
            continue
        if match.group("device").lower() in _NFORCE_BRIDGES:
            continue
        found.append(line.strip())
    return found


def gpus_from_lspci(text: str) -> int:
    """How many NVIDIA display/3D controllers (class 0300/0302) ``lspci -nn`` lists."""
    count = 0
    for line in str(text).splitlines():
        match = _LSPCI_NN.search(line)
        if match and match.group("vendor").lower() == "10de" and match.group("cls") in ("0300", "0302"):
            count += 1
    return count


# Driver 580's ``topo -m`` underlines its header row with terminal escapes even when written to a file.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def nvlinks_from_topo(text: str) -> dict[tuple[int, int], int]:
    """NVLink bonds between GPU pairs from ``nvidia-smi topo -m``: {(0, 1): 12, ...} (i < j)."""
    rows: dict[int, list[str]] = {}
    header: list[int] = []
    for line in _ANSI_ESCAPE.sub("", str(text)).splitlines():
        cells = line.split()
        if not cells:
            continue
        if cells[0].startswith("GPU") and cells[0][3:].isdigit():
            rows[int(cells[0][3:])] = cells[1:]
        elif not header and all(c.startswith(("GPU", "NIC", "mlx", "CPU", "NUMA")) for c in cells[:2]):
            header = [int(c[3:]) for c in cells if c.startswith("GPU") and c[3:].isdigit()]
    links: dict[tuple[int, int], int] = {}
    for i, cells in rows.items():
        columns = header or sorted(rows)
        for j, cell in zip(columns, cells, strict=False):
            match = re.fullmatch(r"NV(\d+)", cell)
            if match and i != j:
                links[(min(i, j), max(i, j))] = int(match.group(1))
    return links


@dataclass(frozen=True)
class FabricDecision:
    needed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"needed": self.needed, "reason": self.reason}


def fabricmanager_needed(setting: str | bool, lspci: str = "", topo: str = "") -> FabricDecision:
    """Whether this host needs nvidia-fabricmanager.

    ``setting`` true/false decides; "auto" detects: NVSwitch bridges in ``lspci -nn`` decide. Without
    them (no pciutils yet, or a VM that hides the switches) ``topo -m`` is a hint: more than two GPUs
    all connected pairwise by NVLink is an NVSwitch board (NVLink bridges join pairs only, and
    H100 NVL / A100 PCIe pairs need no fabric manager).
    """
    if isinstance(setting, bool) or str(setting).lower() in ("true", "false", "yes", "no"):
        value = setting if isinstance(setting, bool) else str(setting).lower() in ("true", "yes")
        return FabricDecision(value, f"airgap_llm_nvidia_driver_fabricmanager is {str(value).lower()}")
    if str(setting).lower() != "auto":
        raise ValueError(f"airgap_llm_nvidia_driver_fabricmanager must be auto, true or false, got {setting!r}")
    switches = nvswitches_from_lspci(lspci)
    if switches:
        return FabricDecision(True, f"{len(switches)} NVSwitch bridge(s) on the PCI bus (lspci class 0680)")
    links = nvlinks_from_topo(topo)
    gpus = sorted({g for pair in links for g in pair})
    pairs = len(gpus) * (len(gpus) - 1) // 2
    if len(gpus) > 2 and len(links) == pairs:
        return FabricDecision(True, f"nvidia-smi topo -m: all {len(gpus)} GPUs linked pairwise (an NVSwitch board)")
    if links:
        return FabricDecision(False, f"NVLink on {len(links)} GPU pair(s) but no NVSwitch: no fabric manager needed")
    return FabricDecision(False, "no NVSwitch found (lspci) and no NVLink mesh (nvidia-smi topo -m)")


def fabricmanager_mismatch(driver: str, fabricmanager: str) -> str | None:
    """A refusal message when the fabric manager's version is not the driver's, else None.

    The fabric manager refuses to run against another driver version ("fabric manager version ...
    and driver version ... don't match"), so the upstream versions ("550.127.05") must be equal,
    string for string: no branch-level or prefix matching. The package revision after the "-" is the
    packager's (Debian "-0+deb12u1", NVIDIA's repository "-1") and is not compared.
    """
    try:
        want = parse_driver_version(driver)
    except ValueError as exc:
        return f"cannot check the fabric manager against the driver: {exc}"
    try:
        have = parse_driver_version(fabricmanager)
    except ValueError as exc:
        return f"cannot check the fabric manager against driver {want.upstream}: {exc}"
    if have.upstream != want.upstream:
        return (
            f"fabric manager {have.package} does not match driver {want.package}: the fabric manager must be "
            f"exactly version {want.upstream} (it refuses to start on another driver version); carry "
            f"nvidia-fabricmanager {want.upstream} in the bundle, or pin the driver to {have.upstream}"
        )
    return None


# --- the inventory's airgap_llm_gpu ---------------------------------------------------------------

MEMORY_TOLERANCE = 0.05  # nvidia-smi reports 81559 MiB (79.6 GiB) for an "80 GB" H100


def _model_tokens(text: str) -> set[str]:
    tokens = set(re.split(r"[^A-Z0-9]+", str(text).upper())) - {"", "NVIDIA", "TESLA"}
    return {t for t in tokens if not re.fullmatch(r"\d+(GB|G|GIB)", t)}


def compare_gpus(gpus: Sequence[Gpu], expected: Mapping[str, Any] | None, host: str = "") -> list[str]:
    """Messages, one per mismatch, between the GPUs nvidia-smi lists and ``airgap_llm_gpu``.

    Count: exact. Model: every word of the inventory's model other than a size ("H100", "NVL";
    not "80GB", which ``memory_gib`` checks) must be a word of nvidia-smi's name. Memory: within
    5% of ``memory_gib`` (nvidia-smi's MiB, in GiB).
    """
    where = f"{host}: " if host else ""
    expected = expected or {}
    count = int(expected.get("count", 0) or 0)
    problems = []
    if len(gpus) != count:
        names = ", ".join(sorted({g.name for g in gpus})) or "none"
        problems.append(f"{where}airgap_llm_gpu.count is {count} but nvidia-smi lists {len(gpus)} GPU(s) ({names})")
    model = str(expected.get("model", "") or "")
    words = _model_tokens(model)
    if words:
        for gpu in gpus:
            missing = words - _model_tokens(gpu.name)
            if missing:
                problems.append(
                    f"{where}GPU {gpu.index} is '{gpu.name}' but airgap_llm_gpu.model is '{model}' "
                    f"({', '.join(sorted(missing))} not in the name)"
                )
    memory = expected.get("memory_gib")
    if memory:
        for gpu in gpus:
            if gpu.memory_mib is None:
                continue
            gib = gpu.memory_mib / 1024
            if abs(gib - float(memory)) > float(memory) * MEMORY_TOLERANCE:
                problems.append(
                    f"{where}GPU {gpu.index} ('{gpu.name}') has {gib:.1f} GiB but airgap_llm_gpu.memory_gib is "
                    f"{float(memory):g} (more than {MEMORY_TOLERANCE:.0%} apart)"
                )
    drivers = sorted({g.driver_version for g in gpus})
    if len(drivers) > 1:
        problems.append(f"{where}nvidia-smi reports several driver versions: {', '.join(drivers)}")
    return problems


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


@dataclass(frozen=True)
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
        return _ubuntu(target, branch, flavour, fabricmanager, precompiled, kernel_flavour)
    return _rhel(target, branch, flavour, fabricmanager)


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
        target.id,
        branch,
        flavour,
        install,
        versioned,
        (*versioned, "nvidia-persistenced"),
        module,
        False,
        (),
        fabricmanager,
        "nvidia-persistenced.service",
        "nvidia-fabricmanager.service",
    )


def _ubuntu(
    target: TargetOS, branch: str, flavour: str, fabricmanager: bool, precompiled: bool, kernel_flavour: str
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
    install = (*versioned, module, *fm)
    return DriverPackages(
        target.id,
        branch,
        flavour,
        install,
        versioned,
        (*versioned, module, *fm),
        module,
        precompiled,
        fm,
        False,
        "nvidia-persistenced.service",
        "nvidia-fabricmanager.service",
    )


def _rhel(target: TargetOS, branch: str, flavour: str, fabricmanager: bool) -> DriverPackages:
    module = "kmod-nvidia-open-dkms" if flavour == "open" else "kmod-nvidia-latest-dkms"
    versioned = ("nvidia-driver", "nvidia-driver-cuda", "nvidia-driver-libs", "nvidia-persistenced", module)
    fm = ("nvidia-fabric-manager",) if fabricmanager else ()
    install = (*versioned, *fm, "kernel-devel", "kernel-headers")
    return DriverPackages(
        target.id,
        branch,
        flavour,
        install,
        versioned,
        (*versioned, *fm),
        module,
        False,
        fm,
        False,
        "nvidia-persistenced.service",
        "nvidia-fabricmanager.service",
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
    return driver_packages(
        target_id,
        hostvars.get(HOST_SETTINGS["branch"]),
        hostvars.get(HOST_SETTINGS["flavour"]),
        fabric,
        bool(hostvars.get(HOST_SETTINGS["precompiled"], True)),
        str(hostvars.get(HOST_SETTINGS["kernel_flavour"], "generic")),
        tuple(headers) if isinstance(headers, (list, tuple)) else None,
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


def os_packages_for_plans(target_id: str, plans: Iterable[Any]) -> tuple[str, ...]:
    """``os_packages_for_hosts`` from ``gpumap.HostPlan`` objects (the bundle spec's input): the GPU
    map decides which hosts need the driver; branch and flavour are the target's defaults."""
    hosts = {
        plan.host: {
            "airgap_llm_gpu": {"count": plan.gpu.count if plan.gpu else 0},
            "airgap_llm_services": {s.name: {"gpus": list(s.gpus)} for s in plan.services},
        }
        for plan in plans
    }
    return os_packages_for_hosts(target_id, hosts)
