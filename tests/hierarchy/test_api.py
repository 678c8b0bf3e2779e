"""GET /api/v1/audit/: the audit log, newest first, filtered, in cursor pages; read-only.
(Who reads what per role is in tests/test_permission_matrix.py.)"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from hierarchy.actors import SYSTEM
from hierarchy.audit import source
from hierarchy.models import AuditEntry, AuditSource, OrganizationRole
from hierarchy.services import organization_member_set, team_update
from projects.services import project_create
from tests.api_client import as_user, master
from tests.factories import OrganizationFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

AUDIT = "/api/v1/audit/"


def test_entries_come_newest_first_with_who_what_and_the_changes(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory(alias="search", max_budget=Decimal("100"))
    team_update(actor=proxy_admin, team=team, max_budget=Decimal("80"))
    project_create(actor=proxy_admin, team=team, alias="flights")
    response = master().get(AUDIT)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}  # cursor pages: no count
    newest, older = body["results"]
    assert (newest["object_type"], newest["action"]) == ("project", "create")
    assert older == {
        "id": older["id"],
        "at": older["at"],
        "actor": proxy_admin.pk,
        "actor_user_id": proxy_admin.pk,
        "actor_key_id": "",
        "source": "system",
        "action": "update",
        "object_type": "team",
        "object_id": team.pk,
        "object_repr": "search",
        "organization_id": team.organization_id,
        "team_id": team.pk,
        "changes": {"max_budget": ["100", "80"]},
    }
    assert master().get(f"{AUDIT}{older['id']}/").json() == older


def test_filters_narrow_by_object_action_actor_source_and_time(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    other = TeamFactory()
    team_update(actor=proxy_admin, team=team, max_budget=Decimal("1"))
    with source(AuditSource.COMMAND):
        team_update(actor=SYSTEM, team=other, max_budget=Decimal("2"))
    project = project_create(actor=proxy_admin, team=team, alias="p")
    api = master()

    def ids(**query):  # type: ignore[no-untyped-def]
        response = api.get(AUDIT, **query)
        assert response.status_code == 200, response.content
        return [(row["object_type"], row["object_id"]) for row in response.json()["results"]]

    assert ids(object_type="team") == [("team", other.pk), ("team", team.pk)]
    assert ids(object_id=project.pk) == [("project", project.pk)]
    assert ids(action="create") == [("project", project.pk)]
    assert ids(actor=proxy_admin.pk) == [("project", project.pk), ("team", team.pk)]
    assert ids(actor="system") == [("team", other.pk)]
    assert ids(source="command") == [("team", other.pk)]
    assert ids(team_id=other.pk) == [("team", other.pk)]
    assert ids(organization_id=team.organization_id) == [("project", project.pk), ("team", team.pk)]
    now = timezone.now()
    assert ids(at_after=(now + timedelta(minutes=1)).isoformat()) == []
    assert (
        len(ids(at_after=(now - timedelta(minutes=1)).isoformat(), at_before=now.isoformat())) == 3
    )
    response = api.get(AUDIT, action="rename")
    assert response.status_code == 400
    assert "action" in response.json()["error"]["fields"]


def test_pages_follow_the_cursor_without_repeating_or_skipping(catalog):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    for n in range(7):
        project_create(actor=SYSTEM, team=team, alias=f"p{n}")
    api = master()
    seen: list[int] = []
    response = api.get(AUDIT, page_size=3)
    while True:
        body = response.json()
        seen += [row["id"] for row in body["results"]]
        if not body["next"]:
            break
        response = api.client.get(body["next"], **api.headers)
    assert seen == list(AuditEntry.objects.order_by("-at", "-id").values_list("id", flat=True))
    assert len(seen) == 7


def test_an_organization_admin_reads_only_their_organizations_entries(catalog):  # type: ignore[no-untyped-def]
    mine, theirs = OrganizationFactory(), OrganizationFactory()
    admin = UserFactory()
    organization_member_set(
        actor=SYSTEM, organization=mine, user=admin, role=OrganizationRole.ORG_ADMIN
    )
    project_create(actor=SYSTEM, team=TeamFactory(organization=mine), alias="ours")
    project_create(actor=SYSTEM, team=TeamFactory(organization=theirs), alias="other")
    rows = as_user(admin).get(AUDIT).json()["results"]
    assert {row["organization_id"] for row in rows} == {mine.pk}
    assert {row["object_repr"] for row in rows if row["object_type"] == "project"} == {"ours"}
    hidden = AuditEntry.objects.get(object_repr="other")
    assert as_user(admin).get(f"{AUDIT}{hidden.pk}/").status_code == 404


def test_the_audit_log_cannot_be_written_over_the_api(catalog):  # type: ignore[no-untyped-def]
    project_create(actor=SYSTEM, team=TeamFactory(), alias="p")
    entry = AuditEntry.objects.get()
    api = master()
    assert api.post(AUDIT, {"action": "create"}).status_code == 405
    assert api.patch(f"{AUDIT}{entry.pk}/", {"changes": {}}).status_code == 405
    assert api.delete(f"{AUDIT}{entry.pk}/").status_code == 405
    assert AuditEntry.objects.get() == entry and entry.changes == AuditEntry.objects.get().changes
