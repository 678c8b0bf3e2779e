"""A configuration change made in the admin or by a management command reaches every gateway
process within a second (a change through the API: test_shared_counters)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from hierarchy.actors import SYSTEM
from hierarchy.models import Role
from hierarchy.services import user_create
from tests.gateway.conftest import MASTER_KEY, ROOT, database_url, wait_until

PASSWORD = "admin-pass-for-tests-123"


def admin_session(url: str, username: str) -> httpx.Client:
    """A browser-like client signed in through the admin's login form."""
    client = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    signed_in = client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": PASSWORD},
    )
    assert signed_in.url.path == "/admin/", signed_in.text
    return client


def all_refuse(gateways, plaintext: str) -> bool:  # type: ignore[no-untyped-def]
    return all(g.chat(plaintext).status_code == 403 for g in gateways)


def test_a_block_in_the_admin_reaches_every_process_within_a_second(
    world, redis_server, start_gateway
):
    user_create(
        actor=SYSTEM,
        username="ops",
        email="ops@example.com",
        password=PASSWORD,
        role=Role.PROXY_ADMIN,
    )
    gateways = [start_gateway(redis_server.url) for _ in range(2)]
    assert all(g.chat(world.plaintext).status_code == 200 for g in gateways)
    admin = admin_session(gateways[0].url, "ops")
    changelist = admin.get("/admin/keys/virtualkey/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', changelist.text)
    assert token and world.key.pk in changelist.text
    done = admin.post(
        "/admin/keys/virtualkey/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "action": "block_keys",
            "_selected_action": world.key.pk,
        },
    )
    assert "Blocked 1 key(s)." in done.text
    admin.close()
    blocked_at = time.monotonic()
    wait_until(lambda: all_refuse(gateways, world.plaintext), 5)
    assert time.monotonic() - blocked_at <= 1.0
    assert all(
        g.chat(world.plaintext).json()["error"]["code"] == "permission_denied" for g in gateways
    )


def test_keys_from_generate_keys_work_on_every_process_within_a_second(
    world, redis_server, start_gateway, tmp_path: Path
):
    gateways = [start_gateway(redis_server.url) for _ in range(2)]
    out = tmp_path / "keys.csv"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_server.url,
        "GATEHOUSE_MASTER_KEY": MASTER_KEY,
    }
    command = [sys.executable, "manage.py", "generate_keys", "--project", world.project.pk]
    command += ["--count", "3", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, env=environment, check=True, capture_output=True)
    created_at = time.monotonic()
    with out.open(newline="") as handle:
        plaintexts = [row["key"] for row in csv.DictReader(handle)]
    assert len(plaintexts) == 3

    def all_serve() -> bool:
        return all(g.chat(key).status_code == 200 for g in gateways for key in plaintexts)

    wait_until(all_serve, 5)
    assert time.monotonic() - created_at <= 1.0
