# Managed by the airgap-llm inference_service role.
"""ASGI middleware for the airgap-llm engine services: the API key guards every path but a few.

vLLM's own key check (``--api-key`` / ``VLLM_API_KEY``) covers only the paths under ``/v1``, ``/v2``,
``/inference`` and ``/cohere``. Its other routes (``/invocations``, ``/pooling``, ``/score``,
``/rerank``, ``/classify``, ``/tokenize``, ``/openapi.json`` ...) would answer anyone who reaches the
port, and several of them run the model. The units load this class with
``--middleware airgap_llm_guard.RequireApiKey``: with a key set, a request to any path not listed in
``AIRGAP_LLM_OPEN_PATHS`` (space-separated exact paths; default ``/health /ping /metrics /version``)
gets 401 unless it carries ``Authorization: Bearer <key>``. Without a key it lets everything through,
as vLLM does. Standard library only, so that it also runs where it is unit-tested.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_OPEN_PATHS = "/health /ping /metrics /version"
UNAUTHORIZED = b'{"error":"Unauthorized"}'


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of the request's ``Authorization: Bearer <token>`` header, or None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" else None
    return None


class RequireApiKey:
    """Answer 401 to every request without the API key, except to the open paths."""

    def __init__(self, app: App, api_key: str | None = None, open_paths: str | None = None) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "") if api_key is None else api_key
        self.key_digest = _digest(key) if key else None
        paths = os.environ.get("AIRGAP_LLM_OPEN_PATHS", DEFAULT_OPEN_PATHS) if open_paths is None else open_paths
        self.open_paths = frozenset(paths.split())

    def allowed(self, scope: Scope) -> bool:
        if self.key_digest is None or scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            return True
        path = str(scope["path"]).removeprefix(str(scope.get("root_path", "")))
        if path in self.open_paths:
            return True
        token = bearer_token(list(scope.get("headers", [])))
        return token is not None and hmac.compare_digest(_digest(token), self.key_digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send({
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNAUTHORIZED)).encode()),
                ],
            })
            await send({"type": "http.response.body", "body": UNAUTHORIZED})
