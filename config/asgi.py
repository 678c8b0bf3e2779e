"""One port, one ASGI entry (Decision 14).

Gateway paths go to the lean gateway app, everything else to Django. The ASGI lifespan
starts the gateway's runtime (snapshot, counters, spend writer) and, on shutdown, flushes
what is still queued, so a SIGTERM loses no spend.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

# The admin's CSS and JS come from the apps' static folders: no collectstatic step, no CDN.
django_app = ASGIStaticFilesHandler(get_asgi_application())

from gateway.app import Receive, Scope, Send, gateway_app, is_gateway_path  # noqa: E402
from gateway.runtime import get_runtime, stop_runtime  # noqa: E402

logger = logging.getLogger(__name__)


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await get_runtime()
            except Exception as exc:
                logger.exception("Gateway startup failed.")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop_runtime()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> Any:
    if scope["type"] == "http" and is_gateway_path(scope["path"]):
        return await gateway_app(scope, receive, send)
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    return await django_app(scope, receive, send)  # type: ignore[arg-type]
