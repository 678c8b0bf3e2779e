"""The floor for a Python proxy: a raw ASGI app that forwards each call to the upstream with
one aiohttp session and no checks at all. ``UPSTREAM_URL`` names the upstream base URL."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9100/v1")
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            else:
                assert _session is not None
                await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    assert _session is not None
    async with _session.post(
        f"{UPSTREAM}/chat/completions", data=body, headers={"content-type": "application/json"}
    ) as response:
        data = await response.read()
        status = response.status
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(data)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
