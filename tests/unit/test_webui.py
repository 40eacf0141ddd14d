"""The web UI's pure parts: the gateway it talks to (across hosts), its environment and secrets, its unit
and restart inputs, the bundle's wheel set for it, and validate's verdicts on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airgap_llm import webui
from airgap_llm.apps import WEBUI
from airgap_llm.bundle.spec import bundle_spec
from airgap_llm.gpumap import plan_hosts
from airgap_llm.host_files import helper_files, restart_inputs, secret_files, service_dirs, service_files, unit_names
from airgap_llm.units import UnitSettings
from airgap_llm.validation import results

from .conftest import REPO

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def host(address: str = "10.0.0.4", **services: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "embed": {"kind": "embedding", "model": MINILM, "revision": "main", "port": 8001, "gpus": []},
        "chat": {"kind": "chat", "model": SMOLLM, "revision": "main", "port": 8003, "gpus": []},
        "gateway": {"kind": "gateway", "gpus": []},
        "webui": {"kind": "webui", "gpus": []},
    }
    base.update(services)
    return {"airgap_llm_target_os": "debian-12", "ansible_host": address,
            "airgap_llm_services": {k: v for k, v in base.items() if v}}


def files_of(plan: Any, address: str = "10.0.0.4", addresses: dict[str, str] | None = None) -> dict[str, str]:
    settings = UnitSettings.from_vars({})
    return {f.path: f.content for f in service_files(plan, settings, "managed", address, None, addresses or {})}


def env_of(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: value[1:-1] if value[:1] == value[-1:] == "'" else value for name, value in pairs}


def test_a_web_ui_defaults_to_port_3000_and_talks_to_its_hosts_gateway() -> None:
    (plan,) = plan_hosts({"h1": host()})
    assert plan.ok, plan.problems
    ui = next(s for s in plan.services if s.kind == "webui")
    assert (ui.port, ui.health_path, ui.uses_app, ui.gpus) == (3000, "/health", True, ())
    assert ui.upstream is not None and (ui.upstream.host, ui.upstream.service, ui.upstream.port) == ("h1", "gateway",
                                                                                                     8080)
    assert [r.name for r in ui.routes] == ["embed", "chat"]


def test_a_web_ui_without_a_gateway_is_refused_naming_the_fix() -> None:
    (plan,) = plan_hosts({"h1": host(gateway={})})
    assert [(p.rule, p.service) for p in plan.problems] == [("webui", "webui")]
    assert "the inventory has none: add a service of kind gateway" in str(plan.problems[0])


def test_a_web_ui_on_a_host_without_a_gateway_uses_the_inventorys_gateway_elsewhere() -> None:
    h2 = {"airgap_llm_target_os": "debian-12", "ansible_host": "10.0.0.5",
          "airgap_llm_services": {"ui": {"kind": "webui", "gpus": []}}}
    plans = plan_hosts({"h1": host(webui={}), "h2": h2})
    assert all(p.ok for p in plans), [p.problems for p in plans]
    ui = plans[1].services[0]
    env = env_of(files_of(plans[1], "10.0.0.5", {"h1": "10.0.0.4"})["/etc/airgap-llm/ui.env"])
    assert env["OPENAI_API_BASE_URL"] == "http://10.0.0.4:8080/v1"
    assert ui.upstream is not None and ui.upstream.host == "h1"


def test_a_web_ui_with_a_model_or_gpus_is_refused() -> None:
    (plan,) = plan_hosts({"h1": host(webui={"kind": "webui", "gpus": [0], "model": MINILM})})
    assert {p.rule for p in plan.problems} >= {"model"}
    texts = " ".join(str(p) for p in plan.problems)
    assert "a web UI takes no model" in texts


def test_the_environment_points_chat_rag_and_speech_at_the_gateway_and_keeps_it_offline() -> None:
    whisper = {"kind": "transcription", "model": "openai/whisper-tiny", "revision": "main", "port": 8004, "gpus": []}
    (plan,) = plan_hosts({"h1": host(whisper=whisper)})
    env = env_of(files_of(plan)["/etc/airgap-llm/webui.env"])
    base = "http://10.0.0.4:8080/v1"
    assert env["OPENAI_API_BASE_URL"] == env["RAG_OPENAI_API_BASE_URL"] == env["AUDIO_STT_OPENAI_API_BASE_URL"] == base
    assert (env["RAG_EMBEDDING_ENGINE"], env["RAG_EMBEDDING_MODEL"]) == ("openai", "embed")
    assert (env["AUDIO_STT_ENGINE"], env["AUDIO_STT_MODEL"]) == ("openai", "whisper")
    assert env["DEFAULT_MODELS"] == "chat"
    # The model menu: the chat models only (embeddings and speech serve RAG and the microphone).
    assert json.loads(env["OPENAI_API_CONFIGS"]) == {"0": {"enable": True, "model_ids": ["chat"]}}
    # No tool_choice=auto sent to an engine started without tool parsing (vLLM would refuse every chat).
    assert json.loads(env["DEFAULT_MODEL_PARAMS"]) == {"function_calling": "legacy"}
    assert env["DATA_DIR"] == "/var/lib/airgap-llm/apps/webui"
    assert env["STATIC_DIR"].startswith(env["DATA_DIR"])  # the venv is read-only to the service
    for name, value, _ in WEBUI.environment:
        assert env[name] == value
    assert (env["OFFLINE_MODE"], env["ENABLE_OLLAMA_API"], env["ENABLE_PERSISTENT_CONFIG"]) == (
        "true", "false", "false")
    assert not set(env) & set(webui.SECRET_VARS) and "WEBUI_ADMIN_PASSWORD" not in env


def test_without_an_embedding_service_documents_are_not_embedded_and_a_reranker_needs_one() -> None:
    (plan,) = plan_hosts({"h1": host(embed={})})
    env = env_of(files_of(plan)["/etc/airgap-llm/webui.env"])
    assert env["BYPASS_EMBEDDING_AND_RETRIEVAL"] == "true" and "RAG_EMBEDDING_ENGINE" not in env
    rerank = {"kind": "rerank", "model": "BAAI/bge-reranker-base", "revision": "main", "port": 8005, "gpus": []}
    (plan,) = plan_hosts({"h1": host(rerank=rerank)})
    env = env_of(files_of(plan)["/etc/airgap-llm/webui.env"])
    assert (env["RAG_RERANKING_ENGINE"], env["RAG_RERANKING_MODEL"]) == ("external", "rerank")
    assert env["RAG_EXTERNAL_RERANKER_URL"] == "http://10.0.0.4:8080/v1/rerank"
    assert env["ENABLE_RAG_HYBRID_SEARCH"] == "true"


def test_the_secrets_file_holds_the_key_for_every_call_the_session_secret_and_the_password() -> None:
    env = env_of(webui.secret_text("KEY", "SESSION", "PASSWORD"))
    assert {name: env[name] for name in webui.SECRET_VARS} == dict.fromkeys(webui.SECRET_VARS, "KEY")
    assert (env["WEBUI_SECRET_KEY"], env["WEBUI_ADMIN_PASSWORD"]) == ("SESSION", "PASSWORD")


def test_the_unit_runs_open_webui_from_its_venv_after_the_gateway_with_its_secrets_and_data() -> None:
    (plan,) = plan_hosts({"h1": host()})
    unit = files_of(plan)["/etc/systemd/system/airgap-llm-webui.service"]
    assert ("ExecStart=/opt/airgap-llm/apps/webui/venv/bin/open-webui serve --host 10.0.0.4 --port 3000"
            in unit.splitlines())
    assert "After=network-online.target airgap-llm-gateway.service" in unit
    assert "EnvironmentFile=/etc/airgap-llm/webui.secret.env" in unit
    assert "api-key.env" not in unit  # it gets the key from its own secrets file, not as VLLM_API_KEY
    assert "ReadWritePaths=/var/cache/airgap-llm /var/lib/airgap-llm/apps/webui" in unit
    assert "ExecStartPost=/opt/airgap-llm/libexec/wait-healthy http://10.0.0.4:3000/health 1800" in unit
    assert unit_names(plan)[-2:] == ["airgap-llm-gateway.service", "airgap-llm-webui.service"]
    inputs = restart_inputs(plan)["airgap-llm-webui.service"]
    assert "/opt/airgap-llm/apps/webui/venv" in inputs and "/etc/airgap-llm/webui.secret.env" in inputs


def test_the_bundle_carries_the_web_uis_wheels_on_the_cpu_torch() -> None:
    plans = plan_hosts({"h1": host()})
    spec = bundle_spec(plans)
    sets = {a.app: a for a in spec.app_sets}
    assert sets["webui"].requirements == ("open-webui==0.12.4", "torch==2.13.0+cpu")
    assert sets["webui"].dir == "apps/webui/cp311-manylinux_2_36_x86_64"


def ok(item: dict[str, Any], status: int = 200, body: Any = None) -> dict[str, Any]:
    return {"item": item, "status": status, "json": body, "elapsed": 0.1}


def test_validate_judges_health_login_models_and_chat_through_the_web_ui() -> None:
    (plan,) = plan_hosts({"h1": host()})
    (request,) = webui.validation_requests([s.as_dict() for s in plan.services])
    assert (request["email"], request["chat"], request["routes"]) == ("admin@airgap-llm.local", "chat", ["chat"])
    verdicts = results({
        "webui_health": {"results": [ok(request, body={"status": True})]},
        "webui_login": {"results": [ok(request, body={"token": "t", "role": "admin"})]},
        "webui_models": {"results": [ok(request, body={"data": [{"id": "chat"}]})]},
        "webui_chat": {"results": [ok(request, body={"choices": [{"message": {"content": "Paris."}}]})]},
    })
    assert [(v["check"], v["ok"]) for v in verdicts] == [("webui health", True), ("webui login", True),
                                                          ("webui models", True), ("webui chat", True)]
    assert verdicts[1]["detail"] == "signed in as admin@airgap-llm.local (admin)"
    bad = results({
        "webui_login": {"results": [ok(request, 400, {"detail": "The email or password provided is incorrect."})]},
        "webui_models": {"results": [ok(request, body={"data": [{"id": "embed"}]})]},
        "webui_chat": {"results": [ok(request, body={"choices": [{"message": {"content": ""}}]})]},
    })
    assert [v["ok"] for v in bad] == [False, False, False]
    assert "incorrect" in bad[0]["detail"] and "['chat'] not in ['embed']" == bad[1]["detail"]


def test_render_shows_the_web_uis_secrets_file_with_placeholders(tmp_path: Any) -> None:
    from airgap_llm.render import SECRET_PLACEHOLDER, render_host

    (plan,) = plan_hosts({"h1": host()})
    rendered = render_host(plan, {"airgap_llm_inference_service_api_key_file": "k"}, {}, "managed")
    secret = next(f for f in rendered.files if f.path == "/etc/airgap-llm/webui.secret.env")
    assert (secret.mode, secret.owner, secret.secret) == ("0600", "root", True)
    assert set(env_of(secret.content).values()) == {SECRET_PLACEHOLDER}
    assert any("web UI secrets" in note for note in rendered.notes)


def test_the_layout_gives_the_web_ui_a_data_directory_and_its_secrets_0600() -> None:
    (plan,) = plan_hosts({"h1": host()})
    dirs = {d.path: d for d in service_dirs(plan, UnitSettings(user="svc", group="grp"))}
    assert list(dirs)[:4] == ["/etc/airgap-llm", "/var/cache/airgap-llm", "/opt/airgap-llm/libexec",
                              "/opt/airgap-llm/libexec/python"]
    data = dirs["/var/lib/airgap-llm/apps/webui"]
    assert (data.owner, data.group, data.mode) == ("svc", "grp", "0750")
    assert (dirs["/etc/airgap-llm"].owner, dirs["/etc/airgap-llm"].group) == ("root", "grp")
    files = secret_files(plan, "KEY", "SESSION", "PASSWORD")
    assert [(f.path, f.mode, f.owner, f.secret) for f in files] == [
        ("/etc/airgap-llm/api-key.env", "0600", "root", True),
        ("/etc/airgap-llm/webui.secret.env", "0600", "root", True),
    ]
    assert files[0].content == "VLLM_API_KEY=KEY\n"
    assert files[1].content == webui.secret_text("KEY", "SESSION", "PASSWORD")
    # Serving without a key: no key file (the role removes it), and the web UI calls the gateway with "none".
    (unkeyed,) = secret_files(plan, "", "SESSION", "PASSWORD")
    assert unkeyed.content == webui.secret_text("none", "SESSION", "PASSWORD")


def test_the_helpers_are_laid_out_from_the_role_files() -> None:
    (plan,) = plan_hosts({"h1": host()})
    role_files = REPO / "roles" / "inference_service" / "files"
    sources = {p.name: p.read_text() for p in role_files.iterdir()}
    files = {f.path: f for f in helper_files(plan, sources)}
    assert files["/opt/airgap-llm/libexec/wait-healthy"].mode == "0755"
    assert files["/opt/airgap-llm/libexec/python/airgap_llm_guard.py"].mode == "0644"
    assert files["/opt/airgap-llm/libexec/services-to-restart"].content == sources["services-to-restart"]
    assert {p.rsplit("/", 1)[-1] for p in files} == set(sources)  # every file of the role is a helper, once
    with pytest.raises(ValueError, match="helper sources missing: wait-healthy"):
        helper_files(plan, {k: v for k, v in sources.items() if k != "wait-healthy"})
