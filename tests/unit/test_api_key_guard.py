"""The API key middleware the engine units load (roles/inference_service/files/airgap_llm_guard.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

GUARD = Path(__file__).resolve().parents[2] / "roles" / "inference_service" / "files" / "airgap_llm_guard.py"
_spec = importlib.util.spec_from_file_location("airgap_llm_guard", GUARD)
assert _spec is not None and _spec.loader is not None
guard = importlib.util.module_from_spec(_spec)
sys.modules["airgap_llm_guard"] = guard
_spec.loader.exec_module(guard)

KEY = "k" * 48


def call(
    path: str, headers: list[tuple[bytes, bytes]] | None = None, *, method: str = "GET",
    kind: str = "http", key: str | None = KEY, open_paths: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Send one request through the middleware; return what it sent and whether the app was reached."""
    reached: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mw = guard.RequireApiKey(app, api_key=key, open_paths=open_paths)
    scope = {"type": kind, "method": method, "path": path, "root_path": "", "headers": headers or []}
    asyncio.run(mw(scope, receive, send))
    return sent, bool(reached)


def bearer(token: str, scheme: bytes = b"Bearer") -> list[tuple[bytes, bytes]]:
    return [(b"authorization", scheme + b" " + token.encode())]


@pytest.mark.parametrize("path", ["/invocations", "/pooling", "/tokenize", "/openapi.json", "/v1/models", "/"])
def test_paths_outside_the_open_list_need_the_key(path: str) -> None:
    sent, reached = call(path)
    assert not reached
    assert sent[0]["status"] == 401
    assert sent[1]["body"] == b'{"error":"Unauthorized"}'


@pytest.mark.parametrize("path", ["/health", "/ping", "/metrics", "/version"])
def test_open_paths_answer_without_the_key(path: str) -> None:
    assert call(path) == ([], True)


def test_open_paths_are_exact() -> None:
    assert not call("/health/../invocations")[1]
    assert not call("/healthz")[1]


def test_the_right_key_passes_and_a_wrong_one_does_not() -> None:
    assert call("/invocations", bearer(KEY)) == ([], True)
    assert call("/invocations", [(b"Authorization", b"bearer " + KEY.encode())]) == ([], True)
    assert not call("/invocations", bearer(KEY[:-1]))[1]
    assert not call("/invocations", bearer(KEY, b"Basic"))[1]


def test_no_key_configured_lets_everything_through() -> None:
    assert call("/invocations", key="") == ([], True)


def test_options_and_lifespan_pass() -> None:
    assert call("/invocations", method="OPTIONS") == ([], True)
    assert call("/", kind="lifespan") == ([], True)


def test_websocket_without_the_key_is_closed() -> None:
    sent, reached = call("/v1/realtime", kind="websocket")
    assert not reached and sent == [{"type": "websocket.close", "code": 1008}]


def test_open_paths_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_LLM_OPEN_PATHS", "/health /load")
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    mw = guard.RequireApiKey(lambda *a: None)
    assert mw.open_paths == frozenset({"/health", "/load"})
    assert mw.key_digest is not None
