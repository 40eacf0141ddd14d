"""The gateway's pure parts: routes across hosts and replicas (route_as), LiteLLM's configuration, the
unit and its restart inputs, the hash-pinned requirements of an app's wheel set, the marker closure for
the hosts' Python, and validate's verdicts through the gateway."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import yaml

from airgap_llm import gateway
from airgap_llm.apps import GATEWAY, missing_for_target, refused, render_requirements, wheel_hashes
from airgap_llm.bundle.spec import bundle_spec
from airgap_llm.gpumap import plan_hosts
from airgap_llm.host_files import restart_inputs, service_files, unit_names
from airgap_llm.units import UnitSettings
from airgap_llm.validation import results

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def cpu_host(**services: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "embed": {"kind": "embedding", "model": MINILM, "revision": "main", "port": 8001, "gpus": []},
        "chat": {"kind": "chat", "model": SMOLLM, "revision": "main", "port": 8003, "gpus": []},
        "gateway": {"kind": "gateway", "gpus": []},
    }
    base.update(services)
    return {"airgap_llm_target_os": "debian-12", "ansible_host": "10.0.0.4",
            "airgap_llm_services": {k: v for k, v in base.items() if v}}


def test_gateway_defaults_to_port_8080_and_its_readiness_path() -> None:
    (plan,) = plan_hosts({"h1": cpu_host()})
    assert plan.ok, plan.problems
    gw = next(s for s in plan.services if s.kind == "gateway")
    assert (gw.port, gw.health_path, gw.uses_app, gw.uses_engine) == (8080, "/health/readiness", True, False)
    assert [(r.name, r.service, r.host, r.port, r.kind) for r in gw.routes] == [
        ("embed", "embed", "h1", 8001, "embedding"), ("chat", "chat", "h1", 8003, "chat")]


def test_replicas_on_two_hosts_share_one_model_name() -> None:
    """route_as: chat on chat-2 (another host) makes it a replica of chat; the gateway's model list has two
    deployments named chat, each at its own host's address."""
    h2 = {"airgap_llm_target_os": "debian-12", "ansible_host": "10.0.0.5", "airgap_llm_services": {
        "chat-2": {"kind": "chat", "model": SMOLLM, "revision": "main", "port": 8003, "gpus": [], "route_as": "chat"}}}
    plans = plan_hosts({"h1": cpu_host(), "h2": h2})
    assert all(p.ok for p in plans), [p.problems for p in plans]
    gw = next(s for s in plans[0].services if s.kind == "gateway")
    config = yaml.safe_load(gateway.config_text(gw, {"h1": "10.0.0.4", "h2": "10.0.0.5"}, "managed"))
    chats = [m for m in config["model_list"] if m["model_name"] == "chat"]
    assert [(m["litellm_params"]["model"], m["litellm_params"]["api_base"], m["model_info"]["id"]) for m in chats] == [
        ("hosted_vllm/chat", "http://10.0.0.4:8003/v1", "h1/chat"),
        ("hosted_vllm/chat-2", "http://10.0.0.5:8003/v1", "h2/chat-2"),
    ]
    assert config["router_settings"] == {"routing_strategy": "simple-shuffle", "num_retries": 2, "allowed_fails": 0,
                                         "cooldown_time": 30, "enable_health_check_routing": True}
    assert config["general_settings"]["background_health_checks"] is True


def test_route_as_shared_by_different_models_is_refused_on_every_member() -> None:
    (plan,) = plan_hosts({"h1": cpu_host(embed={"kind": "embedding", "model": MINILM, "revision": "main",
                                                 "port": 8001, "gpus": [], "route_as": "chat"})})
    assert sorted((p.service, p.rule) for p in plan.problems) == [("chat", "route-as"), ("embed", "route-as")]
    assert not next(s for s in plan.services if s.kind == "gateway").routes


