"""manage.py apply: a YAML file declares the hierarchy; applying it is idempotent."""

from __future__ import annotations

import csv
import io
import json
import logging
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core import serializers
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hierarchy.actors import SYSTEM
from hierarchy.models import (
    AccessGroup,
    AuditEntry,
    CatalogModel,
    Organization,
    OrganizationMembership,
    Team,
    TeamMembership,
    User,
)
from keys.models import VirtualKey
from keys.services import hash_key, key_generate
from projects.models import Project
from projects.services import project_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CONFIG = """\
catalog:
  - name: gpt-4o
    input_cost_per_token: 0.0000025
    output_cost_per_token: 0.00001
  - name: gpt-4o-mini
  - name: claude-3-5-haiku
access_groups:
  - name: cheap
    models: [gpt-4o-mini]
users:
  - email: alice@example.com
    role: proxy_admin_viewer
  - email: bob@example.com
organizations:
  - alias: Acme
    models: [gpt-4o, gpt-4o-mini, claude-3-5-haiku]
    max_budget: 1000
    members:
      - {user: alice@example.com, role: org_admin}
teams:
  - alias: Search
    organization: Acme
    models: [gpt-4o, gpt-4o-mini]
    max_budget: 500
    rpm_limit: 600
    members:
      - {user: bob@example.com, role: admin}
    projects:
      - alias: flights
        description: Flight search
        models: [gpt-4o]
        max_budget: 100
        soft_budget: 80
        budget_duration: 1mo
        keys:
          - alias: flights-prod
            user: bob@example.com
            max_budget: 50
            expires: 2027-01-01T00:00:00Z
      - alias: hotels
        models: [gpt-4o-mini]
  - alias: Lab
    access_groups: [cheap]
    keys:
      - alias: lab-shared
"""


HOTELS = "      - alias: hotels\n        models: [gpt-4o-mini]\n"
FLIGHTS_BUDGET = "        max_budget: 100\n"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("apply", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def apply_config(tmp_path: Path, text: str = CONFIG, *args: str) -> str:
    keys_out = tmp_path / f"keys-{len(list(tmp_path.iterdir()))}.csv"
    return run(write(tmp_path, text), "--keys-out", str(keys_out), *args)


def database_rows() -> list[Any]:
    """Every row apply may touch, serialised: equal lists mean nothing was written."""
    models = (
        CatalogModel,
        AccessGroup,
        User,
        Organization,
        OrganizationMembership,
        Team,
        TeamMembership,
        Project,
        VirtualKey,
        AuditEntry,
    )
    return [
        json.loads(serializers.serialize("json", model.objects.order_by("pk"))) for model in models
    ]


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]


# --- creating and idempotence ----------------------------------------------------------------


def test_apply_creates_the_declared_hierarchy_marked_as_managed(tmp_path: Path) -> None:
    output = apply_config(tmp_path)

    assert "Applied" in output and "13 created, 0 updated, 0 deleted, 0 unchanged" in output
    search = Team.objects.get(alias="Search", organization__alias="Acme")
    assert search.models == ["gpt-4o", "gpt-4o-mini"]
    assert search.max_budget == Decimal("500") and search.rpm_limit == 600
    assert search.memberships.get().user.email == "bob@example.com"
    assert search.memberships.get().role == "admin"
    flights = Project.objects.get(team=search, alias="flights")
    assert flights.soft_budget == Decimal("80") and flights.budget_reset_at is not None
    key = VirtualKey.objects.get(key_alias="flights-prod")
    assert key.project == flights and key.team == search and key.user.email == "bob@example.com"
    assert key.expires.isoformat() == "2027-01-01T00:00:00+00:00"
    lab = Team.objects.get(alias="Lab", organization=None)
    assert [g.name for g in lab.access_groups.all()] == ["cheap"]
    assert VirtualKey.objects.get(key_alias="lab-shared").project is None
    assert CatalogModel.objects.get(name="gpt-4o").input_cost_per_token == Decimal("0.0000025")
    assert User.objects.get(email="alice@example.com").role == "proxy_admin_viewer"
    assert OrganizationMembership.objects.get().role == "org_admin"
    for model in (CatalogModel, AccessGroup, User, Organization, Team, Project, VirtualKey):
        assert all(model.objects.values_list("config_managed", flat=True)), model


