from __future__ import annotations

import io
import os
import re
import sqlite3
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.core.management.base import OutputWrapper
from django.db import transaction

from hierarchy.actors import SYSTEM
from hierarchy.commands import (
    MSG_TEAM_AMBIGUOUS,
    ErrorReport,
    ProgressBar,
    SecretCsv,
    load_yaml,
    team_by_reference,
    validation_messages,
)
from hierarchy.models import CatalogModel, Organization, Team, User
from keys.models import VirtualKey
from keys.services import hash_key
from projects.models import Project
from tests.factories import OrganizationFactory, TeamFactory

ROOT = Path(__file__).resolve().parents[2]
KEY_LINE = re.compile(r"Demo key: (sk-[A-Za-z0-9_-]{32,})")


def load_demo() -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count() for m in (CatalogModel, Organization, Team, Project, User, VirtualKey)
    )


@pytest.mark.django_db
def test_load_demo_is_idempotent_and_rotates_the_demo_key() -> None:
    first = load_demo()
    assert "Admin:    http://127.0.0.1:8000/admin/" in first
    assert "Login:    admin / gatehouse-demo" in first
    after_first = counts()
    assert after_first == (5, 1, 2, 1, 1, 1)
    search, support = Team.objects.order_by("alias")
    assert search.models != support.models
    assert User.objects.get().is_superuser

    second = load_demo()
    assert "created nothing new" in second
    assert counts() == after_first
    old_key, new_key = KEY_LINE.search(first).group(1), KEY_LINE.search(second).group(1)
    assert old_key != new_key
    assert VirtualKey.objects.get().token_hash == hash_key(new_key)


def test_a_fresh_sqlite_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- hierarchy/commands.py: the pieces the bulk commands share ----------------------------


def test_yaml_numbers_with_a_point_are_exact_decimals(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("price: 10.000000000000001\ncount: 3\nratio: .inf\n")

    loaded = load_yaml(path)

    assert loaded["price"] == Decimal("10.000000000000001")  # a float reads 10.000000000000002
    assert loaded["count"] == 3
    assert loaded["ratio"] == float("inf")


def test_a_key_repeated_in_one_yaml_mapping_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("a: 1\nb:\n  c: 2\n  c: sk-secret-value-that-must-not-show-0123\n")

    with pytest.raises(CommandError) as raised:
        load_yaml(path)

    assert str(raised.value) == f"{path}, line 4, column 3: found the key 'c' twice in one mapping"


def test_a_yaml_syntax_error_names_the_place_without_quoting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("api_key: sk-quoted-secret-0123456789abcdef: [\n")

    with pytest.raises(CommandError) as raised:
        load_yaml(path)

    assert str(raised.value).startswith(f"{path}, line 1, column")
    assert "sk-quoted-secret" not in str(raised.value)


def test_nested_validation_errors_are_named_by_their_path() -> None:
    error = {"litellm_params": {"api_key": ["Bad."]}, "tags": [{}, {"name": ["Short."]}]}

    assert validation_messages(error, "model_list[2]") == [
        ("model_list[2].litellm_params.api_key", "Bad."),
        ("model_list[2].tags[1].name", "Short."),
    ]
    django_error = ValidationError({"__all__": ["Whole."], "models": ["Unknown."]})
    assert sorted(validation_messages(django_error)) == [("", "Whole."), ("models", "Unknown.")]


def test_an_error_report_lists_every_error_in_file_order_and_caps_the_list() -> None:
    report = ErrorReport("file.csv")
    for row in range(60, 0, -1):
        report.add(f"row {row}: bad", position=row)

    with pytest.raises(CommandError) as raised:
        report.raise_if_any()

    lines = str(raised.value).splitlines()
    assert lines[0] == "file.csv: 60 errors, nothing was changed:"
    assert lines[1:3] == ["  row 1: bad", "  row 2: bad"]
    assert lines[-1] == "  ... and 10 more"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_in_place_on_a_terminal() -> None:
    screen = Terminal()
    bar = ProgressBar(OutputWrapper(screen), total=4, label="keys")
    for _ in range(4):
        bar.advance()
    bar.finish()

    text = screen.getvalue()
    assert text.count("\r") == 4
    assert "\rkeys [" + "#" * 15 + "-" * 15 + "] 2/4 50%" in text
    assert text.endswith("] 4/4 100%\n")


def test_the_progress_bar_writes_a_line_per_tenth_into_a_file() -> None:
    log = io.StringIO()
    bar = ProgressBar(OutputWrapper(log), total=1000, label="rows")
    for _ in range(1000):
        bar.advance()
    bar.finish()

    lines = log.getvalue().splitlines()
    assert lines == [f"rows: {n}/1000 ({n // 10}%)" for n in range(100, 1001, 100)]


def test_a_secret_csv_is_private_and_appears_only_when_published(tmp_path: Path) -> None:
    path = tmp_path / "keys.csv"
    with SecretCsv(path, ["key"]) as secrets:
        secrets.writerow(["sk-one"])
        assert not path.exists()
        [temporary] = tmp_path.iterdir()
        assert stat.S_IMODE(temporary.stat().st_mode) == 0o600
        secrets.publish()

    assert path.read_bytes() == b"key\r\nsk-one\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.django_db(transaction=True)
def test_a_failing_commit_after_publishing_removes_the_secrets_and_the_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.csv"

    with pytest.raises(RuntimeError), SecretCsv(path, ["key"]) as secrets, transaction.atomic():
        Organization.objects.create(alias="written-then-undone")
        secrets.writerow(["sk-two"])
        secrets.publish()
        raise RuntimeError("the commit failed")

    assert list(tmp_path.iterdir()) == []
    assert not Organization.objects.exists()


def test_a_secret_csv_never_replaces_a_file_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "keys.csv"
    path.write_text("old")

    with pytest.raises(CommandError, match="already exists"):
        SecretCsv(path, ["key"])
    with SecretCsv(path, ["key"], force=True) as secrets:
        secrets.publish()

    assert path.read_bytes() == b"key\r\n"


@pytest.mark.django_db
def test_a_team_is_found_by_id_or_alias_and_a_shared_alias_needs_its_organization() -> None:
    acme, globex = OrganizationFactory(alias="Acme"), OrganizationFactory(alias="Globex")
    search = TeamFactory(alias="Search", organization=acme)
    twin = TeamFactory(alias="Search", organization=globex)

    assert team_by_reference(search.pk, actor=SYSTEM) == search
    assert team_by_reference("Search", actor=SYSTEM, organization="Globex") == twin
    assert team_by_reference("Search", actor=SYSTEM, organization=acme.pk) == search
    with pytest.raises(ValidationError) as raised:
        team_by_reference("Search", actor=SYSTEM)
    assert raised.value.messages == [
        MSG_TEAM_AMBIGUOUS.format(team="Search", count=2, organizations="Acme, Globex")
    ]
    with pytest.raises(ValidationError, match="No team 'Sales'"):
        team_by_reference("Sales", actor=SYSTEM)
