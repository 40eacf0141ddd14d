"""Judge the answers of the validate role's requests. Pure: takes registered results, returns verdicts.

The role sends the requests from each host (ansible.builtin.uri) and hands the registered loop results
here through the ``airgap_llm_validation_results`` filter; the CLI reads the same verdicts back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

CHECKS = ("auth", "models", "chat", "embedding", "transcription", "ocr", "rerank", "app",
          "gateway_auth", "gateway_models", "gateway_chat", "gateway_embedding", "gateway_transcription",
          "gateway_rerank", "webui_health", "webui_login", "webui_models", "webui_chat")
# Through a gateway: the check a request to a route of this kind makes, and its verdict's name.
GATEWAY_CHECKS = {"gateway_chat": "chat", "gateway_embedding": "embedding",
                  "gateway_transcription": "transcription", "gateway_rerank": "rerank"}


def _verdict(service: str, kind: str, check: str, ok: bool, detail: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "service": service,
        "kind": kind,
        "check": check,
        "ok": ok,
        "detail": detail,
        "status": item.get("status"),
        "seconds": item.get("elapsed"),
    }


def _status_problem(item: Mapping[str, Any], want: int = 200) -> str | None:
    status = item.get("status")
    if status == want:
        return None
    if status in (None, -1):
        return f"no answer: {item.get('msg', 'connection failed')}"
    body = item.get("json") or item.get("content") or item.get("msg") or ""
    return f"HTTP {status} (wanted {want}): {str(body)[:200]}"


def _message_content(data: Any) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def expected_dims_from_configs(slurps: list[Mapping[str, Any]]) -> dict[str, int]:
    """Embedding length per service from the slurped config.json of its model (``hidden_size``)."""
    dims: dict[str, int] = {}
    for item in slurps:
        if "content" not in item:
            continue
        try:
            config = json.loads(base64.b64decode(item["content"]))
        except (ValueError, TypeError):
            continue
        size = config.get("hidden_size") or config.get("d_model") or config.get("dim")
        if isinstance(size, int):
            dims[item["item"]["name"]] = size
    return dims


def judge(check: str, item: Mapping[str, Any], expected_dims: Mapping[str, int], api_key: bool) -> dict[str, Any]:
    """One verdict for one registered uri result of a check."""
    svc = item["item"]
    name, kind = svc["name"], svc["kind"]
    if check.startswith("gateway_"):
        return _judge_gateway(check, item, api_key)
    if check.startswith("webui_"):
        return _judge_webui(check, item)
    if check == "auth":
        if not api_key:
            return _verdict(name, kind, check, True, "no API key configured: endpoints are open", item)
        problem = _status_problem(item, 401)
        return _verdict(name, kind, check, problem is None, problem or "401 without the API key", item)
    problem = _status_problem(item)
    if problem:
        return _verdict(name, kind, check, False, problem, item)
    data: Any = item.get("json")
    if check == "models":
        ids = [m.get("id") for m in (data or {}).get("data", []) if isinstance(m, Mapping)]
        ok = name in ids
        return _verdict(name, kind, check, ok, f"serves {ids}" if ok else f"{name} not in {ids}", item)
    if check in ("chat", "ocr"):
        text = _message_content(data).strip()
        return _verdict(name, kind, check, bool(text), repr(text[:120]) if text else "empty answer", item)
    if check == "embedding":
        try:
            vector = data["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError):
            return _verdict(name, kind, check, False, "no embedding in the answer", item)
        want = expected_dims.get(name)
        if want is not None and len(vector) != want:
            return _verdict(name, kind, check, False, f"{len(vector)}-dim vector, expected {want}", item)
        return _verdict(name, kind, check, len(vector) > 0, f"{len(vector)}-dim vector", item)
    if check == "transcription":
        said = data.get("text") if isinstance(data, Mapping) else None
        if not isinstance(said, str):
            return _verdict(name, kind, check, False, "no text in the answer", item)
        return _verdict(name, kind, check, True, repr(said[:120]), item)
    if check == "rerank":
        return _judge_rerank(name, kind, check, data, item)
    if check == "app":
        return _verdict(name, kind, check, True, "health URL answered 200", item)
    raise ValueError(f"unknown check {check!r}")


def _judge_rerank(name: str, kind: str, check: str, data: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    try:
        scores = [(r["index"], r["relevance_score"]) for r in data["results"]]
    except (KeyError, TypeError):
        return _verdict(name, kind, check, False, "no results in the answer", item)
    ok = bool(scores) and all(isinstance(v, (int, float)) for _, v in scores)
    return _verdict(name, kind, check, ok, f"{len(scores)} documents scored, best index {scores[0][0]}" if ok
                    else f"bad scores {scores!r}", item)


def _judge_gateway(check: str, item: Mapping[str, Any], api_key: bool) -> dict[str, Any]:
    """A check through a gateway: its name is the gateway's, its detail names the route (model name) asked."""
    svc = item["item"]
    name, route = svc["name"], svc.get("route")
    label = check.replace("_", " ")
    if check == "gateway_auth":
        if not api_key:
            return _verdict(name, "gateway", label, True, "no API key configured: the gateway is open", item)
        problem = _status_problem(item, 401)
        return _verdict(name, "gateway", label, problem is None, problem or "401 without the API key", item)
    problem = _status_problem(item)
    if problem:
        return _verdict(name, "gateway", label, False, f"{route}: {problem}" if route else problem, item)
    data: Any = item.get("json")
    if check == "gateway_models":
        ids = sorted({str(m.get("id")) for m in (data or {}).get("data", []) if isinstance(m, Mapping)})
        missing = sorted(set(svc.get("routes") or []) - set(ids))
        detail = f"lists every engine service's model name: {ids}" if not missing else f"{missing} not in {ids}"
        return _verdict(name, "gateway", label, not missing, detail, item)
    inner = judge(GATEWAY_CHECKS[check], {**item, "item": {"name": route, "kind": GATEWAY_CHECKS[check]}}, {}, api_key)
    return _verdict(name, "gateway", label, inner["ok"], f"{route}: {inner['detail']}", item)