def test_same_name_different_models_on_two_hosts_is_fine_without_a_gateway() -> None:
    h1 = cpu_host(gateway={})
    h2 = {"airgap_llm_target_os": "debian-12", "airgap_llm_services": {
        "chat": {"kind": "chat", "model": "org/other", "revision": "main", "port": 8003, "gpus": []}}}
    assert all(p.ok for p in plan_hosts({"h1": h1, "h2": h2}))
    with_gateway = plan_hosts({"h1": cpu_host(), "h2": h2})
    assert [p.rule for p in with_gateway[0].problems] == ["route-as"]


def test_config_has_no_secret_and_takes_the_key_from_the_environment() -> None:
    (plan,) = plan_hosts({"h1": cpu_host()})
    gw = next(s for s in plan.services if s.kind == "gateway")
    text = gateway.config_text(gw, {"h1": "0.0.0.0"}, "managed")
    config = yaml.safe_load(text)
    assert config["general_settings"]["master_key"] == "os.environ/VLLM_API_KEY"
    assert {m["litellm_params"]["api_key"] for m in config["model_list"]} == {"os.environ/VLLM_API_KEY"}
    assert {m["litellm_params"]["api_base"] for m in config["model_list"]} == {
        "http://127.0.0.1:8001/v1", "http://127.0.0.1:8003/v1"}  # a wildcard bind: the loopback address
    assert {m["model_info"]["mode"] for m in config["model_list"]} == {"embedding", "chat"}


def test_unit_env_and_config_files_of_the_gateway() -> None:
    (plan,) = plan_hosts({"h1": cpu_host()})
    files = {f.path: f for f in service_files(plan, UnitSettings(), "managed", "10.0.0.4")}
    unit = files["/etc/systemd/system/airgap-llm-gateway.service"].content
    assert ("ExecStart=/opt/airgap-llm/apps/gateway/venv/bin/litellm --config /etc/airgap-llm/gateway.yaml "
            "--host 10.0.0.4 --port 8080") in unit
    assert "ExecStartPost=/opt/airgap-llm/libexec/wait-healthy http://10.0.0.4:8080/health/readiness" in unit
    assert "After=network-online.target airgap-llm-embed.service airgap-llm-chat.service" in unit
    assert "EnvironmentFile=-/etc/airgap-llm/api-key.env" in unit and "PrivateDevices=true" in unit
    env = files["/etc/airgap-llm/gateway.env"].content
    for line in ("LITELLM_LOCAL_MODEL_COST_MAP=True", "LITELLM_TELEMETRY_DISABLED=true", "LITELLM_MODE=PRODUCTION"):
        assert line in env.splitlines()
    config = files["/etc/airgap-llm/gateway.yaml"]
    assert (config.owner, config.group, config.mode, config.secret) == ("root", "airgap-llm", "0640", False)
    assert unit_names(plan)[-1] == "airgap-llm-gateway.service"  # started after the engines it routes


def test_gateway_restarts_on_its_venv_config_and_key_not_on_the_engines() -> None:
    (plan,) = plan_hosts({"h1": cpu_host()})
    inputs = restart_inputs(plan)["airgap-llm-gateway.service"]
    assert "/opt/airgap-llm/apps/gateway/venv" in inputs and "/etc/airgap-llm/gateway.yaml" in inputs
    assert "/etc/airgap-llm/api-key.env" in inputs
    assert "/opt/airgap-llm/venv" not in inputs and not any("/models/" in p for p in inputs)


def test_bundle_spec_has_one_app_set_for_the_gateway_hosts() -> None:
    spec = bundle_spec(plan_hosts({"h1": cpu_host()}))
    (app,) = spec.app_sets
    assert (app.app, app.dir, app.python_full) == ("gateway", "apps/gateway/cp311-manylinux_2_36_x86_64", "3.11.2")
    assert app.requirements == GATEWAY.requirements
    assert not bundle_spec(plan_hosts({"h1": cpu_host(gateway={})})).app_sets


