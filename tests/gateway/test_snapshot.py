"""The configuration snapshot each gateway process enforces from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from gateway.counters import COUNTER_MAX
from gateway.runtime import Runtime
from gateway.snapshot import Snapshot, load_snapshot
from hierarchy import changes
from hierarchy.actors import SYSTEM
from hierarchy.services import team_update
from keys.services import (
    key_delete,
    key_generate,
    key_generate_many,
    key_regenerate,
    key_set_blocked,
)
from projects.models import Project
from tests.factories import ProjectFactory, VirtualKeyFactory


@pytest.mark.django_db
def test_limits_beyond_what_the_counters_compare_are_held_clamped():
    """Clamped once when the snapshot loads, not on every call (see gateway.counters)."""
    key = VirtualKeyFactory(
        max_budget=Decimal("999999999999"),  # 10^21 nano-USD
        rpm_limit=2**63 - 1,
        tpm_limit=1000,
        model_rpm_limit={"gpt-4o": 2**63 - 1},
        model_max_budget={"gpt-4o": {"budget_limit": "999999999999", "time_period": "1d"}},
    )
    level = load_snapshot().keys[str(key.token_hash)].levels[0]
    assert (level.max_budget, level.rpm_limit, level.tpm_limit) == (COUNTER_MAX, COUNTER_MAX, 1000)
    assert level.model_rpm_limit == {"gpt-4o": COUNTER_MAX}
    assert level.model_max_budget == {"gpt-4o": (COUNTER_MAX, "1d")}


# --- catching up with changes (Runtime.refresh) ----------------------------------------------


def run(coroutine):  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(max_workers=1) as pool:  # a loop of its own
        return pool.submit(asyncio.run, coroutine).result()


def in_thread(function: Callable[[], object]) -> Callable[[], None]:
    """``function`` for a worker thread, which closes its database connection afterwards."""

    def call() -> None:
        try:
            function()
        finally:
            connection.close()

    return call


def refreshed(change: Callable[[], object]) -> tuple[Snapshot, dict[str, Any], Snapshot]:
    """A runtime's snapshot before ``change``, its keys then, and the snapshot after the
    runtime caught up with the change."""

    async def scenario() -> tuple[Snapshot, dict[str, Any], Snapshot]:
        runtime = Runtime()
        loop = asyncio.get_running_loop()
        try:
            await runtime.load()
            before = runtime.snapshot
            assert before is not None
            entries = dict(before.keys)
            await loop.run_in_executor(None, in_thread(change))
            await runtime.refresh()
            assert runtime.snapshot is not None
            return before, entries, runtime.snapshot
        finally:
            await runtime.counters.close()
            await loop.run_in_executor(runtime.executor, in_thread(lambda: None))
            runtime.executor.shutdown()

    return run(scenario())


@pytest.fixture
def keys(transactional_db: None) -> list[Any]:
    project = ProjectFactory()
    return [key_generate(actor=SYSTEM, project=project)[0] for _ in range(3)]


def test_a_changed_key_is_read_again_alone_and_swapped_in(keys):
    blocked, *others = keys
    before, entries, after = refreshed(
        lambda: key_set_blocked(actor=SYSTEM, key=blocked, blocked=True)
    )
    assert after is before  # no full reload
    assert after.keys[blocked.token_hash].levels[0].blocked
    assert after.keys[blocked.token_hash] is not entries[blocked.token_hash]
    assert all(after.keys[key.token_hash] is entries[key.token_hash] for key in others)


def test_new_deleted_and_regenerated_keys_are_swapped_in(keys):
    deleted, regenerated, _ = keys
    old_hash = regenerated.token_hash
    added: list[Any] = []

    def change() -> None:
        key_delete(actor=SYSTEM, keys=[deleted])
        key_regenerate(actor=SYSTEM, key=regenerated)
        added.append(key_generate(actor=SYSTEM, project=deleted.project)[0])

    before, _, after = refreshed(change)
    assert after is before
    assert deleted.token_hash not in after.keys and old_hash not in after.keys
    assert after.keys[regenerated.token_hash].id == regenerated.pk
    new = after.keys[added[0].token_hash]
    assert [level.kind for level in new.levels] == ["key", "project", "team", "organization"]
    assert sorted(after.key_hashes) == sorted([regenerated.pk, added[0].pk, keys[2].pk])


def test_a_change_above_the_keys_reloads_everything(keys):
    team = keys[0].team
    before, _, after = refreshed(lambda: team_update(actor=SYSTEM, team=team, blocked=True))
    assert after is not before
    assert all(after.keys[key.token_hash].levels[2].blocked for key in keys)


def test_a_key_under_a_level_the_snapshot_lacks_reloads_everything(keys):
    """A project written without announcing itself (no signal): the key's entry alone could
    not tell the project's limits."""
    made: list[Any] = []

    def change() -> None:
        project = Project.objects.bulk_create([Project(alias="quiet", team=keys[0].team)])[0]
        made.append(key_generate(actor=SYSTEM, project=project)[0])

    before, _, after = refreshed(change)
    assert after is not before
    assert after.keys[made[0].token_hash].levels[1].label == "quiet"


def test_a_process_behind_a_trimmed_journal_reloads_everything(keys):
    client = redis.Redis.from_url(settings.REDIS_URL)

    def change() -> None:
        key_set_blocked(actor=SYSTEM, key=keys[0], blocked=True)
        client.xtrim(changes.JOURNAL_KEY, maxlen=0, approximate=False)  # lost
        key_set_blocked(actor=SYSTEM, key=keys[1], blocked=True)

    before, _, after = refreshed(change)
    assert after is not before
    assert after.keys[keys[0].token_hash].levels[0].blocked


def test_keys_made_in_bulk_are_announced_by_id_and_very_many_as_everything(transactional_db):
    project = ProjectFactory()
    client = redis.Redis.from_url(settings.REDIS_URL)

    def newest() -> frozenset[str] | None:
        [(_, fields)] = client.xrevrange(changes.JOURNAL_KEY, count=1)
        return changes.journal_entry([part for item in fields.items() for part in item])

    made = key_generate_many(actor=SYSTEM, keys=[{"project": project}] * 2)
    assert newest() == {key.pk for key, _ in made}
    key_generate_many(actor=SYSTEM, keys=[{"project": project}] * (changes.KEYS_PER_ENTRY + 1))
    assert newest() is None