def test_applying_the_same_file_again_writes_nothing(tmp_path: Path) -> None:
    apply_config(tmp_path)
    before = database_rows()

    with CaptureQueriesContext(connection) as queries:
        output = run(write(tmp_path, CONFIG))

    assert "0 created, 0 updated, 0 deleted, 13 unchanged" in output
    assert writes(queries) == []
    assert database_rows() == before


def test_a_changed_field_is_the_only_change_applied(tmp_path: Path) -> None:
    apply_config(tmp_path)
    hotels = Project.objects.get(alias="hotels")

    output = apply_config(tmp_path, CONFIG.replace(HOTELS, HOTELS + "        rpm_limit: 60\n"))

    assert "0 created, 1 updated" in output
    hotels.refresh_from_db()
    assert hotels.rpm_limit == 60
    entry = AuditEntry.objects.filter(object_id=hotels.pk, action="update").get()
    assert entry.changes == {"rpm_limit": [None, 60]} and entry.source == "command"


def test_dry_run_prints_the_plan_field_by_field_and_writes_nothing(tmp_path: Path) -> None:
    apply_config(tmp_path)
    before = database_rows()
    changed = CONFIG.replace(FLIGHTS_BUDGET, "        max_budget: 200\n").replace(
        HOTELS, HOTELS + "      - alias: trains\n"
    )

    output = run(write(tmp_path, changed), "--dry-run")

    lines = output.splitlines()
    update = lines.index("~ update project Acme/Search/flights  (teams[0].projects[0])")
    assert lines[update + 1] == "    max_budget: 100 -> 200"
    assert "+ create project Acme/Search/trains  (teams[0].projects[2])" in lines
    assert lines[-1].startswith("Dry run of ")
    assert lines[-1].endswith(
        "1 to create, 1 to update, 0 to delete, 12 unchanged; nothing was written."
    )
    assert database_rows() == before


def test_dry_run_of_new_keys_needs_no_keys_file_and_creates_nothing(tmp_path: Path) -> None:
    output = run(write(tmp_path, CONFIG), "--dry-run")

    assert "+ create key flights-prod  (teams[0].projects[0].keys[0])" in output
    assert '    user: "bob@example.com"' in output
    assert not Team.objects.exists() and not VirtualKey.objects.exists()
    assert not AuditEntry.objects.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


