"""airgap_llm.nvidia: versions, CUDA minimums, nvidia-smi/lspci parsing, NVSwitch detection,
inventory comparison, fabric-manager pinning and the driver package table.

The samples under fixtures/nvidia/ are real output from public sources (see its README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap_llm import nvidia as nv

FIX = Path(__file__).parent / "fixtures" / "nvidia"


def sample(name: str) -> str:
    return (FIX / name).read_text()


@pytest.mark.parametrize(
    ("text", "branch", "upstream"),
    [
        ("550.127.05", 550, "550.127.05"),
        ("550.127.05-1", 550, "550.127.05"),
        ("535.309.01-0+deb12u1", 535, "535.309.01"),
        ("1:550.127.05-0ubuntu1", 550, "550.127.05"),
        ("570.86.15-1.el9", 570, "570.86.15"),
        ("570.26", 570, "570.26"),
        (" 580.105.08\n", 580, "580.105.08"),
    ],
)
def test_driver_versions(text: str, branch: int, upstream: str) -> None:
    version = nv.parse_driver_version(text)
    assert version.branch == branch == nv.driver_branch(text)
    assert version.upstream == upstream


@pytest.mark.parametrize("text", ["", "N/A", "Not Found", "550", "driver 550.1", "abc.def"])
def test_bad_driver_versions(text: str) -> None:
    with pytest.raises(ValueError, match="not an NVIDIA driver version"):
        nv.parse_driver_version(text)


def test_versions_order_numerically() -> None:
    assert nv.parse_driver_version("550.54.14") < nv.parse_driver_version("550.127.05")


@pytest.mark.parametrize(
    ("driver", "cuda", "ok", "warned"),
    [
        ("570.86.15", "12.8", True, False),
        ("575.51.03", "12.9", True, False),
        ("550.127.05", "12.8", True, True),  # minor version compatibility only
        ("535.309.01-0+deb12u1", "12.9", True, True),
        ("520.61.05", "12.1", False, False),
        ("575.57.08", "13.0", False, False),
        ("580.65.06", "13.0", True, False),
        ("580.105.08", "13.1", True, False),
    ],
)
def test_driver_against_cuda(driver: str, cuda: str, ok: bool, warned: bool) -> None:
    check = nv.check_driver_for_cuda(driver, cuda)
    assert check.ok is ok, check
    assert bool(check.warnings) is warned, check
    if not ok:
        assert "too old" in check.problems[0] and driver.split("-")[0] in check.problems[0]


def test_driver_against_unknown_cuda() -> None:
    assert not nv.check_driver_for_cuda("570.86.15", "9.2").ok
    assert not nv.check_driver_for_cuda("570.86.15", "Not Found").ok


def test_cuda_from_wheel_names() -> None:
    names = [
        "wheels/cp312-manylinux_2_39_x86_64/torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "wheels/cp312-manylinux_2_39_x86_64/nvidia_cuda_runtime_cu12-12.8.90-py3-none-manylinux2014_x86_64.whl",
    ]
    assert nv.cuda_from_wheels(names) == "12.8"
    assert nv.cuda_from_wheels(["nvidia_cuda_runtime-13.0.96-py3-none-manylinux_2_27_x86_64.whl"]) == "13.0"
    assert nv.cuda_from_wheels(["torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl"]) is None


def test_query_gpu_csv() -> None:
    gpus = nv.parse_query_gpu(sample("query-gpu-4x-a100.csv"))
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert {g.name for g in gpus} == {"NVIDIA A100-SXM4-80GB"}
    assert {g.memory_mib for g in gpus} == {81920}
    assert {g.driver_version for g in gpus} == {"580.105.08"}


def test_query_gpu_with_units_header_and_na() -> None:
    text = (
        "index, name, memory.total [MiB], driver_version\n"
        "0, NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\n"
        "1, NVIDIA GH200 480GB, [N/A], 550.54.15\n"
    )
    gpus = nv.parse_query_gpu(text)
    assert gpus[0].memory_mib == 81559 and gpus[1].memory_mib is None


def test_query_gpu_rejects_other_columns() -> None:
    with pytest.raises(ValueError, match="expected 4 fields"):
        nv.parse_query_gpu("0, NVIDIA A100-SXM4-80GB, 81920\n")


def test_smi_q() -> None:
    q = nv.parse_smi_q(sample("smi-q-535-a10g.txt"))
    assert q["driver_version"] == "535.154.05" and q["cuda_version"] == "12.2"
    assert q["attached_gpus"] == 1 and q["product_names"] == ["NVIDIA A10G"]
    q = nv.parse_smi_q(sample("smi-q-580-cuda-not-found.txt"))
    assert q["driver_version"] == "580.105.06" and q["cuda_version"] is None and q["attached_gpus"] == 4


def test_smi_q_fb_memory() -> None:
    text = (
        "    Product Name                          : NVIDIA H100 80GB HBM3\n"
        "    FB Memory Usage\n"
        "        Total                             : 81559 MiB\n"
        "        Reserved                          : 328 MiB\n"
        "    BAR1 Memory Usage\n"
        "        Total                             : 131072 MiB\n"
    )
    assert nv.parse_smi_q(text)["fb_memory_total_mib"] == [81559]


def test_nvswitch_from_lspci_hgx_h100() -> None:
    text = sample("lspci-hgx-h100.txt")
    assert len(nv.nvswitches_from_lspci(text)) == 4
    assert nv.gpus_from_lspci(text) == 8
    decision = nv.fabricmanager_needed("auto", lspci=text)
    assert decision.needed and "4 NVSwitch" in decision.reason


def test_nvswitch_from_lspci_a100_and_not_nforce() -> None:
    assert len(nv.nvswitches_from_lspci(sample("lspci-a100-nvswitch-minimal.txt"))) == 1
    nforce = "00:07.0 Bridge [0680]: nVidia Corporation MCP61 Ethernet [10de:03ef] (rev a2)\n"
    assert nv.nvswitches_from_lspci(nforce) == []


def test_topo_nvlinks() -> None:
    links = nv.nvlinks_from_topo(sample("topo-hgx-h100.txt"))
    assert len(links) == 28 and set(links.values()) == {18}
    assert nv.nvlinks_from_topo(sample("topo-8x4090-pcie.txt")) == {}
    assert nv.nvlinks_from_topo(sample("topo-2x-a100-nvlink-pair.txt")) == {(0, 1): 12}


def test_fabric_decision_from_topo_only() -> None:
    assert nv.fabricmanager_needed("auto", topo=sample("topo-hgx-h100.txt")).needed
    pair = nv.fabricmanager_needed("auto", topo=sample("topo-2x-a100-nvlink-pair.txt"))
    assert not pair.needed and "no NVSwitch" in pair.reason
    assert not nv.fabricmanager_needed("auto", topo=sample("topo-8x4090-pcie.txt")).needed


def test_fabric_decision_forced() -> None:
    assert nv.fabricmanager_needed(True).needed
    assert not nv.fabricmanager_needed("false", lspci=sample("lspci-hgx-h100.txt")).needed
    with pytest.raises(ValueError, match="auto, true or false"):
        nv.fabricmanager_needed("maybe")


def test_fabricmanager_versions() -> None:
    assert nv.fabricmanager_mismatch("550.127.05-1", "550.127.05-1") is None
    assert nv.fabricmanager_mismatch("535.309.01-0+deb12u1", "535.309.01-1") is None
    msg = nv.fabricmanager_mismatch("550.127.05-1", "550.127.08-1")
    assert msg and "550.127.08-1" in msg and "exactly version 550.127.05" in msg
    assert nv.fabricmanager_mismatch("550.127.05", "550.127") is not None
    assert nv.fabricmanager_mismatch("550.127.05", "") is not None


def test_compare_gpus_ok() -> None:
    gpus = nv.parse_query_gpu(sample("query-gpu-4x-a100.csv"))
    assert nv.compare_gpus(gpus, {"model": "A100-SXM4-80GB", "count": 4, "memory_gib": 80}) == []
    h100 = nv.parse_query_gpu(sample("query-gpu-1x-h100.csv"))
    assert nv.compare_gpus(h100, {"model": "H100-80GB-HBM3", "count": 1, "memory_gib": 80}) == []


def test_compare_gpus_mismatches() -> None:
    gpus = nv.parse_query_gpu(sample("query-gpu-4x-a100.csv"))
    problems = nv.compare_gpus(gpus, {"model": "H100-80GB-HBM3", "count": 8, "memory_gib": 40}, host="gpu-1")
    assert any("count is 8 but nvidia-smi lists 4" in p for p in problems)
    assert any("GPU 0 is 'NVIDIA A100-SXM4-80GB' but airgap_llm_gpu.model is 'H100-80GB-HBM3'" in p for p in problems)
    assert any("80.0 GiB but airgap_llm_gpu.memory_gib is 40" in p for p in problems)
    assert all(p.startswith("gpu-1: ") for p in problems)


def test_compare_gpus_none_found() -> None:
    assert nv.compare_gpus([], {"model": "A100", "count": 1, "memory_gib": 40}) == [
        "airgap_llm_gpu.count is 1 but nvidia-smi lists 0 GPU(s) (none)"
    ]


def test_debian_packages() -> None:
    sel = nv.driver_packages("debian-12", fabricmanager=True)
    assert sel.branch == "535" and sel.flavour == "proprietary"
    wanted = {"nvidia-driver", "nvidia-kernel-dkms", "nvidia-persistenced", "firmware-misc-nonfree", "libcuda1"}
    assert wanted <= set(sel.install)
    assert sel.fabricmanager == () and sel.fabricmanager_carried
    assert set(sel.versioned) <= set(sel.hold)


def test_debian_refuses_what_the_archive_cannot_install() -> None:
    with pytest.raises(nv.DriverSelectionError, match="open-kernel-dkms"):
        nv.driver_packages("debian-12", flavour="open")
    with pytest.raises(nv.DriverSelectionError, match="branch 535 only"):
        nv.driver_packages("debian-12", branch="570")


def test_ubuntu_packages() -> None:
    sel = nv.driver_packages("ubuntu-24.04", branch=550, flavour="open", fabricmanager=True)
    assert sel.kernel_module == "linux-modules-nvidia-550-server-open-generic" and sel.precompiled
    assert "nvidia-fabricmanager-550" in sel.install and "nvidia-fabricmanager-550" in sel.hold
    dkms = nv.driver_packages("ubuntu-22.04", branch="550", flavour="proprietary", precompiled=False)
    assert dkms.kernel_module == "nvidia-dkms-550-server" and not dkms.precompiled


def test_rhel_packages() -> None:
    sel = nv.driver_packages("rhel-9", flavour="open", fabricmanager=True)
    assert sel.kernel_module == "kmod-nvidia-open-dkms" and "nvidia-fabric-manager" in sel.hold


@pytest.mark.parametrize(("kwargs", "match"), [({"branch": "5x0"}, "three digits"), ({"flavour": "closed"}, "flavour")])
def test_bad_settings(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(nv.DriverSelectionError, match=match):
        nv.driver_packages("ubuntu-24.04", **kwargs)  # type: ignore[arg-type]


GPU_HOST = {
    "airgap_llm_gpu": {"model": "A100-SXM4-80GB", "count": 8, "memory_gib": 80},
    "airgap_llm_services": {
        "llm": {"kind": "chat", "model": "x/y", "port": 8003, "gpus": [0, 1], "gpu_memory_utilization": 0.9}
    },
}
CPU_HOST = {
    "airgap_llm_engine": "vllm",
    "airgap_llm_services": {"embed": {"kind": "embedding", "model": "x/y", "port": 8001, "gpus": [],
                                      "extra_args": ["--enforce-eager"]}},
}


def test_os_packages_for_hosts() -> None:
    assert nv.os_packages_for_hosts("debian-12", {"cpu-1": CPU_HOST}) == ()
    packages = nv.os_packages_for_hosts("debian-12", {"gpu-1": GPU_HOST, "cpu-1": CPU_HOST})
    assert "nvidia-driver" in packages and len(packages) == len(set(packages))
    ubuntu = nv.os_packages_for_hosts("ubuntu-24.04", {"gpu-1": GPU_HOST})
    assert "nvidia-fabricmanager-570" in ubuntu  # auto with 8 GPUs: fetched, the host decides
    one = {**GPU_HOST, "airgap_llm_gpu": {"model": "H100", "count": 1, "memory_gib": 80}}
    assert not any("fabricmanager" in p for p in nv.os_packages_for_hosts("ubuntu-24.04", {"gpu-1": one}))


def test_os_packages_for_hosts_that_disagree() -> None:
    other = {**GPU_HOST, "airgap_llm_nvidia_driver_branch": "550"}
    with pytest.raises(nv.DriverSelectionError, match="different drivers"):
        nv.os_packages_for_hosts("ubuntu-24.04", {"a": GPU_HOST, "b": other})


def test_bundle_spec_adds_the_driver_for_gpu_hosts_only() -> None:
    from airgap_llm.bundle.spec import bundle_spec
    from airgap_llm.gpumap import plan_host

    gpu = {**GPU_HOST, "airgap_llm_gpu": {"model": "A100-SXM4-80GB", "count": 2, "memory_gib": 80}}
    plans = [plan_host("gpu-1", gpu), plan_host("cpu-1", CPU_HOST)]
    (os_set,) = bundle_spec(plans).os_sets
    assert os_set.target.id == "debian-12"
    assert os_set.packages[:4] == os_set.target.runtime_packages
    assert "nvidia-kernel-dkms" in os_set.packages
    (cpu_only,) = bundle_spec([plan_host("cpu-1", CPU_HOST)]).os_sets
    assert cpu_only.packages == cpu_only.target.runtime_packages + ("prometheus", "prometheus-node-exporter")


# --- output captured on real GPU machines (driver 580.159.04, Ubuntu 24.04; see fixtures/nvidia/README.md)


def test_device_h100_and_h200_query_gpu() -> None:
    h100 = nv.parse_query_gpu(sample("query-gpu-1x-h100-580-device.csv"))
    assert h100 == [nv.Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "580.159.04")]
    assert nv.parse_query_gpu(sample("query-gpu-1x-h100-580-device-header.csv")) == h100
    h200 = nv.parse_query_gpu(sample("query-gpu-1x-h200-580-device.csv"))
    assert h200 == [nv.Gpu(0, "NVIDIA H200", 143771, "580.159.04")]


def test_device_smi_q_full_output() -> None:
    for name, product, mib in (
        ("smi-q-580-h100-device.txt", "NVIDIA H100 80GB HBM3", 81559),
        ("smi-q-580-h200-device.txt", "NVIDIA H200", 143771),
    ):
        facts = nv.parse_smi_q(sample(name))
        assert facts == {
            "driver_version": "580.159.04",
            "cuda_version": "13.0",
            "attached_gpus": 1,
            "product_names": [product],
            "fb_memory_total_mib": [mib],
        }
        # CUDA 13 needs branch 580 or later; the driver that reports CUDA 13.0 satisfies 12.x wheels too.
        assert nv.check_driver_for_cuda(facts["driver_version"], "12.8").ok


def test_device_inventory_comparison() -> None:
    h100 = nv.parse_query_gpu(sample("query-gpu-1x-h100-580-device.csv"))
    assert nv.compare_gpus(h100, {"model": "H100-80GB-HBM3", "count": 1, "memory_gib": 80}) == []
    h200 = nv.parse_query_gpu(sample("query-gpu-1x-h200-580-device.csv"))
    assert nv.compare_gpus(h200, {"model": "H200", "count": 1, "memory_gib": 141}) == []
    # The h100-8x80g inventory run against the single-GPU box: count is caught, model and memory agree.
    problems = nv.compare_gpus(h100, {"model": "H100-80GB-HBM3", "count": 8, "memory_gib": 80}, host="gpu-1")
    assert problems == ["gpu-1: airgap_llm_gpu.count is 8 but nvidia-smi lists 1 GPU(s) (NVIDIA H100 80GB HBM3)"]
    # An H100 inventory on the H200 box: model and memory both named.
    wrong = nv.compare_gpus(h200, {"model": "H100-80GB-HBM3", "count": 1, "memory_gib": 80})
    assert len(wrong) == 2 and "'NVIDIA H200' but airgap_llm_gpu.model is 'H100-80GB-HBM3'" in wrong[0]


def test_device_topo_with_terminal_escapes() -> None:
    topo = sample("topo-1x-h100-device.txt")
    assert "\x1b[4m" in topo  # driver 580 underlines the header even into a file
    assert nv.nvlinks_from_topo(topo) == {}
    assert not nv.fabricmanager_needed("auto", topo=topo).needed
    # The same underline around an 8-GPU HGX header: the columns are still read from the header.
    hgx = sample("topo-hgx-h100.txt").splitlines()
    header = next(i for i, line in enumerate(hgx) if "Affinity" in line)
    hgx[header] = "\t\x1b[4m" + hgx[header].strip() + "\x1b[0m"
    links = nv.nvlinks_from_topo("\n".join(hgx))
    assert len(links) == 28 and set(links.values()) == {18}


def test_driver_settings_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        nv.driver_packages("ubuntu-24.04", "570")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        nv.DriverPackages("ubuntu-24.04")  # type: ignore[call-arg]


def test_the_package_splits_by_concern_and_reexports() -> None:
    from airgap_llm.nvidia import fabric, packages, smi, versions

    assert nv.parse_driver_version is versions.parse_driver_version
    assert nv.parse_smi_q is smi.parse_smi_q and nv.fabricmanager_needed is fabric.fabricmanager_needed
    assert nv.DriverPackages is packages.DriverPackages


def test_dkms_hosts_must_run_the_kernel_the_bundle_carries_headers_for() -> None:
    gpu_host = {"airgap_llm_gpu": {"count": 2}, "airgap_llm_services": {"llm": {"gpus": [0, 1]}}}
    problem, note = nv.kernel_problem("debian-12", {**gpu_host, "airgap_llm_kernel_release": "6.1.0-28-amd64"},
                                      "gpu-1", "6.1.0-30-amd64")
    assert problem == ("gpu-1 runs kernel 6.1.0-30-amd64, but the bundle carries DKMS headers for "
                       "airgap_llm_kernel_release 6.1.0-28-amd64; boot 6.1.0-28-amd64, or set "
                       "airgap_llm_kernel_release: 6.1.0-30-amd64 and rebuild the bundle") and not note
    assert nv.kernel_problem("debian-12", {**gpu_host, "airgap_llm_kernel_release": "6.1.0-30-amd64"},
                             "gpu-1", "6.1.0-30-amd64") == ("", "")
    problem, note = nv.kernel_problem("debian-12", gpu_host, "gpu-1", "6.1.0-30-amd64")
    assert not problem and "set airgap_llm_kernel_release: 6.1.0-30-amd64" in note and "linux-headers-amd64" in note
    # Ubuntu's precompiled signed modules need no headers; a CPU host needs no driver
    assert nv.kernel_problem("ubuntu-24.04", {**gpu_host, "airgap_llm_kernel_release": "x"}, "g", "y") == ("", "")
    assert nv.kernel_problem("debian-12", {"airgap_llm_kernel_release": "x"}, "c", "y") == ("", "")
