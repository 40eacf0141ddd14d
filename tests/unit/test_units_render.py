"""Service -> unit (units.py, host_files.py) and ``airgap-llm render`` on the shipped inventories."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap_llm.cli import main
from airgap_llm.gpumap import HostPlan, plan_host
from airgap_llm.host_files import restart_inputs, service_files
from airgap_llm.units import UnitSettings, command_line, systemd_quote

from .conftest import REPO
from .test_gpumap import TEST_BOX

INVENTORIES = sorted(p.name for p in (REPO / "inventories").iterdir() if (p / "hosts.yml").is_file())


def files_of(plan: HostPlan, address: str = "10.0.0.4") -> dict[str, str]:
    return {f.path: f.content for f in service_files(plan, UnitSettings(), "Ansible managed", address)}


def test_unit_of_a_gpu_service() -> None:
    plan = plan_host("box", TEST_BOX)
    files = files_of(plan)
    unit = files["/etc/systemd/system/airgap-llm-llm.service"]
    assert unit.startswith("# Ansible managed\n[Unit]\n")
    assert "After=network-online.target nvidia-persistenced.service airgap-llm.nvidia-devices.service " \
           "airgap-llm-ocr.service airgap-llm-whisper.service airgap-llm-embedding.service\n" in unit
    assert "Wants=network-online.target nvidia-persistenced.service\n" in unit
    assert "Requires=airgap-llm.nvidia-devices.service\n" in unit
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[:3] == ["/opt/airgap-llm/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == "/var/lib/airgap-llm/models/llm"
    assert argv[argv.index("--host") + 1] == "10.0.0.4"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.35"
    assert "DeviceAllow=/dev/nvidia0 rw\n" in unit and "DevicePolicy=closed\n" in unit
    assert "PrivateDevices" not in unit
    assert "Environment=VLLM_USE_FLASHINFER_SAMPLER=0\n" in unit
    assert "Environment=VLLM_ALLREDUCE_USE_FLASHINFER=0\n" in unit
    assert "ExecStartPost=/opt/airgap-llm/libexec/wait-healthy http://10.0.0.4:8003/health 1800\n" in unit
    env = files["/etc/airgap-llm/llm.env"]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=0\n" in env
    assert "VLLM_HOST_IP=10.0.0.4\n" in files["/etc/airgap-llm/common.env"]
    target = files["/etc/systemd/system/airgap-llm.target"]
    assert "Wants=airgap-llm-ocr.service airgap-llm-whisper.service airgap-llm-embedding.service " \
           "airgap-llm-llm.service\n" in target


def test_units_of_models_on_a_shared_mount_require_the_mount() -> None:
    assert "RequiresMountsFor" not in "".join(files_of(plan_host("box", TEST_BOX)).values())
    plan = plan_host("box", {**TEST_BOX, "airgap_llm_models_source": "/srv/models/hub"})
    assert plan.ok, plan.problems
    assert plan.as_dict()["models_source"] == "/srv/models/hub"
    assert HostPlan.from_dict(plan.as_dict()).models_source == "/srv/models/hub"
    units = {p: c for p, c in files_of(plan).items() if p.endswith(".service") and "/airgap-llm-" in p}
    assert units
    for path, unit in units.items():
        assert "RequiresMountsFor=/srv/models/hub\n" in unit, path


def test_paths_move_with_airgap_llm_paths() -> None:
    hv = {**TEST_BOX, "airgap_llm_paths": {"root": "/srv/agl", "config_dir": "/srv/agl/etc"}}
    plan = plan_host("box", hv)
    assert plan.ok, plan.problems
    files = files_of(plan)
    assert "/srv/agl/etc/llm.env" in files
    unit = files["/etc/systemd/system/airgap-llm-llm.service"]
    assert "ExecStart=/srv/agl/venv/bin/python " in unit and "EnvironmentFile=/srv/agl/etc/common.env" in unit
    assert "/opt/airgap-llm" not in "".join(files.values())


def test_bad_paths_are_refused() -> None:
    plan = plan_host("box", {**TEST_BOX, "airgap_llm_paths": {"root": "opt/x", "confdir": "/x"}})
    texts = [str(p) for p in plan.problems]
    assert any("airgap_llm_paths.root must be an absolute path" in t for t in texts), texts
    assert any("airgap_llm_paths has unknown key 'confdir'" in t for t in texts), texts


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [("plain-arg", "plain-arg"), ("/health,/metrics", "/health,/metrics"), ("100%", "100%%"),
     ("$HOME", '"$$HOME"'), ('say "hi"', '"say \\"hi\\""'), ('{"a": 1}', '"{\\"a\\": 1}"'), ("", '""')],
)
def test_systemd_quote(arg: str, quoted: str) -> None:
    assert systemd_quote(arg) == quoted


def test_extra_args_with_json_survive_the_unit() -> None:
    hv = json.loads(json.dumps(TEST_BOX))
    hv["airgap_llm_services"]["llm"]["extra_args"] = ["--override-generation-config", '{"temperature": 0.2}']
    unit = files_of(plan_host("box", hv))["/etc/systemd/system/airgap-llm-llm.service"]
    (line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    assert line.endswith('--override-generation-config "{\\"temperature\\": 0.2}"')
    assert command_line(["a b"]) == '"a b"'


def test_restart_inputs_name_what_a_service_was_started_from() -> None:
    inputs = restart_inputs(plan_host("box", TEST_BOX))
    llm = inputs["airgap-llm-llm.service"]
    assert "/opt/airgap-llm/venv" in llm and "/var/lib/airgap-llm/models/llm" in llm
    assert "/etc/airgap-llm/api-key.env" in llm and "/etc/systemd/system/airgap-llm-llm.service" in llm
    app = plan_host("box", {"airgap_llm_services": {"web": {"kind": "app", "port": 3000, "command": ["/bin/web"]}}})
    assert "/opt/airgap-llm/venv" not in restart_inputs(app)["airgap-llm-web.service"]


def test_unit_settings_defaults_are_the_roles() -> None:
    defaults = yaml.safe_load((REPO / "roles/inference_service/defaults/main.yml").read_text())
    assert UnitSettings.from_vars(defaults) == UnitSettings(common_env=UnitSettings.from_vars(defaults).common_env)
    assert dict(UnitSettings.from_vars(defaults).common_env)["HF_HUB_OFFLINE"] == "1"
    # a value still holding Jinja is Ansible's to resolve, never taken literally
    assert UnitSettings.from_vars({"airgap_llm_inference_service_user": "{{ x }}"}).user == "airgap-llm"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_render_every_shipped_inventory(inventory: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-i", str(REPO / "inventories" / inventory), "-o", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for host, data in result["hosts"].items():
        for path in data["files"]:
            assert (tmp_path / host / path.lstrip("/")).is_file()
        key = tmp_path / host / "etc/airgap-llm/api-key.env"
        assert "secret" in key.read_text() and (key.stat().st_mode & 0o777) == 0o600


def test_render_two_node_inventory_gives_each_host_its_address(tmp_path: Path) -> None:
    assert main(["render", "-i", str(REPO / "inventories" / "h100nvl-2node"), "-o", str(tmp_path)]) == 0
    ips = {h.name: (h / "etc/airgap-llm/common.env").read_text() for h in tmp_path.iterdir()}
    assert "VLLM_HOST_IP=192.0.2.41" in ips["h100nvl-01"] and "VLLM_HOST_IP=192.0.2.42" in ips["h100nvl-02"]


def write_inventory(tmp_path: Path, host_vars: dict[str, Any], group_vars: dict[str, Any]) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"airgap_llm": {"hosts": host_vars}}))
    (inv / "group_vars" / "airgap_llm.yml").write_text(yaml.safe_dump(group_vars))
    return inv


def test_render_with_a_host_name_says_the_address_comes_from_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, {"gpu-7": {"ansible_host": "gpu-7.example"}}, TEST_BOX)
    assert main(["render", "-i", str(inv), "-o", str(tmp_path / "out"), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["hosts"]["gpu-7"]["notes"]
    assert any("placeholder" in n and "ansible_host is not an IP address" in n for n in notes), notes
    assert "VLLM_HOST_IP=<address of gpu-7>" in (tmp_path / "out/gpu-7/etc/airgap-llm/common.env").read_text()


def test_render_refuses_a_broken_map_and_an_unknown_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = json.loads(json.dumps(TEST_BOX))
    bad["airgap_llm_services"]["llm"]["gpus"] = [3]
    inv = write_inventory(tmp_path, {"box": {"ansible_host": "10.0.0.9"}}, bad)
    assert main(["render", "-i", str(inv), "-o", str(tmp_path / "out")]) == 1
    assert "GPU index 3 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    good = write_inventory(tmp_path / "g", {"box": {"ansible_host": "10.0.0.9"}}, TEST_BOX)
    assert main(["render", "-i", str(good), "-o", str(tmp_path / "out"), "--limit", "nope*"]) == 2
    assert "no host of" in capsys.readouterr().err


def test_render_includes_the_os_files_install_writes(tmp_path: Path) -> None:
    assert main(["render", "-i", str(REPO / "inventories" / "a100-8x80g"), "-o", str(tmp_path)]) == 0
    (host,) = [h for h in tmp_path.iterdir()]
    apt = (host / "etc/apt/sources.list.d/airgap-llm.list").read_text()
    assert apt.endswith("deb [signed-by=/etc/apt/keyrings/airgap-llm-archive-keyring.gpg] "
                        "file:/var/lib/airgap-llm/os-repo ./\n")
    assert "blacklist nouveau" in (host / "etc/modprobe.d/airgap-llm-blacklist-nouveau.conf").read_text()
    assert main(["render", "-i", str(REPO / "inventories" / "local-cpu"), "-o", str(tmp_path / "cpu")]) == 0
    assert not list((tmp_path / "cpu").glob("*/etc/modprobe.d/*"))  # no GPU service, no blacklist


def test_cpu_engine_units_keep_no_flashinfer_switches(tmp_path: Path) -> None:
    assert main(["render", "-i", str(REPO / "inventories" / "local-cpu"), "-o", str(tmp_path)]) == 0
    units = list(tmp_path.glob("*/etc/systemd/system/airgap-llm-*.service"))
    assert units and not any("FLASHINFER" in u.read_text() for u in units)
