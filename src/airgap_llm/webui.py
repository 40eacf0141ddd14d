"""The web UI (kind ``webui``): Open WebUI from an app venv of its own (``airgap_llm.apps``), in front of the
inventory's gateway.

Pure: ``environment_lines`` renders the non-secret part of its configuration from the plan (the gateway it
talks to, ``ServicePlan.upstream``, and the routes that gateway serves); ``secret_text`` its 0600 file (the
install's API key as the key for the gateway, the session secret and the admin's password). Checked against
Open WebUI 0.12.4 (its env.py, config.py and a run with no route out):

- chat: its OpenAI connection is the gateway's ``/v1`` with the install's key; its model menu offers the
  inventory's chat and OCR services by their route names (``OPENAI_API_CONFIGS``' ``model_ids``), a new
  chat starting on the first (``DEFAULT_MODELS``);
- RAG: documents are embedded through the gateway (``RAG_EMBEDDING_ENGINE=openai``) by the first embedding
  route, so the web UI neither loads nor downloads a sentence-transformers model; the vector store is its own
  (chromadb, under its data directory); with a rerank route, hybrid search reranks through it (``external``);
- speech: transcription through the gateway (``AUDIO_STT_ENGINE=openai``) by the first transcription route;
- the admin account is made at its first start from ``WEBUI_ADMIN_EMAIL`` / ``WEBUI_ADMIN_PASSWORD`` when
  the database has no user yet; sign-up is off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airgap_llm.apps import WEBUI
from airgap_llm.gateway import api_base
from airgap_llm.plan_model import ServicePlan

ADMIN_EMAIL = "admin@airgap-llm.local"  # the generated account's login (a service's env may set another)
ADMIN_NAME = "airgap-llm admin"
SECRET_VARS = ("OPENAI_API_KEY", "RAG_OPENAI_API_KEY", "AUDIO_STT_OPENAI_API_KEY", "RAG_EXTERNAL_RERANKER_API_KEY")


def secret_path(config_dir: str, svc: ServicePlan) -> str:
    """The web UI's 0600 environment file (root only; systemd reads it before dropping privileges)."""
    return f"{config_dir}/{svc.name}.secret.env"


CHAT_KINDS = ("chat", "ocr")  # what the web UI's model menu offers


def first_route(svc: ServicePlan, kind: str) -> str | None:
    return next((r.name for r in svc.routes if r.kind == kind), None)


def chat_models(svc: ServicePlan) -> list[str]:
    """The route names of the models people chat with through the web UI (chat and OCR services)."""
    return list(dict.fromkeys(r.name for r in svc.routes if r.kind in CHAT_KINDS))


def environment_lines(svc: ServicePlan, addresses: Mapping[str, str], data_dir: str) -> list[str]:
    """The web UI's lines of its environment file: where it keeps its data, the gateway it talks to, what
    it uses for RAG and speech, and the switches that keep it offline, each with its reason."""
    if svc.upstream is None:
        raise ValueError(f"web UI {svc.name} has no gateway (the plan's cross-host rules set it)")
    base = api_base(svc.upstream, addresses)
    lines = [f"# Open WebUI {svc.name}: every model of the gateway {svc.upstream.host}/{svc.upstream.service}",
             f"DATA_DIR={data_dir}", f"STATIC_DIR={data_dir}/static",
             f"WEBUI_ADMIN_EMAIL={ADMIN_EMAIL}", f"WEBUI_ADMIN_NAME={ADMIN_NAME}",
             "ENABLE_OPENAI_API=true", f"OPENAI_API_BASE_URL={base}"]
    talkers = chat_models(svc)
    # Single quotes: systemd takes the JSON as it is (it would strip double quotes outside them).
    configs = json.dumps({"0": {"enable": True, "model_ids": talkers}}, separators=(",", ":"))
    lines += ["# The models people chat with (chat and OCR services); embeddings, speech and reranking serve RAG",
              "# and the microphone below, not the model menu.", f"OPENAI_API_CONFIGS='{configs}'"]
    if talkers:
        lines += ["# A new chat starts on the first of them.", f"DEFAULT_MODELS={talkers[0]}"]
    params = json.dumps({"function_calling": "legacy"}, separators=(",", ":"))
    lines += ["# Tools by the web UI's own prompt, not the engine's tool calls: its default ('native') sends",
              "# tool_choice=auto, which vLLM refuses unless the service runs with --enable-auto-tool-choice and a",
              "# --tool-call-parser for its model (set both, and this in the service's env, to use them).",
              f"DEFAULT_MODEL_PARAMS='{params}'"]
    embedding = first_route(svc, "embedding")
    if embedding:
        lines += ["# Documents are embedded by the embedding service, through the gateway.",
                  "RAG_EMBEDDING_ENGINE=openai", f"RAG_EMBEDDING_MODEL={embedding}", f"RAG_OPENAI_API_BASE_URL={base}"]
    else:
        lines += ["# No embedding service in the inventory: documents are not embedded (no local model either).",
                  "BYPASS_EMBEDDING_AND_RETRIEVAL=true"]
    stt = first_route(svc, "transcription")
    if stt:
        lines += ["# Speech to text by the transcription service, through the gateway.",
                  "AUDIO_STT_ENGINE=openai", f"AUDIO_STT_MODEL={stt}", f"AUDIO_STT_OPENAI_API_BASE_URL={base}"]
    rerank = first_route(svc, "rerank")
    if rerank and embedding:
        lines += ["# Hybrid search, reranked by the rerank service through the gateway.",
                  "ENABLE_RAG_HYBRID_SEARCH=true", "RAG_RERANKING_ENGINE=external", f"RAG_RERANKING_MODEL={rerank}",
                  f"RAG_EXTERNAL_RERANKER_URL={base}/rerank"]
    for name, value, why in WEBUI.environment:
        lines += [f"# {why}", f"{name}={value}"]
    return lines


def secret_text(api_key: str, session_secret: str, admin_password: str) -> str:
    """The web UI's secrets: the install's key for every call to the gateway, the secret that signs its
    sessions, and the generated admin's password."""
    lines = [f"{name}={api_key}" for name in SECRET_VARS]
    lines += [f"WEBUI_SECRET_KEY={session_secret}", f"WEBUI_ADMIN_PASSWORD={admin_password}"]
    return "\n".join(lines) + "\n"


def validation_requests(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What validate asks each web UI of a host (the plan's services, as the role sees them): its /health, a
    login with the generated account, its model list (every chat and OCR route), and one chat through its own
    API (the first chat route)."""
    out = []
    for svc in services:
        if svc.get("kind") != "webui":
            continue
        routes = [r for r in svc.get("routes") or [] if isinstance(r, dict)]
        chat = next((str(r["name"]) for r in routes if r.get("kind") == "chat"), None)
        email = dict(svc.get("env") or {}).get("WEBUI_ADMIN_EMAIL", ADMIN_EMAIL)
        out.append({"name": svc["name"], "kind": "webui", "port": svc["port"], "email": email, "chat": chat,
                    "routes": list(dict.fromkeys(str(r["name"]) for r in routes if r.get("kind") in CHAT_KINDS))})
    return out
