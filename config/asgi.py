"""One port, one ASGI entry (Decision 14).

Gateway paths go to the lean gateway app, everything else to Django.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

# The admin's CSS and JS come from the apps' static folders: no collectstatic step, no CDN.
django_app = ASGIStaticFilesHandler(get_asgi_application())

from gateway.app import Receive, Scope, Send, gateway_app, is_gateway_path  # noqa: E402


async def application(scope: Scope, receive: Receive, send: Send) -> Any:
    if scope["type"] == "http" and is_gateway_path(scope["path"]):
        return await gateway_app(scope, receive, send)
    return await django_app(scope, receive, send)  # type: ignore[arg-type]
