"""Project services: create, update, move, delete, and the UI settings flag."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from hierarchy.access import NotFound, not_found_message
from hierarchy.actors import SYSTEM
from hierarchy.governance import (
    MSG_EXCEEDS_PARENT,
    MSG_LIMIT_BELOW_CHILD,
    MSG_MODEL_NOT_IN_PARENT,
    MSG_MODELS_USED_BY_CHILD,
    MSG_SOFT_BUDGET_NOT_BELOW_MAX,
)
from hierarchy.ids import PUBLIC_ID_MESSAGE
from hierarchy.models import AuditEntry, OrganizationRole, Role, TeamMembership
from hierarchy.services import MSG_ID_TAKEN, BatchValidationError, organization_member_set
from projects.models import Project, UISettings
from projects.selectors import projects_ui_enabled
from projects.services import (
    MSG_CHANGE_DENIED,
    MSG_CREATE_DENIED,
    MSG_DELETE_WITH_KEYS,
    MSG_MOVE_DENIED,
    MSG_MOVE_WITH_KEYS,
    MSG_UI_SETTINGS_DENIED,
    project_create,
    project_create_many,
    project_delete,
    project_update,
    ui_settings_update,
)
from tests.factories import (
    AccessGroupFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    ProjectFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
    VirtualKeyFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_member(team):
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user, role="member")
    return user


@pytest.fixture
def outsider(db):
    return UserFactory()


@pytest.fixture
def project(team):
    return ProjectFactory(team=team, models=["gpt-4o"], max_budget=Decimal("50"), rpm_limit=100)


@pytest.fixture
def other_team(catalog):
    return TeamFactory(models=["gpt-4o", "claude-3-5-haiku"], max_budget=Decimal("40"))


# --- create ---------------------------------------------------------------------------------


def test_a_proxy_admin_creates_a_project_stamped_with_their_id(proxy_admin, team):
    project = project_create(
        actor=proxy_admin,
        team=team,
        alias="chatbot",
        description="Support bot",
        models=["gpt-4o-mini"],
        max_budget="25.50",
        soft_budget=20,
        rpm_limit=100,
        budget_duration="7d",
        metadata={"owner": "support"},
    )
    project.refresh_from_db()
    assert (project.team, project.alias, project.description) == (team, "chatbot", "Support bot")
    assert project.models == ["gpt-4o-mini"]
    assert (project.max_budget, project.soft_budget) == (Decimal("25.5"), Decimal("20"))
    assert project.metadata == {"owner": "support"}
    assert project.created_by == project.updated_by == str(proxy_admin.pk)
    assert project.budget_reset_at is not None


def test_a_team_admin_creates_projects_in_their_own_team(team, make_team_admin):
    admin = make_team_admin(team)
    project = project_create(actor=admin, team=team, alias="chatbot", models=["gpt-4o"])
    assert project.team == team
    assert project.created_by == str(admin.pk)


def test_an_org_admin_creates_projects_in_their_organizations_teams(team):
    admin = UserFactory()
    organization_member_set(
        actor=SYSTEM, organization=team.organization, user=admin, role=OrganizationRole.ORG_ADMIN
    )
    assert project_create(actor=admin, team=team, alias="chatbot").team == team


def test_a_plain_team_member_may_not_create_projects(team, team_member):
    with pytest.raises(PermissionDenied) as caught:
        project_create(actor=team_member, team=team, alias="chatbot")
    assert str(caught.value) == MSG_CREATE_DENIED
    assert str(caught.value) == "Only admins or team admins can create projects."
    assert not Project.objects.exists()


def test_a_viewer_may_not_create_projects(team):
    viewer = UserFactory(role=Role.PROXY_ADMIN_VIEWER)
    with pytest.raises(PermissionDenied) as caught:
        project_create(actor=viewer, team=team, alias="chatbot")
    assert str(caught.value) == MSG_CREATE_DENIED
    assert not Project.objects.exists()


def test_an_outsider_does_not_find_the_team_even_with_invalid_values(outsider, team):
    with pytest.raises(NotFound) as caught:
        project_create(actor=outsider, team=team, alias="chatbot", models=["claude-3-5-sonnet"])
    assert str(caught.value) == not_found_message("team", team.pk)
    assert not Project.objects.exists()


def test_a_member_of_the_organization_only_does_not_find_its_teams(team):
    member = UserFactory()
    OrganizationMembershipFactory(organization=team.organization, user=member, role="member")
    with pytest.raises(NotFound):
        project_create(actor=member, team=team, alias="chatbot")


def test_a_team_admin_does_not_find_another_team(team, make_team_admin, other_team):
    admin = make_team_admin(team)
    with pytest.raises(NotFound) as caught:
        project_create(actor=admin, team=other_team, alias="chatbot")
    assert str(caught.value) == not_found_message("team", other_team.pk)
    assert not Project.objects.exists()


def test_project_models_outside_team_are_rejected(proxy_admin, team):
    with pytest.raises(ValidationError) as caught:
        project_create(
            actor=proxy_admin,
            team=team,
            alias="chatbot",
            models=["gpt-4o", "claude-3-5-sonnet", "*"],
        )
    assert caught.value.message_dict == {
        "models": [
            "Model 'claude-3-5-sonnet' not in team's allowed models.",
            "Model '*' not in team's allowed models.",
        ]
    }
    assert not Project.objects.exists()


def test_project_models_are_checked_against_the_organization_when_the_team_inherits(proxy_admin):
    organization = OrganizationFactory(models=["openai/*"])
    team = TeamFactory(organization=organization, models=[])
    with pytest.raises(ValidationError) as caught:
        project_create(
            actor=proxy_admin, team=team, alias="p", models=["openai/gpt-4.1", "openaix/gpt-5"]
        )
    assert caught.value.message_dict == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="openaix/gpt-5", parent="team")]
    }


def test_a_project_budget_over_the_teams_is_rejected(proxy_admin, team):
    with pytest.raises(ValidationError) as caught:
        project_create(actor=proxy_admin, team=team, alias="p", max_budget="100.01", rpm_limit=1001)
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field="max_budget",
                value="100.01",
                parent="team",
                parent_value="100",
            )
        ],
        "rpm_limit": [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field="rpm_limit",
                value="1001",
                parent="team",
                parent_value="1000",
            )
        ],
    }
    assert not Project.objects.exists()


@pytest.mark.parametrize(("soft", "maximum"), [("10", "10"), ("10.5", "10")])
def test_a_soft_budget_not_below_the_max_budget_is_rejected(proxy_admin, team, soft, maximum):
    with pytest.raises(ValidationError) as caught:
        project_create(
            actor=proxy_admin, team=team, alias="p", max_budget=maximum, soft_budget=soft
        )
    assert caught.value.message_dict == {
        "soft_budget": [MSG_SOFT_BUDGET_NOT_BELOW_MAX.format(soft=soft, max=maximum)]
    }


def test_a_caller_chosen_project_id_is_kept_and_a_duplicate_is_rejected(proxy_admin, team):
    project = project_create(actor=proxy_admin, team=team, alias="a", id="proj-1")
    assert project.pk == "proj-1"
    with pytest.raises(ValidationError) as caught:
        project_create(actor=proxy_admin, team=team, alias="b", id="proj-1")
    assert caught.value.message_dict == {"id": [MSG_ID_TAKEN.format(id="proj-1")]}
    with pytest.raises(ValidationError) as caught:
        project_create(actor=proxy_admin, team=team, alias="c", id="no spaces")
    assert caught.value.message_dict == {"id": [PUBLIC_ID_MESSAGE]}
    assert list(Project.objects.values_list("alias", flat=True)) == ["a"]


def test_a_project_alias_is_unique_within_its_team(proxy_admin, team, other_team):
    project_create(actor=proxy_admin, team=team, alias="chatbot")
    with pytest.raises(ValidationError):
        project_create(actor=proxy_admin, team=team, alias="chatbot")
    assert Project.objects.count() == 1
    project_create(actor=proxy_admin, team=other_team, alias="chatbot")
    assert Project.objects.count() == 2


def test_a_project_access_group_outside_the_team_is_rejected(proxy_admin, team):
    AccessGroupFactory(name="claude-models", models=["claude-3-5-sonnet"])
    with pytest.raises(ValidationError) as caught:
        project_create(actor=proxy_admin, team=team, alias="p", access_groups=["claude-models"])
    assert "claude-models" in str(caught.value)
    assert not Project.objects.exists()


def test_a_project_access_group_within_the_team_is_attached(proxy_admin, team):
    group = AccessGroupFactory(name="mini", models=["gpt-4o-mini"])
    project = project_create(actor=proxy_admin, team=team, alias="p", access_groups=["mini"])
    assert list(project.access_groups.all()) == [group]


# --- update ---------------------------------------------------------------------------------


def test_a_team_admin_updates_their_teams_project(team, project, make_team_admin):
    admin = make_team_admin(team)
    project_update(
        actor=admin, project=project, alias="renamed", models=["gpt-4o-mini"], blocked=True
    )
    project.refresh_from_db()
    assert (project.alias, project.models, project.blocked) == ("renamed", ["gpt-4o-mini"], True)
    assert project.updated_by == str(admin.pk)
    assert project.max_budget == Decimal("50")


def test_a_team_member_may_not_change_a_project(team, project, team_member):
    with pytest.raises(PermissionDenied) as caught:
        project_update(actor=team_member, project=project, blocked=True)
    assert str(caught.value) == MSG_CHANGE_DENIED
    project.refresh_from_db()
    assert project.blocked is False


def test_an_outsider_does_not_find_a_project(outsider, project):
    with pytest.raises(NotFound) as caught:
        project_update(actor=outsider, project=project, max_budget=-1)
    assert str(caught.value) == f"Project not found, project_id={project.pk}"


def test_updated_project_models_must_stay_within_the_team(proxy_admin, project):
    with pytest.raises(ValidationError) as caught:
        project_update(actor=proxy_admin, project=project, models=["claude-3-5-haiku"])
    assert caught.value.message_dict == {
        "models": ["Model 'claude-3-5-haiku' not in team's allowed models."]
    }
    project.refresh_from_db()
    assert project.models == ["gpt-4o"]


def test_an_updated_project_budget_must_stay_within_the_team(proxy_admin, project):
    with pytest.raises(ValidationError) as caught:
        project_update(actor=proxy_admin, project=project, max_budget=101)
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field="max_budget",
                value="101",
                parent="team",
                parent_value="100",
            )
        ]
    }
    project.refresh_from_db()
    assert project.max_budget == Decimal("50")


def test_a_soft_budget_is_checked_against_the_stored_max_budget(proxy_admin, project):
    with pytest.raises(ValidationError) as caught:
        project_update(actor=proxy_admin, project=project, soft_budget=50)
    assert caught.value.message_dict == {
        "soft_budget": [MSG_SOFT_BUDGET_NOT_BELOW_MAX.format(soft="50", max="50")]
    }


def test_a_project_cannot_drop_models_or_lower_limits_its_keys_use(proxy_admin, project):
    key = VirtualKeyFactory(project=project, key_alias="ci", models=["gpt-4o"], max_budget=30)
    with pytest.raises(ValidationError) as caught:
        project_update(actor=proxy_admin, project=project, models=["gpt-4o-mini"], max_budget=20)
    assert caught.value.message_dict == {
        "models": [MSG_MODELS_USED_BY_CHILD.format(level="key", label="ci", models="'gpt-4o'")],
        "max_budget": [
            MSG_LIMIT_BELOW_CHILD.format(
                field="max_budget", value="20", level="key", label=key.key_alias, child_value="30"
            )
        ],
    }
    project.refresh_from_db()
    assert (project.models, project.max_budget) == (["gpt-4o"], Decimal("50"))


def test_a_project_alias_change_to_a_taken_alias_is_rejected(proxy_admin, team, project):
    ProjectFactory(team=team, alias="taken")
    with pytest.raises(ValidationError):
        project_update(actor=proxy_admin, project=project, alias="taken")
    project.refresh_from_db()
    assert project.alias != "taken"


# --- moving between teams -------------------------------------------------------------------


def test_moving_a_project_revalidates_it_against_the_target_team(proxy_admin, project, other_team):
    with pytest.raises(ValidationError) as caught:
        project_update(actor=proxy_admin, project=project, team=other_team, models=["gpt-4o-mini"])
    assert caught.value.message_dict == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="team")],
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field="max_budget",
                value="50",
                parent="team",
                parent_value="40",
            )
        ],
    }
    project.refresh_from_db()
    assert project.team_id != other_team.pk


def test_a_project_moves_when_it_fits_the_target_team(proxy_admin, team, project, other_team):
    project_update(actor=proxy_admin, project=project, team=other_team, max_budget=40)
    project.refresh_from_db()
    assert (project.team, project.max_budget, project.models) == (
        other_team,
        Decimal("40"),
        ["gpt-4o"],
    )


def test_a_project_with_keys_cannot_change_team(proxy_admin, project, other_team):
    VirtualKeyFactory(project=project)
    VirtualKeyFactory(project=project)
    with pytest.raises(ValidationError) as caught:
        project_update(actor=proxy_admin, project=project, team=other_team, max_budget=40)
    assert caught.value.message_dict == {
        "team": [MSG_MOVE_WITH_KEYS.format(project=project.alias, count=2)]
    }
    assert caught.value.message_dict["team"] == [
        f"Cannot move project {project.alias} to another team. 2 key(s) are associated with it."
    ]
    project.refresh_from_db()
    assert project.team_id != other_team.pk


def test_moving_a_project_needs_admin_rights_on_the_target_team(
    team, project, other_team, make_team_admin
):
    admin = make_team_admin(team)
    with pytest.raises(NotFound) as not_found:
        project_update(actor=admin, project=project, team=other_team, max_budget=40)
    assert str(not_found.value) == not_found_message("team", other_team.pk)

    TeamMembershipFactory(team=other_team, user=admin, role="member")
    with pytest.raises(PermissionDenied) as denied:
        project_update(actor=admin, project=project, team=other_team, max_budget=40)
    assert str(denied.value) == MSG_MOVE_DENIED
    project.refresh_from_db()
    assert (project.team_id, project.max_budget) == (team.pk, Decimal("50"))

    TeamMembership.objects.filter(team=other_team, user=admin).update(role="admin")
    project_update(actor=admin, project=project, team=other_team, max_budget=40)
    project.refresh_from_db()
    assert project.team_id == other_team.pk


def test_permission_on_the_target_team_is_checked_before_the_keys(
    team, project, other_team, make_team_admin
):
    VirtualKeyFactory(project=project)
    admin = make_team_admin(team)
    with pytest.raises(NotFound):
        project_update(actor=admin, project=project, team=other_team)


# --- delete ---------------------------------------------------------------------------------


def test_projects_without_keys_are_deleted(team, make_team_admin):
    admin = make_team_admin(team)
    first, second = ProjectFactory(team=team), ProjectFactory(team=team)
    assert project_delete(actor=admin, projects=[first, second]) >= 2
    assert not Project.objects.exists()


def test_a_project_with_keys_is_not_deleted_and_neither_are_the_others(proxy_admin, team):
    empty = ProjectFactory(team=team)
    one_key = ProjectFactory(team=team)
    three_keys = ProjectFactory(team=team)
    VirtualKeyFactory(project=one_key)
    for _ in range(3):
        VirtualKeyFactory(project=three_keys)
    with pytest.raises(ValidationError) as caught:
        project_delete(actor=proxy_admin, projects=[empty, one_key, three_keys])
    assert caught.value.messages == [
        MSG_DELETE_WITH_KEYS.format(project=one_key.pk, count=1),
        MSG_DELETE_WITH_KEYS.format(project=three_keys.pk, count=3),
    ]
    assert caught.value.messages[0] == (
        f"Cannot delete project {one_key.pk}. 1 key(s) are associated with it. "
        "Please delete or reassign the keys first."
    )
    assert Project.objects.count() == 3


def test_deleting_a_project_the_caller_cannot_see_deletes_nothing(team, make_team_admin):
    admin = make_team_admin(team)
    mine, foreign = ProjectFactory(team=team), ProjectFactory()
    with pytest.raises(NotFound) as caught:
        project_delete(actor=admin, projects=[mine, foreign])
    assert str(caught.value) == not_found_message("project", foreign.pk)
    assert Project.objects.count() == 2


def test_a_team_member_may_not_delete_projects(team, project, team_member):
    with pytest.raises(PermissionDenied) as caught:
        project_delete(actor=team_member, projects=[project])
    assert str(caught.value) == MSG_CHANGE_DENIED
    assert Project.objects.filter(pk=project.pk).exists()


# --- UI settings ----------------------------------------------------------------------------


def test_a_proxy_admin_switches_the_projects_pages_on_and_off(proxy_admin):
    assert projects_ui_enabled() is False
    ui = ui_settings_update(actor=proxy_admin, enable_projects_ui=True)
    assert (ui.pk, ui.updated_by) == (1, str(proxy_admin.pk))
    assert projects_ui_enabled() is True
    ui_settings_update(actor=SYSTEM, enable_projects_ui=False)
    assert projects_ui_enabled() is False
    assert UISettings.objects.get().updated_by == "system"
    assert UISettings.objects.count() == 1


@pytest.mark.parametrize("role", [Role.PROXY_ADMIN_VIEWER, Role.INTERNAL_USER])
def test_only_proxy_admins_change_the_ui_settings(role, team, make_team_admin):
    for user in (UserFactory(role=role), make_team_admin(team)):
        with pytest.raises(PermissionDenied) as caught:
            ui_settings_update(actor=user, enable_projects_ui=True)
        assert str(caught.value) == MSG_UI_SETTINGS_DENIED
    assert projects_ui_enabled() is False


# --- project_create_many: project_create's rules for a batch (manage.py apply) ----------------


def test_project_create_many_creates_every_project_with_its_audit_entry(team):
    made = project_create_many(
        actor=SYSTEM,
        projects=[
            {"team": team, "alias": "a", "models": ["gpt-4o"], "description": "first"},
            {"team": team, "alias": "b", "max_budget": 10},
        ],
        config_managed=True,
    )

    assert [project.alias for project in made] == ["a", "b"]
    first = Project.objects.get(alias="a")
    assert first.models == ["gpt-4o"] and first.description == "first" and first.config_managed
    entries = AuditEntry.objects.filter(object_type="project", action="create")
    assert sorted(entries.values_list("object_id", flat=True)) == sorted(p.pk for p in made)
    assert entries.get(object_id=first.pk).team_id == team.pk


def test_project_create_many_names_every_invalid_project_and_writes_nothing(team):
    ProjectFactory(team=team, alias="taken")

    with pytest.raises(BatchValidationError) as caught:
        project_create_many(
            actor=SYSTEM,
            projects=[
                {"team": team, "alias": "fine"},
                {"team": team, "alias": "wide", "models": ["claude-3-5-haiku"]},
                {"team": team, "alias": "taken"},
                {"team": team, "alias": "rich", "max_budget": 1000},
                {"team": team, "alias": ""},
            ],
        )

    errors = {index: error.message_dict for index, error in caught.value.by_item.items()}
    assert errors[1] == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="claude-3-5-haiku", parent="team")]
    }
    assert errors[2] == {"alias": ["Project with this Team and Project name already exists."]}
    assert errors[3] == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field="max_budget",
                value="1000",
                parent="team",
                parent_value="100",
            )
        ]
    }
    assert errors[4] == {"alias": ["This field cannot be blank."]}
    assert set(errors) == {1, 2, 3, 4}
    assert not Project.objects.filter(alias="fine").exists()


def test_project_create_many_checks_scope_then_permission_like_project_create(
    team, team_member, outsider
):
    with pytest.raises(NotFound):
        project_create_many(actor=outsider, projects=[{"team": team, "alias": "x"}])
    with pytest.raises(PermissionDenied, match=MSG_CREATE_DENIED):
        project_create_many(actor=team_member, projects=[{"team": team, "alias": "x"}])
    assert not Project.objects.exists()
