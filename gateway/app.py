"""The lean gateway ASGI app: gateway paths never go through Django's request handling.

For now it answers the liveness probe; the OpenAI-compatible endpoints land here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GATEWAY_PREFIXES = ("/v1/", "/health/", "/chat/completions", "/embeddings", "/models")
MANAGEMENT_UNDER_V1 = ("/v1/model/",)  # LiteLLM's /v1/model/info is a management endpoint


def is_gateway_path(path: str) -> bool:
    """Paths the gateway owns (Decision 14); everything else is Django's."""
    if path.startswith(MANAGEMENT_UNDER_V1):
        return False
    return path.startswith(GATEWAY_PREFIXES) or path in ("/v1", "/health")


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def openai_error(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


async def gateway_app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/health/liveliness":
        await send_json(send, 200, {"status": "healthy"})
        return
    await send_json(
        send, 404, openai_error(f"Unknown path {path}.", "invalid_request_error", "not_found")
    )
