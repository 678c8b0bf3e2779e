from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from config.asgi import application


def call(path: str) -> tuple[int, dict[str, str], bytes]:
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    # A thread of its own: another test's browser may hold this thread's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, application(scope, receive, send)).result()
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def test_liveliness_is_answered_by_the_gateway_app() -> None:
    status, headers, body = call("/health/liveliness")
    assert status == 200
    assert json.loads(body) == {"status": "healthy"}
    assert headers["content-type"] == "application/json"


def test_unknown_gateway_path_answers_in_openai_error_shape() -> None:
    status, _, body = call("/v1/unknown")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"