# --- a bad file changes nothing and names the place of each problem -----------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    rpm_limit: 600\n",
            "    rpm_limt: 600\n",
            "teams[0].rpm_limt: unknown field; did you mean 'rpm_limit'?",
        ),
        (
            "        models: [gpt-4o]\n",
            "        models: [gpt-5]\n",
            "teams[0].projects[0].models: Model 'gpt-5' is not in the model catalog.",
        ),
        (
            "    models: [gpt-4o, gpt-4o-mini]\n    max_budget: 500\n",
            "    models: [gpt-4o, o3]\n    max_budget: 500\n",
            "teams[0].models: Model 'o3' is not in the model catalog.",
        ),
        (
            HOTELS,
            "      - alias: flights\n",
            "teams[0].projects[1].alias: project 'Acme/Search/flights' is declared twice "
            "(first at teams[0].projects[0]).",
        ),
        (
            "{user: bob@example.com, role: admin}",
            "{user: bob@example.com, role: owner}",
            "teams[0].members[0].role: 'owner' is not a team role; use one of: admin, member.",
        ),
        (
            "{user: bob@example.com, role: admin}",
            "{user: carol@example.com, role: admin}",
            "teams[0].members[0].user: no user with email 'carol@example.com' in this file or "
            "the database.",
        ),
        (
            "    organization: Acme\n",
            "    organization: Acme Corp\n",
            "teams[0].organization: no organization 'Acme Corp' in this file or the database.",
        ),
        (
            "            user: bob@example.com\n",
            "            user: nobody@example.com\n",
            "teams[0].projects[0].keys[0].user: no user with email 'nobody@example.com' in this "
            "file or the database.",
        ),
        (
            "            expires: 2027-01-01T00:00:00Z\n",
            "            expires: 2027-01-01 10:00:00\n",
            "teams[0].projects[0].keys[0].expires: needs a time zone (e.g. 2027-01-01T00:00:00Z).",
        ),
        (
            "    role: proxy_admin_viewer\n",
            "    role: superuser\n",
            "users[0].role: 'superuser' is not a user role; use one of: proxy_admin, "
            "proxy_admin_viewer, internal_user, internal_user_viewer.",
        ),
    ],
    ids=[
        "unknown field",
        "project model not in the catalog",
        "team model not in the catalog",
        "duplicate project alias",
        "bad team role",
        "missing member",
        "missing organization",
        "missing key owner",
        "expiry without a time zone",
        "bad user role",
    ],
)
def test_a_bad_file_changes_nothing_and_names_the_place_in_the_file(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in CONFIG
    keys_out = tmp_path / "keys.csv"

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, CONFIG.replace(old, new, 1)), "--keys-out", str(keys_out))

    assert f"  {message}" in str(raised.value).splitlines()
    assert "nothing was changed" in str(raised.value)
    assert not CatalogModel.objects.exists() and not User.objects.exists()
    assert not AuditEntry.objects.exists()
    assert not keys_out.exists()


def test_rules_of_the_services_name_the_place_and_roll_back_everything(tmp_path: Path) -> None:
    """These pass the file's own checks and fail in the services, after other objects were
    created in the same transaction."""
    text = (
        CONFIG.replace("        models: [gpt-4o]\n", "        models: [claude-3-5-haiku]\n")
        .replace(FLIGHTS_BUDGET, "        max_budget: 900\n")
        .replace("    models: [gpt-4o, gpt-4o-mini, claude-3-5-haiku]\n", "    models: [gpt-4o]\n")
    )
    keys_out = tmp_path / "keys.csv"

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text), "--keys-out", str(keys_out))

    lines = str(raised.value).splitlines()
    assert "  teams[0].models: Model 'gpt-4o-mini' not in organization's allowed models." in lines
    assert not Team.objects.exists() and not CatalogModel.objects.exists()
    assert not AuditEntry.objects.exists() and not keys_out.exists()


def test_a_project_outside_its_teams_models_and_budget_is_refused_by_path(tmp_path: Path) -> None:
    text = CONFIG.replace(
        "        models: [gpt-4o]\n", "        models: [claude-3-5-haiku]\n"
    ).replace(FLIGHTS_BUDGET, "        max_budget: 900\n")

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text), "--keys-out", str(tmp_path / "keys.csv"))

    lines = str(raised.value).splitlines()
    assert (
        "  teams[0].projects[0].models: Model 'claude-3-5-haiku' not in team's allowed models."
        in lines
    )
    assert (
        "  teams[0].projects[0].max_budget: Project max_budget (900) exceeds team's "
        "max_budget (500)." in lines
    )
    assert not Project.objects.exists() and not Team.objects.exists()


def test_new_keys_are_refused_without_keys_out_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="declares 2 new key\\(s\\): pass --keys-out"):
        run(write(tmp_path, CONFIG))

    assert database_rows() == [[] for _ in range(10)]


# --- keys' secrets --------------------------------------------------------------------------------


