"""Monitoring laid out from the plan: scrape config, alert rules, web config (promtool checks them), the
GPU textfile collector on the recorded nvidia-smi values, and the settings' messages."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from airgap_llm.gpumap import HostPlan, plan_host, plan_hosts
from airgap_llm.monitoring.files import CONFIG_FILE, RULES_FILE, WEB_CONFIG_FILE, node_files, server_files
from airgap_llm.monitoring.rules import alert_rules, mount_of
from airgap_llm.monitoring.scrape import bcrypt_hash, engine_targets, prometheus_config, web_config
from airgap_llm.monitoring.settings import MonitoringInputError, MonitoringSettings

from .conftest import REPO
from .conftest import load_script as load_role_script
from .test_gpumap import TEST_BOX

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
SCRIPT = REPO / "roles" / "monitoring" / "files" / "airgap-llm-gpu-metrics"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run tests/hosts/install-host-deps")

CPU_HOST: dict[str, Any] = {
    "airgap_llm_services": {
        "chat": {"kind": "chat", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "main", "port": 8003,
                 "gpus": []},
        "embed": {"kind": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
                  "port": 8001, "gpus": []},
        "web": {"kind": "app", "port": 3000, "command": ["/usr/bin/python3", "-m", "http.server", "3000"],
                "health_path": "/"},
    },
}
TWO_NODE: dict[str, Any] = {
    "airgap_llm_gpu": {"model": "H100-NVL", "count": 1, "memory_gib": 94},
    "airgap_llm_cluster_interface": "eth1",
    "airgap_llm_services": {
        "llm": {"kind": "chat", "model": "meta-llama/Llama-3.3-70B-Instruct", "revision": "main", "port": 8003,
                "gpus": [0], "gpu_memory_utilization": 0.9, "nodes": 2},
    },
}


def load_script() -> ModuleType:
    return load_role_script(SCRIPT, "airgap_llm_gpu_metrics")


def settings(**values: Any) -> MonitoringSettings:
    return MonitoringSettings.from_vars({f"airgap_llm_monitoring_{k}": v for k, v in values.items()}, "h1")


def test_scrape_config_has_every_engine_and_node_exporter() -> None:
    plans = [plan_host("box", TEST_BOX), plan_host("cpu", CPU_HOST)]
    config = prometheus_config(plans, {"box": "10.0.0.4", "cpu": "10.0.0.5"}, MonitoringSettings(), "/r.yml")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    engines = {(c["labels"]["host"], c["labels"]["service"]): c["targets"] for c in jobs["airgap_llm_engine"]
               ["static_configs"]}
    assert engines == {
        ("box", "ocr"): ["10.0.0.4:8002"], ("box", "whisper"): ["10.0.0.4:8004"],
        ("box", "embedding"): ["10.0.0.4:8001"], ("box", "llm"): ["10.0.0.4:8003"],
        ("cpu", "chat"): ["10.0.0.5:8003"], ("cpu", "embed"): ["10.0.0.5:8001"],
    }  # the app service exports no metrics
    nodes = [(c["targets"], c["labels"]) for c in jobs["node"]["static_configs"]]
    assert nodes == [(["10.0.0.4:9100"], {"host": "box", "gpu_host": "true"}), (["10.0.0.5:9100"], {"host": "cpu"})]
    assert config["rule_files"] == ["/r.yml"]
    assert "0.0.0.0" not in yaml.safe_dump(config)


def test_a_service_spanning_hosts_is_scraped_at_its_head_and_its_workers_are_marked() -> None:
    plans = plan_hosts({"n1": {**TWO_NODE, "airgap_llm_cluster_address": "10.1.0.1"},
                        "n2": {**TWO_NODE, "airgap_llm_cluster_address": "10.1.0.2"}})
    assert all(p.ok for p in plans), [p.problems for p in plans]
    targets = engine_targets(plans, {"n1": "10.1.0.1", "n2": "10.1.0.2"})
    assert [(t.host, t.address) for t in targets] == [("n1", "10.1.0.1:8003")]
    config = prometheus_config(plans, {"n1": "10.1.0.1", "n2": "10.1.0.2"}, MonitoringSettings(), "/r.yml")
    node = [c["labels"] for c in config["scrape_configs"][1]["static_configs"]]
    assert node[1] == {"host": "n2", "ray_worker_of": "llm", "gpu_host": "true"}


def test_a_host_without_an_address_is_named() -> None:
    with pytest.raises(MonitoringInputError, match="host cpu: no address to scrape"):
        prometheus_config([plan_host("cpu", CPU_HOST)], {"cpu": "0.0.0.0"}, MonitoringSettings(), "/r.yml")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"listen_address": "0.0.0.0"}, "airgap_llm_monitoring_listen_address (host h1) is '0.0.0.0': Prometheus "
                                         "never listens on every address"),
        ({"listen_address": "prom.example"}, "listen_address (host h1) must be an IP address, got 'prom.example'"),
        ({"basic_auth": False, "listen_address": "10.0.0.4"}, "without basic auth Prometheus listens on loopback"),
        ({"retention": "15 days"}, "airgap_llm_monitoring_retention (host h1) must be a Prometheus duration"),
        ({"retention_size": "50G"}, "retention_size (host h1) must be a size such as 50GB"),
        ({"port": 70000}, "airgap_llm_monitoring_port (host h1) must be a TCP port (1-65535), got 70000"),
        ({"node_exporter_port": "x"}, "node_exporter_port (host h1) must be a whole number, got 'x'"),
        ({"alerts": {"kv_cache": 0.8}}, "airgap_llm_monitoring_alerts (host h1) has unknown key 'kv_cache'"),
        ({"alerts": {"kv_cache_usage": 90}}, "kv_cache_usage (host h1) is a fraction between 0 and 1"),
        ({"alerts": {"kv_cache_for": "five"}}, "kv_cache_for (host h1) must be a Prometheus duration"),
        ({"extra_rules": [{"alert": "X"}]}, "extra_rules[0] (host h1) must be a mapping with 'alert' and 'expr'"),
        ({"basic_auth": "yes"}, "basic_auth (host h1) must be true or false, got 'yes'"),
    ],
)
def test_bad_settings_are_named(values: dict[str, Any], message: str) -> None:
    with pytest.raises(MonitoringInputError) as err:
        settings(**values)
    assert message in str(err.value)


def test_listen_address_defaults_to_the_service_address_or_loopback_without_auth() -> None:
    assert MonitoringSettings().with_listen_address("10.0.0.4").listen_address == "10.0.0.4"
    assert settings(basic_auth=False).with_listen_address("10.0.0.4").listen_address == "127.0.0.1"
    assert settings(listen_address="10.9.9.9").with_listen_address("10.0.0.4").listen_address == "10.9.9.9"


def test_web_config_holds_a_stable_bcrypt_hash_of_the_credential() -> None:
    web = web_config(MonitoringSettings(), "s3cret-credential")
    (user, hashed), = web["basic_auth_users"].items()
    assert user == "airgap-llm" and hashed.startswith("$2b$10$") and len(hashed) == 60
    assert bcrypt_hash("s3cret-credential") == hashed  # a rerun writes the same file
    assert bcrypt_hash("another") != hashed
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    assert lib.crypt(b"s3cret-credential", hashed.encode()) == hashed.encode()
    assert lib.crypt(b"wrong", hashed.encode()) != hashed.encode()
    assert web_config(settings(basic_auth=False), None) == {}
    with pytest.raises(MonitoringInputError, match="credential is empty"):
        web_config(MonitoringSettings(), "")


def test_mount_of_the_models() -> None:
    assert mount_of("/var/lib/airgap-llm/hf/hub", ["/", "/var", "/var/lib/airgap-llmx", "/boot"]) == "/var"
    assert mount_of("/var/lib/airgap-llm/hf/hub", ["/", "/var/lib/airgap-llm"]) == "/var/lib/airgap-llm"
    assert mount_of("/srv/x", []) == "/"


def test_alert_thresholds_come_from_the_inventory() -> None:
    plans = [plan_host("box", TEST_BOX)]
    rules = alert_rules(plans, settings(alerts={"kv_cache_usage": 0.8, "gpu_temperature_c": 80},
                                        extra_rules=[{"alert": "Mine", "expr": "vector(1)"}]), {"box": "/var"})
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert by_name["AirgapLlmKvCacheFull"]["expr"] == "vllm:kv_cache_usage_perc > 0.8"
    assert by_name["AirgapLlmKvCacheFull"]["for"] == "5m"
    assert by_name["AirgapLlmGpuHot"]["expr"] == "airgap_llm_gpu_temperature_celsius > 80"
    assert by_name["AirgapLlmServiceDown"]["for"] == "2m"
    assert 'mountpoint="/var"' in by_name["AirgapLlmModelDiskLow"]["expr"]
    assert by_name["Mine"]["expr"] == "vector(1)"


def written(tmp_path: Path, plans: list[HostPlan], addresses: dict[str, str], **values: Any) -> dict[str, Path]:
    """The server's files under tmp_path, the config pointing at the rules written there."""
    s = settings(**values).with_listen_address(addresses[plans[0].host])
    files = server_files(plans, plans[0], addresses, s, "Ansible managed", "pw", {p.host: "/" for p in plans})
    out = {}
    for f in files:
        path = tmp_path / Path(f.path).name
        text = f.content.replace(RULES_FILE, str(tmp_path / Path(RULES_FILE).name))
        path.write_text(text)
        out[f.path] = path
    return out


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
@pytest.mark.parametrize("inventory", ["box", "two-node"])
def test_promtool_accepts_the_generated_config_rules_and_web_config(tmp_path: Path, inventory: str) -> None:
    if inventory == "box":
        plans, addresses = [plan_host("box", TEST_BOX), plan_host("cpu", CPU_HOST)], {"box": "10.0.0.4",
                                                                                         "cpu": "10.0.0.5"}
    else:
        plans, addresses = plan_hosts({"n1": TWO_NODE, "n2": TWO_NODE}), {"n1": "10.1.0.1", "n2": "10.1.0.2"}
    files = written(tmp_path, plans, addresses, extra_rules=[{"alert": "Mine", "expr": "vector(1)", "for": "1m"}])
    rules = promtool("check", "rules", str(files[RULES_FILE]))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 11 rules found" in rules.stdout
    config = promtool("check", "config", str(files[CONFIG_FILE]))
    assert config.returncode == 0, config.stdout + config.stderr
    web = promtool("check", "web-config", str(files[WEB_CONFIG_FILE]))
    assert web.returncode == 0, web.stdout + web.stderr


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    files = written(tmp_path, [plan_host("cpu", CPU_HOST)], {"cpu": "10.0.0.5"},
                    extra_rules=[{"alert": "Broken", "expr": "vllm:num_requests_waiting >"}])
    result = promtool("check", "rules", str(files[RULES_FILE]))
    assert result.returncode != 0 and "Broken" in result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_test_of_the_kv_cache_and_temperature_alerts(tmp_path: Path) -> None:
    files = written(tmp_path, [plan_host("box", TEST_BOX)], {"box": "10.0.0.4"})
    tests = {
        "rule_files": [str(files[RULES_FILE])],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'vllm:kv_cache_usage_perc{job="airgap_llm_engine",host="box",service="llm",'
                           'model_name="llm",engine="0"}', "values": "0.5 0.95x10"},
                {"series": 'airgap_llm_gpu_temperature_celsius{job="node",host="box",gpu="0",uuid="GPU-1",'
                           'service="ocr,whisper,embedding,llm"}', "values": "70 85x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "AirgapLlmKvCacheFull", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "AirgapLlmKvCacheFull", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "airgap_llm_engine", "host": "box",
                                   "service": "llm", "model_name": "llm", "engine": "0"},
                    "exp_annotations": {
                        "summary": "llm on box: KV cache above 90 %",
                        "description": "Requests will queue or be preempted; more GPU memory, a shorter "
                                       "max_model_len or another replica helps.",
                    },
                }]},
                {"eval_time": "7m", "alertname": "AirgapLlmGpuHot", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": "node", "host": "box", "gpu": "0",
                                   "uuid": "GPU-1", "service": "ocr,whisper,embedding,llm"},
                    "exp_annotations": {"summary": "GPU 0 on box at 85 °C (limit 83 °C)"},
                }]},
            ],
        }],
    }
    test_file = tmp_path / "tests.yml"
    test_file.write_text(yaml.safe_dump(tests, allow_unicode=True))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_files_and_gpu_timer() -> None:
    plan = plan_host("box", TEST_BOX)
    files = {f.path: f.content for f in node_files(plan, "10.0.0.4", MonitoringSettings(), "Ansible managed")}
    drop_in = files["/etc/systemd/system/prometheus-node-exporter.service.d/airgap-llm.conf"]
    assert "--web.listen-address=10.0.0.4:9100 " in drop_in and "ExecStart=\n" in drop_in
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in drop_in
    unit = files["/etc/systemd/system/prometheus-node-exporter-airgap-llm-gpu.service"]
    assert ("--service=0=ocr --service=0=whisper --service=0=embedding --service=0=llm --planned=0=0.95"
            in unit)
    assert "DeviceAllow=/dev/nvidia0 rw" in unit and "PrivateNetwork=true" in unit
    assert "OnUnitActiveSec=15s" in files["/etc/systemd/system/prometheus-node-exporter-airgap-llm-gpu.timer"]
    cpu = [f.path for f in node_files(plan_host("cpu", CPU_HOST), "10.0.0.5", MonitoringSettings(), "m")]
    assert cpu == ["/etc/systemd/system/prometheus-node-exporter.service.d/airgap-llm.conf"]


