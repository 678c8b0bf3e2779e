from __future__ import annotations

import re

import pytest
from django.test import Client
from openapi_spec_validator import validate

from config import api_urls

pytestmark = pytest.mark.django_db


def schema() -> dict:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def url_routes() -> set[str]:
    """The API routes of the URLconf, written as OpenAPI paths."""
    routes = set()
    patterns = [
        *api_urls.router.urls,
        *(
            p
            for p in api_urls.urlpatterns
            if "v1/" in str(p.pattern)
            and "<" not in str(p.pattern)
            and not str(p.pattern).endswith("v1/")
        ),
    ]
    for pattern in patterns:
        text = str(pattern.pattern)
        if "format" in text:
            continue
        text = re.sub(
            r"\(\?P<(\w+)>[^)]*\)",
            lambda m: "{id}" if m.group(1) == "pk" else "{" + m.group(1) + "}",
            text,
        )
        text = text.strip("^$")
        routes.add("/api/" + (text if text.startswith("v1/") else f"v1/{text}"))
    return routes


def test_the_schema_is_valid_openapi() -> None:
    validate(schema())


def test_the_schema_documents_exactly_the_api_routes() -> None:
    assert set(schema()["paths"]) == url_routes()


def test_the_docs_page_serves_its_assets_from_the_app() -> None:
    page = Client().get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower()
