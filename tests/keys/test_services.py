"""Key services: generation shown once, hashing, placement, limits, rotation, blocking, deletion."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from hierarchy.access import NotFound, not_found_message
from hierarchy.actors import SYSTEM
from hierarchy.governance import (
    MSG_DURATION_INVALID,
    MSG_EXCEEDS_PARENT,
    MSG_MODEL_NOT_IN_PARENT,
)
from hierarchy.ids import PUBLIC_ID_MESSAGE
from hierarchy.models import Role
from hierarchy.services import MSG_ID_TAKEN, BatchValidationError
from keys.models import VirtualKey
from keys.services import (
    MSG_CHANGE_DENIED,
    MSG_CUSTOM_KEY_INVALID,
    MSG_KEY_TAKEN,
    MSG_PERSONAL_KEY_DENIED,
    MSG_PROJECT_REASSIGN,
    MSG_PROJECT_TEAM_MISMATCH,
    MSG_TEAM_DENIED,
    expires_after,
    hash_key,
    key_delete,
    key_generate,
    key_generate_many,
    key_regenerate,
    key_set_blocked,
    key_update,
)
from tests.factories import ProjectFactory, TeamFactory, TeamMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

KEY_SHAPE = re.compile(r"^sk-[A-Za-z0-9_-]{32,}$")
CUSTOM_KEY = "sk-custom-" + "A1b2_" * 7


@pytest.fixture
def project(team):
    return ProjectFactory(team=team, models=["gpt-4o"], max_budget=Decimal("50"), rpm_limit=100)


@pytest.fixture
def team_member(team):
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user, role="member")
    return user


@pytest.fixture
def outsider(db):
    return UserFactory()


def row_of(key: VirtualKey) -> Mapping[str, Any]:
    return VirtualKey.objects.filter(pk=key.pk).values().get()


# --- generation -----------------------------------------------------------------------------


def test_a_generated_key_is_returned_once_and_only_its_sha256_is_stored(proxy_admin, project):
    key, plaintext = key_generate(actor=proxy_admin, project=project, key_alias="ci")
    assert KEY_SHAPE.match(plaintext)
    assert len(plaintext) >= 3 + 32
    row = row_of(key)
    assert row["token_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", row["token_hash"])
    assert row["key_name"] == f"sk-...{plaintext[-4:]}"
    secret_part = plaintext[3:]
    for column, value in row.items():
        assert secret_part not in str(value), column
    assert not hasattr(key, "plaintext")


def test_every_generated_key_is_different(proxy_admin, project):
    plaintexts = {key_generate(actor=proxy_admin, project=project)[1] for _ in range(5)}
    assert len(plaintexts) == 5
    assert VirtualKey.objects.values("token_hash").distinct().count() == 5


def test_a_key_with_a_project_belongs_to_the_projects_team(proxy_admin, team, project):
    key, _ = key_generate(actor=proxy_admin, project=project)
    key.refresh_from_db()
    assert (key.project, key.team) == (project, team)
    assert key.created_by == key.updated_by == str(proxy_admin.pk)


def test_a_key_given_its_projects_team_is_accepted(proxy_admin, team, project):
    key, _ = key_generate(actor=proxy_admin, project=project, team=team)
    assert key.team == team


def test_a_key_for_a_project_and_another_team_is_refused(proxy_admin, project):
    other = TeamFactory()
    with pytest.raises(PermissionDenied) as caught:
        key_generate(actor=proxy_admin, project=project, team=other)
    assert str(caught.value) == MSG_PROJECT_TEAM_MISMATCH.format(
        project=project.pk, project_team=project.team_id, team=other.pk
    )
    assert not VirtualKey.objects.exists()


def test_key_models_outside_the_project_are_rejected(proxy_admin, project):
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, models=["gpt-4o", "gpt-4o-mini"])
    assert caught.value.message_dict == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="project")]
    }
    assert caught.value.message_dict["models"] == [
        "Model 'gpt-4o-mini' not in project's allowed models."
    ]
    assert not VirtualKey.objects.exists()


def test_key_models_are_checked_up_to_the_team_when_the_project_inherits(proxy_admin, team):
    project = ProjectFactory(team=team, models=[])
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, models=["claude-3-5-haiku"])
    assert caught.value.message_dict == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="claude-3-5-haiku", parent="project")]
    }
    key, _ = key_generate(actor=proxy_admin, project=project, models=["gpt-4o-mini"])
    assert key.models == ["gpt-4o-mini"]


def test_a_key_budget_over_the_projects_is_rejected(proxy_admin, project):
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, max_budget="50.01")
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Key",
                field="max_budget",
                value="50.01",
                parent="project",
                parent_value="50",
            )
        ]
    }
    key, _ = key_generate(actor=proxy_admin, project=project, max_budget=50)
    assert key.max_budget == Decimal("50")


def test_a_key_budget_is_checked_against_the_team_when_the_project_has_none(proxy_admin, team):
    project = ProjectFactory(team=team, max_budget=None)
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, max_budget=101)
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Key", field="max_budget", value="101", parent="team", parent_value="100"
            )
        ]
    }


def test_a_key_alias_is_unique(proxy_admin, project):
    key_generate(actor=proxy_admin, project=project, key_alias="ci")
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, key_alias="ci")
    assert list(caught.value.message_dict) == ["key_alias"]
    assert VirtualKey.objects.count() == 1
    key_generate(actor=proxy_admin, project=project, key_alias="")
    key_generate(actor=proxy_admin, project=project, key_alias=None)
    assert VirtualKey.objects.filter(key_alias__isnull=True).count() == 2


def test_a_custom_key_is_accepted_and_stored_as_its_hash(proxy_admin, project):
    key, plaintext = key_generate(actor=proxy_admin, project=project, key=CUSTOM_KEY)
    assert plaintext == CUSTOM_KEY
    assert row_of(key)["token_hash"] == hash_key(CUSTOM_KEY)
    assert key.key_name == f"sk-...{CUSTOM_KEY[-4:]}"


@pytest.mark.parametrize(
    "custom",
    [
        "sk-short",
        "sk-" + "a" * 31,
        "pk-" + "a" * 40,
        "sk" + "a" * 40,
        "sk-" + "a" * 39 + "!",
        "sk-" + "a" * 30 + " bb",
        "sk-" + "a" * 40 + "\n",
        "",
    ],
)
def test_a_malformed_custom_key_is_rejected(proxy_admin, project, custom):
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, key=custom)
    assert caught.value.message_dict == {"key": [MSG_CUSTOM_KEY_INVALID]}
    assert not VirtualKey.objects.exists()


def test_a_custom_key_already_in_use_is_rejected(proxy_admin, project):
    key_generate(actor=proxy_admin, project=project, key=CUSTOM_KEY)
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, key=CUSTOM_KEY)
    assert caught.value.message_dict == {"key": [MSG_KEY_TAKEN]}
    assert VirtualKey.objects.count() == 1


def test_a_caller_chosen_key_id_is_kept_and_a_duplicate_is_rejected(proxy_admin, project):
    key, _ = key_generate(actor=proxy_admin, project=project, id="key-1")
    assert key.pk == "key-1"
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, id="key-1")
    assert caught.value.message_dict == {"id": [MSG_ID_TAKEN.format(id="key-1")]}
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, id="key 2")
    assert caught.value.message_dict == {"id": [PUBLIC_ID_MESSAGE]}
    assert VirtualKey.objects.count() == 1


# --- duration -------------------------------------------------------------------------------


def test_a_duration_in_days_sets_expires_that_many_days_ahead(proxy_admin, project):
    before = timezone.now()
    key, _ = key_generate(actor=proxy_admin, project=project, duration="30d")
    after = timezone.now()
    assert key.expires is not None
    assert before + timedelta(days=30) <= key.expires <= after + timedelta(days=30)


def test_a_duration_in_months_sets_expires_a_calendar_month_ahead(proxy_admin, project):
    before = timezone.now()
    key, _ = key_generate(actor=proxy_admin, project=project, duration="1mo")
    after = timezone.now()
    assert key.expires is not None
    assert expires_after("1mo", before) <= key.expires <= expires_after("1mo", after)
    assert timedelta(days=28) <= key.expires - before <= timedelta(days=31, seconds=1)


def test_without_a_duration_a_key_does_not_expire(proxy_admin, project):
    key, _ = key_generate(actor=proxy_admin, project=project)
    assert key.expires is None


@pytest.mark.parametrize(
    ("duration", "start", "expected"),
    [
        ("30d", datetime(2024, 1, 31, 9, 30, tzinfo=UTC), datetime(2024, 3, 1, 9, 30, tzinfo=UTC)),
        ("1mo", datetime(2024, 1, 15, 9, 30, tzinfo=UTC), datetime(2024, 2, 15, 9, 30, tzinfo=UTC)),
        ("1mo", datetime(2024, 1, 31, 9, 30, tzinfo=UTC), datetime(2024, 2, 29, 9, 30, tzinfo=UTC)),
        ("1mo", datetime(2023, 1, 31, tzinfo=UTC), datetime(2023, 2, 28, tzinfo=UTC)),
        ("1mo", datetime(2024, 12, 31, tzinfo=UTC), datetime(2025, 1, 31, tzinfo=UTC)),
        ("13mo", datetime(2024, 3, 31, tzinfo=UTC), datetime(2025, 4, 30, tzinfo=UTC)),
        ("2w", datetime(2024, 3, 13, 8, tzinfo=UTC), datetime(2024, 3, 27, 8, tzinfo=UTC)),
        ("12h", datetime(2024, 3, 13, 20, tzinfo=UTC), datetime(2024, 3, 14, 8, tzinfo=UTC)),
    ],
)
def test_expiry_counts_elapsed_time_or_calendar_months(duration, start, expected):
    assert expires_after(duration, start) == expected


def test_an_invalid_duration_is_rejected_and_no_key_is_written(proxy_admin, project):
    with pytest.raises(ValidationError) as caught:
        key_generate(actor=proxy_admin, project=project, duration="1y")
    assert caught.value.message_dict == {"duration": [MSG_DURATION_INVALID.format(value="1y")]}
    assert not VirtualKey.objects.exists()


# --- who may generate -----------------------------------------------------------------------


def test_a_team_admin_generates_keys_for_their_team_and_its_projects(
    team, project, make_team_admin
):
    admin = make_team_admin(team)
    team_key, _ = key_generate(actor=admin, team=team)
    project_key, _ = key_generate(actor=admin, project=project)
    assert (team_key.team, team_key.project) == (team, None)
    assert (project_key.team, project_key.project) == (team, project)
    assert project_key.created_by == str(admin.pk)


def test_a_team_member_may_not_generate_team_keys(team, project, team_member):
    for placement in ({"team": team}, {"project": project}):
        with pytest.raises(PermissionDenied) as caught:
            key_generate(actor=team_member, **placement)
        assert str(caught.value) == MSG_TEAM_DENIED
    assert not VirtualKey.objects.exists()


def test_an_outsider_does_not_find_the_team_or_project(outsider, team, project):
    with pytest.raises(NotFound) as caught:
        key_generate(actor=outsider, team=team, max_budget=-1)
    assert str(caught.value) == not_found_message("team", team.pk)
    with pytest.raises(NotFound) as caught:
        key_generate(actor=outsider, project=project)
    assert str(caught.value) == not_found_message("project", project.pk)
    assert not VirtualKey.objects.exists()


def test_an_internal_user_generates_a_personal_key_for_themselves_only(db):
    user, other = UserFactory(), UserFactory()
    key, _ = key_generate(actor=user, user=user)
    assert (key.user, key.team, key.project) == (user, None, None)
    with pytest.raises(PermissionDenied) as caught:
        key_generate(actor=user, user=other)
    assert str(caught.value) == MSG_PERSONAL_KEY_DENIED
    viewer = UserFactory(role=Role.INTERNAL_USER_VIEWER)
    with pytest.raises(PermissionDenied):
        key_generate(actor=viewer, user=viewer)
    assert VirtualKey.objects.count() == 1


def test_a_key_without_a_placement_is_the_callers_personal_key(db):
    user = UserFactory()
    key, _ = key_generate(actor=user)
    assert (key.user, key.team, key.project) == (user, None, None)
    viewer = UserFactory(role=Role.INTERNAL_USER_VIEWER)
    with pytest.raises(PermissionDenied) as caught:
        key_generate(actor=viewer)
    assert str(caught.value) == MSG_PERSONAL_KEY_DENIED
    assert list(VirtualKey.objects.values_list("user", flat=True)) == [user.pk]


def test_a_proxy_admin_generates_keys_without_a_team(proxy_admin):
    user = UserFactory()
    key, _ = key_generate(actor=proxy_admin, user=user)
    assert (key.user, key.team) == (user, None)
    system_key, _ = key_generate(actor=SYSTEM)
    assert system_key.created_by == "system"


# --- update ---------------------------------------------------------------------------------


def test_a_key_cannot_move_to_another_project(proxy_admin, team, project):
    key, _ = key_generate(actor=proxy_admin, project=project)
    other = ProjectFactory(team=team)
    with pytest.raises(ValidationError) as caught:
        key_update(actor=proxy_admin, key=key, project=other)
    assert caught.value.message_dict == {"project_id": [MSG_PROJECT_REASSIGN]}
    key.refresh_from_db()
    assert key.project == project


def test_a_key_without_a_project_cannot_be_attached_to_one(proxy_admin, team, project):
    key, _ = key_generate(actor=proxy_admin, team=team)
    with pytest.raises(ValidationError) as caught:
        key_update(actor=proxy_admin, key=key, project=project)
    assert caught.value.message_dict == {"project_id": [MSG_PROJECT_REASSIGN]}
    key.refresh_from_db()
    assert key.project is None


def test_a_key_keeps_its_project_when_given_the_same_one(proxy_admin, project):
    key, _ = key_generate(actor=proxy_admin, project=project)
    key_update(actor=proxy_admin, key=key, project=project, rpm_limit=10)
    key.refresh_from_db()
    assert (key.project, key.rpm_limit) == (project, 10)


def test_a_key_is_detached_from_its_project_and_stays_in_the_team(proxy_admin, team, project):
    key, _ = key_generate(actor=proxy_admin, project=project, models=["gpt-4o"])
    key_update(actor=proxy_admin, key=key, project=None)
    key.refresh_from_db()
    assert (key.project, key.team) == (None, team)
    # Now only the team is above it.
    key_update(actor=proxy_admin, key=key, max_budget=80)
    with pytest.raises(ValidationError) as caught:
        key_update(actor=proxy_admin, key=key, max_budget=101)
    assert caught.value.message_dict == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Key", field="max_budget", value="101", parent="team", parent_value="100"
            )
        ]
    }


def test_updated_key_models_and_budget_stay_within_the_project(proxy_admin, project):
    key, _ = key_generate(actor=proxy_admin, project=project, key_alias="ci")
    with pytest.raises(ValidationError) as caught:
        key_update(
            actor=proxy_admin, key=key, key_alias="renamed", models=["gpt-4o-mini"], max_budget=51
        )
    assert caught.value.message_dict == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="project")],
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Key", field="max_budget", value="51", parent="project", parent_value="50"
            )
        ],
    }
    key.refresh_from_db()
    assert (key.key_alias, key.models, key.max_budget) == ("ci", [], None)


def test_a_key_update_sets_alias_duration_and_stamps_the_updater(team, project, make_team_admin):
    key, _ = key_generate(actor=SYSTEM, project=project, key_alias="ci")
    admin = make_team_admin(team)
    before = timezone.now()
    key_update(actor=admin, key=key, key_alias="deploy", duration="1d", tpm_limit=500)
    key.refresh_from_db()
    assert (key.key_alias, key.tpm_limit) == ("deploy", 500)
    assert key.expires is not None
    assert before + timedelta(days=1) <= key.expires <= timezone.now() + timedelta(days=1)
    assert (key.created_by, key.updated_by) == ("system", str(admin.pk))
    key_update(actor=admin, key=key, duration=None, key_alias="")
    key.refresh_from_db()
    assert (key.expires, key.key_alias) == (None, None)


def test_the_owner_of_a_team_key_sees_it_but_may_not_change_it(proxy_admin, team, team_member):
    key, _ = key_generate(actor=proxy_admin, team=team, user=team_member)
    with pytest.raises(PermissionDenied) as caught:
        key_update(actor=team_member, key=key, rpm_limit=1)
    assert str(caught.value) == MSG_CHANGE_DENIED
    key.refresh_from_db()
    assert key.rpm_limit is None


def test_an_outsider_does_not_find_a_key(proxy_admin, outsider, project):
    key, _ = key_generate(actor=proxy_admin, project=project)
    with pytest.raises(NotFound) as caught:
        key_update(actor=outsider, key=key, max_budget=-1)
    assert str(caught.value) == not_found_message("key", key.pk)


# --- regenerate, block, delete --------------------------------------------------------------


def test_regenerating_a_key_changes_its_secret_and_keeps_its_id_and_settings(
    team, project, make_team_admin
):
    key, old = key_generate(actor=SYSTEM, project=project, key_alias="ci", rpm_limit=10)
    admin = make_team_admin(team)
    same, new = key_regenerate(actor=admin, key=key)
    assert same.pk == key.pk
    assert new != old
    assert KEY_SHAPE.match(new)
    row = row_of(key)
    assert row["token_hash"] == hash_key(new)
    assert row["key_name"] == f"sk-...{new[-4:]}"
    assert (row["key_alias"], row["rpm_limit"], row["project_id"]) == ("ci", 10, project.pk)
    assert row["updated_by"] == str(admin.pk)
    assert not VirtualKey.objects.filter(token_hash=hash_key(old)).exists()
    assert VirtualKey.objects.count() == 1


def test_regenerating_with_a_custom_key_validates_it(proxy_admin, project):
    key, old = key_generate(actor=proxy_admin, project=project)
    with pytest.raises(ValidationError) as caught:
        key_regenerate(actor=proxy_admin, key=key, new_key="sk-short")
    assert caught.value.message_dict == {"new_key": [MSG_CUSTOM_KEY_INVALID]}
    assert row_of(key)["token_hash"] == hash_key(old)
    _, new = key_regenerate(actor=proxy_admin, key=key, new_key=CUSTOM_KEY)
    assert new == CUSTOM_KEY
    assert row_of(key)["token_hash"] == hash_key(CUSTOM_KEY)


def test_regenerating_to_a_key_already_in_use_is_rejected(proxy_admin, project):
    _, taken = key_generate(actor=proxy_admin, project=project)
    key, old = key_generate(actor=proxy_admin, project=project)
    with pytest.raises(ValidationError) as caught:
        key_regenerate(actor=proxy_admin, key=key, new_key=taken)
    assert caught.value.message_dict == {"new_key": [MSG_KEY_TAKEN]}
    assert row_of(key)["token_hash"] == hash_key(old)


def test_a_team_member_may_not_regenerate_a_team_key(proxy_admin, team, team_member):
    key, old = key_generate(actor=proxy_admin, team=team)
    with pytest.raises(NotFound):
        key_regenerate(actor=team_member, key=key)
    assert row_of(key)["token_hash"] == hash_key(old)


def test_a_key_is_blocked_and_unblocked(team, project, make_team_admin):
    key, _ = key_generate(actor=SYSTEM, project=project)
    admin = make_team_admin(team)
    key_set_blocked(actor=admin, key=key, blocked=True)
    assert row_of(key)["blocked"] is True
    assert row_of(key)["updated_by"] == str(admin.pk)
    key_set_blocked(actor=admin, key=key, blocked=False)
    assert row_of(key)["blocked"] is False


def test_only_key_managers_block_keys(proxy_admin, team, team_member, outsider):
    key, _ = key_generate(actor=proxy_admin, team=team, user=team_member)
    with pytest.raises(PermissionDenied) as caught:
        key_set_blocked(actor=team_member, key=key, blocked=True)
    assert str(caught.value) == MSG_CHANGE_DENIED
    with pytest.raises(NotFound):
        key_set_blocked(actor=outsider, key=key, blocked=True)
    assert row_of(key)["blocked"] is False


def test_keys_are_deleted_together(team, project, make_team_admin):
    admin = make_team_admin(team)
    first, _ = key_generate(actor=admin, project=project)
    second, _ = key_generate(actor=admin, team=team)
    assert key_delete(actor=admin, keys=[first, second]) >= 2
    assert not VirtualKey.objects.exists()


def test_deleting_keys_is_all_or_nothing(proxy_admin, team, project, make_team_admin):
    admin = make_team_admin(team)
    mine, _ = key_generate(actor=admin, project=project)
    foreign, _ = key_generate(actor=proxy_admin, team=TeamFactory())
    with pytest.raises(NotFound) as caught:
        key_delete(actor=admin, keys=[mine, foreign])
    assert str(caught.value) == not_found_message("key", foreign.pk)
    assert VirtualKey.objects.count() == 2


def test_the_owner_of_a_team_key_may_not_delete_it(proxy_admin, team, team_member):
    personal, _ = key_generate(actor=team_member, user=team_member)
    team_key, _ = key_generate(actor=proxy_admin, team=team, user=team_member)
    with pytest.raises(PermissionDenied) as caught:
        key_delete(actor=team_member, keys=[personal, team_key])
    assert str(caught.value) == MSG_CHANGE_DENIED
    assert VirtualKey.objects.count() == 2
    assert key_delete(actor=team_member, keys=[personal]) == 1


# --- key_generate_many: key_generate's rules for a batch (manage.py apply) --------------------


def test_key_generate_many_returns_each_plaintext_once_and_stores_its_hash(team):
    project = ProjectFactory(team=team, models=["gpt-4o"])
    owner = UserFactory()
    expires = datetime(2027, 1, 1, tzinfo=UTC)

    made = key_generate_many(
        actor=SYSTEM,
        keys=[
            {"project": project, "key_alias": "a", "user": owner, "expires": expires},
            {"team": team, "key_alias": "b", "max_budget": 5, "duration": "30d"},
        ],
        config_managed=True,
    )

    (_, first_plaintext), (_, second_plaintext) = made
    assert KEY_SHAPE.match(first_plaintext) and first_plaintext != second_plaintext
    stored = VirtualKey.objects.get(key_alias="a")
    assert stored.token_hash == hash_key(first_plaintext) and stored.key_name.endswith(
        first_plaintext[-4:]
    )
    assert stored.project == project and stored.team == team and stored.user == owner
    assert stored.expires == expires and stored.config_managed
    team_key = VirtualKey.objects.get(key_alias="b")
    assert team_key.project is None and team_key.team == team
    assert team_key.expires is not None
    assert team_key.expires > timezone.now() + timedelta(days=29)


def test_key_generate_many_names_every_invalid_key_and_writes_nothing(team):
    project = ProjectFactory(team=team, models=["gpt-4o"])
    key_generate(actor=SYSTEM, project=project, key_alias="taken")

    with pytest.raises(BatchValidationError) as caught:
        key_generate_many(
            actor=SYSTEM,
            keys=[
                {"project": project, "key_alias": "fine"},
                {"project": project, "key_alias": "wide", "models": ["gpt-4o-mini"]},
                {"project": project, "key_alias": "taken"},
                {"project": project, "key_alias": "soon", "duration": "soon"},
            ],
        )

    errors = {index: error.message_dict for index, error in caught.value.by_item.items()}
    assert errors == {
        1: {"models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="project")]},
        2: {"key_alias": ["Key with this Key alias already exists."]},
        3: {"duration": [MSG_DURATION_INVALID.format(value="soon")]},
    }
    assert list(VirtualKey.objects.values_list("key_alias", flat=True)) == ["taken"]


def test_key_generate_many_checks_scope_then_permission_like_key_generate(
    team, team_member, outsider
):
    project = ProjectFactory(team=team)

    with pytest.raises(NotFound):
        key_generate_many(actor=outsider, keys=[{"project": project}])
    with pytest.raises(PermissionDenied, match=MSG_TEAM_DENIED):
        key_generate_many(actor=team_member, keys=[{"project": project}])
    assert not VirtualKey.objects.exists()