def test_gpu_textfile_from_the_recorded_h100_values(tmp_path: Path) -> None:
    gpu = load_script()
    out = tmp_path / "airgap_llm_gpu.prom"
    rc = gpu.main(["--out", str(out), "--input", str(FIXTURES / "query-gpu-metrics-1x-h100-580-from-q.csv"),
                   "--service", "0=llm", "--service", "0=embed", "--planned", "0=0.6", "--planned", "0=0.3"])
    assert rc == 0
    lines = out.read_text().splitlines()
    labels = '{gpu="0",uuid="GPU-e6227d02-8da3-0ad4-0b09-ce86466c76e9",service="llm,embed"}'
    assert "airgap_llm_gpu_exporter_ok 1" in lines
    assert f"airgap_llm_gpu_memory_total_bytes{labels} {81559 * 1024 * 1024}" in lines
    assert f"airgap_llm_gpu_memory_used_bytes{labels} 0" in lines
    assert f"airgap_llm_gpu_temperature_celsius{labels} 37" in lines
    assert f"airgap_llm_gpu_power_watts{labels} 107.81" in lines
    assert f"airgap_llm_gpu_utilization_ratio{labels} 0" in lines
    assert f"airgap_llm_gpu_planned_memory_ratio{labels} 0.9" in lines
    assert 'airgap_llm_gpu_service_info{gpu="0",uuid="GPU-e6227d02-8da3-0ad4-0b09-ce86466c76e9",service="embed"} 1' \
        in lines
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=out.read_text(), capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_gpu_textfile_h200_and_values_nvidia_smi_does_not_have() -> None:
    gpu = load_script()
    rows = gpu.parse_query((FIXTURES / "query-gpu-metrics-1x-h200-580-from-q.csv").read_text()
                           + "1, GPU-x, 45, 1024, 143771, 80, [N/A]\n2, GPU-y, [Not Supported], 0, 143771, 30, 90\n")
    text = gpu.render(rows, {"1": ["llm"]}, {})
    assert 'airgap_llm_gpu_memory_total_bytes{gpu="0",uuid="GPU-0c99b532-b274-5dd5-e1e0-5ffe65c89fa8",service=""} ' \
           f"{143771 * 1024 * 1024}" in text
    assert 'airgap_llm_gpu_utilization_ratio{gpu="1",uuid="GPU-x",service="llm"} 0.45' in text
    assert 'airgap_llm_gpu_power_watts{gpu="1"' not in text
    assert 'airgap_llm_gpu_utilization_ratio{gpu="2"' not in text
    assert 'airgap_llm_gpu_power_watts{gpu="2",uuid="GPU-y",service=""} 90' in text


