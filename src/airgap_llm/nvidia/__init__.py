"""NVIDIA driver facts and checks (pure logic, no I/O): the single source the ``nvidia_driver``
role, the ``preflight`` role and the bundle builder read. One module per concern:

- ``versions``: driver and CUDA versions, the oldest driver a CUDA build runs on;
- ``smi``: ``nvidia-smi`` output, and the host's GPUs against the inventory's ``airgap_llm_gpu``;
- ``fabric``: NVSwitch detection (``lspci -nn``, ``topo -m``) and the fabric-manager checks;
- ``packages``: which OS packages make up the driver on each target OS.

Everything is re-exported here, so ``from airgap_llm import nvidia; nvidia.X`` works.
"""

from airgap_llm.nvidia.fabric import (
    NVSWITCH_DEVICE_IDS,
    FabricDecision,
    fabricmanager_mismatch,
    fabricmanager_needed,
    gpus_from_lspci,
    nvlinks_from_topo,
    nvswitches_from_lspci,
)
from airgap_llm.nvidia.packages import (
    DRIVER_DEFAULTS,
    FLAVOURS,
    HOST_SETTINGS,
    DriverDefaults,
    DriverPackages,
    DriverSelectionError,
    driver_packages,
    host_driver_packages,
    host_uses_gpus,
    kernel_problem,
    os_packages_for_hosts,
    os_packages_for_plans,
)
from airgap_llm.nvidia.smi import (
    MEMORY_TOLERANCE,
    Gpu,
    SmiGpu,
    bus_id_key,
    compare_gpus,
    parse_query_gpu,
    parse_smi_q,
    parse_smi_q_minors,
)
from airgap_llm.nvidia.versions import (
    MINOR_COMPAT_MIN_BRANCH,
    TOOLKIT_DRIVER,
    DriverCheck,
    DriverVersion,
    check_driver_for_cuda,
    cuda_from_wheels,
    driver_branch,
    parse_cuda_version,
    parse_driver_version,
)

__all__ = [
    "SmiGpu",
    "bus_id_key",
    "parse_smi_q_minors",
    "DRIVER_DEFAULTS",
    "FLAVOURS",
    "HOST_SETTINGS",
    "MEMORY_TOLERANCE",
    "MINOR_COMPAT_MIN_BRANCH",
    "NVSWITCH_DEVICE_IDS",
    "TOOLKIT_DRIVER",
    "DriverCheck",
    "DriverDefaults",
    "DriverPackages",
    "DriverSelectionError",
    "DriverVersion",
    "FabricDecision",
    "Gpu",
    "check_driver_for_cuda",
    "compare_gpus",
    "cuda_from_wheels",
    "driver_branch",
    "driver_packages",
    "fabricmanager_mismatch",
    "fabricmanager_needed",
    "gpus_from_lspci",
    "host_driver_packages",
    "host_uses_gpus",
    "kernel_problem",
    "nvlinks_from_topo",
    "nvswitches_from_lspci",
    "os_packages_for_hosts",
    "os_packages_for_plans",
    "parse_cuda_version",
    "parse_driver_version",
    "parse_query_gpu",
    "parse_smi_q",
]
