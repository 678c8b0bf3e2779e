"""A gateway process catching up with configuration changes (``Runtime.refresh``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.db import connection

from gateway.runtime import EMBEDDED_RELOAD_INTERVAL, Runtime
from gateway.snapshot import Snapshot
from hierarchy import changes
from hierarchy.actors import SYSTEM
from hierarchy.models import AccessGroup
from hierarchy.services import team_update
from keys.models import VirtualKey
from keys.services import key_delete, key_generate, key_regenerate, key_set_blocked, key_update
from projects.models import Project
from tests.factories import ProjectFactory

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
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
def keys(transactional_db: None, own_redis: Any, settings: Any) -> list[Any]:
    settings.GATEHOUSE_REDIS_TIMEOUT = 5.0  # a loaded CI machine: not "Redis away"
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


def test_a_process_behind_a_trimmed_journal_reloads_everything(keys, own_redis):
    client = own_redis.client()

    def change() -> None:
        key_set_blocked(actor=SYSTEM, key=keys[0], blocked=True)
        client.xtrim(changes.JOURNAL_KEY, maxlen=0, approximate=False)  # lost
        key_set_blocked(actor=SYSTEM, key=keys[1], blocked=True)

    before, _, after = refreshed(change)
    assert after is not before
    assert after.keys[keys[0].token_hash].levels[0].blocked


def test_a_journal_started_afresh_reloads_everything(keys, own_redis):
    """A restarted Redis (no persistence) may number its entries below the last one seen."""
    client = own_redis.client()

    def change() -> None:
        VirtualKey.objects.filter(pk=keys[0].pk).update(blocked=True)  # announced before...
        client.delete(changes.JOURNAL_KEY)  # ... Redis lost it
        client.xadd(changes.JOURNAL_KEY, {"keys": f'["{keys[1].pk}"]'}, id="1-1")

    before, _, after = refreshed(change)
    assert after is not before
    assert after.keys[keys[0].token_hash].levels[0].blocked


def test_a_key_given_an_access_group_is_read_again(keys, own_redis):
    AccessGroup.objects.create(name="cheap", models=["gpt-4o-mini"])
    key = keys[0]
    before, _, after = refreshed(lambda: key_update(actor=SYSTEM, key=key, access_groups=["cheap"]))
    assert after is before
    assert after.keys[key.token_hash].levels[0].models == ["cheap"]
    assert after.version.journal == own_redis.client().xrevrange(changes.JOURNAL_KEY)[0][0].encode()


def test_a_deleted_keys_secret_taken_by_a_new_key_serves_the_new_key(keys):
    secret = "sk-reused-0123456789abcdef0123456789"
    old, _ = key_generate(actor=SYSTEM, project=keys[0].project, key=secret)
    made: list[Any] = []

    def change() -> None:
        key_delete(actor=SYSTEM, keys=[old])
        made.append(key_generate(actor=SYSTEM, project=keys[0].project, key=secret)[0])

    before, _, after = refreshed(change)
    assert after is before
    assert after.keys[old.token_hash].id == made[0].pk


@pytest.mark.parametrize("fail_open", [True, False])
def test_with_redis_away_a_process_that_fails_open_re_reads_every_second(
    keys, own_redis, settings, fail_open
):
    """Calls go on only when failing open; failing closed, they are refused anyway."""
    settings.GATEHOUSE_FAIL_OPEN = fail_open

    async def scenario() -> bool:
        runtime = Runtime()
        loop = asyncio.get_running_loop()
        try:
            await runtime.load()
            own_redis.kill()
            blocked = VirtualKey.objects.filter(pk=keys[0].pk)  # elsewhere, Redis missed it
            await loop.run_in_executor(None, in_thread(lambda: blocked.update(blocked=True)))
            assert runtime.snapshot is not None
            runtime.snapshot.loaded_at -= EMBEDDED_RELOAD_INTERVAL  # a second later
            await runtime.refresh()
            return bool(runtime.snapshot.keys[keys[0].token_hash].levels[0].blocked)
        finally:
            await runtime.counters.close()
            await loop.run_in_executor(runtime.executor, in_thread(lambda: None))
            runtime.executor.shutdown()

    assert run(scenario()) is fail_open
