"""An HTTP client for the management API with a bearer key."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.test import Client

from hierarchy.actors import SYSTEM
from hierarchy.models import User
from keys.services import key_generate


class ApiClient:
    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        kwargs: dict[str, Any] = dict(self.headers)
        call = getattr(self.client, method.lower())
        if method.upper() == "GET":
            return call(path, query, **kwargs)
        data = json.dumps(body) if body is not None else ""
        return call(path, data, content_type="application/json", **kwargs)

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)


def master() -> ApiClient:
    return ApiClient(settings.GATEHOUSE_MASTER_KEY)


def as_user(user: User) -> ApiClient:
    """A client holding a personal key of ``user`` (a key acts as its user)."""
    _, plaintext = key_generate(actor=SYSTEM, user=user)
    return ApiClient(plaintext)
