"""A key's plaintext appears in the one response that created it, and nowhere after
(Decisions 6 and 15, issue 6): not in any row of any table (sessions, the admin's log and the
audit log included), not in the logs (SQL with its parameters included), not in any later
answer of the admin, the REST API or the LiteLLM endpoints."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import pytest
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.http import HttpRequest
from django.test.utils import CaptureQueriesContext

from hierarchy.actors import SYSTEM
from hierarchy.models import AuditEntry
from keys.models import VirtualKey
from keys.services import hash_key
from projects.models import UISettings
from projects.services import project_create
from tests.api_client import ApiClient, master

pytestmark = pytest.mark.django_db

SECRET_ON_PAGE = re.compile(r'<code class="new-key-secret">(sk-[A-Za-z0-9_-]+)</code>')
KEYS_ADMIN = "/admin/keys/virtualkey/"


def database_dump() -> str:
    """Every row of every table as text; session data decoded."""
    lines: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                values = dict(zip(columns, row, strict=True))
                if table == "django_session":
                    values["decoded"] = SessionStore().decode(values["session_data"])
                lines.append(f"{table}: {values!r}")
    return "\n".join(lines)


def answer_text(response: Any) -> str:
    """A response as a client sees it: headers, cookies (messages decoded) and body."""
    parts = [str(response.status_code), str(response.headers)]
    for name, morsel in response.cookies.items():
        parts.append(f"{name}={morsel.value}")
        if name == "messages":
            parts.append(repr(CookieStorage(HttpRequest())._decode(morsel.value)))
    if not getattr(response, "streaming", False):
        parts.append(response.content.decode())
    return "\n".join(parts)


def first_secret(response: Any) -> str:
    assert response.status_code in (200, 201), response.content[:400]
    assert "no-store" in response["Cache-Control"]
    if response["Content-Type"].startswith("application/json"):
        return str(response.json()["key"])
    return SECRET_ON_PAGE.findall(response.content.decode())[0]


def test_no_plaintext_key_appears_anywhere_after_the_response_that_created_it(  # type: ignore[no-untyped-def]
    client, proxy_admin, team, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")  # Django's own loggers stop at INFO
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})
    project = project_create(actor=SYSTEM, team=team, alias="app", models=["gpt-4o"])
    client.force_login(proxy_admin)
    api = master()
    plaintexts: list[str] = []
    later: list[str] = []

    with CaptureQueriesContext(connection):  # every SQL statement and its parameters logged
        # --- generated and regenerated on every surface; each secret taken from its answer
        response = client.post(
            KEYS_ADMIN + "add/",
            {"key_alias": "admin-made", "project": project.pk, "models": "gpt-4o"},
        )
        plaintexts.append(first_secret(response))
        admin_key = VirtualKey.objects.get(key_alias="admin-made")
        response = client.post(
            KEYS_ADMIN, {"action": "regenerate_keys", "_selected_action": [admin_key.pk]}
        )
        plaintexts.append(first_secret(response))

        response = api.post("/api/v1/keys/", {"project": project.pk, "key_alias": "rest-made"})
        plaintexts.append(first_secret(response))
        rest_key = response.json()["id"]
        plaintexts.append(first_secret(api.post(f"/api/v1/keys/{rest_key}/regenerate/", {})))

        custom = "sk-" + secrets.token_urlsafe(32)
        response = api.post(
            "/key/generate", {"project_id": project.pk, "key_alias": "litellm-made", "key": custom}
        )
        assert first_secret(response) == custom
        plaintexts.append(custom)
        # LiteLLM clients name the key to rotate by its secret.
        response = api.post("/key/regenerate", {"key": custom})
        plaintexts.append(first_secret(response))
        response = api.post(f"/key/{plaintexts[-1]}/regenerate", {})
        plaintexts.append(first_secret(response))

        # --- later changes on every surface, one made with a key itself
        current = {key.key_alias: key for key in VirtualKey.objects.all()}
        later.append(
            answer_text(api.patch(f"/api/v1/keys/{rest_key}/", {"key_alias": "rest-renamed"}))
        )
        later.append(answer_text(api.post("/key/update", {"key": plaintexts[-1], "max_budget": 5})))
        later.append(answer_text(api.post("/key/block", {"key": plaintexts[-1]})))
        later.append(
            answer_text(
                client.post(
                    KEYS_ADMIN, {"action": "block_keys", "_selected_action": [admin_key.pk]}
                )
            )
        )
        later.append(
            answer_text(
                client.post(
                    f"{KEYS_ADMIN}{admin_key.pk}/change/",
                    {"key_alias": "admin-renamed", "models": "gpt-4o", "max_budget": "3"},
                    follow=True,
                )
            )
        )
        with_key = ApiClient(plaintexts[3])  # the REST key's current secret, as a bearer
        later.append(answer_text(with_key.get("/api/v1/keys/")))

        # --- later reads: lists, details, the audit log, the admin's pages
        for path in (
            "/api/v1/keys/",
            f"/api/v1/keys/{rest_key}/",
            "/api/v1/audit/?page_size=500",
            "/key/list?return_full_object=true",
            f"/key/info?key={current['litellm-made'].token_hash}",
            "/project/info?project_id=" + project.pk,
        ):
            later.append(answer_text(api.get(path)))
        entry = AuditEntry.objects.filter(object_type="key").first()
        assert entry is not None
        for path in (
            KEYS_ADMIN,
            f"{KEYS_ADMIN}{admin_key.pk}/change/",
            f"{KEYS_ADMIN}{admin_key.pk}/history/",
            "/admin/hierarchy/auditentry/",
            f"/admin/hierarchy/auditentry/{entry.pk}/change/",
            "/admin/",
        ):
            later.append(answer_text(client.get(path)))

    dump = database_dump()
    logs = "\n".join(
        f"{record.getMessage()} {record.args!r} {getattr(record, 'params', '')!r}"
        for record in caplog.records
    )
    printed = "".join(capfd.readouterr())  # anything written to stdout or stderr
    later_text = "\n".join(later)

    # The places searched hold what they should: the keys' rows, their audit entries, the
    # SQL log, and the later answers (which name the keys by their display name).
    assert len(set(plaintexts)) == 7
    final_keys = list(VirtualKey.objects.all())
    assert len(final_keys) == 3
    for key in final_keys:
        assert key.token_hash in dump
        assert key.key_name in later_text
    assert AuditEntry.objects.filter(object_type="key").count() >= 10
    assert "django_admin_log" in dump and "django_session" in dump
    assert "INSERT INTO" in logs and hash_key(plaintexts[-1]) in logs

    for plaintext in plaintexts:
        assert plaintext not in dump, "a plaintext key is stored in the database"
        assert plaintext not in logs, "a plaintext key is in the logs"
        assert plaintext not in printed, "a plaintext key was printed"
        assert plaintext not in later_text, "a plaintext key is in a later answer"
