"""manage.py generate_keys: many keys for one project, their plaintext only in a 0600 CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from hierarchy.actors import SYSTEM
from hierarchy.commands import MSG_OUT_EXISTS
from hierarchy.governance import MSG_EXCEEDS_PARENT
from hierarchy.models import AuditAction, AuditEntry, AuditSource
from keys.management.commands.generate_keys import MSG_ALIASES_TAKEN, MSG_PROJECT_UNKNOWN
from keys.models import VirtualKey
from keys.services import hash_key, key_generate
from projects.services import project_create
from tests.factories import OrganizationFactory, TeamFactory


@pytest.fixture
def project(team):
    return project_create(actor=SYSTEM, team=team, alias="assistant", max_budget=50)


def generate(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("generate_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_keys_are_generated_with_their_settings_and_only_the_csv_holds_them(
    project, tmp_path, caplog
):
    out_file = tmp_path / "keys.csv"
    with caplog.at_level(logging.DEBUG):
        stdout, stderr = generate(
            "--project", project.pk, "--count", "25", "--out", str(out_file),
            "--prefix", "ci", "--models", "gpt-4o", "--max-budget", "5", "--soft-budget", "4",
            "--budget-duration", "30d", "--rpm-limit", "60", "--tpm-limit", "6000",
            "--duration", "7d",
        )  # fmt: skip

    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    rows = read_rows(out_file)
    assert list(rows[0]) == ["key_id", "key_alias", "key"]
    assert [row["key_alias"] for row in rows] == [f"ci-{n:02d}" for n in range(1, 26)]
    keys = {key.pk: key for key in VirtualKey.objects.all()}
    assert len(keys) == 25
    for row in rows:
        key = keys[row["key_id"]]
        assert key.token_hash == hash_key(row["key"])
        assert (key.project_id, key.team_id, key.key_alias) == (
            project.pk,
            project.team_id,
            row["key_alias"],
        )
        assert key.models == ["gpt-4o"]
        assert (key.max_budget, key.soft_budget) == (Decimal("5"), Decimal("4"))
        assert (key.budget_duration, key.rpm_limit, key.tpm_limit) == ("30d", 60, 6000)
        assert key.expires is not None
        for shown in (stdout, stderr, caplog.text):
            assert row["key"] not in shown
    assert f"Generated 25 keys for project {project.team.organization.alias}/" in stdout
    assert "keys: 25/25 (100%)" in stderr
    assert "keys: 10/25 (40%)" in stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keys.csv"]


def test_each_generated_key_is_in_the_audit_log_as_a_command_without_its_secret(project, tmp_path):
    out_file = tmp_path / "keys.csv"
    generate("--project", project.pk, "--count", "3", "--out", str(out_file))

    entries = AuditEntry.objects.filter(object_type="key", action=AuditAction.CREATE)
    assert sorted(e.object_id for e in entries) == sorted(
        VirtualKey.objects.values_list("pk", flat=True)
    )
    assert {e.source for e in entries} == {AuditSource.COMMAND}
    logged = json.dumps([e.changes for e in entries]) + "".join(e.object_repr for e in entries)
    for row in read_rows(out_file):
        assert row["key"] not in logged


def test_a_project_is_found_by_its_team_and_organization_aliases(project, tmp_path):
    team = project.team
    generate("--project", f"{team.alias}/assistant", "--count", "1", "--out", str(tmp_path / "a"))
    organization = team.organization.alias
    reference = f"{organization}/{team.alias}/assistant"
    generate("--project", reference, "--count", "1", "--out", str(tmp_path / "b"))

    assert VirtualKey.objects.filter(project=project).count() == 2


def test_a_team_alias_shared_by_two_organizations_needs_the_organization(project, tmp_path):
    twin = TeamFactory(alias=project.team.alias, organization=OrganizationFactory())
    project_create(actor=SYSTEM, team=twin, alias="assistant")

    with pytest.raises(CommandError, match="names 2 projects"):
        generate(
            "--project", f"{twin.alias}/assistant", "--count", "1", "--out", str(tmp_path / "k")
        )
    assert VirtualKey.objects.count() == 0


def test_an_unknown_project_is_refused(db, tmp_path):
    with pytest.raises(CommandError) as raised:
        generate("--project", "nope/none", "--count", "1", "--out", str(tmp_path / "k"))
    assert str(raised.value) == MSG_PROJECT_UNKNOWN.format(reference="nope/none")


def test_an_existing_file_is_kept_unless_forced(project, tmp_path):
    out_file = tmp_path / "keys.csv"
    out_file.write_text("precious\n")
    out_file.chmod(0o644)

    with pytest.raises(CommandError) as raised:
        generate("--project", project.pk, "--count", "2", "--out", str(out_file))
    assert str(raised.value) == MSG_OUT_EXISTS.format(path=out_file)
    assert out_file.read_text() == "precious\n"
    assert VirtualKey.objects.count() == 0

    generate("--project", project.pk, "--count", "2", "--out", str(out_file), "--force")
    assert len(read_rows(out_file)) == 2
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600


def test_a_setting_outside_the_project_creates_no_key_and_no_file(project, tmp_path):
    out_file = tmp_path / "keys.csv"

    with pytest.raises(CommandError) as raised:
        generate("--project", project.pk, "--count", "3", "--out", str(out_file),
                 "--max-budget", "80", "--models", "gpt-4o", "claude-3-5-sonnet")  # fmt: skip

    message = str(raised.value)
    exceeds = MSG_EXCEEDS_PARENT.format(
        level="Key", field="max_budget", value="80", parent="project", parent_value="50"
    )
    assert f"--max-budget: {exceeds}" in message
    assert "--models: Model 'claude-3-5-sonnet' not in project's allowed models." in message
    assert VirtualKey.objects.count() == 0
    assert list(tmp_path.iterdir()) == []


def test_aliases_already_in_use_are_refused_before_any_key_is_made(project, tmp_path):
    key_generate(actor=SYSTEM, project=project, key_alias="batch-2")

    with pytest.raises(CommandError) as raised:
        generate("--project", project.pk, "--count", "3", "--prefix", "batch",
                 "--out", str(tmp_path / "k.csv"))  # fmt: skip

    assert str(raised.value) == MSG_ALIASES_TAKEN.format(aliases="batch-2")
    assert VirtualKey.objects.count() == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", ["0", "100001"])
def test_a_count_out_of_range_is_refused(project, tmp_path, count):
    with pytest.raises(CommandError, match="--count must be between 1 and 100000"):
        generate("--project", project.pk, "--count", count, "--out", str(tmp_path / "k"))


def test_an_out_file_in_a_missing_directory_is_refused(project, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        generate("--project", project.pk, "--count", "1", "--out", str(tmp_path / "no" / "k"))
    assert VirtualKey.objects.count() == 0
