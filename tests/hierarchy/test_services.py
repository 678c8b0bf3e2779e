"""Services of users, organizations, teams, memberships, the catalog and access groups."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from hierarchy.access import NotFound, not_found_message
from hierarchy.actors import SYSTEM, Actor
from hierarchy.governance import (
    MSG_EXCEEDS_PARENT,
    MSG_LIMIT_BELOW_CHILD,
    MSG_MODEL_NOT_IN_PARENT,
    MSG_MODELS_NOT_A_LIST,
    MSG_MODELS_USED_BY_CHILD,
    MSG_MONEY_INVALID,
    effective_model_names,
)
from hierarchy.ids import PUBLIC_ID_MESSAGE
from hierarchy.models import (
    AccessGroup,
    CatalogModel,
    Organization,
    OrganizationMembership,
    OrganizationRole,
    Role,
    Team,
    TeamMembership,
    TeamRole,
    User,
)
from hierarchy.services import (
    MSG_DELETE_HAS_CHILDREN,
    MSG_ID_TAKEN,
    MSG_NOT_A_MEMBER,
    MSG_ORG_MEMBERS_DENIED,
    MSG_PROXY_ADMIN_ONLY,
    MSG_TEAM_CREATE_DENIED,
    MSG_TEAM_GOVERN_DENIED,
    MSG_TEAM_MEMBERS_DENIED,
    MSG_UNKNOWN_ACCESS_GROUPS,
    BatchValidationError,
    access_group_create,
    access_group_delete,
    access_group_update,
    catalog_model_create,
    catalog_model_delete,
    catalog_model_update,
    organization_create,
    organization_delete,
    organization_member_remove,
    organization_member_set,
    organization_update,
    team_create,
    team_create_many,
    team_delete,
    team_member_remove,
    team_member_set,
    team_update,
    user_create,
    user_delete,
    user_update,
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

BAD_IDS = ["", "-starts-with-dash", ".dot", "has space", "slash/inside", "a" * 129, "ünïcode"]


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (
            User,
            Organization,
            OrganizationMembership,
            Team,
            TeamMembership,
            CatalogModel,
            AccessGroup,
        )
    }


@pytest.fixture
def organization(catalog):
    return OrganizationFactory(
        models=["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku"],
        max_budget=Decimal("500"),
        rpm_limit=5000,
        tpm_limit=500000,
    )


@pytest.fixture
def org_admin(organization):
    user = UserFactory()
    organization_member_set(
        actor=SYSTEM, organization=organization, user=user, role=OrganizationRole.ORG_ADMIN
    )
    user.refresh_from_db()
    return user


@pytest.fixture
def org_member(organization):
    user = UserFactory()
    OrganizationMembershipFactory(organization=organization, user=user, role="member")
    return user


@pytest.fixture
def org_team(organization):
    return TeamFactory(
        organization=organization,
        models=["gpt-4o", "gpt-4o-mini"],
        max_budget=Decimal("100"),
        rpm_limit=1000,
        tpm_limit=100000,
    )


@pytest.fixture
def outsider(db):
    return UserFactory()


@pytest.fixture
def team_member(team):
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user, role="member")
    return user


# --- ids ------------------------------------------------------------------------------------


def test_a_caller_chosen_id_is_kept(proxy_admin):
    organization = organization_create(actor=proxy_admin, alias="acme", id="acme:prod@eu-1.x_y")
    assert Organization.objects.get(pk="acme:prod@eu-1.x_y") == organization


def test_without_an_id_a_uuid4_is_used(proxy_admin):
    organization = organization_create(actor=proxy_admin, alias="acme")
    assert len(organization.pk) == 36
    assert organization.pk[14] == "4"


@pytest.mark.parametrize("bad_id", [*BAD_IDS, "trailing-newline\n"])
def test_a_caller_chosen_id_of_the_wrong_shape_is_rejected(proxy_admin, bad_id):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        organization_create(actor=proxy_admin, alias="acme", id=bad_id)
    assert caught.value.message_dict == {"id": [PUBLIC_ID_MESSAGE]}
    assert counts() == before


@pytest.mark.parametrize(
    ("create", "existing"),
    [
        (
            lambda actor, pk: organization_create(actor=actor, alias="new", id=pk),
            OrganizationFactory,
        ),
        (lambda actor, pk: team_create(actor=actor, alias="new", id=pk), TeamFactory),
        (lambda actor, pk: user_create(actor=actor, username="new", id=pk), UserFactory),
        (lambda actor, pk: catalog_model_create(actor=actor, name="new", id=pk), None),
        (lambda actor, pk: access_group_create(actor=actor, name="new", id=pk), None),
    ],
)
def test_a_duplicate_caller_chosen_id_is_rejected(proxy_admin, create, existing):
    if existing is not None:
        taken = existing().pk
    else:
        taken = "taken-id"
        CatalogModel.objects.create(id=taken, name="old")
        AccessGroup.objects.create(id=taken, name="old")
    before = counts()
    with pytest.raises(ValidationError) as caught:
        create(proxy_admin, taken)
    assert caught.value.message_dict == {"id": [MSG_ID_TAKEN.format(id=taken)]}
    assert counts() == before


# --- organizations --------------------------------------------------------------------------


def test_a_proxy_admin_creates_an_organization_stamped_with_their_id(proxy_admin, catalog):
    organization = organization_create(
        actor=proxy_admin,
        alias="acme",
        models=["gpt-4o"],
        max_budget="250.5",
        budget_duration="1mo",
    )
    organization.refresh_from_db()
    assert organization.created_by == organization.updated_by == str(proxy_admin.pk)
    assert organization.models == ["gpt-4o"]
    assert organization.max_budget == Decimal("250.5")
    assert organization.budget_reset_at is not None
    assert organization.budget_reset_at.day == 1


def test_the_system_is_stamped_as_system(catalog):
    organization = organization_create(actor=SYSTEM, alias="acme")
    assert (organization.created_by, organization.updated_by) == ("system", "system")


def test_an_update_stamps_the_updater_and_keeps_the_creator(proxy_admin):
    organization = organization_create(actor=SYSTEM, alias="acme")
    organization_update(actor=proxy_admin, organization=organization, alias="acme2")
    organization.refresh_from_db()
    assert (organization.alias, organization.created_by, organization.updated_by) == (
        "acme2",
        "system",
        str(proxy_admin.pk),
    )


def test_a_key_actor_is_stamped_as_the_key(proxy_admin):
    organization = organization_create(actor=Actor(user=proxy_admin, key_id="k-1"), alias="acme")
    assert (organization.created_by, organization.updated_by) == ("key:k-1", "key:k-1")


@pytest.mark.parametrize("role", [Role.PROXY_ADMIN_VIEWER, Role.INTERNAL_USER])
def test_only_proxy_admins_create_organizations(role):
    user = UserFactory(role=role)
    before = counts()
    with pytest.raises(PermissionDenied) as caught:
        organization_create(actor=user, alias="acme")
    assert str(caught.value) == MSG_PROXY_ADMIN_ONLY.format(action="create organizations")
    assert counts() == before


def test_an_organization_alias_is_unique(proxy_admin):
    OrganizationFactory(alias="acme")
    before = counts()
    with pytest.raises(ValidationError) as caught:
        organization_create(actor=proxy_admin, alias="acme")
    assert "alias" in caught.value.message_dict
    assert counts() == before


def test_an_organization_with_an_invalid_budget_is_not_created(proxy_admin):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        organization_create(actor=proxy_admin, alias="acme", max_budget=-1)
    assert caught.value.message_dict == {
        "max_budget": [MSG_MONEY_INVALID.format(field="max_budget")]
    }
    assert counts() == before


def test_unknown_access_groups_are_named_and_nothing_is_written(proxy_admin):
    AccessGroupFactory(name="known")
    before = counts()
    with pytest.raises(ValidationError) as caught:
        organization_create(
            actor=proxy_admin, alias="acme", access_groups=["zeta", "known", "alpha"]
        )
    assert caught.value.message_dict == {
        "access_groups": [MSG_UNKNOWN_ACCESS_GROUPS.format(names="alpha, zeta")]
    }
    assert counts() == before


def test_access_groups_are_attached_to_an_organization(proxy_admin):
    group = AccessGroupFactory(name="fast")
    organization = organization_create(actor=proxy_admin, alias="acme", access_groups=["fast"])
    assert list(organization.access_groups.all()) == [group]


def test_an_organization_cannot_drop_models_its_teams_projects_and_keys_use(
    proxy_admin, organization, org_team
):
    project = ProjectFactory(team=org_team, models=["gpt-4o-mini"])
    key = VirtualKeyFactory(project=project, models=["gpt-4o-mini"])
    with pytest.raises(ValidationError) as caught:
        organization_update(actor=proxy_admin, organization=organization, models=["gpt-4o"])
    assert caught.value.message_dict == {
        "models": [
            MSG_MODELS_USED_BY_CHILD.format(
                level="team", label=org_team.alias, models="'gpt-4o-mini'"
            ),
            MSG_MODELS_USED_BY_CHILD.format(
                level="project", label=project.alias, models="'gpt-4o-mini'"
            ),
            MSG_MODELS_USED_BY_CHILD.format(
                level="key", label=key.key_name, models="'gpt-4o-mini'"
            ),
        ]
    }
    organization.refresh_from_db()
    assert organization.models == ["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku"]


def test_an_organization_may_drop_models_no_child_uses(proxy_admin, organization, org_team):
    organization_update(
        actor=proxy_admin, organization=organization, models=["gpt-4o", "gpt-4o-mini"]
    )
    organization.refresh_from_db()
    assert organization.models == ["gpt-4o", "gpt-4o-mini"]


@pytest.mark.parametrize(
    ("field", "value", "child_value"),
    [("max_budget", 50, "100"), ("rpm_limit", 999, "1000"), ("tpm_limit", 99999, "100000")],
)
def test_an_organization_cannot_lower_a_ceiling_below_a_teams(
    proxy_admin, organization, org_team, field, value, child_value
):
    with pytest.raises(ValidationError) as caught:
        organization_update(actor=proxy_admin, organization=organization, **{field: value})
    assert caught.value.message_dict == {
        field: [
            MSG_LIMIT_BELOW_CHILD.format(
                field=field,
                value=str(value),
                level="team",
                label=org_team.alias,
                child_value=child_value,
            )
        ]
    }
    organization.refresh_from_db()
    assert getattr(organization, field) != value


def test_an_org_admin_cannot_change_their_organization(org_admin, organization):
    with pytest.raises(PermissionDenied) as caught:
        organization_update(actor=org_admin, organization=organization, alias="renamed")
    assert str(caught.value) == MSG_PROXY_ADMIN_ONLY.format(action="change organizations")


def test_an_outsider_does_not_find_an_organization(outsider, organization):
    with pytest.raises(NotFound) as caught:
        organization_update(actor=outsider, organization=organization, alias="renamed")
    assert str(caught.value) == not_found_message("organization", organization.pk)
    assert str(caught.value) == f"Organization not found, organization_id={organization.pk}"


def test_an_organization_with_teams_is_not_deleted_and_neither_are_the_others(
    proxy_admin, organization, org_team
):
    TeamFactory(organization=organization)
    empty = OrganizationFactory()
    with pytest.raises(ValidationError) as caught:
        organization_delete(actor=proxy_admin, organizations=[empty, organization])
    assert caught.value.messages == [
        MSG_DELETE_HAS_CHILDREN.format(
            level="organization", label=organization.alias, count=2, children="team(s)"
        )
    ]
    assert Organization.objects.filter(pk__in=[empty.pk, organization.pk]).count() == 2


def test_empty_organizations_are_deleted(proxy_admin):
    first, second = OrganizationFactory(), OrganizationFactory()
    assert organization_delete(actor=proxy_admin, organizations=[first, second]) == 2
    assert not Organization.objects.exists()


def test_only_proxy_admins_delete_organizations(org_admin, organization):
    with pytest.raises(PermissionDenied) as caught:
        organization_delete(actor=org_admin, organizations=[organization])
    assert str(caught.value) == MSG_PROXY_ADMIN_ONLY.format(action="delete organizations")
    assert Organization.objects.filter(pk=organization.pk).exists()


# --- organization members -------------------------------------------------------------------


def test_org_admin_membership_grants_and_removes_staff_access(proxy_admin, organization):
    user = UserFactory()
    assert user.is_staff is False

    organization_member_set(
        actor=proxy_admin, organization=organization, user=user, role=OrganizationRole.ORG_ADMIN
    )
    user.refresh_from_db()
    assert user.is_staff is True

    organization_member_set(
        actor=proxy_admin, organization=organization, user=user, role=OrganizationRole.MEMBER
    )
    user.refresh_from_db()
    assert user.is_staff is False
    assert OrganizationMembership.objects.get(user=user).role == "member"

    organization_member_set(
        actor=proxy_admin, organization=organization, user=user, role=OrganizationRole.ORG_ADMIN
    )
    organization_member_remove(actor=proxy_admin, organization=organization, user=user)
    user.refresh_from_db()
    assert user.is_staff is False
    assert not OrganizationMembership.objects.filter(user=user).exists()


def test_an_org_admin_manages_their_organizations_members(org_admin, organization):
    user = UserFactory()
    organization_member_set(actor=org_admin, organization=organization, user=user)
    assert OrganizationMembership.objects.get(user=user).role == "member"
    organization_member_remove(actor=org_admin, organization=organization, user=user)
    assert not OrganizationMembership.objects.filter(user=user).exists()


def test_an_org_member_cannot_manage_members(org_member, organization):
    with pytest.raises(PermissionDenied) as caught:
        organization_member_set(actor=org_member, organization=organization, user=UserFactory())
    assert str(caught.value) == MSG_ORG_MEMBERS_DENIED
    with pytest.raises(PermissionDenied):
        organization_member_remove(actor=org_member, organization=organization, user=org_member)
    assert OrganizationMembership.objects.filter(organization=organization).count() == 1


def test_an_outsider_does_not_find_the_organization_to_add_members(outsider, organization):
    with pytest.raises(NotFound):
        organization_member_set(actor=outsider, organization=organization, user=outsider)
    assert not OrganizationMembership.objects.filter(user=outsider).exists()


def test_removing_a_non_member_from_an_organization_is_rejected(proxy_admin, organization):
    user = UserFactory()
    with pytest.raises(ValidationError) as caught:
        organization_member_remove(actor=proxy_admin, organization=organization, user=user)
    assert caught.value.message_dict == {
        "user_id": [
            MSG_NOT_A_MEMBER.format(user=user.pk, level="organization", label=organization.alias)
        ]
    }


def test_an_unknown_organization_role_is_a_validation_error(proxy_admin, organization):
    user = UserFactory()
    before = counts()
    with pytest.raises(ValidationError) as caught:
        organization_member_set(
            actor=proxy_admin, organization=organization, user=user, role="owner"
        )
    assert "role" in caught.value.message_dict
    assert counts() == before


# --- teams ----------------------------------------------------------------------------------


def test_a_proxy_admin_creates_a_team_without_an_organization(proxy_admin, catalog):
    team = team_create(actor=proxy_admin, alias="solo", models=["claude-3-5-sonnet"])
    team.refresh_from_db()
    assert team.organization is None
    assert team.models == ["claude-3-5-sonnet"]
    assert team.created_by == str(proxy_admin.pk)


def test_an_org_admin_creates_teams_in_their_organization(org_admin, organization):
    team = team_create(actor=org_admin, alias="research", organization=organization, max_budget=500)
    assert team.organization == organization
    assert team.created_by == team.updated_by == str(org_admin.pk)


def test_an_org_admin_cannot_create_a_team_without_an_organization(org_admin):
    before = counts()
    with pytest.raises(PermissionDenied) as caught:
        team_create(actor=org_admin, alias="solo")
    assert str(caught.value) == MSG_TEAM_CREATE_DENIED
    assert counts() == before


def test_an_org_member_cannot_create_teams(org_member, organization):
    with pytest.raises(PermissionDenied) as caught:
        team_create(actor=org_member, alias="research", organization=organization)
    assert str(caught.value) == MSG_TEAM_CREATE_DENIED
    assert not Team.objects.filter(alias="research").exists()


def test_an_outsider_does_not_find_the_organization_to_create_a_team_in(outsider, organization):
    with pytest.raises(NotFound) as caught:
        team_create(actor=outsider, alias="research", organization=organization, max_budget=-1)
    assert str(caught.value) == not_found_message("organization", organization.pk)
    assert not Team.objects.filter(alias="research").exists()


def test_team_models_must_be_within_the_organizations(proxy_admin, organization):
    with pytest.raises(ValidationError) as caught:
        team_create(
            actor=proxy_admin,
            alias="research",
            organization=organization,
            models=["gpt-4o", "claude-3-5-sonnet", "openai/*"],
        )
    assert caught.value.message_dict == {
        "models": [
            MSG_MODEL_NOT_IN_PARENT.format(model="claude-3-5-sonnet", parent="organization"),
            MSG_MODEL_NOT_IN_PARENT.format(model="openai/*", parent="organization"),
        ]
    }
    assert not Team.objects.filter(alias="research").exists()


@pytest.mark.parametrize(
    ("field", "value", "parent_value"),
    [("max_budget", "500.01", "500"), ("rpm_limit", 5001, "5000"), ("tpm_limit", 500001, "500000")],
)
def test_team_ceilings_must_not_exceed_the_organizations(
    proxy_admin, organization, field, value, parent_value
):
    with pytest.raises(ValidationError) as caught:
        team_create(
            actor=proxy_admin, alias="research", organization=organization, **{field: value}
        )
    assert caught.value.message_dict == {
        field: [
            MSG_EXCEEDS_PARENT.format(
                level="Team",
                field=field,
                value=value,
                parent="organization",
                parent_value=parent_value,
            )
        ]
    }
    assert not Team.objects.filter(alias="research").exists()


def test_a_team_alias_is_unique_within_its_organization(proxy_admin, organization, org_team):
    other = OrganizationFactory()
    before = counts()
    with pytest.raises(ValidationError):
        team_create(actor=proxy_admin, alias=org_team.alias, organization=organization)
    assert counts() == before
    assert team_create(actor=proxy_admin, alias=org_team.alias, organization=other).pk
    assert team_create(actor=proxy_admin, alias=org_team.alias).organization is None


def test_a_team_alias_is_unique_among_teams_without_an_organization(proxy_admin):
    team_create(actor=proxy_admin, alias="solo")
    before = counts()
    with pytest.raises(ValidationError):
        team_create(actor=proxy_admin, alias="solo")
    assert counts() == before


def test_a_team_is_created_with_its_members(proxy_admin, organization):
    admin, member, litellm_user = UserFactory(), UserFactory(), UserFactory()
    team = team_create(
        actor=proxy_admin,
        alias="research",
        organization=organization,
        members=[(admin, "admin"), (member, "member"), (litellm_user, "user")],
    )
    roles = dict(TeamMembership.objects.filter(team=team).values_list("user_id", "role"))
    assert roles == {admin.pk: "admin", member.pk: "member", litellm_user.pk: "member"}
    admin.refresh_from_db()
    member.refresh_from_db()
    assert (admin.is_staff, member.is_staff) == (True, False)


def test_a_team_with_a_bad_member_role_is_not_created_at_all(proxy_admin, organization):
    admin, member = UserFactory(), UserFactory()
    before = counts()
    with pytest.raises(ValidationError):
        team_create(
            actor=proxy_admin,
            alias="research",
            organization=organization,
            members=[(admin, "admin"), (member, "owner")],
        )
    assert counts() == before
    admin.refresh_from_db()
    assert admin.is_staff is False


def test_an_org_admin_changes_a_teams_limits(org_admin, org_team):
    team_update(actor=org_admin, team=org_team, max_budget=200, rpm_limit=10)
    org_team.refresh_from_db()
    assert (org_team.max_budget, org_team.rpm_limit) == (Decimal("200"), 10)
    assert org_team.updated_by == str(org_admin.pk)


def test_a_team_admin_cannot_change_their_teams_models_budgets_or_limits(team, make_team_admin):
    admin = make_team_admin(team)
    for change in ({"models": ["gpt-4o"]}, {"max_budget": 1}, {"rpm_limit": 1}, {"alias": "x"}):
        with pytest.raises(PermissionDenied) as caught:
            team_update(actor=admin, team=team, **change)
        assert str(caught.value) == MSG_TEAM_GOVERN_DENIED
    team.refresh_from_db()
    assert (team.models, team.max_budget, team.rpm_limit) == (
        ["gpt-4o", "gpt-4o-mini"],
        Decimal("100"),
        1000,
    )


def test_a_proxy_admin_viewer_sees_a_team_but_cannot_change_it(team):
    viewer = UserFactory(role=Role.PROXY_ADMIN_VIEWER)
    with pytest.raises(PermissionDenied):
        team_update(actor=viewer, team=team, rpm_limit=1)


def test_an_outsider_does_not_find_a_team_even_with_invalid_values(outsider, team):
    with pytest.raises(NotFound) as caught:
        team_update(actor=outsider, team=team, max_budget="nope")
    assert str(caught.value) == f"Team not found, team_id={team.pk}"


def test_a_team_member_gets_permission_denied_before_validation(team, team_member):
    with pytest.raises(PermissionDenied):
        team_update(actor=team_member, team=team, max_budget="nope")


def test_a_team_cannot_drop_models_its_projects_and_keys_use(proxy_admin, team):
    project = ProjectFactory(team=team, models=["gpt-4o-mini"])
    key = VirtualKeyFactory(project=None, team=team, key_alias="ci", models=["gpt-4o-mini"])
    ProjectFactory(team=team, models=["gpt-4o"])
    with pytest.raises(ValidationError) as caught:
        team_update(actor=proxy_admin, team=team, models=["gpt-4o"])
    assert caught.value.message_dict == {
        "models": [
            MSG_MODELS_USED_BY_CHILD.format(
                level="project", label=project.alias, models="'gpt-4o-mini'"
            ),
            MSG_MODELS_USED_BY_CHILD.format(
                level="key", label=key.key_alias, models="'gpt-4o-mini'"
            ),
        ]
    }
    team.refresh_from_db()
    assert team.models == ["gpt-4o", "gpt-4o-mini"]


def test_a_team_cannot_lower_its_budget_below_a_projects(proxy_admin, team):
    project = ProjectFactory(team=team, max_budget=Decimal("80"))
    with pytest.raises(ValidationError) as caught:
        team_update(actor=proxy_admin, team=team, max_budget="79.5")
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_LIMIT_BELOW_CHILD.format(
                field="max_budget",
                value="79.5",
                level="project",
                label=project.alias,
                child_value="80",
            )
        ]
    }
    team_update(actor=proxy_admin, team=team, max_budget=80)
    team.refresh_from_db()
    assert team.max_budget == Decimal("80")


def test_moving_a_team_rechecks_its_settings_against_the_new_organization(proxy_admin, org_team):
    strict = OrganizationFactory(models=["gpt-4o"], max_budget=Decimal("10"), rpm_limit=None)
    with pytest.raises(ValidationError) as caught:
        team_update(actor=proxy_admin, team=org_team, organization=strict)
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Team",
                field="max_budget",
                value="100",
                parent="organization",
                parent_value="10",
            )
        ],
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="organization")],
    }
    org_team.refresh_from_db()
    assert org_team.organization != strict


def test_moving_a_team_checks_its_projects_against_the_new_organization(proxy_admin, catalog):
    team = TeamFactory(organization=None, models=[], max_budget=None)
    ProjectFactory(team=team, models=["claude-3-5-sonnet"], max_budget=Decimal("80"))
    strict = OrganizationFactory(models=["gpt-4o"], max_budget=Decimal("10"))
    with pytest.raises(ValidationError):
        team_update(actor=proxy_admin, team=team, organization=strict)
    team.refresh_from_db()
    assert team.organization is None


def test_a_team_moves_only_to_an_organization_the_org_admin_manages(org_admin, org_team):
    elsewhere = OrganizationFactory()
    with pytest.raises(NotFound):
        team_update(actor=org_admin, team=org_team, organization=elsewhere)
    with pytest.raises(PermissionDenied) as caught:
        team_update(actor=org_admin, team=org_team, organization=None)
    assert str(caught.value) == MSG_TEAM_GOVERN_DENIED
    org_team.refresh_from_db()
    assert org_team.organization_id is not None


def test_a_team_cannot_shrink_by_detaching_an_access_group_its_projects_use(proxy_admin, catalog):
    AccessGroupFactory(name="big", models=["gpt-4o"])
    team = team_create(actor=proxy_admin, alias="t", models=["gpt-4o-mini"], access_groups=["big"])
    ProjectFactory(team=team, models=["gpt-4o"])
    with pytest.raises(ValidationError):
        team_update(actor=proxy_admin, team=team, access_groups=[])
    assert [g.name for g in team.access_groups.all()] == ["big"]


def test_a_team_with_projects_is_not_deleted_and_neither_are_the_others(proxy_admin, team):
    ProjectFactory(team=team)
    ProjectFactory(team=team)
    empty = TeamFactory()
    with pytest.raises(ValidationError) as caught:
        team_delete(actor=proxy_admin, teams=[empty, team])
    assert caught.value.messages == [
        MSG_DELETE_HAS_CHILDREN.format(
            level="team", label=team.alias, count=2, children="project(s)"
        )
    ]
    assert Team.objects.filter(pk__in=[empty.pk, team.pk]).count() == 2


def test_a_team_with_keys_but_no_projects_is_not_deleted(proxy_admin, team):
    VirtualKeyFactory(project=None, team=team)
    with pytest.raises(ValidationError) as caught:
        team_delete(actor=proxy_admin, teams=[team])
    assert caught.value.messages == [
        MSG_DELETE_HAS_CHILDREN.format(level="team", label=team.alias, count=1, children="key(s)")
    ]
    assert Team.objects.filter(pk=team.pk).exists()


def test_a_team_admin_cannot_delete_their_team(team, make_team_admin):
    admin = make_team_admin(team)
    with pytest.raises(PermissionDenied) as caught:
        team_delete(actor=admin, teams=[team])
    assert str(caught.value) == MSG_TEAM_GOVERN_DENIED
    assert Team.objects.filter(pk=team.pk).exists()


def test_an_org_admin_deletes_an_empty_team_with_its_memberships(org_admin, org_team):
    TeamMembershipFactory(team=org_team)
    assert team_delete(actor=org_admin, teams=[org_team]) >= 1
    assert not Team.objects.filter(pk=org_team.pk).exists()
    assert not TeamMembership.objects.filter(team_id=org_team.pk).exists()


# --- team members ---------------------------------------------------------------------------


def test_team_admin_membership_grants_and_removes_staff_access(proxy_admin, team):
    user = UserFactory()
    team_member_set(actor=proxy_admin, team=team, user=user, role=TeamRole.ADMIN)
    user.refresh_from_db()
    assert user.is_staff is True

    team_member_set(actor=proxy_admin, team=team, user=user, role="user")
    user.refresh_from_db()
    assert user.is_staff is False
    assert TeamMembership.objects.get(team=team, user=user).role == "member"

    team_member_set(actor=proxy_admin, team=team, user=user, role=TeamRole.ADMIN)
    team_member_remove(actor=proxy_admin, team=team, user=user)
    user.refresh_from_db()
    assert user.is_staff is False


def test_staff_access_stays_while_another_admin_role_remains(proxy_admin, team, organization):
    user = UserFactory()
    team_member_set(actor=proxy_admin, team=team, user=user, role=TeamRole.ADMIN)
    organization_member_set(
        actor=proxy_admin, organization=organization, user=user, role=OrganizationRole.ORG_ADMIN
    )
    team_member_remove(actor=proxy_admin, team=team, user=user)
    user.refresh_from_db()
    assert user.is_staff is True

    viewer = UserFactory(role=Role.PROXY_ADMIN_VIEWER, is_staff=True)
    team_member_set(actor=proxy_admin, team=team, user=viewer, role=TeamRole.ADMIN)
    team_member_remove(actor=proxy_admin, team=team, user=viewer)
    viewer.refresh_from_db()
    assert viewer.is_staff is True


def test_a_team_admin_manages_their_teams_members(team, make_team_admin):
    admin = make_team_admin(team)
    newcomer = UserFactory()
    membership = team_member_set(actor=admin, team=team, user=newcomer)
    assert membership.role == "member"
    team_member_remove(actor=admin, team=team, user=newcomer)
    assert not TeamMembership.objects.filter(user=newcomer).exists()


def test_a_team_member_cannot_manage_members(team, team_member):
    newcomer = UserFactory()
    with pytest.raises(PermissionDenied) as caught:
        team_member_set(actor=team_member, team=team, user=newcomer, role=TeamRole.ADMIN)
    assert str(caught.value) == MSG_TEAM_MEMBERS_DENIED
    with pytest.raises(PermissionDenied):
        team_member_set(actor=team_member, team=team, user=team_member, role=TeamRole.ADMIN)
    assert TeamMembership.objects.get(user=team_member).role == "member"
    assert not TeamMembership.objects.filter(user=newcomer).exists()


def test_a_team_admin_does_not_find_another_team(team, make_team_admin):
    admin, other, newcomer = make_team_admin(team), TeamFactory(), UserFactory()
    with pytest.raises(NotFound) as caught:
        team_member_set(actor=admin, team=other, user=newcomer)
    assert str(caught.value) == not_found_message("team", other.pk)
    assert not TeamMembership.objects.filter(team=other).exists()


def test_an_unknown_team_role_is_rejected_and_nothing_changes(proxy_admin, team, team_member):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        team_member_set(actor=proxy_admin, team=team, user=UserFactory(), role="owner")
    assert "role" in caught.value.message_dict
    with pytest.raises(ValidationError):
        team_member_set(actor=proxy_admin, team=team, user=team_member, role="owner")
    assert counts() == {**before, "User": before["User"] + 1}
    assert TeamMembership.objects.get(user=team_member).role == "member"


def test_removing_a_non_member_from_a_team_is_rejected(proxy_admin, team):
    user = UserFactory()
    with pytest.raises(ValidationError) as caught:
        team_member_remove(actor=proxy_admin, team=team, user=user)
    assert caught.value.message_dict == {
        "user_id": [MSG_NOT_A_MEMBER.format(user=user.pk, level="team", label=team.alias)]
    }


# --- users ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "superuser", "staff"),
    [
        (Role.PROXY_ADMIN, True, True),
        (Role.PROXY_ADMIN_VIEWER, False, True),
        (Role.INTERNAL_USER, False, False),
        (Role.INTERNAL_USER_VIEWER, False, False),
    ],
)
def test_a_users_global_role_decides_superuser_and_staff(proxy_admin, role, superuser, staff):
    user = user_create(actor=proxy_admin, username="new", email="new@example.com", role=role)
    user.refresh_from_db()
    assert (user.role, user.is_superuser, user.is_staff) == (role, superuser, staff)
    assert user.created_by == str(proxy_admin.pk)


def test_a_user_without_a_password_cannot_log_in_and_one_with_a_password_can(proxy_admin):
    without = user_create(actor=proxy_admin, username="a")
    assert without.has_usable_password() is False
    with_password = user_create(actor=proxy_admin, username="b", password="a-long-passphrase-42")
    assert with_password.check_password("a-long-passphrase-42")


def test_a_weak_password_is_rejected_and_no_user_is_written(proxy_admin):
    before = counts()
    with pytest.raises(ValidationError):
        user_create(actor=proxy_admin, username="weak", password="password")
    assert counts() == before


def test_a_user_email_is_unique_but_many_users_may_have_none(proxy_admin):
    UserFactory(email="taken@example.com")
    before = counts()
    with pytest.raises(ValidationError):
        user_create(actor=proxy_admin, username="other", email="taken@example.com")
    assert counts() == before
    user_create(actor=proxy_admin, username="a")
    user_create(actor=proxy_admin, username="b")
    assert User.objects.filter(email="").count() == 2


def test_a_user_with_an_invalid_budget_is_not_created(proxy_admin):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        user_create(actor=proxy_admin, username="a", max_budget="inf")
    assert caught.value.message_dict == {
        "max_budget": [MSG_MONEY_INVALID.format(field="max_budget")]
    }
    assert counts() == before


@pytest.mark.parametrize("role", [Role.PROXY_ADMIN_VIEWER, Role.INTERNAL_USER])
def test_only_proxy_admins_create_and_delete_users(role):
    actor, victim = UserFactory(role=role), UserFactory()
    before = counts()
    with pytest.raises(PermissionDenied) as caught:
        user_create(actor=actor, username="new")
    assert str(caught.value) == MSG_PROXY_ADMIN_ONLY.format(action="create users")
    with pytest.raises(PermissionDenied) as caught:
        user_delete(actor=actor, users=[victim])
    assert str(caught.value) == MSG_PROXY_ADMIN_ONLY.format(action="delete users")
    assert counts() == before


def test_a_user_cannot_change_their_own_account_through_the_service():
    user = UserFactory()
    with pytest.raises(PermissionDenied) as caught:
        user_update(actor=user, user=user, role=Role.PROXY_ADMIN)
    assert str(caught.value) == MSG_PROXY_ADMIN_ONLY.format(action="change users")
    user.refresh_from_db()
    assert (user.role, user.is_superuser) == (Role.INTERNAL_USER, False)


def test_a_team_admin_sees_their_members_but_cannot_change_them(team, team_member, make_team_admin):
    admin = make_team_admin(team)
    with pytest.raises(PermissionDenied):
        user_update(actor=admin, user=team_member, email="x@example.com")


def test_an_outsider_does_not_find_another_user(outsider):
    other = UserFactory()
    with pytest.raises(NotFound) as caught:
        user_update(actor=outsider, user=other, email="x@example.com")
    assert str(caught.value) == f"User not found, user_id={other.pk}"


def test_changing_a_users_role_updates_superuser_and_staff(proxy_admin):
    user = UserFactory()
    user_update(actor=proxy_admin, user=user, role=Role.PROXY_ADMIN)
    user.refresh_from_db()
    assert (user.is_superuser, user.is_staff) == (True, True)

    user_update(actor=proxy_admin, user=user, role=Role.PROXY_ADMIN_VIEWER)
    user.refresh_from_db()
    assert (user.is_superuser, user.is_staff) == (False, True)

    user_update(actor=proxy_admin, user=user, role=Role.INTERNAL_USER)
    user.refresh_from_db()
    assert (user.is_superuser, user.is_staff) == (False, False)
    assert user.updated_by == str(proxy_admin.pk)


def test_demoting_a_team_admin_keeps_staff_from_the_membership(proxy_admin, team, make_team_admin):
    admin = make_team_admin(team)
    user_update(actor=proxy_admin, user=admin, role=Role.INTERNAL_USER_VIEWER)
    admin.refresh_from_db()
    assert admin.is_staff is True


def test_an_invalid_user_update_changes_nothing(proxy_admin):
    user = UserFactory(email="before@example.com")
    with pytest.raises(ValidationError):
        user_update(actor=proxy_admin, user=user, email="after@example.com", rpm_limit=-5)
    user.refresh_from_db()
    assert user.email == "before@example.com"


def test_a_proxy_admin_deletes_users(proxy_admin):
    first, second = UserFactory(), UserFactory()
    user_delete(actor=proxy_admin, users=[first, second])
    assert not User.objects.filter(pk__in=[first.pk, second.pk]).exists()


# --- catalog --------------------------------------------------------------------------------


def test_a_proxy_admin_adds_changes_and_removes_catalog_models(proxy_admin):
    model = catalog_model_create(
        actor=SYSTEM,
        name="gpt-4.1",
        provider="openai",
        upstream_model="gpt-4.1-2025",
        input_cost_per_token=Decimal("0.000002"),
    )
    assert (model.created_by, model.updated_by) == ("system", "system")
    catalog_model_update(actor=proxy_admin, model=model, max_output_tokens=8192)
    model.refresh_from_db()
    assert (model.max_output_tokens, model.updated_by) == (8192, str(proxy_admin.pk))
    assert catalog_model_delete(actor=proxy_admin, models=[model]) == 1
    assert not CatalogModel.objects.exists()


@pytest.mark.parametrize("role", [Role.PROXY_ADMIN_VIEWER, Role.INTERNAL_USER])
def test_only_proxy_admins_change_the_catalog(role, catalog):
    user = UserFactory(role=role)
    message = MSG_PROXY_ADMIN_ONLY.format(action="change the model catalog")
    before = counts()
    with pytest.raises(PermissionDenied) as caught:
        catalog_model_create(actor=user, name="new")
    assert str(caught.value) == message
    with pytest.raises(PermissionDenied):
        catalog_model_update(actor=user, model=catalog["gpt-4o"], max_output_tokens=1)
    with pytest.raises(PermissionDenied):
        catalog_model_delete(actor=user, models=[catalog["gpt-4o"]])
    assert counts() == before
    catalog["gpt-4o"].refresh_from_db()
    assert catalog["gpt-4o"].max_output_tokens == 4096


def test_unknown_catalog_fields_are_named(proxy_admin):
    with pytest.raises(ValidationError) as caught:
        catalog_model_create(actor=proxy_admin, name="x", price=1, colour="red")
    assert caught.value.message_dict == {"colour": ["Unknown field."], "price": ["Unknown field."]}
    assert not CatalogModel.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "x", "input_cost_per_token": Decimal("-0.1")},
        {"name": "x", "provider": "azure"},
        {"name": "x", "mode": "image"},
        {"name": "x", "api_base": "not a url"},
    ],
)
def test_invalid_catalog_models_are_rejected(proxy_admin, fields):
    with pytest.raises(ValidationError):
        catalog_model_create(actor=proxy_admin, **fields)
    assert not CatalogModel.objects.exists()


def test_a_catalog_model_name_is_unique(proxy_admin, catalog):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        catalog_model_create(actor=proxy_admin, name="gpt-4o")
    assert "name" in caught.value.message_dict
    assert counts() == before


# --- access groups --------------------------------------------------------------------------


def test_a_proxy_admin_manages_access_groups(proxy_admin, catalog):
    group = access_group_create(
        actor=proxy_admin, name="fast", models=[" gpt-4o-mini", "gpt-4o-mini"], agents=["a"]
    )
    assert group.models == ["gpt-4o-mini"]
    assert group.created_by == str(proxy_admin.pk)
    access_group_update(actor=SYSTEM, group=group, models=["openai/*"], description="d")
    group.refresh_from_db()
    assert (group.models, group.description, group.updated_by) == (["openai/*"], "d", "system")
    assert access_group_delete(actor=proxy_admin, groups=[group]) >= 1
    assert not AccessGroup.objects.exists()


def test_access_group_models_must_be_a_list_of_names(proxy_admin):
    with pytest.raises(ValidationError) as caught:
        access_group_create(actor=proxy_admin, name="fast", models="gpt-4o")
    assert caught.value.message_dict == {"models": [MSG_MODELS_NOT_A_LIST]}
    group = AccessGroupFactory(models=["gpt-4o"])
    with pytest.raises(ValidationError):
        access_group_update(actor=proxy_admin, group=group, models=[1])
    group.refresh_from_db()
    assert group.models == ["gpt-4o"]


def test_unknown_access_group_fields_are_named(proxy_admin):
    with pytest.raises(ValidationError) as caught:
        access_group_create(actor=proxy_admin, name="fast", budget=1)
    assert caught.value.message_dict == {"budget": ["Unknown field."]}
    assert not AccessGroup.objects.exists()


@pytest.mark.parametrize("role", [Role.PROXY_ADMIN_VIEWER, Role.INTERNAL_USER])
def test_only_proxy_admins_change_access_groups(role):
    user = UserFactory(role=role)
    group = AccessGroupFactory(name="fast")
    message = MSG_PROXY_ADMIN_ONLY.format(action="change access groups")
    for call in (
        lambda: access_group_create(actor=user, name="new"),
        lambda: access_group_update(actor=user, group=group, name="renamed"),
        lambda: access_group_delete(actor=user, groups=[group]),
    ):
        with pytest.raises(PermissionDenied) as caught:
            call()
        assert str(caught.value) == message
    assert list(AccessGroup.objects.values_list("name", flat=True)) == ["fast"]


def test_an_access_group_name_is_unique(proxy_admin):
    AccessGroupFactory(name="fast")
    with pytest.raises(ValidationError) as caught:
        access_group_create(actor=proxy_admin, name="fast")
    assert "name" in caught.value.message_dict
    assert AccessGroup.objects.count() == 1


def test_deleting_an_access_group_never_widens_a_team_it_restricts(proxy_admin, catalog):
    AccessGroupFactory(name="small", models=["gpt-4o-mini"])
    team = team_create(actor=proxy_admin, alias="t", access_groups=["small"])
    assert effective_model_names(team) == ["gpt-4o-mini"]
    with contextlib.suppress(ValidationError):
        access_group_delete(actor=proxy_admin, groups=AccessGroup.objects.filter(name="small"))
    team = Team.objects.get(pk=team.pk)
    assert "claude-3-5-sonnet" not in effective_model_names(team)


def test_an_access_group_cannot_shrink_below_the_models_a_child_of_its_user_holds(
    proxy_admin, catalog
):
    group = AccessGroupFactory(name="small", models=["gpt-4o-mini", "gpt-4o"])
    team = team_create(actor=proxy_admin, alias="t", access_groups=["small"])
    ProjectFactory(team=team, models=["gpt-4o"])
    with pytest.raises(ValidationError):
        access_group_update(actor=proxy_admin, group=group, models=["gpt-4o-mini"])
    group.refresh_from_db()
    assert group.models == ["gpt-4o-mini", "gpt-4o"]


def test_an_access_group_used_by_name_cannot_be_renamed_from_under_its_users(proxy_admin, catalog):
    group = AccessGroupFactory(name="small", models=["gpt-4o-mini"])
    team = team_create(actor=proxy_admin, alias="t", models=["small"])
    with contextlib.suppress(ValidationError):
        access_group_update(actor=proxy_admin, group=group, name="tiny")
    assert effective_model_names(Team.objects.get(pk=team.pk)) == ["gpt-4o-mini"]


# --- team_create_many: team_create's rules for a batch (manage.py apply) ---------------------


def test_team_create_many_creates_teams_marked_and_stamped_like_team_create(catalog):
    organization = organization_create(actor=SYSTEM, alias="Acme", models=["gpt-4o"])

    teams = team_create_many(
        actor=SYSTEM,
        teams=[
            {"alias": "Search", "organization": organization, "models": ["gpt-4o"]},
            {"alias": "Lab", "max_budget": "12.5", "budget_duration": "7d"},
        ],
        config_managed=True,
    )

    search, lab = (Team.objects.get(pk=team.pk) for team in teams)
    assert search.organization == organization and search.models == ["gpt-4o"]
    assert lab.organization is None and lab.max_budget == Decimal("12.5")
    assert lab.budget_reset_at is not None
    assert search.config_managed and search.created_by == search.updated_by == "system"


def test_team_create_many_names_every_invalid_team_and_writes_nothing(catalog):
    organization = organization_create(actor=SYSTEM, alias="Acme", models=["gpt-4o"])
    team_create(actor=SYSTEM, alias="Taken", organization=organization)

    with pytest.raises(BatchValidationError) as caught:
        team_create_many(
            actor=SYSTEM,
            teams=[
                {"alias": "Fine", "organization": organization},
                {"alias": "Wide", "organization": organization, "models": ["gpt-4o-mini"]},
                {"alias": "Taken", "organization": organization},
                {"alias": "Grouped", "access_groups": ["no-such-group"]},
            ],
        )

    assert {index: error.message_dict for index, error in caught.value.by_item.items()} == {
        1: {"models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="organization")]},
        2: {"alias": ["Team with this Organization and Name already exists."]},
        3: {"access_groups": [MSG_UNKNOWN_ACCESS_GROUPS.format(names="no-such-group")]},
    }
    assert not Team.objects.filter(alias="Fine").exists()


def test_team_create_many_checks_scope_then_permission_like_team_create(catalog):
    organization = organization_create(actor=SYSTEM, alias="Acme")
    member = UserFactory()
    organization_member_set(actor=SYSTEM, organization=organization, user=member)
    other = organization_create(actor=SYSTEM, alias="Other")

    with pytest.raises(NotFound):
        team_create_many(actor=member, teams=[{"alias": "x", "organization": other}])
    with pytest.raises(PermissionDenied, match=MSG_TEAM_CREATE_DENIED):
        team_create_many(actor=member, teams=[{"alias": "x", "organization": organization}])
    assert not Team.objects.exists()
