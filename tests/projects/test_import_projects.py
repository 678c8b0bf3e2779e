"""manage.py import_projects: projects created or updated from a CSV, all rows or none."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from hierarchy.actors import SYSTEM
from hierarchy.commands import MSG_TEAM_AMBIGUOUS
from hierarchy.governance import MSG_EXCEEDS_PARENT, MSG_MODEL_NOT_IN_PARENT
from hierarchy.models import AuditAction, AuditEntry, AuditSource
from projects.management.commands.import_projects import MSG_DUPLICATE_ROW
from projects.models import Project
from projects.services import project_create
from tests.factories import OrganizationFactory, TeamFactory

HEADER = "team,alias,models,max_budget,soft_budget,budget_duration,rpm_limit,tpm_limit,description"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "projects.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_projects", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def snapshot() -> dict[str, tuple]:
    return {
        p.alias: (p.models, p.max_budget, p.soft_budget, p.rpm_limit, p.description, p.updated_at)
        for p in Project.objects.all()
    }


@pytest.fixture
def csv_file(team, tmp_path):
    return write(
        tmp_path,
        HEADER,
        f'{team.alias},flights,"gpt-4o gpt-4o-mini",50,40,30d,100,10000,Flight search',
        f"{team.alias},hotels,gpt-4o;gpt-4o-mini,20,,1mo,,,",
        f"{team.pk},cars,,,,,,,",
    )


def test_rows_become_projects_of_their_teams(team, csv_file):
    stdout, stderr = run(csv_file)

    projects = {p.alias: p for p in Project.objects.all()}
    assert sorted(projects) == ["cars", "flights", "hotels"]
    flights = projects["flights"]
    assert flights.team == team
    assert flights.models == ["gpt-4o", "gpt-4o-mini"]
    assert (flights.max_budget, flights.soft_budget) == (Decimal("50"), Decimal("40"))
    assert (flights.budget_duration, flights.rpm_limit, flights.tpm_limit) == ("30d", 100, 10000)
    assert flights.description == "Flight search"
    assert flights.created_by == "system"
    assert projects["hotels"].models == ["gpt-4o", "gpt-4o-mini"]
    assert projects["cars"].models == []
    assert projects["cars"].max_budget is None
    assert "Imported 3 rows in" in stdout
    assert "3 created, 0 updated, 0 unchanged." in stdout
    assert "projects: 3/3 (100%)" in stderr


def test_the_audit_log_holds_one_entry_per_created_or_changed_project(team, csv_file, tmp_path):
    run(csv_file)
    run(csv_file)  # unchanged rows write no entry
    run(write(tmp_path, "team,alias,rpm_limit", f"{team.alias},cars,5"))

    entries = AuditEntry.objects.filter(object_type="project", source=AuditSource.COMMAND)
    assert sorted((e.action, e.object_repr) for e in entries) == [
        ("create", "cars"),
        ("create", "flights"),
        ("create", "hotels"),
        ("update", "cars"),
    ]
    assert entries.get(action=AuditAction.UPDATE).changes == {"rpm_limit": [None, 5]}


def test_importing_the_same_file_again_changes_nothing(team, csv_file):
    run(csv_file)
    before = snapshot()

    stdout, _ = run(csv_file)

    assert "0 created, 0 updated, 3 unchanged." in stdout
    assert snapshot() == before


def test_a_changed_row_updates_its_project_and_absent_columns_are_left_alone(team, tmp_path):
    project = project_create(
        actor=SYSTEM, team=team, alias="flights", max_budget=50, rpm_limit=100, description="x"
    )

    stdout, _ = run(write(tmp_path, "team,alias,max_budget", f"{team.alias},flights,60"))

    project.refresh_from_db()
    assert project.max_budget == Decimal("60")
    assert (project.rpm_limit, project.description) == (100, "x")
    assert "0 created, 1 updated, 0 unchanged." in stdout


def test_an_empty_cell_clears_its_field(team, tmp_path):
    project = project_create(actor=SYSTEM, team=team, alias="flights", max_budget=50)

    run(write(tmp_path, "team,alias,max_budget,models", f"{team.alias},flights,,"))

    project.refresh_from_db()
    assert (project.max_budget, project.models) == (None, [])


def test_a_dry_run_checks_and_counts_but_writes_nothing(team, csv_file):
    stdout, _ = run(csv_file, "--dry-run")

    assert Project.objects.count() == 0
    assert "Dry run, nothing was written. 3 rows in" in stdout
    assert "3 created, 0 updated, 0 unchanged." in stdout


def test_bad_rows_are_named_by_row_and_column_and_change_nothing(team, tmp_path):
    project_create(actor=SYSTEM, team=team, alias="flights", max_budget=50)
    before = snapshot()
    path = write(
        tmp_path,
        HEADER,
        f"{team.alias},flights,gpt-4o,10,,,,,",
        f"{team.alias},hotels,gpt-5,,,,,,",
        f"{team.alias},cars,,500,,,,,",
        f"{team.alias},boats,,,,7 days,,,",
        "no-such-team,trains,,,,,,,",
        f"{team.alias},,,,,,,,",
        f"{team.alias},flights,,,,,,,",
    )

    with pytest.raises(CommandError) as raised:
        run(path)

    message = str(raised.value)
    gpt5 = MSG_MODEL_NOT_IN_PARENT.format(model="gpt-5", parent="team")
    assert f"row 3, models: {gpt5}" in message
    exceeds = MSG_EXCEEDS_PARENT.format(
        level="Project", field="max_budget", value="500", parent="team", parent_value="100"
    )
    assert f"row 4, max_budget: {exceeds}" in message
    assert "row 5, budget_duration: Invalid duration '7 days'" in message
    assert "row 6, team: No team 'no-such-team'." in message
    assert "row 7, alias: required." in message
    duplicate = MSG_DUPLICATE_ROW.format(team=team.alias, alias="flights", first=2)
    assert f"row 8, alias: {duplicate}" in message
    assert "6 errors, nothing was changed" in message
    assert snapshot() == before


def test_a_header_with_missing_or_unknown_columns_is_refused(db, tmp_path):
    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, "team,colour", "a,b"))

    message = str(raised.value)
    assert "row 1: missing column(s): alias." in message
    assert "unknown column(s): colour" in message


def test_a_team_alias_shared_by_organizations_is_picked_by_the_organization_column(team, tmp_path):
    other = TeamFactory(alias=team.alias, organization=OrganizationFactory(alias="Globex"))

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, "team,alias", f"{team.alias},flights"))
    ambiguous = MSG_TEAM_AMBIGUOUS.format(
        team=team.alias,
        count=2,
        organizations=", ".join(sorted(["Globex", team.organization.alias])),
    )
    assert f"row 2, team: {ambiguous}" in str(raised.value)

    run(write(tmp_path, "organization,team,alias", f"Globex,{team.alias},flights"))
    assert Project.objects.get().team == other


def test_an_empty_file_is_refused(db, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(CommandError, match="the file is empty"):
        run(path)


def test_empty_cells_at_the_end_of_the_header_and_rows_are_ignored(team, tmp_path):
    stdout, _ = run(write(tmp_path, "team,alias,max_budget,,", f"{team.alias},flights,5,,"))

    assert Project.objects.get().max_budget == Decimal("5")
    assert "1 created" in stdout
