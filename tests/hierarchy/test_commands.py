from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from hierarchy.models import CatalogModel, Organization, Team, User
from keys.models import VirtualKey
from keys.services import hash_key
from projects.models import Project

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
