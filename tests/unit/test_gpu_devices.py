"""GPU device minors, the NVIDIA daemon ordering and the nvidia-devices oneshot (gpu_devices.py, units)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airgap_llm import gpu_devices as gd
from airgap_llm.cli import main
from airgap_llm.gpumap import plan_host
from airgap_llm.host_files import service_files
from airgap_llm.nvidia import fabricmanager_needed
from airgap_llm.units import UnitSettings

from .conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
# As composed by tests/hosts/gpu-shaped/compose-fixtures: CUDA index -> minor.
COMPOSED_MINORS = [3, 1, 0, 2, 7, 5, 4, 6]
H100_8X: dict[str, Any] = {
    "airgap_llm_target_os": "debian-12",
    "airgap_llm_gpu": {"model": "H100-80GB-HBM3", "count": 8, "memory_gib": 80},
    "airgap_llm_services": {
        "llm": {"kind": "chat", "model": "meta-llama/Llama-3.3-70B-Instruct", "revision": "main", "port": 8003,
                "gpus": [0, 1, 2, 3], "gpu_memory_utilization": 0.9},
        "embedding": {"kind": "embedding", "model": "Qwen/Qwen3-Embedding-4B", "revision": "main", "port": 8001,
                      "gpus": [6], "gpu_memory_utilization": 0.9},
        "web": {"kind": "app", "port": 3000, "command": ["/usr/bin/true"]},
    },
}


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def files_of(hostvars: dict[str, Any], devices: gd.GpuDevices | None = None) -> dict[str, str]:
    plan = plan_host("box", hostvars)
    assert plan.ok, plan.problems
    return {f.path: f.content for f in service_files(plan, UnitSettings(), "Ansible managed", "10.0.0.4", devices)}


def test_minor_of_the_real_captures() -> None:
    for name in ("smi-q-580-h100-device.txt", "smi-q-580-h200-device.txt"):
        assert gd.parse_smi_q_minors(read(name)) == [gd.SmiGpu("00000000:00:06.0", 0)]


def test_composed_capture_gives_minors_in_pci_bus_order() -> None:
    gpus = gd.parse_smi_q_minors(read("smi-q-580-8x-h100-composed.txt"))
    assert [g.bus_id for g in gpus][:2] == ["00000000:1B:00.0", "00000000:43:00.0"]
    assert gd.minors_by_index(gpus) == COMPOSED_MINORS
    # printed in another order, the CUDA index still follows the bus id
    assert gd.minors_by_index(list(reversed(gpus))) == COMPOSED_MINORS


def test_bus_id_key_orders_numerically_across_forms() -> None:
    assert gd.bus_id_key("00000000:1B:00.0") == gd.bus_id_key("0000:1b:00.0") == (0, 0x1B, 0, 0)
    assert gd.bus_id_key("00000000:9D:00.0") > gd.bus_id_key("00000000:1B:00.0")
    with pytest.raises(ValueError, match="not a PCI bus id"):
        gd.bus_id_key("GPU-1234")


def test_truncated_and_duplicate_minors_are_errors() -> None:
    with pytest.raises(ValueError, match="GPU 00000000:00:1E.0 has no Minor Number"):
        gd.parse_smi_q_minors(read("smi-q-535-a10g.txt"))
    with pytest.raises(ValueError, match="lists a minor number twice"):
        gd.minors_by_index([gd.SmiGpu("0:1:0.0", 0), gd.SmiGpu("0:2:0.0", 0)])
    with pytest.raises(ValueError, match="has Minor Number 'N/A'"):
        gd.parse_smi_q_minors("GPU 00000000:01:00.0\n    Minor Number : N/A\n")


def test_from_host_reads_minors_and_the_fabric_decision() -> None:
    fabric = fabricmanager_needed("auto", "", read("topo-hgx-h100.txt")).as_dict()
    devices = gd.from_host(read("smi-q-580-8x-h100-composed.txt"), H100_8X["airgap_llm_gpu"], fabric)
    assert devices.minors == tuple(COMPOSED_MINORS) and devices.minors_source == gd.HOST_MINORS_SOURCE
    assert devices.nvswitch and "all 8 GPUs linked pairwise" in devices.nvswitch_source
    # the inventory's nvswitch wins over the detection
    inv = {**H100_8X["airgap_llm_gpu"], "nvswitch": False}
    assert not gd.from_host(read("smi-q-580-8x-h100-composed.txt"), inv, fabric).nvswitch
    # nvidia-smi printed nothing (no driver yet): the inventory's minors, else the index
    assert gd.from_host("", {**inv, "minors": COMPOSED_MINORS}, None).minors_source == gd.INVENTORY_MINORS_SOURCE
    fallback = gd.from_host("", None, None)
    assert fallback.minors == () and fallback.node(5) == "/dev/nvidia5" and not fallback.nvswitch


def test_from_inventory_says_where_each_fact_comes_from() -> None:
    devices = gd.from_inventory({"count": 8, "minors": COMPOSED_MINORS, "nvswitch": True})
    assert devices.node(0) == "/dev/nvidia3" and devices.nvswitch
    assert "airgap_llm_gpu.nvswitch: true" in devices.nvswitch_source
    assert gd.from_inventory({"count": 8}, "true").nvswitch
    assert "airgap_llm_nvidia_driver_fabricmanager: false" in gd.from_inventory({"count": 8}, False).nvswitch_source
    unknown = gd.from_inventory(None)
    assert not unknown.nvswitch and "at install the host's detection decides" in unknown.nvswitch_source
    assert gd.GpuDevices.from_dict(devices.as_dict()) == devices
    assert gd.GpuDevices.from_dict(None) == gd.GpuDevices()


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ({"nvswitch": "yes"}, "airgap_llm_gpu.nvswitch must be true or false, got 'yes'"),
        ({"minors": [0, 1]}, "airgap_llm_gpu.minors lists 2 minor(s) for 8 GPU(s)"),
        ({"minors": [0, 1, 2, 3, 4, 5, 6, 6]}, "airgap_llm_gpu.minors lists a minor twice"),
        ({"minors": [0, 1, 2, 3, 4, 5, 6, 255]}, "must be a list of device minor numbers 0..253"),
        ({"minors": "0-7"}, "must be a list of device minor numbers"),
    ],
)
def test_inventory_keys_are_checked_by_plan(gpu: dict[str, Any], message: str) -> None:
    hv = copy.deepcopy(H100_8X)
    hv["airgap_llm_gpu"].update(gpu)
    texts = [str(p) for p in plan_host("box", hv).problems]
    assert any(message in t and "[gpu-spec]" in t for t in texts), texts


def test_inventory_keys_are_accepted() -> None:
    hv = copy.deepcopy(H100_8X)
    hv["airgap_llm_gpu"].update({"nvswitch": True, "minors": COMPOSED_MINORS})
    assert plan_host("box", hv).ok


def test_gpu_unit_allows_its_minors_and_orders_after_the_daemons() -> None:
    devices = gd.GpuDevices(tuple(COMPOSED_MINORS), gd.HOST_MINORS_SOURCE, True, "the host: test")
    files = files_of(H100_8X, devices)
    llm = files["/etc/systemd/system/airgap-llm-llm.service"]
    allowed = [ln for ln in llm.splitlines() if ln.startswith("DeviceAllow=")]
    assert allowed == [
        "DeviceAllow=/dev/nvidia3 rw", "DeviceAllow=/dev/nvidia1 rw", "DeviceAllow=/dev/nvidia0 rw",
        "DeviceAllow=/dev/nvidia2 rw", "DeviceAllow=/dev/nvidiactl rw", "DeviceAllow=/dev/nvidia-uvm rw",
        "DeviceAllow=/dev/nvidia-uvm-tools rw", "DeviceAllow=/dev/nvidia-modeset rw", "DeviceAllow=char-nvidia-caps r",
    ]
    assert "# GPU (CUDA index)->node: 0->/dev/nvidia3, 1->/dev/nvidia1, 2->/dev/nvidia0, 3->/dev/nvidia2\n" in llm
    assert "# Minors from the host (nvidia-smi -q: Minor Number of each Bus Id, in PCI bus order).\n" in llm
    assert "After=network-online.target nvidia-persistenced.service airgap-llm.nvidia-devices.service " \
        "nvidia-fabricmanager.service\n" in llm
    assert "Requires=airgap-llm.nvidia-devices.service nvidia-fabricmanager.service\n" in llm
    emb = files["/etc/systemd/system/airgap-llm-embedding.service"]
    assert "DeviceAllow=/dev/nvidia4 rw\n" in emb and "DeviceAllow=/dev/nvidia6 " not in emb
    # services that share no GPU are not chained; the CPU app gets no NVIDIA ordering or devices
    web = files["/etc/systemd/system/airgap-llm-web.service"]
    assert "nvidia" not in web and "Requires=" not in web and "PrivateDevices=true" in web
    oneshot = files["/etc/systemd/system/airgap-llm.nvidia-devices.service"]
    assert "ExecStart=/opt/airgap-llm/libexec/nvidia-devices 0 1 2 3 4\n" in oneshot and "Type=oneshot\n" in oneshot


def test_without_nvswitch_the_fabric_manager_is_not_required() -> None:
    llm = files_of(H100_8X)["/etc/systemd/system/airgap-llm-llm.service"]
    assert "nvidia-fabricmanager" not in llm
    assert "Requires=airgap-llm.nvidia-devices.service\n" in llm
    assert "DeviceAllow=/dev/nvidia0 rw\n" in llm and "Minors from the CUDA index" in llm


def test_cpu_host_gets_no_devices_oneshot() -> None:
    hv = {"airgap_llm_services": {"web": {"kind": "app", "port": 3000, "command": ["/usr/bin/true"]}}}
    assert not any("nvidia" in path for path in files_of(hv))


def write_inventory(tmp_path: Path, group_vars: dict[str, Any]) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(json.dumps({"gpu": {"hosts": {"gpu-1": {"ansible_host": "10.0.0.9"}}}}))
    (inv / "group_vars" / "gpu.yml").write_text(json.dumps(group_vars))
    return inv


def test_render_uses_the_inventorys_minors_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hv = copy.deepcopy(H100_8X)
    hv["airgap_llm_gpu"].update({"minors": COMPOSED_MINORS, "nvswitch": True})
    assert main(["render", "-i", str(write_inventory(tmp_path, hv)), "-o", str(tmp_path / "out"), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["hosts"]["gpu-1"]["notes"]
    assert any("minors from the inventory (airgap_llm_gpu.minors)" in n for n in notes), notes
    assert any("NVSwitch (nvidia-fabricmanager.service required): yes, from the inventory" in n for n in notes), notes
    unit = (tmp_path / "out/gpu-1/etc/systemd/system/airgap-llm-embedding.service").read_text()
    assert "DeviceAllow=/dev/nvidia4 rw\n" in unit and "Requires=airgap-llm.nvidia-devices.service " \
        "nvidia-fabricmanager.service\n" in unit


def test_render_without_minors_says_the_index_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-i", str(write_inventory(tmp_path, H100_8X)), "-o", str(tmp_path / "out"), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["hosts"]["gpu-1"]["notes"]
    assert any("minors from the CUDA index" in n and "nvidia-smi -q" in n for n in notes), notes
    expected = "NVSwitch (nvidia-fabricmanager.service required): no, not known from the inventory"
    assert any(expected in n for n in notes), notes


@pytest.mark.parametrize(
    ("inventory", "nvswitch"),
    [("a100-8x80g", True), ("h100-8x80g", True), ("a100-1x40g", False), ("h100nvl-2node", False)],
)
def test_every_shipped_gpu_inventory_orders_after_the_nvidia_daemons(inventory: str, nvswitch: bool,
                                                                     tmp_path: Path) -> None:
    assert main(["render", "-i", str(REPO / "inventories" / inventory), "-o", str(tmp_path)]) == 0
    units = [p for p in tmp_path.glob("*/etc/systemd/system/airgap-llm-*.service")]
    assert units
    for unit in units:
        text = unit.read_text()
        if "DevicePolicy=closed" in text:
            assert "After=network-online.target nvidia-persistenced.service airgap-llm.nvidia-devices.service" in text
            assert "Requires=airgap-llm.nvidia-devices.service" in text
            assert ("After=network-online.target nvidia-persistenced.service airgap-llm.nvidia-devices.service "
                    "nvidia-fabricmanager.service" in text) is nvswitch
            assert ("nvidia-fabricmanager.service\n" in text) is nvswitch


HELPER = REPO / "roles" / "inference_service" / "files" / "nvidia-devices"


def run_helper(tmp_path: Path, stubs: dict[str, str], *minors: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "calls")}
    return subprocess.run([str(HELPER), *minors], capture_output=True, text=True, env=env, check=False)


def test_helper_asks_nvidia_modprobe_for_every_minor_and_uvm(tmp_path: Path) -> None:
    result = run_helper(tmp_path, {"nvidia-modprobe": 'echo "$*" >> "$LOG"'}, "3", "1")
    assert (tmp_path / "calls").read_text() == "-c=3\n-c=1\n-u -c=0\n"
    # the stub made no node: the helper says which are missing and fails, so no GPU unit starts
    assert result.returncode == 1
    assert "still missing: /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools" in result.stdout
    assert "/dev/nvidia3" in result.stdout


def test_helper_without_nvidia_modprobe_fails_naming_the_module(tmp_path: Path) -> None:
    result = run_helper(tmp_path, {"modprobe": 'echo "modprobe: FATAL: Module $1 not found" >&2; exit 1'}, "0")
    assert result.returncode == 1
    assert "cannot load the nvidia module (is the driver installed?)" in result.stdout
