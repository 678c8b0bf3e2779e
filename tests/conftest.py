from __future__ import annotations

import os

import pytest
from django.conf import settings

from hierarchy.actors import SYSTEM
from hierarchy.models import Role, TeamRole
from hierarchy.services import team_member_set
from tests.factories import CatalogModelFactory, TeamFactory, UserFactory

DEMO_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "openai/gpt-4.1",
    "openaix/gpt-5",
)


@pytest.fixture(scope="session", autouse=True)
def required_services(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """In CI the suite must run on PostgreSQL with Redis answering: fail, never skip."""
    if not os.environ.get("GATEHOUSE_REQUIRE_SERVICES"):
        return
    from django.db import connection

    with django_db_blocker.unblock():
        assert connection.vendor == "postgresql", "CI must run the suite on PostgreSQL"
    import redis

    assert settings.REDIS_URL, "CI must set REDIS_URL"
    assert redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()


@pytest.fixture
def catalog(db):  # type: ignore[no-untyped-def]
    return {name: CatalogModelFactory(name=name) for name in DEMO_MODELS}


@pytest.fixture
def proxy_admin(db):  # type: ignore[no-untyped-def]
    return UserFactory(role=Role.PROXY_ADMIN, is_superuser=True, is_staff=True)


@pytest.fixture
def make_team_admin(db):  # type: ignore[no-untyped-def]
    def make(team):  # type: ignore[no-untyped-def]
        user = UserFactory()
        team_member_set(actor=SYSTEM, team=team, user=user, role=TeamRole.ADMIN)
        user.refresh_from_db()
        return user

    return make


@pytest.fixture
def team(catalog):  # type: ignore[no-untyped-def]
    return TeamFactory(
        models=["gpt-4o", "gpt-4o-mini"], max_budget=100, rpm_limit=1000, tpm_limit=100000
    )


@pytest.fixture
def own_redis(settings):  # type: ignore[no-untyped-def]
    """A Redis server of the test's own as ``REDIS_URL``: the configuration journal starts
    empty and the server can be stopped."""
    from hierarchy import changes
    from tests.servers import RedisServer

    def forget() -> None:  # the journal's client and what it missed belong to one Redis
        if changes._redis is not None:
            changes._redis.close()
        changes._redis = None
        changes._local["unpublished"] = 0

    server = RedisServer()
    settings.REDIS_URL = server.url
    forget()
    yield server
    forget()
    if server.process is not None and server.process.poll() is None:
        server.kill()
