"""Database constraints hold even when a write bypasses the services (Model.objects / update)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from hierarchy.models import (
    AccessGroup,
    CatalogModel,
    Organization,
    OrganizationMembership,
    Team,
    TeamMembership,
    User,
)
from keys.models import VirtualKey
from keys.services import display_name
from projects.models import Project, UISettings
from tests.factories import (
    AccessGroupFactory,
    CatalogModelFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    ProjectFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
    VirtualKeyFactory,
)

pytestmark = pytest.mark.django_db


@contextmanager
def violates(name: str, sqlite_hint: str | None = None) -> Iterator[None]:
    """The block must fail in the database with constraint ``name``.

    PostgreSQL names every constraint in its message; SQLite names check constraints but only
    the columns of a unique constraint (``sqlite_hint``).
    """
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        yield
    message = str(caught.value)
    if connection.vendor == "sqlite" and sqlite_hint is not None:
        assert sqlite_hint in message
    else:
        assert name in message


GOVERNED = {
    "hierarchy_user": (User, UserFactory),
    "hierarchy_organization": (Organization, OrganizationFactory),
    "hierarchy_team": (Team, TeamFactory),
    "projects_project": (Project, ProjectFactory),
    "keys_virtualkey": (VirtualKey, VirtualKeyFactory),
}


@pytest.fixture(params=list(GOVERNED))
def governed(request):
    model, factory = GOVERNED[request.param]
    return request.param, model, factory()


# --- governance fields, on every level ------------------------------------------------------


def test_a_negative_max_budget_is_refused_by_the_database(governed):
    table, model, row = governed
    with violates(f"{table}_max_budget_not_negative"):
        model.objects.filter(pk=row.pk).update(max_budget=Decimal("-0.000000001"))


def test_a_negative_soft_budget_is_refused_by_the_database(governed):
    table, model, row = governed
    with violates(f"{table}_soft_budget_not_negative"):
        model.objects.filter(pk=row.pk).update(soft_budget=-1)


@pytest.mark.parametrize("soft", [Decimal("10"), Decimal("10.5")])
def test_a_soft_budget_not_below_the_max_budget_is_refused_by_the_database(governed, soft):
    table, model, row = governed
    with violates(f"{table}_soft_budget_below_max_budget"):
        model.objects.filter(pk=row.pk).update(soft_budget=soft, max_budget=Decimal("10"))


def test_negative_spend_is_refused_by_the_database(governed):
    table, model, row = governed
    with violates(f"{table}_spend_not_negative"):
        model.objects.filter(pk=row.pk).update(spend=Decimal("-1"))


def test_budgets_may_be_unlimited_or_soft_below_max(governed):
    _, model, row = governed
    model.objects.filter(pk=row.pk).update(soft_budget=5, max_budget=None)
    model.objects.filter(pk=row.pk).update(soft_budget=None, max_budget=0)
    model.objects.filter(pk=row.pk).update(soft_budget=Decimal("9.99"), max_budget=10)
    assert model.objects.get(pk=row.pk).soft_budget == Decimal("9.99")


# --- users ----------------------------------------------------------------------------------


def test_two_users_cannot_share_an_email():
    UserFactory(email="same@example.com")
    with violates("hierarchy_user_email_unique", sqlite_hint="hierarchy_user.email"):
        User.objects.create(username="other", email="same@example.com")


def test_many_users_may_have_no_email():
    User.objects.create(username="a", email="")
    User.objects.create(username="b", email="")
    assert User.objects.filter(email="").count() == 2


def test_a_user_role_outside_the_choices_is_refused():
    user = UserFactory()
    with violates("hierarchy_user_role_valid"):
        User.objects.filter(pk=user.pk).update(role="root")


# --- organizations and teams ----------------------------------------------------------------


def test_an_organization_alias_is_unique_and_not_empty():
    OrganizationFactory(alias="acme")
    with violates("hierarchy_organization_alias", sqlite_hint="hierarchy_organization.alias"):
        Organization.objects.create(alias="acme")
    with violates("hierarchy_organization_alias_not_empty"):
        Organization.objects.create(alias="")


def test_a_team_alias_is_unique_within_its_organization():
    team = TeamFactory(alias="research")
    with violates(
        "hierarchy_team_alias_unique_in_organization",
        sqlite_hint="hierarchy_team.organization_id, hierarchy_team.alias",
    ):
        Team.objects.create(alias="research", organization=team.organization)
    Team.objects.create(alias="research", organization=OrganizationFactory())
    assert Team.objects.filter(alias="research").count() == 2


def test_a_team_alias_is_unique_among_teams_without_an_organization():
    Team.objects.create(alias="solo", organization=None)
    with violates(
        "hierarchy_team_alias_unique_without_organization", sqlite_hint="hierarchy_team.alias"
    ):
        Team.objects.create(alias="solo", organization=None)


def test_a_team_without_an_organization_may_share_an_alias_with_one_that_has_one():
    TeamFactory(alias="research")
    Team.objects.create(alias="research", organization=None)
    assert Team.objects.filter(alias="research").count() == 2


def test_renaming_a_team_onto_a_taken_alias_is_refused():
    organization = OrganizationFactory()
    TeamFactory(alias="a", organization=organization)
    second = TeamFactory(alias="b", organization=organization)
    with violates(
        "hierarchy_team_alias_unique_in_organization",
        sqlite_hint="hierarchy_team.organization_id, hierarchy_team.alias",
    ):
        Team.objects.filter(pk=second.pk).update(alias="a")


def test_a_team_alias_cannot_be_empty():
    with violates("hierarchy_team_alias_not_empty"):
        Team.objects.create(alias="", organization=None)


def test_an_organization_with_teams_is_protected():
    team = TeamFactory()
    with pytest.raises(ProtectedError), transaction.atomic():
        team.organization.delete()
    assert Organization.objects.filter(pk=team.organization_id).exists()


# --- memberships ----------------------------------------------------------------------------


def test_a_user_is_a_team_member_once():
    membership = TeamMembershipFactory()
    with violates("hierarchy_teammembership_unique", sqlite_hint="hierarchy_teammembership"):
        TeamMembership.objects.create(team=membership.team, user=membership.user, role="admin")


def test_a_team_role_outside_the_choices_is_refused():
    with violates("hierarchy_teammembership_role_valid"):
        TeamMembershipFactory(role="owner")


def test_a_user_is_an_organization_member_once():
    membership = OrganizationMembershipFactory()
    with violates(
        "hierarchy_organizationmembership_unique", sqlite_hint="hierarchy_organizationmembership"
    ):
        OrganizationMembership.objects.create(
            organization=membership.organization, user=membership.user, role="org_admin"
        )


def test_an_organization_role_outside_the_choices_is_refused():
    with violates("hierarchy_organizationmembership_role_valid"):
        OrganizationMembershipFactory(role="owner")


def test_deleting_a_team_deletes_its_memberships_but_not_its_users():
    membership = TeamMembershipFactory()
    membership.team.delete()
    assert not TeamMembership.objects.exists()
    assert User.objects.filter(pk=membership.user_id).exists()


# --- catalog and access groups --------------------------------------------------------------


def test_catalog_prices_cannot_be_negative():
    model = CatalogModelFactory()
    with violates("hierarchy_catalogmodel_prices_not_negative"):
        CatalogModel.objects.filter(pk=model.pk).update(input_cost_per_token=Decimal("-0.1"))
    with violates("hierarchy_catalogmodel_prices_not_negative"):
        CatalogModel.objects.filter(pk=model.pk).update(output_cost_per_token=Decimal("-0.1"))


@pytest.mark.parametrize(
    ("field", "value", "constraint"),
    [
        ("mode", "image", "hierarchy_catalogmodel_mode_valid"),
        ("provider", "azure", "hierarchy_catalogmodel_provider_valid"),
        ("name", "", "hierarchy_catalogmodel_name_not_empty"),
    ],
)
def test_catalog_models_hold_valid_values(field, value, constraint):
    model = CatalogModelFactory()
    with violates(constraint):
        CatalogModel.objects.filter(pk=model.pk).update(**{field: value})


def test_a_catalog_model_name_is_unique():
    CatalogModelFactory(name="gpt-4o")
    with violates("hierarchy_catalogmodel_name", sqlite_hint="hierarchy_catalogmodel.name"):
        CatalogModel.objects.create(name="gpt-4o")


def test_an_access_group_name_is_unique_and_not_empty():
    AccessGroupFactory(name="fast")
    with violates("hierarchy_accessgroup_name", sqlite_hint="hierarchy_accessgroup.name"):
        AccessGroup.objects.create(name="fast")
    with violates("hierarchy_accessgroup_name_not_empty"):
        AccessGroup.objects.create(name="")


# --- projects and UI settings ---------------------------------------------------------------


def test_a_project_alias_is_unique_within_its_team():
    project = ProjectFactory(alias="chatbot")
    with violates(
        "projects_project_alias_unique_in_team",
        sqlite_hint="projects_project.team_id, projects_project.alias",
    ):
        Project.objects.create(alias="chatbot", team=project.team)
    Project.objects.create(alias="chatbot", team=TeamFactory())
    assert Project.objects.filter(alias="chatbot").count() == 2


def test_a_project_alias_cannot_be_empty():
    with violates("projects_project_alias_not_empty"):
        Project.objects.create(alias="", team=TeamFactory())


def test_a_team_with_projects_is_protected():
    project = ProjectFactory()
    with pytest.raises(ProtectedError), transaction.atomic():
        project.team.delete()
    assert Team.objects.filter(pk=project.team_id).exists()


def test_there_is_only_one_ui_settings_row():
    UISettings.objects.create()
    assert UISettings.objects.get().pk == UISettings.SINGLETON_ID
    with violates("projects_uisettings_singleton"):
        UISettings.objects.create(id=2)
    with violates("projects_uisettings_singleton"):
        UISettings.objects.filter(pk=1).update(id=3)
    assert UISettings.objects.count() == 1


# --- keys -----------------------------------------------------------------------------------


def test_a_key_with_a_project_must_have_a_team():
    project = ProjectFactory()
    with violates("keys_virtualkey_project_has_team"):
        VirtualKeyFactory(project=project, team=None)
    key = VirtualKeyFactory(project=project)
    with violates("keys_virtualkey_project_has_team"):
        VirtualKey.objects.filter(pk=key.pk).update(team=None)


def test_a_key_without_a_project_may_have_no_team():
    key = VirtualKeyFactory(project=None)
    assert (key.project_id, key.team_id) == (None, None)


def test_a_key_hash_is_unique():
    key = VirtualKeyFactory(plaintext="sk-" + "a" * 40)
    with violates("keys_virtualkey_token_hash", sqlite_hint="keys_virtualkey.token_hash"):
        VirtualKey.objects.create(
            token_hash=key.token_hash, key_name=display_name("sk-" + "a" * 40)
        )


def test_a_key_alias_is_unique_when_set_and_never_empty():
    VirtualKeyFactory(key_alias="ci")
    with violates("keys_virtualkey_key_alias", sqlite_hint="keys_virtualkey.key_alias"):
        VirtualKeyFactory(key_alias="ci")
    with violates("keys_virtualkey_alias_null_or_not_empty"):
        VirtualKeyFactory(key_alias="")
    VirtualKeyFactory(key_alias=None)
    VirtualKeyFactory(key_alias=None)
    assert VirtualKey.objects.filter(key_alias__isnull=True).count() == 2


def test_a_project_with_keys_is_protected_from_deletion():
    key = VirtualKeyFactory()
    project = key.project
    with pytest.raises(ProtectedError), transaction.atomic():
        project.delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        Project.objects.filter(pk=project.pk).delete()
    assert Project.objects.filter(pk=project.pk).exists()


def test_a_project_with_keys_cannot_be_deleted_even_in_raw_sql():
    key = VirtualKeyFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM projects_project WHERE id = %s", [key.project_id])
        connection.check_constraints(table_names=["keys_virtualkey"])
    assert Project.objects.filter(pk=key.project_id).exists()


def test_a_team_with_keys_is_protected():
    key = VirtualKeyFactory(project=None, team=TeamFactory())
    with pytest.raises(ProtectedError), transaction.atomic():
        key.team.delete()
    assert Team.objects.filter(pk=key.team_id).exists()


def test_deleting_a_user_keeps_their_keys_without_an_owner():
    user = UserFactory()
    key = VirtualKeyFactory(user=user)
    user.delete()
    key.refresh_from_db()
    assert key.user is None