def test_new_keys_secrets_go_only_to_a_private_keys_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys_out = tmp_path / "keys.csv"
    out, err = io.StringIO(), io.StringIO()

    with caplog.at_level(logging.DEBUG):
        call_command(
            "apply",
            str(write(tmp_path, CONFIG)),
            "--keys-out",
            str(keys_out),
            stdout=out,
            stderr=err,
        )

    assert stat.S_IMODE(keys_out.stat().st_mode) == 0o600
    with keys_out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["key_alias"], r["organization"], r["team"], r["project"]) for r in rows] == [
        ("flights-prod", "Acme", "Search", "flights"),
        ("lab-shared", "", "Lab", ""),
    ]
    dump = json.dumps(database_rows())
    for row in rows:
        plaintext = row["key"]
        assert VirtualKey.objects.get(key_alias=row["key_alias"]).token_hash == hash_key(plaintext)
        for text in (out.getvalue(), err.getvalue(), caplog.text, dump):
            assert plaintext not in text
            assert plaintext[3:] not in text


def test_an_existing_keys_file_is_not_replaced_without_force(tmp_path: Path) -> None:
    keys_out = tmp_path / "keys.csv"
    keys_out.write_text("precious\n")

    with pytest.raises(CommandError, match="already exists"):
        run(write(tmp_path, CONFIG), "--keys-out", str(keys_out))

    assert keys_out.read_text() == "precious\n"
    assert not Team.objects.exists()


# --- managed and unmanaged objects ----------------------------------------------------------------


def test_a_managed_objects_fields_left_out_return_to_their_defaults(tmp_path: Path) -> None:
    apply_config(tmp_path)

    output = apply_config(tmp_path, CONFIG.replace("    rpm_limit: 600\n", ""))

    assert "0 created, 1 updated" in output
    assert Team.objects.get(alias="Search").rpm_limit is None


def test_an_object_made_elsewhere_changes_only_in_the_fields_the_file_states(
    tmp_path: Path,
) -> None:
    apply_config(tmp_path)
    search = Team.objects.get(alias="Search")
    hand_made = project_create(
        actor=SYSTEM, team=search, alias="by-hand", models=["gpt-4o"], rpm_limit=30
    )
    text = CONFIG.replace(HOTELS, HOTELS + "      - alias: by-hand\n        max_budget: 20\n")

    output = apply_config(tmp_path, text)

    assert "0 created, 1 updated" in output
    hand_made.refresh_from_db()
    assert hand_made.max_budget == Decimal("20")
    assert hand_made.models == ["gpt-4o"] and hand_made.rpm_limit == 30
    assert not hand_made.config_managed


def test_members_given_are_the_exact_list_and_members_left_out_are_untouched(
    tmp_path: Path,
) -> None:
    apply_config(tmp_path)
    search = Team.objects.get(alias="Search")
    carol = UserFactory(email="carol@example.com")
    TeamMembership.objects.create(team=search, user=carol, role="member")
    OrganizationMembership.objects.create(organization=search.organization, user=carol)
    text = CONFIG.replace(
        "      - {user: bob@example.com, role: admin}\n",
        "      - {user: bob@example.com, role: member}\n",
    ).replace("    members:\n      - {user: alice@example.com, role: org_admin}\n", "")

    output = run(write(tmp_path, text), "--dry-run")
    apply_config(tmp_path, text)

    assert '    members[bob@example.com]: "admin" -> "member"' in output
    assert '    members[carol@example.com]: "member" -> null' in output
    assert list(search.memberships.values_list("user__email", "role")) == [
        ("bob@example.com", "member")
    ]
    assert OrganizationMembership.objects.filter(user__email="carol@example.com").exists()
    assert OrganizationMembership.objects.filter(user__email="alice@example.com").exists()


def test_a_team_and_its_project_narrowed_together_are_applied(tmp_path: Path) -> None:
    """The team cannot drop gpt-4o-mini while a project holds it: apply narrows the project
    first, whatever the order in the file."""
    apply_config(tmp_path)
    text = CONFIG.replace(
        "    models: [gpt-4o, gpt-4o-mini]\n    max_budget: 500\n",
        "    models: [gpt-4o]\n    max_budget: 500\n",
    ).replace(HOTELS, "      - alias: hotels\n        models: [gpt-4o]\n")

    output = apply_config(tmp_path, text)

    assert "0 created, 2 updated" in output
    assert Team.objects.get(alias="Search").models == ["gpt-4o"]
    assert Project.objects.get(alias="hotels").models == ["gpt-4o"]


