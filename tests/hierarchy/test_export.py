"""manage.py export: what apply manages, as a file that applies as a no-op."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hierarchy.actors import SYSTEM
from hierarchy.models import Team
from hierarchy.services import team_create, team_update
from keys.models import VirtualKey
from keys.services import key_generate
from projects.models import Project
from projects.services import project_update
from tests.hierarchy.test_apply import CONFIG, apply_config, database_rows, run, write, writes

pytestmark = pytest.mark.django_db

HAND_MADE_TEAM = """\
  - alias: Ops
    projects:
      - alias: runbooks
        models: [gpt-4o]
        keys:
          - alias: runbooks-bot
"""


def export() -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("export", stdout=out, stderr=err)
    assert err.getvalue().startswith("Exported ")
    return out.getvalue()


@pytest.fixture
def applied(tmp_path: Path) -> None:
    """The shared config, a managed project and key inside a team made by hand, and changes
    made since in the admin or the API."""
    team_create(actor=SYSTEM, alias="Ops", rpm_limit=100, models=[])
    apply_config(tmp_path, CONFIG + HAND_MADE_TEAM)
    project_update(actor=SYSTEM, project=Project.objects.get(alias="hotels"), max_budget="12.5")
    team_update(actor=SYSTEM, team=Team.objects.get(alias="Search"), tpm_limit=90_000)


def test_export_then_apply_is_a_no_op(tmp_path: Path, applied: None) -> None:
    exported = write(tmp_path, export(), "exported.yaml")
    before = database_rows()

    with CaptureQueriesContext(connection) as queries:
        output = run(exported, "--prune")

    assert "0 created, 0 updated, 0 deleted" in output
    assert writes(queries) == []
    assert database_rows() == before


def test_export_holds_managed_objects_in_full_and_their_holders_by_natural_key(
    applied: None,
) -> None:
    document = yaml.safe_load(export())

    teams = {team["alias"]: team for team in document["teams"]}
    assert teams["Ops"] == {
        "alias": "Ops",
        "projects": [
            {"alias": "runbooks", "models": ["gpt-4o"], "keys": [{"alias": "runbooks-bot"}]}
        ],
    }
    assert teams["Search"]["tpm_limit"] == 90_000
    assert teams["Search"]["members"] == [{"user": "bob@example.com", "role": "admin"}]
    hotels = next(p for p in teams["Search"]["projects"] if p["alias"] == "hotels")
    assert hotels == {"alias": "hotels", "models": ["gpt-4o-mini"], "max_budget": 12.5}
    assert [m["name"] for m in document["catalog"]] == ["claude-3-5-haiku", "gpt-4o", "gpt-4o-mini"]
    assert document["organizations"][0]["max_budget"] == 1000


def test_export_leaves_out_what_apply_did_not_create_and_every_secret(
    tmp_path: Path, applied: None
) -> None:
    flights = Project.objects.get(alias="flights")
    _, plaintext = key_generate(actor=SYSTEM, project=flights, key_alias="made-by-an-app")

    text = export()

    assert "made-by-an-app" not in text
    assert "rpm_limit: 100" not in text  # the hand-made team's own settings
    assert plaintext not in text
    for key in VirtualKey.objects.all():
        assert key.token_hash not in text and key.key_name not in text


def test_export_keeps_exact_money(tmp_path: Path, applied: None) -> None:
    project_update(
        actor=SYSTEM, project=Project.objects.get(alias="hotels"), max_budget="0.123456789"
    )
    exported = write(tmp_path, export(), "exported.yaml")

    output = run(exported)

    assert "0 updated" in output
    assert Project.objects.get(alias="hotels").max_budget == Decimal("0.123456789")


def test_export_to_a_file_refuses_to_replace_one_without_force(
    tmp_path: Path, applied: None
) -> None:
    target = tmp_path / "gatehouse.yaml"
    target.write_text("keep me\n")

    with pytest.raises(CommandError, match="already exists"):
        call_command("export", "--output", str(target), stdout=io.StringIO())
    assert target.read_text() == "keep me\n"

    out = io.StringIO()
    call_command("export", "--output", str(target), "--force", stdout=out)
    assert "Exported 3 catalog" in out.getvalue()
    assert yaml.safe_load(target.read_text())["users"][0]["email"] == "alice@example.com"