def _judge_webui(check: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """A check of a web UI (Open WebUI): /health without a login, a login with the generated account, its
    model list (the gateway's) and a chat completion through its own API, as its page sends them."""
    svc = item["item"]
    name, label = svc["name"], check.replace("_", " ")
    problem = _status_problem(item)
    if problem:
        return _verdict(name, "webui", label, False, problem, item)
    data: Any = item.get("json")
    if check == "webui_health":
        ok = isinstance(data, Mapping) and data.get("status") is True
        return _verdict(name, "webui", label, ok, "/health answered without a login" if ok else f"{data!r:.200}", item)
    if check == "webui_login":
        role = data.get("role") if isinstance(data, Mapping) else None
        ok = bool(isinstance(data, Mapping) and data.get("token")) and role == "admin"
        return _verdict(name, "webui", label, ok, f"signed in as {svc.get('email')} ({role})" if ok
                        else f"no admin session for {svc.get('email')} (role {role!r})", item)
    if check == "webui_models":
        ids = sorted({str(m.get("id")) for m in (data or {}).get("data", []) if isinstance(m, Mapping)})
        missing = sorted(set(svc.get("routes") or []) - set(ids))
        detail = f"offers every chat model of the gateway: {ids}" if not missing else f"{missing} not in {ids}"
        return _verdict(name, "webui", label, not missing, detail, item)
    text = _message_content(data).strip()
    return _verdict(name, "webui", label, bool(text), f"{svc.get('chat')}: {text[:120]!r}" if text
                    else f"{svc.get('chat')}: empty answer", item)


def results(
    registered: Mapping[str, Any],
    config_slurps: Mapping[str, Any] | None = None,
    configured_dims: Mapping[str, int] | None = None,
    api_key: bool = True,
) -> list[dict[str, Any]]:
    """Every verdict, from the registered uri loop results keyed by check name."""
    dims = expected_dims_from_configs(list((config_slurps or {}).get("results", [])))
    dims.update(configured_dims or {})
    out = []
    for check in CHECKS:
        for item in (registered.get(check) or {}).get("results", []):
            if item.get("skipped"):
                continue
            out.append(judge(check, item, dims, api_key))
    return out


def line(verdict: Mapping[str, Any]) -> str:
    """One verdict as a line for people: ``ok   chat  chat  'Paris.' (0.41 s)``."""
    seconds = verdict.get("seconds")
    took = f" ({seconds:.2f} s)" if isinstance(seconds, (int, float)) else ""
    mark = "ok  " if verdict["ok"] else "FAIL"
    return f"{mark} {verdict['service']} {verdict['check']}: {verdict['detail']}{took}"


def cluster_verdict(result: Mapping[str, Any], how: str) -> dict[str, Any]:
    """One multi-node check as a verdict: ``ray`` (the head's ray-wait-cluster: every node joined with
    its GPUs) or ``unit`` (``systemctl is-active`` of this host's part: head, Ray worker or mp rank)."""
    svc = dict(result.get("item") or {})
    name, kind = str(svc.get("name", "?")), str(svc.get("kind", "?"))
    rc = result.get("rc")
    out = str(result.get("stdout") or "").strip()
    err = str(result.get("stderr") or "").strip().splitlines()
    if how == "ray":
        detail = out if rc == 0 else (err[-1] if err else f"ray-wait-cluster exited {rc}")
        return _verdict(name, kind, "cluster", rc == 0, detail, {})
    unit, role = svc.get("unit", "?"), svc.get("role", "?")
    state = out or "unknown"
    return _verdict(name, kind, f"{role} unit", rc == 0 and state == "active", f"{unit} is {state}", {})