def test_gpu_textfile_when_nvidia_smi_fails_or_prints_something_else(tmp_path: Path) -> None:
    gpu = load_script()
    with pytest.raises(ValueError, match=r"nvidia-smi line 1: 4 fields, expected 7"):
        gpu.parse_query((FIXTURES / "query-gpu-4x-a100.csv").read_text())
    out = tmp_path / "gpu.prom"
    assert gpu.main(["--out", str(out), "--nvidia-smi", str(tmp_path / "no-such-nvidia-smi")]) == 1
    assert out.read_text().splitlines()[2] == "airgap_llm_gpu_exporter_ok 0"
    with pytest.raises(SystemExit, match="--service 'llm' must be GPU=VALUE"):
        gpu.main(["--out", str(out), "--service", "llm"])


def test_the_plan_refuses_bad_monitoring_variables_before_any_host() -> None:
    hv = {**CPU_HOST, "airgap_llm_monitoring_retention": "forever", "airgap_llm_monitoring_nodeexporter_port": 9101}
    (plan,) = plan_hosts({"h1": hv})
    texts = [str(p) for p in plan.problems]
    assert texts == [
        "host h1: variable 'airgap_llm_monitoring_nodeexporter_port' is not one the monitoring role reads (did you "
        "mean 'airgap_llm_monitoring_node_exporter_port'?) [monitoring]",
        "host h1: airgap_llm_monitoring_retention must be a Prometheus duration such as 15d, 12h or 30s, got 'forever' "
        "[monitoring]",
    ]
    (good,) = plan_hosts({"h1": {**CPU_HOST, "airgap_llm_monitoring_retention": "30d",
                                 "airgap_llm_monitoring_password_file": "/x", "airgap_llm_monitoring_enabled": False}})
    assert good.ok, good.problems