def test_plan_names_the_app_venv_the_host_builds() -> None:
    (plan,) = plan_hosts({"h1": cpu_host()})
    (app,) = plan.as_dict()["apps"]
    assert app["venv"] == "/opt/airgap-llm/apps/gateway/venv"
    assert app["wheel_dir"] == "apps/gateway/cp311-manylinux_2_36_x86_64"
    assert app["environment"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def wheel(directory: Path, name: str, version: str, requires: list[str] = ()) -> str:  # type: ignore[assignment]
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        meta += [f"Requires-Dist: {r}" for r in requires]
        zf.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", "\n".join(meta) + "\n\nbody\n")
    (directory / filename).write_bytes(buf.getvalue())
    return filename


def test_requirements_pin_every_wheel_with_its_sha256_and_keep_the_apps_extras(tmp_path: Path) -> None:
    names = [wheel(tmp_path, "litellm", "1.108.7"), wheel(tmp_path, "prisma", "0.15.0"),
             wheel(tmp_path, "Async_Timeout", "5.0.1")]
    hashes = wheel_hashes(tmp_path, names)
    assert hashes[names[0]] == hashlib.sha256((tmp_path / names[0]).read_bytes()).hexdigest()
    text = render_requirements(GATEWAY, hashes)
    lines = text.splitlines()
    assert lines[0].startswith("# airgap-llm app wheel set")
    assert lines[1:] == [f"async-timeout==5.0.1 --hash=sha256:{hashes[names[2]]}",
                         f"litellm[proxy]==1.108.7 --hash=sha256:{hashes[names[0]]}",
                         f"prisma==0.15.0 --hash=sha256:{hashes[names[1]]}"]


def test_known_malicious_releases_are_refused() -> None:
    assert refused(GATEWAY, ["litellm-1.82.7-py3-none-any.whl", "litellm-1.108.7-py3-none-any.whl"]) == [
        "litellm-1.82.7-py3-none-any.whl"]


def test_missing_for_target_follows_markers_for_the_hosts_python(tmp_path: Path) -> None:
    """redis needs async-timeout below 3.11.3: missing for Debian 12's 3.11.2, not for 3.11.7."""
    wheel(tmp_path, "app", "1.0", ["redis>=5", 'extra-only>=1; extra == "proxy"', 'old>=1; python_version < "3.9"'])
    wheel(tmp_path, "redis", "8.1.0", ['async-timeout>=4.0.3; python_full_version < "3.11.3"'])
    assert missing_for_target(tmp_path, ["app==1.0"], "3.11.2") == ["async-timeout>=4.0.3"]
    assert missing_for_target(tmp_path, ["app==1.0"], "3.11.7") == []
    assert missing_for_target(tmp_path, ["app[proxy]==1.0"], "3.11.7") == ["extra-only>=1"]
    wheel(tmp_path, "async-timeout", "3.0", [])
    assert missing_for_target(tmp_path, ["app==1.0"], "3.11.2") == ["async-timeout>=4.0.3"]  # too old a version


def uri(item: dict[str, Any], status: int, json: Any = None) -> dict[str, Any]:
    return {"item": item, "status": status, "json": json, "elapsed": 0.1}


def test_validate_judges_the_gateway() -> None:
    (plan,) = plan_hosts({"h1": cpu_host()})
    requests = gateway.validation_requests([s.as_dict() for s in plan.services])
    assert [(r["route"], r["route_kind"]) for r in requests] == [(None, None), ("chat", "chat"),
                                                                  ("embed", "embedding")]
    top, chat, embed = requests
    registered = {
        "gateway_auth": {"results": [uri(top, 401)]},
        "gateway_models": {"results": [uri(top, 200, {"data": [{"id": "chat"}]})]},
        "gateway_chat": {"results": [uri(chat, 200, {"choices": [{"message": {"content": "Paris."}}]})]},
        "gateway_embedding": {"results": [uri(embed, 200, {"data": [{"embedding": [0.1, 0.2]}]})]},
    }
    verdicts = {v["check"]: v for v in results(registered)}
    assert verdicts["gateway auth"]["ok"] and verdicts["gateway chat"]["detail"] == "chat: 'Paris.'"
    assert not verdicts["gateway models"]["ok"] and verdicts["gateway models"]["detail"] == (
        "['embed'] not in ['chat']")
    assert verdicts["gateway embedding"]["ok"]
    registered["gateway_auth"] = {"results": [uri(top, 200)]}
    assert not {v["check"]: v for v in results(registered)}["gateway auth"]["ok"]
