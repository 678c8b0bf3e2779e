"""The configuration journal: what a committed change tells the gateways."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from hierarchy import changes
from hierarchy.actors import SYSTEM
from hierarchy.services import team_update
from keys.services import key_generate, key_generate_many, key_set_blocked
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def entries(server: Any) -> list[frozenset[str] | None]:
    """What each journal entry names, oldest first (``None``: anything)."""
    found = server.client().xrange(changes.JOURNAL_KEY)
    return [
        changes.journal_entry([part.encode() for item in fields.items() for part in item])
        for _, fields in found
    ]


def test_a_key_change_names_the_key_and_a_change_above_keys_names_anything(own_redis):
    project = ProjectFactory()
    key, _ = key_generate(actor=SYSTEM, project=project)
    key_set_blocked(actor=SYSTEM, key=key, blocked=True)
    team_update(actor=SYSTEM, team=project.team, blocked=True)
    assert entries(own_redis)[-3:] == [{key.pk}, {key.pk}, None]


def test_keys_made_in_bulk_are_named_and_very_many_announce_anything(own_redis):
    project = ProjectFactory()
    made = key_generate_many(actor=SYSTEM, keys=[{"project": project}] * 2)
    key_generate_many(actor=SYSTEM, keys=[{"project": project}] * (changes.KEYS_PER_ENTRY + 1))
    assert entries(own_redis)[-2:] == [{key.pk for key, _ in made}, None]


def test_a_login_announces_nothing(own_redis):
    user = UserFactory()
    before = len(entries(own_redis))
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    assert len(entries(own_redis)) == before


def test_after_a_change_redis_missed_the_next_entry_announces_anything(own_redis):
    """What was missed cannot be told apart: the gateways read everything."""
    project = ProjectFactory()
    key, _ = key_generate(actor=SYSTEM, project=project)
    own_redis.kill()
    version = changes.local_version()
    key_set_blocked(actor=SYSTEM, key=key, blocked=True)
    assert changes.local_version() == version + 1  # this process reads everything
    own_redis.start()
    key_set_blocked(actor=SYSTEM, key=key, blocked=False)
    key_set_blocked(actor=SYSTEM, key=key, blocked=True)
    assert entries(own_redis) == [None, {key.pk}]