def test_files_for_a_host_name_what_is_missing() -> None:
    from airgap_llm.monitoring.hosts import files_for_host, host_facts

    plans = plan_hosts({"a": CPU_HOST, "b": CPU_HOST})
    facts = host_facts(plans, {"a": {"default_ipv4": {"address": "10.0.0.5"},
                                     "mounts": [{"mount": "/"}, {"mount": "/var/lib/airgap-llm"}]}})
    assert facts == {"addresses": {"a": "10.0.0.5"}, "model_mounts": {"a": "/var/lib/airgap-llm", "b": "/"}}
    node = files_for_host(plans, "a", facts, {}, "m", False, None)
    assert [f.path for f in node] == ["/etc/systemd/system/prometheus-node-exporter.service.d/airgap-llm.conf"]
    with pytest.raises(MonitoringInputError, match="Prometheus on a cannot scrape b: no address known"):
        files_for_host(plans, "a", facts, {}, "m", True, "pw")
    with pytest.raises(MonitoringInputError, match="host b: no address for node exporter and Prometheus"):
        files_for_host(plans, "b", facts, {}, "m", False, None)
    with pytest.raises(MonitoringInputError, match="airgap_llm_monitoring_app_metrics names nope, which no host"):
        files_for_host(plans, "a", {**facts, "addresses": {"a": "10.0.0.5", "b": "10.0.0.6"}},
                       {"airgap_llm_monitoring_app_metrics": ["web", "nope"]}, "m", True, "pw")
    server = files_for_host(plans, "a", {**facts, "addresses": {"a": "10.0.0.5", "b": "10.0.0.6"}},
                            {"airgap_llm_monitoring_app_metrics": ["web"]}, "m", True, "pw")
    config = yaml.safe_load(next(f.content for f in server if f.path == CONFIG_FILE))
    apps = next(j for j in config["scrape_configs"] if j["job_name"] == "airgap_llm_app")
    assert [c["targets"] for c in apps["static_configs"]] == [["10.0.0.5:3000"], ["10.0.0.6:3000"]]
    drop_in = next(f.content for f in server if f.path.endswith("prometheus.service.d/airgap-llm.conf"))
    assert "--web.listen-address=10.0.0.5:9090" in drop_in and "--storage.tsdb.retention.time=15d" in drop_in
    web = next(f for f in server if f.path == WEB_CONFIG_FILE)
    assert web.secret and web.mode == "0640" and web.group == "prometheus"


