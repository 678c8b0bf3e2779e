"""The audit log as the services write it: one entry per created, changed or deleted object,
with who, through which surface, and the changed fields before and after, secrets redacted."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connections, transaction
from django.test import AsyncClient

from hierarchy import audit
from hierarchy.actors import MASTER_KEY, SYSTEM, Actor
from hierarchy.models import AuditAction, AuditEntry, AuditSource, OrganizationRole, TeamRole
from hierarchy.services import (
    access_group_update,
    organization_member_remove,
    organization_member_set,
    team_create,
    team_member_remove,
    team_member_set,
    team_update,
    user_create,
    user_update,
)
from keys.models import VirtualKey
from keys.services import key_delete, key_generate, key_regenerate, key_set_blocked, key_update
from projects.models import Project, UISettings
from projects.services import project_create, project_delete, project_update, ui_settings_update
from tests.api_client import as_user, master
from tests.factories import (
    AccessGroupFactory,
    OrganizationFactory,
    ProjectFactory,
    TeamFactory,
    UserFactory,
    VirtualKeyFactory,
)

pytestmark = pytest.mark.django_db


def entries(**lookups):  # type: ignore[no-untyped-def]
    return list(AuditEntry.objects.filter(**lookups).order_by("id"))


def test_creating_a_project_records_who_what_and_its_values(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory(models=["gpt-4o"])
    project = project_create(
        actor=proxy_admin, team=team, alias="flights", models=["gpt-4o"], max_budget=Decimal("100")
    )
    [entry] = entries(object_type="project")
    assert (entry.action, entry.object_id, entry.object_repr) == ("create", project.pk, "flights")
    assert (entry.actor, entry.actor_user_id, entry.actor_key_id) == (
        proxy_admin.pk,
        proxy_admin.pk,
        "",
    )
    assert (entry.organization_id, entry.team_id) == (team.organization_id, team.pk)
    assert entry.source == AuditSource.SYSTEM
    assert entry.changes["alias"] == [None, "flights"]
    assert entry.changes["models"] == [None, ["gpt-4o"]]
    assert entry.changes["max_budget"] == [None, "100"]
    assert entry.changes["team_id"] == [None, team.pk]
    assert "spend" not in entry.changes and "updated_at" not in entry.changes


def test_an_update_records_only_the_changed_fields_before_and_after(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory(alias="flights", models=["gpt-4o"], max_budget=Decimal("100"))
    team_update(actor=proxy_admin, team=team, alias="search", max_budget=Decimal("50.5"))
    [entry] = entries(action=AuditAction.UPDATE, object_type="team")
    assert entry.changes == {"alias": ["flights", "search"], "max_budget": ["100", "50.5"]}


def test_an_update_that_changes_nothing_writes_no_entry(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory(models=["gpt-4o"], max_budget=Decimal("100"))
    team_update(actor=proxy_admin, team=team, models=["gpt-4o"], max_budget=Decimal("100.000"))
    assert not AuditEntry.objects.exists()


def test_access_groups_of_a_level_are_recorded_by_name(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    AccessGroupFactory(name="cheap", models=["gpt-4o-mini"])
    team = TeamFactory()
    team_update(actor=proxy_admin, team=team, access_groups=["cheap"])
    [entry] = entries(object_type="team")
    assert entry.changes == {"access_groups": [[], ["cheap"]]}


def test_deleting_several_projects_records_one_entry_each_with_their_last_values(proxy_admin):  # type: ignore[no-untyped-def]
    projects = [ProjectFactory(alias=f"p{n}", max_budget=Decimal(n + 1)) for n in range(3)]
    project_delete(
        actor=proxy_admin, projects=Project.objects.filter(pk__in=[p.pk for p in projects])
    )
    deleted = entries(action=AuditAction.DELETE)
    assert sorted(e.object_id for e in deleted) == sorted(p.pk for p in projects)
    by_id = {e.object_id: e for e in deleted}
    for project in projects:
        changes = by_id[project.pk].changes
        assert changes["alias"] == [project.alias, None]
        assert changes["max_budget"] == [str(project.max_budget), None]
        assert by_id[project.pk].organization_id == project.team.organization_id


def test_a_refused_write_leaves_no_entry(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory(models=["gpt-4o"])
    with pytest.raises(ValidationError):
        project_create(actor=proxy_admin, team=team, alias="x", models=["claude-3-5-haiku"])
    project = ProjectFactory(team=team)
    VirtualKeyFactory(project=project)
    with pytest.raises(ValidationError):
        project_delete(actor=proxy_admin, projects=[project])
    assert not AuditEntry.objects.exists()


def test_memberships_record_add_role_change_and_removal_in_the_organization(proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    user = UserFactory()
    team_member_set(actor=proxy_admin, team=team, user=user, role=TeamRole.MEMBER)
    team_member_set(actor=proxy_admin, team=team, user=user, role=TeamRole.ADMIN)
    team_member_remove(actor=proxy_admin, team=team, user=user)
    recorded = entries(object_type="team_membership")
    assert [e.action for e in recorded] == ["create", "update", "delete"]
    assert recorded[0].changes == {
        "team_id": [None, team.pk],
        "user_id": [None, user.pk],
        "role": [None, "member"],
    }
    assert recorded[1].changes == {"role": ["member", "admin"]}
    assert recorded[2].changes["role"] == ["admin", None]
    assert {(e.organization_id, e.team_id) for e in recorded} == {(team.organization_id, team.pk)}
    # Becoming a team admin gives admin access and losing it takes it away: both recorded.
    staff = entries(object_type="user", object_id=user.pk)
    assert [e.changes for e in staff] == [
        {"is_staff": [False, True]},
        {"is_staff": [True, False]},
    ]


def test_organization_memberships_are_recorded_in_their_organization(proxy_admin):  # type: ignore[no-untyped-def]
    organization = OrganizationFactory()
    user = UserFactory()
    organization_member_set(
        actor=proxy_admin, organization=organization, user=user, role=OrganizationRole.ORG_ADMIN
    )
    organization_member_remove(actor=proxy_admin, organization=organization, user=user)
    recorded = entries(object_type="organization_membership")
    assert [(e.action, e.organization_id) for e in recorded] == [
        ("create", organization.pk),
        ("delete", organization.pk),
    ]


def test_key_secrets_never_reach_an_entry_but_their_change_does(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    project = ProjectFactory(team=TeamFactory(models=["gpt-4o"]))
    key, first = key_generate(actor=proxy_admin, project=project, key_alias="ci")
    key, second = key_regenerate(actor=proxy_admin, key=key)
    created, regenerated = entries(object_type="key")
    assert created.changes["token_hash"] == [None, audit.REDACTED]
    assert created.changes["key_name"] == [None, f"sk-...{first[-4:]}"]
    assert regenerated.changes == {
        "token_hash": [audit.REDACTED, audit.REDACTED],
        "key_name": [f"sk-...{first[-4:]}", f"sk-...{second[-4:]}"],
    }
    stored = str(list(AuditEntry.objects.values_list("changes", "object_repr")))
    for secret in (first, second, key.token_hash):
        assert secret not in stored


def test_passwords_are_redacted_and_a_change_of_password_is_recorded(proxy_admin):  # type: ignore[no-untyped-def]
    user = user_create(actor=proxy_admin, username="ana", password="first-Secret-123")
    user_update(actor=proxy_admin, user=user, password="second-Secret-456")
    created, changed = entries(object_type="user")
    assert created.changes["password"] == [None, audit.REDACTED]
    assert changed.changes == {"password": [audit.REDACTED, audit.REDACTED]}
    assert "Secret" not in str(list(AuditEntry.objects.values_list("changes", flat=True)))


def test_secret_looking_metadata_is_redacted(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    leaked = "sk-" + "a" * 40
    team_update(
        actor=proxy_admin,
        team=team,
        metadata={"owner": "search", "api_key": "anything", "note": f"old key {leaked}"},
    )
    [entry] = entries(object_type="team")
    assert entry.changes["metadata"][1] == {
        "owner": "search",
        "api_key": audit.REDACTED,
        "note": f"old key {audit.REDACTED}",
    }


def test_a_key_acting_for_its_user_is_recorded_by_key_id_and_user_id(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    team = TeamFactory(models=["gpt-4o"])
    key = VirtualKeyFactory(project=None, team=None, user=proxy_admin)
    actor = Actor(user=proxy_admin, key_id=key.pk)
    project_create(actor=actor, team=team, alias="by-key")
    [entry] = entries(object_type="project")
    assert (entry.actor, entry.actor_user_id, entry.actor_key_id) == (
        f"key:{key.pk}",
        proxy_admin.pk,
        key.pk,
    )


def test_the_master_key_and_the_system_are_recorded_by_name(catalog):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    project_create(actor=MASTER_KEY, team=team, alias="a")
    project_create(actor=SYSTEM, team=team, alias="b")
    assert [(e.actor, e.actor_user_id) for e in entries(object_type="project")] == [
        ("master_key", ""),
        ("system", ""),
    ]


def test_blocking_a_key_and_the_ui_settings_are_recorded(proxy_admin):  # type: ignore[no-untyped-def]
    key = VirtualKeyFactory()
    key_set_blocked(actor=proxy_admin, key=key, blocked=True)
    ui_settings_update(actor=proxy_admin, enable_projects_ui=True)
    blocked, settings = entries()
    assert (blocked.object_type, blocked.changes) == ("key", {"blocked": [False, True]})
    assert (settings.object_type, settings.changes) == (
        "ui_settings",
        {"enable_projects_ui": [False, True]},
    )


def test_catalog_and_access_group_changes_are_recorded(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    group = AccessGroupFactory(name="cheap", models=["gpt-4o-mini"])
    access_group_update(actor=proxy_admin, group=group, models=["gpt-4o-mini", "gpt-4o"])
    [entry] = entries(object_type="access_group")
    assert entry.changes == {"models": [["gpt-4o-mini"], ["gpt-4o-mini", "gpt-4o"]]}


def test_an_update_costs_one_insert_and_a_bulk_delete_one_query_for_teams_and_one_insert(
    proxy_admin, django_assert_num_queries
):  # type: ignore[no-untyped-def]
    key = VirtualKeyFactory()
    before = audit.snapshot(key)
    key.blocked = True
    with django_assert_num_queries(1):
        audit.record_update(proxy_admin, key, before)
    keys = list(VirtualKey.objects.all()) + [VirtualKeyFactory() for _ in range(4)]
    fresh = list(VirtualKey.objects.filter(pk__in=[k.pk for k in keys]))  # teams not loaded
    with django_assert_num_queries(2):
        audit.record_delete(proxy_admin, fresh)
    organizations = {k.pk: k.team.organization_id for k in fresh}
    deleted = entries(action=AuditAction.DELETE)
    assert {e.object_id: e.organization_id for e in deleted} == organizations


def test_recording_in_bulk_writes_every_entry_at_the_end_and_nothing_when_it_fails(catalog):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    with transaction.atomic(), audit.recording_in_bulk():
        for n in range(5):
            project_create(actor=SYSTEM, team=team, alias=f"bulk-{n}")
        assert not AuditEntry.objects.exists()
    assert AuditEntry.objects.filter(object_type="project").count() == 5

    with pytest.raises(ValidationError), transaction.atomic(), audit.recording_in_bulk():
        project_create(actor=SYSTEM, team=team, alias="kept-only-if-all-pass")
        project_create(actor=SYSTEM, team=team, alias="bulk-0")  # taken
    assert AuditEntry.objects.count() == 5


def test_changes_inside_a_source_block_are_recorded_with_that_source(catalog):  # type: ignore[no-untyped-def]
    team = TeamFactory()
    with audit.source(AuditSource.COMMAND):
        project_create(actor=SYSTEM, team=team, alias="scripted")
    project_create(actor=SYSTEM, team=team, alias="later")
    assert [e.source for e in entries(object_type="project")] == ["command", "system"]


def test_a_management_command_records_its_changes_as_command(capsys):  # type: ignore[no-untyped-def]
    call_command("load_demo")
    recorded = entries()
    assert {e.object_type for e in recorded} >= {
        "catalog_model",
        "organization",
        "team",
        "project",
        "user",
        "key",
    }
    assert {(e.source, e.actor) for e in recorded} == {("command", "system")}
    plaintext = capsys.readouterr().out.split("Demo key: ")[1].split()[0]
    call_command("load_demo")  # rotates the demo key: one more entry, the key's
    [rotated] = entries(id__gt=recorded[-1].id)
    assert (rotated.object_type, rotated.action, rotated.source) == ("key", "update", "command")
    assert plaintext not in str(rotated.changes)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/admin/keys/virtualkey/add/", "admin"),
        ("/api/v1/projects/", "api"),
        ("/key/generate", "litellm"),
        ("/project/new", "litellm"),
    ],
)
def test_requests_are_attributed_to_their_surface_by_path(path, expected):  # type: ignore[no-untyped-def]
    assert audit.source_for_path(path) == expected


def test_moving_a_key_off_its_project_is_recorded(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    key = VirtualKeyFactory()
    project_id = key.project_id
    key_update(actor=proxy_admin, key=key, project=None, key_alias="loose")
    [entry] = entries(object_type="key")
    assert entry.changes == {"project_id": [project_id, None], "key_alias": [None, "loose"]}
    key_delete(actor=proxy_admin, keys=[key])
    assert entries(object_type="key")[-1].changes["key_alias"] == ["loose", None]


def test_project_update_moving_team_is_recorded_with_the_new_team(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    project = ProjectFactory()
    old_team = project.team_id
    target = TeamFactory()
    project_update(actor=proxy_admin, project=project, team=target)
    [entry] = entries(object_type="project")
    assert entry.changes == {"team_id": [old_team, target.pk]}
    assert (entry.team_id, entry.organization_id) == (target.pk, target.organization_id)


def test_team_create_with_members_records_the_team_and_each_membership(catalog, proxy_admin):  # type: ignore[no-untyped-def]
    users = [UserFactory(), UserFactory()]
    team = team_create(
        actor=proxy_admin, alias="t", members=[(users[0], "admin"), (users[1], "member")]
    )
    assert [(e.object_type, e.action) for e in entries(team_id=team.pk)] == [
        ("team", "create"),
        ("team_membership", "create"),
        ("team_membership", "create"),
    ]


# --- one entry per surface: admin, REST, LiteLLM endpoints (commands: load_demo above) -----------


def test_a_project_created_in_the_admin_is_recorded_as_admin(client, proxy_admin, team):  # type: ignore[no-untyped-def]
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})
    client.force_login(proxy_admin)
    response = client.post(
        "/admin/projects/project/add/",
        {"alias": "flights", "team": team.pk, "models": ["gpt-4o"], "max_budget": "10"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = entries(object_type="project")
    assert (entry.source, entry.action, entry.actor) == ("admin", "create", proxy_admin.pk)
    assert entry.changes["max_budget"] == [None, "10"]


def test_a_member_removed_in_the_admin_is_recorded_as_admin(client, proxy_admin, team):  # type: ignore[no-untyped-def]
    member = UserFactory()
    membership = team_member_set(actor=SYSTEM, team=team, user=member)
    client.force_login(proxy_admin)
    data = {
        "alias": team.alias,
        "organization": team.organization_id,
        "models": ", ".join(team.models),
        "max_budget": "100",
        "rpm_limit": "1000",
        "tpm_limit": "100000",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": membership.pk,
        "memberships-0-team": team.pk,
        "memberships-0-user": member.pk,
        "memberships-0-role": "member",
        "memberships-0-DELETE": "on",
    }
    response = client.post(f"/admin/hierarchy/team/{team.pk}/change/", data)
    assert response.status_code == 302, response.context and response.context["errors"]
    [removed] = entries(object_type="team_membership", action="delete")
    assert (removed.source, removed.actor, removed.team_id) == ("admin", proxy_admin.pk, team.pk)


def test_a_team_changed_over_rest_is_recorded_as_api_by_the_key_that_did_it(team, proxy_admin):  # type: ignore[no-untyped-def]
    api = as_user(proxy_admin)
    response = api.patch(f"/api/v1/teams/{team.pk}/", {"max_budget": 75})
    assert response.status_code == 200, response.content
    [entry] = entries(object_type="team")
    key_id = VirtualKey.objects.get(user=proxy_admin).pk
    assert (entry.source, entry.actor, entry.actor_user_id, entry.actor_key_id) == (
        "api",
        f"key:{key_id}",
        proxy_admin.pk,
        key_id,
    )
    assert entry.changes == {"max_budget": ["100", "75"]}


def test_a_key_generated_over_litellm_is_recorded_as_litellm_without_its_secret(team):  # type: ignore[no-untyped-def]
    project = ProjectFactory(team=team)
    response = master().post("/key/generate", {"project_id": project.pk, "key_alias": "app"})
    assert response.status_code == 200, response.content
    plaintext = response.json()["key"]
    [entry] = entries(object_type="key")
    assert (entry.source, entry.actor, entry.action) == ("litellm", "master_key", "create")
    assert (entry.team_id, entry.organization_id) == (team.pk, team.organization_id)
    assert plaintext not in str(entry.changes) and plaintext not in entry.object_repr


@pytest.mark.django_db(transaction=True)
def test_the_surface_is_recorded_under_asgi_too(catalog):  # type: ignore[no-untyped-def]
    """Production serves Django over ASGI, where the view runs in a worker thread."""

    async def create_team() -> Any:
        response = await AsyncClient().post(
            "/team/new",
            {"team_alias": "served"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {settings.GATEHOUSE_MASTER_KEY}"},
        )
        await sync_to_async(connections.close_all)()  # the worker thread's connection
        return response

    response = asyncio.run(create_team())
    assert response.status_code == 200, response.content
    [entry] = entries(object_type="team")
    assert (entry.source, entry.actor, entry.object_repr) == ("litellm", "master_key", "served")
