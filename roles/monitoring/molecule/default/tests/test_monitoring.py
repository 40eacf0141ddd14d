"""The monitoring scenario: Prometheus scrapes every target, answers PromQL, and only with the credential."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ADDRESS = "10.213.7.11"
PROMETHEUS = f"http://{ADDRESS}:9090"
USER = "airgap-llm"


def password() -> str:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "credentials" / "airgap_llm_monitoring_password"
    return path.read_text().strip()


def get(path: str, auth: bool = True, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(PROMETHEUS + path, method=method)
    if auth:
        token = base64.b64encode(f"{USER}:{password()}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if body.startswith(b"{") else body.decode()
    except urllib.error.HTTPError as err:
        return err.code, None


def query(promql: str) -> list[dict[str, Any]]:
    status, body = get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert status == 200 and body["status"] == "success", body
    return list(body["data"]["result"])


def wait_for(check: Any, timeout: float = 40) -> Any:
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > end:
            return result
        time.sleep(1)


def test_basic_auth_is_enforced() -> None:
    assert get("/api/v1/targets", auth=False)[0] == 401
    assert get("/-/ready", auth=False)[0] == 401
    request = urllib.request.Request(PROMETHEUS + "/api/v1/targets")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 401
    assert get("/-/ready")[0] == 200


def test_every_target_is_up() -> None:
    def targets() -> list[dict[str, Any]]:
        status, body = get("/api/v1/targets")
        assert status == 200
        active = body["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else []

    active = wait_for(targets)
    assert active, get("/api/v1/targets")[1]
    seen = sorted((t["labels"]["job"], t["scrapeUrl"]) for t in active)
    assert seen == [
        ("airgap_llm_app", f"http://{ADDRESS}:8001/metrics"),
        ("airgap_llm_app", f"http://{ADDRESS}:8003/metrics"),
        ("node", f"http://{ADDRESS}:9100/metrics"),
    ]


def test_promql_answers_per_service() -> None:
    running = wait_for(lambda: query("vllm:num_requests_running"))
    assert sorted(r["metric"]["service"] for r in running) == ["chat", "embed"]
    assert {r["metric"]["host"] for r in running} == {"target-1"}
    units = wait_for(lambda: query('node_systemd_unit_state{state="active",name=~"airgap-llm-.+"} == 1'))
    assert sorted(r["metric"]["name"] for r in units) == ["airgap-llm-chat.service", "airgap-llm-embed.service"]


def test_a_request_moves_the_generation_counter() -> None:
    before = float(wait_for(lambda: query('vllm:generation_tokens_total{service="chat"}'))[0]["value"][1])
    urllib.request.urlopen(urllib.request.Request(f"http://{ADDRESS}:8003/v1/generate", data=b"{}"), timeout=10)
    after = wait_for(lambda: [r for r in query('vllm:generation_tokens_total{service="chat"}')
                              if float(r["value"][1]) >= before + 10])
    assert after, query('vllm:generation_tokens_total{service="chat"}')


def test_alert_rules_are_loaded() -> None:
    status, body = get("/api/v1/rules")
    assert status == 200
    names = {r["name"] for g in body["data"]["groups"] for r in g["rules"]}
    assert {"AirgapLlmServiceDown", "AirgapLlmKvCacheFull", "AirgapLlmGpuHot", "AirgapLlmModelDiskLow"} <= names
    assert all(r["health"] != "err" for g in body["data"]["groups"] for r in g["rules"])


def test_listeners_only_on_the_service_address(host: Any) -> None:
    listening = host.check_output("ss -Hltn")
    for port in (9090, 9100):
        addresses = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
        assert addresses == [f"{ADDRESS}:{port}"], listening


def test_files_and_modes(host: Any) -> None:
    for path in ("/etc/prometheus/airgap-llm.yml", "/etc/prometheus/airgap-llm-rules.yml",
                 "/etc/prometheus/airgap-llm-web.yml"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "prometheus", 0o640), path
        assert f.content_string.startswith("# Ansible managed")
    web = host.file("/etc/prometheus/airgap-llm-web.yml").content_string
    assert "$2b$10$" in web and password() not in web


@pytest.mark.parametrize("unit", ["prometheus.service", "prometheus-node-exporter.service"])
def test_hardened(host: Any, unit: str) -> None:
    assert host.service(unit).is_enabled and host.service(unit).is_running
    exposure = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    print(unit, exposure)
    score = float(exposure.split()[-3] if "Overall" in exposure else exposure.split()[-2])
    assert score <= 3.0, exposure


def test_status_took_the_load_from_prometheus(host: Any) -> None:
    report = json.loads(host.file("/root/status-report.json").content_string)
    chat = next(s for s in report["services"] if s["name"] == "chat")
    assert chat["ok"] and chat["load"]["source"] == "Prometheus, the last minute"
    assert chat["load"]["generation_tokens_per_s"] is not None
