from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from projects.admin import MSG_PROJECTS_OFF
from projects.forms import MODELS_HELP
from projects.models import Project, UISettings
from projects.services import MSG_DELETE_WITH_KEYS
from tests.factories import ProjectFactory, TeamFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db

PROJECTS_LIST = "/admin/projects/project/"
PROJECTS_ADD = "/admin/projects/project/add/"


@pytest.fixture
def projects_on(db):  # type: ignore[no-untyped-def]
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})


@pytest.fixture
def admin_client(client, proxy_admin):  # type: ignore[no-untyped-def]
    client.force_login(proxy_admin)
    return client


def index_text(client) -> str:  # type: ignore[no-untyped-def]
    return client.get("/admin/").content.decode()


def test_projects_are_hidden_until_enabled_in_ui_settings(admin_client, team):  # type: ignore[no-untyped-def]
    assert PROJECTS_LIST not in index_text(admin_client)
    assert "Admin Settings" in index_text(admin_client)

    response = admin_client.get(PROJECTS_LIST, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:ui_settings")
    assert escape(MSG_PROJECTS_OFF) in response.content.decode()

    response = admin_client.post(reverse("admin:ui_settings"), {"enable_projects_ui": "on"})
    assert response.status_code == 302
    assert UISettings.objects.get().enable_projects_ui is True
    assert PROJECTS_LIST in index_text(admin_client)
    assert admin_client.get(PROJECTS_LIST).status_code == 200

    admin_client.post(reverse("admin:ui_settings"), {})
    assert PROJECTS_LIST not in index_text(admin_client)
    assert admin_client.get(PROJECTS_ADD).status_code == 302


def test_ui_settings_is_read_only_for_a_team_admin(client, team, make_team_admin):  # type: ignore[no-untyped-def]
    client.force_login(make_team_admin(team))
    assert client.get(reverse("admin:ui_settings")).status_code == 403
    assert (
        client.post(reverse("admin:ui_settings"), {"enable_projects_ui": "on"}).status_code == 403
    )
    assert UISettings.objects.filter(enable_projects_ui=True).count() == 0


def test_create_project_offers_only_the_chosen_teams_models(
    admin_client, team, projects_on, catalog
):  # type: ignore[no-untyped-def]
    other = TeamFactory(models=["claude-3-5-sonnet"])
    response = admin_client.get(reverse("admin:projects_project_team_models"), {"team": team.pk})
    assert response.json() == {"team": team.pk, "models": ["gpt-4o", "gpt-4o-mini"]}
    response = admin_client.get(reverse("admin:projects_project_team_models"), {"team": other.pk})
    assert response.json()["models"] == ["claude-3-5-sonnet"]

    page = admin_client.get(PROJECTS_ADD, {"team": team.pk}).content.decode()
    assert "Create Project" in page
    assert MODELS_HELP in page
    assert '<option value="gpt-4o-mini">' in page
    assert "claude-3-5-sonnet</option>" not in page


def test_a_model_outside_the_team_is_a_field_error(admin_client, team, projects_on):  # type: ignore[no-untyped-def]
    response = admin_client.post(
        PROJECTS_ADD, {"alias": "p1", "team": team.pk, "models": ["claude-3-5-sonnet"]}
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "models" in errors
    assert not Project.objects.exists()


def test_a_project_over_the_team_budget_is_a_field_error(admin_client, team, projects_on):  # type: ignore[no-untyped-def]
    response = admin_client.post(
        PROJECTS_ADD, {"alias": "p1", "team": team.pk, "max_budget": "150"}
    )
    assert response.context["adminform"].form.errors["max_budget"] == [
        "Project max_budget (150) exceeds team's max_budget (100)."
    ]
    assert not Project.objects.exists()


def test_create_project_saves_through_the_service(admin_client, proxy_admin, team, projects_on):  # type: ignore[no-untyped-def]
    response = admin_client.post(
        PROJECTS_ADD,
        {
            "alias": "flights",
            "description": "d",
            "team": team.pk,
            "models": ["gpt-4o"],
            "max_budget": "10",
            "soft_budget": "5",
            "budget_duration": "1mo",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    project = Project.objects.get()
    assert (project.alias, project.team, project.models) == ("flights", team, ["gpt-4o"])
    assert project.created_by == str(proxy_admin.pk)
    assert project.budget_reset_at is not None
    assert "flights" in admin_client.get(PROJECTS_LIST).content.decode()


def test_deleting_a_project_with_keys_shows_the_key_count(admin_client, projects_on):  # type: ignore[no-untyped-def]
    key = VirtualKeyFactory()
    project = key.project
    url = reverse("admin:projects_project_delete", args=[project.pk])
    response = admin_client.post(url, {"post": "yes"}, follow=True)
    assert MSG_DELETE_WITH_KEYS.format(project=project.pk, count=1) in response.content.decode()
    assert Project.objects.filter(pk=project.pk).exists()


def test_a_team_admin_sees_and_posts_only_their_teams(client, team, make_team_admin, projects_on):  # type: ignore[no-untyped-def]
    other_team = TeamFactory(models=["gpt-4o"])
    mine = ProjectFactory(team=team, alias="mine")
    theirs = ProjectFactory(team=other_team, alias="theirs")
    client.force_login(make_team_admin(team))

    listing = client.get(PROJECTS_LIST).content.decode()
    assert "mine" in listing and "theirs" not in listing
    add_page = client.get(PROJECTS_ADD)
    team_choices = [
        c[0].value for c in add_page.context["adminform"].form.fields["team"].choices if c[0]
    ]
    assert team_choices == [team.pk]

    assert client.get(reverse("admin:projects_project_change", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:projects_project_delete", args=[theirs.pk])).status_code == 404
    assert (
        client.get(
            reverse("admin:projects_project_team_models"), {"team": other_team.pk}
        ).status_code
        == 404
    )
    assert (
        client.get(
            reverse(
                "admin:teams_list" if False else "admin:hierarchy_team_change", args=[other_team.pk]
            )
        ).status_code
        == 404
    )

    response = client.post(PROJECTS_ADD, {"alias": "sneaky", "team": other_team.pk})
    assert "team" in response.context["adminform"].form.errors
    assert not Project.objects.filter(alias="sneaky").exists()
    assert client.get(reverse("admin:projects_project_change", args=[mine.pk])).status_code == 200


@pytest.mark.parametrize(
    "url", [PROJECTS_LIST, "/admin/keys/virtualkey/", "/admin/hierarchy/team/"]
)
def test_list_pages_run_the_same_number_of_queries_for_1_and_25_rows(
    admin_client, projects_on, url
):  # type: ignore[no-untyped-def]
    VirtualKeyFactory()
    admin_client.get(url)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    one = count()
    for _ in range(24):
        VirtualKeyFactory()
    assert count() == one
