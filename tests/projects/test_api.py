from __future__ import annotations

import pytest

from hierarchy.models import Role
from projects.models import Project
from tests.api_client import ApiClient, as_user, master
from tests.factories import ProjectFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

PROJECTS = "/api/v1/projects/"


def test_master_key_creates_a_project_and_reads_it_back(team):  # type: ignore[no-untyped-def]
    response = master().post(
        PROJECTS, {"alias": "flights", "team": team.pk, "models": ["gpt-4o"], "max_budget": 10}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["alias"], body["team"], body["models"], body["max_budget"], body["spend"]) == (
        "flights",
        team.pk,
        ["gpt-4o"],
        10,
        0,
    )
    assert body["created_by"] == "master_key"
    assert master().get(f"{PROJECTS}{body['id']}/").json()["alias"] == "flights"


def test_validation_errors_use_the_error_contract_and_name_the_field(team):  # type: ignore[no-untyped-def]
    response = master().post(
        PROJECTS, {"alias": "x", "team": team.pk, "models": ["claude-3-5-sonnet"]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "400" and error["type"] == "bad_request" and error["param"] == "models"
    assert error["fields"] == {
        "models": ["Model 'claude-3-5-sonnet' not in team's allowed models."]
    }
    assert not Project.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_budget": -1}, "max_budget"),
        ({"max_budget": "NaN"}, "max_budget"),
        ({"max_budget": "Infinity"}, "max_budget"),
        ({"rpm_limit": "many"}, "rpm_limit"),
        ({"alias": "y" * 5000}, "alias"),
        ({"budget_duration": "soon"}, "budget_duration"),
        ({"litellm_only_field": 1}, "litellm_only_field"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(team, body, field):  # type: ignore[no-untyped-def]
    response = master().post(PROJECTS, {"alias": "x", "team": team.pk, **body})
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_missing_or_bad_credentials_are_401():  # type: ignore[no-untyped-def]
    for client in (ApiClient(None), ApiClient("sk-not-a-real-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaa")):
        response = client.get(PROJECTS)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "auth_error"


def test_outsiders_get_404_and_viewers_403(team):  # type: ignore[no-untyped-def]
    project = ProjectFactory(team=team)
    outsider = as_user(UserFactory())
    assert outsider.get(f"{PROJECTS}{project.pk}/").status_code == 404
    assert outsider.patch(f"{PROJECTS}{project.pk}/", {"alias": "z"}).status_code == 404
    viewer = as_user(UserFactory(role=Role.PROXY_ADMIN_VIEWER))
    assert viewer.get(f"{PROJECTS}{project.pk}/").status_code == 200
    assert viewer.patch(f"{PROJECTS}{project.pk}/", {"alias": "z"}).status_code == 403
    assert viewer.post(PROJECTS, {"alias": "z", "team": team.pk}).status_code == 403


def test_filters_on_foreign_ids_return_nothing(team, make_team_admin):  # type: ignore[no-untyped-def]
    mine = ProjectFactory(team=team)
    other_team = TeamFactory()
    ProjectFactory(team=other_team)
    client = as_user(make_team_admin(team))
    assert [p["id"] for p in client.get(PROJECTS).json()["results"]] == [mine.pk]
    assert client.get(PROJECTS, team=other_team.pk).json()["results"] == []
    assert client.get(PROJECTS, team="no-such-team").json()["results"] == []


def test_lists_are_cursor_paginated(team):  # type: ignore[no-untyped-def]
    for _ in range(5):
        ProjectFactory(team=team)
    first = master().get(PROJECTS, page_size=2).json()
    assert len(first["results"]) == 2 and first["next"]
    assert "count" not in first
    second = master().client.get(first["next"], **master().headers).json()
    assert {p["id"] for p in second["results"]}.isdisjoint({p["id"] for p in first["results"]})


def test_created_range_filters_accept_any_utc_offset(team):  # type: ignore[no-untyped-def]
    ProjectFactory(team=team)
    response = master().get(PROJECTS, created_before="0278-12-07T08:22:13+19:21")
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert (
        len(master().get(PROJECTS, created_after="2000-01-01T00:00:00-11:30").json()["results"])
        == 1
    )


def test_an_admin_session_browses_the_api(client, proxy_admin, team):  # type: ignore[no-untyped-def]
    ProjectFactory(team=team, alias="browsable")
    client.force_login(proxy_admin)
    response = client.get(PROJECTS, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert "browsable" in response.content.decode()
    assert client.get(PROJECTS).json()["results"][0]["alias"] == "browsable"


def test_a_blocked_or_expired_key_cannot_call_the_api(team):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from hierarchy.actors import SYSTEM
    from keys.selectors import MSG_KEY_BLOCKED, MSG_KEY_EXPIRED
    from keys.services import key_generate

    user = UserFactory(role=Role.PROXY_ADMIN)
    key, plaintext = key_generate(actor=SYSTEM, user=user)
    assert ApiClient(plaintext).get(PROJECTS).status_code == 200
    key.blocked = True
    key.save()
    response = ApiClient(plaintext).get(PROJECTS)
    assert (response.status_code, response.json()["error"]["message"]) == (401, MSG_KEY_BLOCKED)
    key.blocked = False
    key.expires = timezone.now() - timedelta(seconds=1)
    key.save()
    response = ApiClient(plaintext).get(PROJECTS)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == MSG_KEY_EXPIRED.format(
        expires=key.expires.isoformat()
    )
