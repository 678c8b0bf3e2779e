"""The admission rule, the same in process memory and in Redis (one Lua script)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.counters import (
    AMOUNT_MAX,
    BUDGET,
    COUNTER_MAX,
    REQUESTS,
    RESERVATION_TTL,
    TOKENS,
    Check,
    LocalCounters,
    RedisCounters,
    clamp,
    settle_ops,
)


def run(coroutine):
    with ThreadPoolExecutor(max_workers=1) as pool:  # a loop of its own
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(params=["local", "redis"])
def counters_factory(request):
    if request.param == "local":
        return LocalCounters
    server = request.getfixturevalue("redis_server")
    return lambda: RedisCounters(server.url)


def test_budget_admits_while_spend_plus_reserved_is_below_the_limit(counters_factory):
    async def scenario():
        counters = counters_factory()
        budget = Check(BUDGET, "gh:b:key:k1:0", 100, 40, 30, 0)  # 30 already spent
        first = await counters.admit([budget])
        second = await counters.admit([budget])
        third = await counters.admit([budget])
        assert (first.ok, first.reserved) == (True, [40])
        assert (second.ok, second.reserved) == (True, [30])  # capped at what is left
        assert (third.ok, third.failed) == (False, 0)
        counters.settle(settle_ops(first, 10, 0))  # real cost 10: 40 released, 10 spent
        await counters.flush()
        fourth = await counters.admit([budget])  # spend 40 + reserved 30: 30 left
        assert (fourth.ok, fourth.reserved) == (True, [30])
        assert not (await counters.admit([budget])).ok
        await counters.close()

    run(scenario())


def test_windows_count_requests_and_tokens_and_a_refused_call_counts_nowhere(counters_factory):
    async def scenario():
        counters = counters_factory()
        rpm = Check(REQUESTS, "gh:q:key:k2:1", 2, 1, 0, 120)
        tpm = Check(TOKENS, "gh:t:team:t2:1", 1000, 60, 0, 120)
        first = await counters.admit([tpm, rpm])
        assert (first.remaining_requests, first.remaining_tokens) == (1, 940)
        assert (await counters.admit([tpm, rpm])).remaining_requests == 0
        refused = await counters.admit([tpm, rpm])
        assert (refused.ok, refused.failed) == (False, 1)
        alone = await counters.admit([tpm])
        assert alone.remaining_tokens == 1000 - 3 * 60  # the refused call added nothing
        counters.settle(settle_ops(alone, 0, 20))  # used 20 of the 60 reserved
        await counters.flush()
        assert (await counters.admit([tpm])).remaining_tokens == 1000 - 2 * 60 - 20 - 60
        await counters.close()

    run(scenario())


def test_budget_seed_is_used_only_when_the_counter_is_new(counters_factory):
    async def scenario():
        counters = counters_factory()
        assert not (await counters.admit([Check(BUDGET, "gh:b:team:t3:0", 50, 1, 50, 0)])).ok
        fresh_period = Check(BUDGET, "gh:b:team:t3:1700000000", 50, 1, 0, 3600)
        assert (await counters.admit([fresh_period])).ok
        reseeded = Check(BUDGET, "gh:b:team:t3:1700000000", 50, 1, 49, 3600)
        assert (await counters.admit([reseeded])).reserved == [1]  # 1 reserved, seed ignored
        await counters.close()

    run(scenario())


def test_counters_reload_their_script_when_redis_forgot_it(redis_server):
    async def scenario():
        counters = RedisCounters(redis_server.url)
        check = Check(REQUESTS, "gh:q:key:k5:1", 10, 1, 0, 120)
        assert (await counters.admit([check])).remaining_requests == 9
        redis_server.client().script_flush()  # what a restarted Redis looks like
        assert (await counters.admit([check])).remaining_requests == 8
        await counters.close()

    run(scenario())


def test_client_selects_the_database_named_in_the_url(redis_server):
    from gateway.resp import RespClient

    async def scenario():
        client = RespClient(redis_server.url.replace("/0", "/3"), timeout=0.5)
        assert await client.execute("SET", "gh:test", 7) == b"OK"
        await client.close()

    run(scenario())
    import redis

    assert redis.Redis(port=redis_server.port, db=3).get("gh:test") == b"7"


def test_a_settle_pushes_back_the_expiry_of_a_reservation_counter(redis_server):
    """A reservation counter expires RESERVATION_TTL after its last touch (what a process
    that died leaves behind); a settle of it pushes the expiry back."""

    async def scenario():
        counters = RedisCounters(redis_server.url)  # no refresh within this test
        budget = Check(BUDGET, "gh:b:project:p8:0", 1000, 40, 0, 0)
        first = await counters.admit([budget])
        await counters.admit([budget])  # still running when the first settles
        redis = redis_server.client()
        assert 0 < redis.ttl("gh:b:project:p8:0:r") <= RESERVATION_TTL
        assert redis.ttl("gh:b:project:p8:0:s") == -1  # spend lasts as long as its period
        redis.expire("gh:b:project:p8:0:r", 5)
        counters.settle(settle_ops(first, 10, 0))
        await counters.flush()
        assert redis.get("gh:b:project:p8:0:r") == "40"
        assert RESERVATION_TTL - 5 < redis.ttl("gh:b:project:p8:0:r") <= RESERVATION_TTL
        await counters.close()

    run(scenario())


def test_a_reservation_counter_held_by_a_running_call_does_not_expire(redis_server):
    async def scenario():
        counters = RedisCounters(redis_server.url, refresh_interval=0.05)
        budget = Check(BUDGET, "gh:b:project:p9:0", 1000, 40, 0, 0)
        running = await counters.admit([budget])  # a long stream: no settle for a long time
        redis = redis_server.client()
        redis.expire("gh:b:project:p9:0:r", 5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while redis.ttl("gh:b:project:p9:0:r") <= 5:
            assert loop.time() < deadline, "the held reservation counter was not refreshed"
            await asyncio.sleep(0.01)
        assert redis.get("gh:b:project:p9:0:r") == "40"
        counters.settle(settle_ops(running, 10, 0))
        await counters.flush()
        assert counters.held == {}  # nothing held any more: nothing to refresh
        assert redis.get("gh:b:project:p9:0:r") == "0"
        await counters.close()

    run(scenario())


def test_in_process_counters_forget_expired_windows():
    async def scenario():
        counters = LocalCounters()
        await counters.admit([Check(REQUESTS, "gh:q:key:k6:1", 10, 1, 0, 120)])
        assert "gh:q:key:k6:1" in counters.values
        counters.values["gh:q:key:k6:1"] = (1, 0.0)  # expired long ago
        counters.swept = 0.0
        await counters.admit([Check(REQUESTS, "gh:q:key:k6:2", 10, 1, 0, 120)])
        assert "gh:q:key:k6:1" not in counters.values

    run(scenario())


def test_with_redis_away_settles_are_kept_for_later_without_a_busy_retry_loop():
    from tests.gateway.conftest import free_port

    async def scenario():
        loop = asyncio.get_running_loop()
        counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0", settle_interval=0.01)
        counters.settle([("gh:b:key:k7:0:s", 5, 0), ("gh:b:key:k7:0:r", -5, 0)])
        counters.settle([("gh:b:key:k7:0:s", 2, 0), ("gh:b:key:k7:0:r", -3, 0)])

        def retry_timer_set() -> bool:  # the attempt failed: next one in a second
            timer = counters.settle_timer
            return timer is not None and timer.when() - loop.time() > 0.5

        deadline = loop.time() + 5
        while not retry_timer_set():
            assert loop.time() < deadline, "no attempt to send the settles"
            await asyncio.sleep(0.01)
        assert not counters.senders  # waiting for the timer, not trying again and again
        # Kept, summed per counter.
        assert counters.settles == {"gh:b:key:k7:0:s": [7, 0], "gh:b:key:k7:0:r": [-8, 0]}
        # Shutting down: one last try, then they are given up (no timer left behind).
        await asyncio.wait_for(counters.flush(), 5)
        assert counters.settle_timer is None and counters.settles == {}
        await counters.close()

    run(scenario())


def test_budgets_spend_and_amounts_beyond_what_lua_counts_exactly_are_clamped(redis_server):
    async def scenario():
        counters = RedisCounters(redis_server.url)
        limit = clamp(10**25)  # a budget of 10^16 USD
        assert limit == COUNTER_MAX
        seed = 10**17 + 1  # 100 million USD spent: more than a Lua number holds exactly
        amount = clamp(10**30, AMOUNT_MAX)  # an absurd max_tokens
        check = Check(BUDGET, "gh:b:organization:big:0", limit, amount, seed, 0)
        admission = await counters.admit([check])
        assert admission.ok and admission.reserved == [AMOUNT_MAX]
        counters.settle(settle_ops(admission, 7, 0))
        await counters.flush()
        assert await counters.get("gh:b:organization:big:0:s") == str(10**17 + 8).encode()
        assert await counters.get("gh:b:organization:big:0:r") == b"0"
        await counters.close()

    run(scenario())