def test_render_writes_the_monitoring_files(tmp_path: Path) -> None:
    from airgap_llm.cli import main

    out = tmp_path / "out"
    assert main(["render", "-i", str(REPO / "inventories" / "h100nvl-2node"), "-o", str(out)]) == 0
    head, worker = out / "h100nvl-01", out / "h100nvl-02"
    web = (head / WEB_CONFIG_FILE.lstrip("/")).read_text()
    assert "airgap-llm: <bcrypt hash of the credential generated at install>" in web
    assert not (worker / CONFIG_FILE.lstrip("/")).exists()  # Prometheus on the first host only
    for host, ip in ((head, "192.0.2.41"), (worker, "192.0.2.42")):
        drop_in = host / "etc/systemd/system/prometheus-node-exporter.service.d/airgap-llm.conf"
        assert f"--web.listen-address={ip}:9100" in drop_in.read_text()
        assert (host / "etc/systemd/system/prometheus-node-exporter-airgap-llm-gpu.timer").is_file()
    config = yaml.safe_load((head / CONFIG_FILE.lstrip("/")).read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["192.0.2.41:8003"]
    if PROMTOOL:
        rules = promtool("check", "rules", str(head / RULES_FILE.lstrip("/")))
        assert rules.returncode == 0, rules.stdout + rules.stderr


def test_where_prometheus_answers_for_install() -> None:
    from airgap_llm.monitoring.hosts import endpoint_line, prometheus_endpoints

    plans = plan_hosts({"a": {**CPU_HOST, "ansible_host": "10.0.0.5"}, "b": CPU_HOST})
    groups = {"airgap_llm": ["a", "b"]}
    (ep,) = prometheus_endpoints(plans, groups, {}, "/inv")
    assert endpoint_line(ep) == ("Prometheus on a: http://10.0.0.5:9090 (user airgap-llm, password in "
                                 "/inv/credentials/airgap_llm_monitoring_password)")
    (ep,) = prometheus_endpoints(plans, {**groups, "airgap_llm_monitoring": ["b"]}, {}, "/inv")
    assert ep["url"] is None and "Prometheus on b: b, port 9090 (its service address)" in endpoint_line(ep)
    (ep,) = prometheus_endpoints(plans, groups, {"a": {"airgap_llm_monitoring_basic_auth": False}}, "/inv")
    assert endpoint_line(ep) == ("Prometheus on a: http://127.0.0.1:9090 (no auth, loopback only: "
                                 "ssh -L 9090:127.0.0.1:9090 a)")
    assert prometheus_endpoints(plans, groups, {"a": {"airgap_llm_monitoring_enabled": False}}, "/inv") == []
