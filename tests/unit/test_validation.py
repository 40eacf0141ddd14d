"""The validate role's verdicts, from registered uri results."""

from __future__ import annotations

import base64
import json
from typing import Any

from airgap_llm.validation import line, results


def item(name: str, kind: str, status: int, body: Any = None, **extra: Any) -> dict[str, Any]:
    return {"item": {"name": name, "kind": kind}, "status": status, "json": body, "elapsed": 0.5, **extra}


def loop(*items: dict[str, Any]) -> dict[str, Any]:
    return {"results": list(items)}


def test_good_answers_pass() -> None:
    cfg = {
        "results": [{"item": {"name": "embed"}, "content": base64.b64encode(json.dumps({"hidden_size": 4}).encode())}]
    }
    out = results(
        {
            "auth": loop(item("chat", "chat", 401), item("embed", "embedding", 401)),
            "models": loop(item("chat", "chat", 200, {"data": [{"id": "chat"}]})),
            "chat": loop(item("chat", "chat", 200, {"choices": [{"message": {"content": " Paris. "}}]})),
            "embedding": loop(item("embed", "embedding", 200, {"data": [{"embedding": [0.1, 0.2, 0.3, 0.4]}]})),
            "transcription": loop(item("stt", "transcription", 200, {"text": "shalom"})),
            "app": loop(item("web", "app", 200), {"skipped": True}),
        },
        cfg,
    )
    assert all(r["ok"] for r in out), out
    assert [r["check"] for r in out] == ["auth", "auth", "models", "chat", "embedding", "transcription", "app"]
    assert out[3]["detail"] == "'Paris.'"
    assert out[4]["detail"] == "4-dim vector"


def test_open_endpoint_without_key_fails() -> None:
    (r,) = results({"auth": loop(item("chat", "chat", 200, {"data": []}))})
    assert not r["ok"] and r["detail"].startswith("HTTP 200 (wanted 401)")
    (r,) = results({"auth": loop(item("chat", "chat", 200))}, api_key=False)
    assert r["ok"] and "no API key" in r["detail"]


def test_wrong_embedding_size_and_empty_chat_fail() -> None:
    out = results(
        {
            "chat": loop(item("chat", "chat", 200, {"choices": [{"message": {"content": ""}}]})),
            "embedding": loop(item("embed", "embedding", 200, {"data": [{"embedding": [0.0] * 3}]})),
        },
        configured_dims={"embed": 384},
    )
    assert [(r["ok"], r["detail"]) for r in out] == [(False, "empty answer"), (False, "3-dim vector, expected 384")]


def test_connection_failure_is_reported() -> None:
    (r,) = results({"chat": loop(item("chat", "chat", -1, msg="Connection refused"))})
    assert not r["ok"] and r["detail"] == "no answer: Connection refused"
    assert line(r).startswith("FAIL chat chat: no answer")


def test_model_not_listed() -> None:
    (r,) = results({"models": loop(item("chat", "chat", 200, {"data": [{"id": "other"}]}))})
    assert not r["ok"] and "chat not in ['other']" in r["detail"]
