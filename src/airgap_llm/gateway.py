"""The gateway (kind ``gateway``): one OpenAI-compatible endpoint in front of every engine service of the
inventory, served by the LiteLLM proxy from an app venv of its own (``airgap_llm.apps``).

Pure: ``config_text`` renders LiteLLM's configuration from a gateway's routes (``ServicePlan.routes``, set
by ``gpumap.check_routes`` across hosts) and the hosts' addresses; ``ENVIRONMENT`` holds the switches that
keep it offline. Checked against LiteLLM 1.108.7 (its source and a proxy run against stand-in engines):

- each route is a ``hosted_vllm/<service>`` deployment at ``http://<address>:<port>/v1`` (LiteLLM appends
  /chat/completions, /embeddings, /audio/transcriptions and /rerank to it), called with the install's key;
- services sharing a route name (``route_as``) are deployments of one model name: the router spreads
  requests over them (simple-shuffle), retries a failed request on another one (``num_retries``), puts a
  replica that fails into cooldown, and drops from its choice every replica the background health check
  (a tiny real request to each deployment every ``HEALTH_CHECK_INTERVAL_S``) found unhealthy;
- ``master_key`` is the install's API key, read from the environment (the unit's 0600 api-key.env), so
  the key is in no file the service user can read, no command line and no log. Without a database only
  the master key is accepted: no key is answered 401, another key 400 ("No connected db.").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from airgap_llm.apps import GATEWAY
from airgap_llm.plan_model import Route, ServicePlan

KEY_REFERENCE = "os.environ/VLLM_API_KEY"  # LiteLLM reads the value from the environment (api-key.env)
# LiteLLM's "mode" of each engine kind: what its health check sends and what /v1/models says.
MODES = {"chat": "chat", "ocr": "chat", "embedding": "embedding", "transcription": "audio_transcription",
         "rerank": "rerank"}
NUM_RETRIES = 2  # a failed request is sent again, to another replica where there is one
ALLOWED_FAILS = 0  # a replica that fails is put into cooldown at once ...
COOLDOWN_S = 30  # ... for this long (LiteLLM never cools down the only deployment of a model name)
HEALTH_CHECK_INTERVAL_S = 30  # background health check of every deployment; unhealthy ones are not chosen
# The environment that keeps LiteLLM offline and quiet: the app's (airgap_llm.apps.GATEWAY.environment).
ENVIRONMENT = GATEWAY.environment


def api_base(route: Route, addresses: Mapping[str, str]) -> str:
    host = addresses.get(route.host, f"<address of {route.host}>")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{route.port}/v1"


def model_list(routes: tuple[Route, ...], addresses: Mapping[str, str]) -> list[dict[str, object]]:
    """One LiteLLM deployment per routed engine service; replicas share their ``model_name``."""
    return [
        {
            "model_name": route.name,
            "litellm_params": {
                "model": f"hosted_vllm/{route.service}",  # the engine's --served-model-name
                "api_base": api_base(route, addresses),
                "api_key": KEY_REFERENCE,
            },
            "model_info": {"id": f"{route.host}/{route.service}", "mode": MODES[route.kind]},
        }
        for route in routes
    ]


def config_text(svc: ServicePlan, addresses: Mapping[str, str], managed: str) -> str:
    """LiteLLM's configuration of the gateway ``svc`` (``--config``); no secret in it."""
    config = {
        "model_list": model_list(svc.routes, addresses),
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": NUM_RETRIES,
            "allowed_fails": ALLOWED_FAILS,
            "cooldown_time": COOLDOWN_S,
            "enable_health_check_routing": True,
        },
        "general_settings": {
            "master_key": KEY_REFERENCE,
            "background_health_checks": True,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        },
    }
    groups: dict[str, list[str]] = {}
    for route in svc.routes:
        groups.setdefault(route.name, []).append(f"{route.host}/{route.service}")
    lines = [f"# {managed}", f"# LiteLLM proxy configuration of the gateway {svc.name}: every engine service of the "
             "inventory by its route name.", "# Model names and their deployments:"]
    lines += [f"#   {name}: {', '.join(where)}" for name, where in groups.items()]
    return "\n".join(lines) + "\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def environment_text(svc: ServicePlan) -> list[str]:
    """The gateway's lines of its environment file: the offline switches, each with its reason."""
    lines = []
    for name, value, why in ENVIRONMENT:
        lines += [f"# {why}", f"{name}={value}"]
    return lines


VALIDATED_KINDS = ("chat", "embedding", "transcription", "rerank")  # one request through the gateway per kind


def validation_requests(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What validate asks each gateway of a host (the plan's services, as the role sees them): per gateway
    one request to the first route of each kind in ``VALIDATED_KINDS``; ``routes``: every model name it
    must list."""
    out: list[dict[str, Any]] = []
    for svc in services:
        if svc.get("kind") != "gateway":
            continue
        routes = [r for r in svc.get("routes") or [] if isinstance(r, dict)]
        names = list(dict.fromkeys(str(r["name"]) for r in routes))
        base = {"name": svc["name"], "kind": "gateway", "port": svc["port"], "routes": names}
        out.append({**base, "route": None, "route_kind": None})
        for kind in VALIDATED_KINDS:
            first = next((r for r in routes if r["kind"] == kind), None)
            if first is not None:
                out.append({**base, "route": first["name"], "route_kind": kind})
    return out
