from __future__ import annotations

import pytest
from django.urls import reverse

from hierarchy.actors import SYSTEM
from hierarchy.models import AuditEntry, OrganizationRole, Team, TeamMembership, User
from hierarchy.services import organization_member_set, team_update, user_create
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def inline_post(team: Team, rows: list[dict], **fields: str) -> dict:
    data = {
        "alias": team.alias,
        "organization": team.organization_id or "",
        "models": ", ".join(team.models),
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for r in rows if r.get("id"))),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for i, row in enumerate(rows):
        for name, value in row.items():
            data[f"memberships-{i}-{name}"] = value
        data[f"memberships-{i}-team"] = team.pk
    return data


def test_a_team_admin_adds_changes_and_removes_members(client, team, make_team_admin):  # type: ignore[no-untyped-def]
    client.force_login(make_team_admin(team))
    newcomer = UserFactory()
    url = reverse("admin:hierarchy_team_change", args=[team.pk])
    admin_row = TeamMembership.objects.get(team=team)
    rows = [
        {"id": admin_row.pk, "user": admin_row.user_id, "role": "admin"},
        {"user": newcomer.pk, "role": "admin"},
    ]
    response = client.post(url, inline_post(team, rows))
    assert response.status_code == 302, response.context and response.context["errors"]
    newcomer.refresh_from_db()
    assert TeamMembership.objects.get(team=team, user=newcomer).role == "admin"
    assert newcomer.is_staff is True

    membership = TeamMembership.objects.get(team=team, user=newcomer)
    rows = [
        {"id": admin_row.pk, "user": admin_row.user_id, "role": "admin"},
        {"id": membership.pk, "user": newcomer.pk, "role": "admin", "DELETE": "on"},
    ]
    assert client.post(url, inline_post(team, rows)).status_code == 302
    newcomer.refresh_from_db()
    assert not TeamMembership.objects.filter(user=newcomer).exists()
    assert newcomer.is_staff is False


def test_a_team_admin_cannot_change_their_teams_budget(client, team, make_team_admin):  # type: ignore[no-untyped-def]
    client.force_login(make_team_admin(team))
    url = reverse("admin:hierarchy_team_change", args=[team.pk])
    page = client.get(url)
    assert "max_budget" not in page.context["adminform"].form.fields
    admin_row = TeamMembership.objects.get(team=team)
    rows = [{"id": admin_row.pk, "user": admin_row.user_id, "role": "admin"}]
    client.post(url, inline_post(team, rows, max_budget="99999"))
    team.refresh_from_db()
    assert team.max_budget == 100


def test_a_team_admin_sees_only_their_teams(client, team, make_team_admin):  # type: ignore[no-untyped-def]
    other = TeamFactory(alias="elsewhere")
    client.force_login(make_team_admin(team))
    page = client.get("/admin/hierarchy/team/").content.decode()
    assert team.alias in page and "elsewhere" not in page
    assert client.get(reverse("admin:hierarchy_team_change", args=[other.pk])).status_code == 404
    assert client.get("/admin/hierarchy/user/").status_code == 403


def test_proxy_admin_creates_a_user_with_a_role_and_password(client, proxy_admin):  # type: ignore[no-untyped-def]
    client.force_login(proxy_admin)
    response = client.post(
        "/admin/hierarchy/user/add/",
        {
            "username": "viewer1",
            "email": "v@example.com",
            "role": "proxy_admin_viewer",
            "password1": "a-long-pass-9876",
            "password2": "a-long-pass-9876",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(username="viewer1")
    assert (
        user.role == "proxy_admin_viewer"
        and user.is_staff
        and user.check_password("a-long-pass-9876")
    )
    assert user.created_by == str(proxy_admin.pk)


def test_users_without_an_admin_role_cannot_log_in_to_the_admin(client):  # type: ignore[no-untyped-def]
    user = UserFactory()
    client.force_login(user)
    assert client.get("/admin/").status_code == 302


# --- the audit log ---------------------------------------------------------------------------

AUDIT_LIST = "/admin/hierarchy/auditentry/"


def test_the_audit_log_lists_filters_and_shows_an_entry_read_only(client, proxy_admin, catalog):  # type: ignore[no-untyped-def]
    team = TeamFactory(alias="search", max_budget=100)
    team_update(actor=proxy_admin, team=team, max_budget=80)
    TeamMembershipFactory(team=team)  # not through a service: no entry
    client.force_login(proxy_admin)
    page = client.get(AUDIT_LIST, {"object_type": "team", "action": "update"})
    assert page.status_code == 200
    [entry] = page.context["cl"].result_list
    assert (entry.object_id, entry.changes) == (team.pk, {"max_budget": ["100", "80"]})
    assert list(client.get(AUDIT_LIST, {"object_type": "project"}).context["cl"].result_list) == []
    assert list(client.get(AUDIT_LIST, {"q": team.pk}).context["cl"].result_list) == [entry]
    detail = client.get(reverse("admin:hierarchy_auditentry_change", args=[entry.pk]))
    html = detail.content.decode()
    assert "<th>max_budget</th><td>100</td><td>80</td>" in html
    assert 'name="_save"' not in html
    assert client.get(AUDIT_LIST + "add/").status_code == 403
    delete = client.post(
        reverse("admin:hierarchy_auditentry_delete", args=[entry.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_an_org_admin_sees_only_their_organizations_entries_and_a_team_admin_none(  # type: ignore[no-untyped-def]
    client, catalog, make_team_admin
):
    mine, theirs = TeamFactory(), TeamFactory()
    admin = UserFactory()
    organization_member_set(
        actor=SYSTEM, organization=mine.organization, user=admin, role=OrganizationRole.ORG_ADMIN
    )
    team_update(actor=SYSTEM, team=mine, max_budget=5)
    team_update(actor=SYSTEM, team=theirs, max_budget=5)
    admin.refresh_from_db()
    client.force_login(admin)
    listed = client.get(AUDIT_LIST).context["cl"].result_list
    assert {e.organization_id for e in listed} == {mine.organization_id}
    hidden = AuditEntry.objects.get(object_id=theirs.pk)
    assert (
        client.get(reverse("admin:hierarchy_auditentry_change", args=[hidden.pk])).status_code
        == 404
    )

    client.force_login(make_team_admin(mine))
    assert AUDIT_LIST not in client.get("/admin/").content.decode()
    assert client.get(AUDIT_LIST).status_code == 403


def test_the_admin_password_page_sets_the_password_through_the_audited_service(  # type: ignore[no-untyped-def]
    client, proxy_admin
):
    user = user_create(actor=proxy_admin, username="bo", password="first-Secret-123")
    client.force_login(proxy_admin)
    page = f"/admin/hierarchy/user/{user.pk}/password/"
    assert client.get(page).status_code == 200
    weak = client.post(page, {"password1": "x", "password2": "x"})
    assert weak.status_code == 200  # refused by the validators, nothing saved
    response = client.post(
        page, {"password1": "second-Secret-456", "password2": "second-Secret-456"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("second-Secret-456")
    assert user.updated_by == proxy_admin.pk
    entry = AuditEntry.objects.filter(object_id=user.pk, action="update").get()
    assert entry.changes == {"password": ["[redacted]", "[redacted]"]}
    assert (entry.source, entry.actor_user_id) == ("admin", proxy_admin.pk)
    assert "second-Secret-456" not in str(entry.changes)