def test_a_key_declared_under_another_project_is_refused(tmp_path: Path) -> None:
    apply_config(tmp_path)
    text = CONFIG.replace(
        HOTELS, HOTELS + "        keys:\n          - alias: lab-shared\n"
    ).replace("    keys:\n      - alias: lab-shared\n", "")

    with pytest.raises(CommandError) as raised:
        apply_config(tmp_path, text)

    assert (
        "  teams[0].projects[1].keys[0].alias: key 'lab-shared' already exists in team 'Lab' "
        "without a project; a key cannot move." in str(raised.value).splitlines()
    )


# --- --prune ------------------------------------------------------------------------------------


def test_prune_deletes_only_managed_objects_the_file_no_longer_declares(tmp_path: Path) -> None:
    apply_config(tmp_path)
    search = Team.objects.get(alias="Search")
    flights = Project.objects.get(alias="flights")
    app_key, _ = key_generate(actor=SYSTEM, project=flights, key_alias="made-by-an-app")
    hand_made = project_create(actor=SYSTEM, team=search, alias="by-hand")
    text = CONFIG.replace(HOTELS, "").replace(
        "\n  - alias: Lab\n    access_groups: [cheap]\n    keys:\n      - alias: lab-shared\n", "\n"
    )
    text = text.replace("  - name: cheap\n    models: [gpt-4o-mini]\n", "  - name: spare\n")

    without_prune = run(write(tmp_path, text))
    assert "4 object(s) apply created are no longer in the file and were kept" in without_prune
    assert Project.objects.filter(alias="hotels").exists()

    output = run(write(tmp_path, text), "--prune", "--dry-run")
    assert "- delete key lab-shared" in output
    assert "- delete project Acme/Search/hotels" in output
    run(write(tmp_path, text), "--prune")

    assert not Project.objects.filter(alias="hotels").exists()
    assert not Team.objects.filter(alias="Lab").exists()
    assert not AccessGroup.objects.filter(name="cheap").exists()
    assert not VirtualKey.objects.filter(key_alias="lab-shared").exists()
    assert VirtualKey.objects.filter(pk=app_key.pk).exists()
    assert Project.objects.filter(pk=hand_made.pk).exists()
    assert set(VirtualKey.objects.values_list("key_alias", flat=True)) == {
        "flights-prod",
        "made-by-an-app",
    }


def test_prune_refuses_to_delete_a_managed_project_holding_a_key_made_elsewhere(
    tmp_path: Path,
) -> None:
    apply_config(tmp_path)
    hotels = Project.objects.get(alias="hotels")
    key_generate(actor=SYSTEM, project=hotels, key_alias="made-by-an-app")
    before = database_rows()

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, CONFIG.replace(HOTELS, "")), "--prune")

    assert (
        "  --prune: project 'Acme/Search/hotels' is no longer in the file but still holds 1 "
        "key(s) that apply did not create: delete or move them, or declare the project again."
        in str(raised.value).splitlines()
    )
    assert database_rows() == before


def test_a_bad_file_leaves_an_applied_configuration_as_it_was(tmp_path: Path) -> None:
    """A valid change made first (the organization's budget) is rolled back with a later
    error (a project given a model its team does not have): the earlier state stays whole."""
    apply_config(tmp_path)
    before = database_rows()
    org_budget, flights_models = "    max_budget: 1000\n", "        models: [gpt-4o]\n"
    assert org_budget in CONFIG and flights_models in CONFIG
    text = CONFIG.replace(org_budget, "    max_budget: 900\n").replace(
        flights_models, "        models: [claude-3-5-haiku]\n"
    )

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text), "--keys-out", str(tmp_path / "more-keys.csv"))

    assert "teams[0].projects[0].models" in str(raised.value)
    assert "nothing was changed" in str(raised.value)
    assert database_rows() == before
