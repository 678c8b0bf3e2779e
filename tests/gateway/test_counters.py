"""The admission rule, the same in process memory and in Redis (one Lua script)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.counters import (
    AMOUNT_MAX,
    BUDGET,
    COUNTER_MAX,
    LEASE_CALLS,
    LEASE_CALLS_MAX,
    LEASE_SHARE,
    REQUESTS,
    RESERVATION_TTL,
    TOKENS,
    Check,
    CountersUnavailable,
    LocalCounters,
    RedisCounters,
    clamp,
    settle_ops,
)


def run(coroutine):
    with ThreadPoolExecutor(max_workers=1) as pool:  # a loop of its own
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(params=["local", "redis"])
def in_counters(request):
    """Runs ``scenario(counters)`` on counters of the test's kind (in process, or in Redis)
    and closes them after."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else ""

    def scenario_runner(scenario):
        async def go():
            counters = RedisCounters(url) if url else LocalCounters()
            try:
                await scenario(counters)
            finally:
                await counters.close()

        run(go())

    return scenario_runner


def test_budget_admits_while_spend_plus_reserved_is_below_the_limit(in_counters):
    async def scenario(counters):
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

    in_counters(scenario)


def test_windows_count_requests_and_tokens_and_a_refused_call_counts_nowhere(in_counters):
    async def scenario(counters):
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

    in_counters(scenario)


def test_a_call_refused_by_a_later_check_takes_back_its_rate_counts(in_counters):
    async def scenario(counters):
        rpm = Check(REQUESTS, "gh:q:key:k9:1", 5, 1, 0, 120)
        tpm = Check(TOKENS, "gh:t:key:k9:1", 1000, 100, 0, 120)
        spent = Check(BUDGET, "gh:b:team:t9:0", 10, 5, 10, 0)  # 10 of 10 spent: refuses
        for _ in range(3):
            refused = await counters.admit([rpm, tpm, spent])
            assert (refused.ok, refused.failed) == (False, 2)
        admitted = await counters.admit([rpm, tpm])
        assert (admitted.remaining_requests, admitted.remaining_tokens) == (4, 900)

    in_counters(scenario)


def test_a_refused_call_takes_back_the_count_of_the_check_that_refused_it(in_counters):
    async def scenario(counters):
        tpm = Check(TOKENS, "gh:t:key:k10:1", 100, 100, 0, 120)
        first = await counters.admit([tpm])
        assert not (await counters.admit([tpm])).ok  # counted nowhere, not even here
        counters.settle(settle_ops(first, 0, 10))  # the first used 10 of its 100 tokens
        await counters.flush()
        third = await counters.admit([tpm._replace(amount=50)])
        assert (third.ok, third.remaining_tokens) == (True, 100 - 10 - 50)

    in_counters(scenario)


def test_budget_seed_is_used_only_when_the_counter_is_new(in_counters):
    async def scenario(counters):
        assert not (await counters.admit([Check(BUDGET, "gh:b:team:t3:0", 50, 1, 50, 0)])).ok
        fresh_period = Check(BUDGET, "gh:b:team:t3:1700000000", 50, 1, 0, 3600)
        assert (await counters.admit([fresh_period])).ok
        reseeded = Check(BUDGET, "gh:b:team:t3:1700000000", 50, 1, 49, 3600)
        assert (await counters.admit([reseeded])).reserved == [1]  # 1 reserved, seed ignored

    in_counters(scenario)


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
        spend = await counters.execute("GET", "gh:b:organization:big:0:s")
        assert spend == str(10**17 + 8).encode()
        assert await counters.execute("GET", "gh:b:organization:big:0:r") == b"0"
        await counters.close()

    run(scenario())


# --- budget leases (Redis) -------------------------------------------------------------------


def lease_scenario(redis_server, scenario, **options):
    async def go():
        counters = RedisCounters(redis_server.url, **options)
        try:
            await scenario(counters, redis_server.client())
        finally:
            await counters.close()

    run(go())


def test_a_roomy_budget_lends_a_lease_that_later_calls_reserve_from(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl1:0", 10**9, 1000, 0, 0)
        rpm = Check(REQUESTS, "gh:q:key:kl1:1", 100, 1, 0, 120)
        first = await counters.admit([budget, rpm])
        # The call's reservation and a lease of LEASE_CALLS more, in Redis.
        assert redis.get("gh:b:key:kl1:0:r") == str(1000 * (1 + LEASE_CALLS))
        second = await counters.admit([budget, rpm])
        assert (first.reserved, second.reserved) == ([1000, 0], [1000, 0])
        # The second call took its reservation from the lease: its budget was not sent ...
        assert redis.get("gh:b:key:kl1:0:r") == str(1000 * (1 + LEASE_CALLS))
        assert counters.leases["gh:b:key:kl1:0"].left == 1000 * (LEASE_CALLS - 1)
        # ... its rate limit was, and counted.
        assert redis.get("gh:q:key:kl1:1") == "2" and second.remaining_requests == 98
        for admission in (first, second):
            counters.settle(settle_ops(admission, 400, 0))
        await counters.flush()  # shutting down: the lease is given back
        assert redis.get("gh:b:key:kl1:0:r") == "0"
        assert redis.get("gh:b:key:kl1:0:s") == "800"
        assert counters.leases == {} and counters.held == {}

    lease_scenario(redis_server, scenario, lease_idle=60)


def test_calls_arriving_together_ask_for_one_lease(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl8:0", 10**9, 1000, 0, 0)
        admissions = await asyncio.gather(*(counters.admit([budget]) for _ in range(5)))
        assert [a.reserved for a in admissions] == [[1000]] * 5
        assert redis.get("gh:b:key:kl8:0:r") == str(1000 * (5 + LEASE_CALLS))
        assert counters.leases["gh:b:key:kl8:0"].left == 1000 * LEASE_CALLS
        assert counters.asking == set()

    lease_scenario(redis_server, scenario, lease_idle=60)


def test_a_budget_lends_nothing_unless_the_lease_is_a_small_share_of_what_is_left(redis_server):
    async def scenario(counters, redis):
        lot = 1000 * (1 + LEASE_CALLS)  # the call's reservation and the lease
        tight = Check(BUDGET, "gh:b:key:kl2:0", LEASE_SHARE * lot - 1, 1000, 0, 0)
        roomy = Check(BUDGET, "gh:b:key:kl3:0", LEASE_SHARE * lot, 1000, 0, 0)
        await counters.admit([tight])
        await counters.admit([roomy])
        assert redis.get("gh:b:key:kl2:0:r") == "1000"  # as without leases
        assert redis.get("gh:b:key:kl3:0:r") == str(lot)
        assert list(counters.leases) == ["gh:b:key:kl3:0"]

    lease_scenario(redis_server, scenario, lease_idle=60)


def test_a_lease_that_runs_dry_while_in_use_is_followed_by_a_bigger_one(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl14:0", 10**12, 1000, 0, 0)
        sizes = []
        for _ in range(7):
            await counters.admit([budget])  # asks: the lease is new or ran dry
            sizes.append(counters.leases["gh:b:key:kl14:0"].left // 1000)
            while counters.leases["gh:b:key:kl14:0"].left:
                await counters.admit([budget])  # taken from the lease
        assert sizes == [32, 64, 128, 256, 512, 1024, LEASE_CALLS_MAX]
        assert LEASE_CALLS_MAX == 1024

    lease_scenario(redis_server, scenario, lease_idle=60, lease_max_age=600)


def test_a_bigger_lease_is_cut_to_what_is_left_and_a_new_one_starts_small(redis_server):
    async def scenario(counters, redis):
        # After the first lot (33,000 reserved), 50 x 41,000 is left: room for a lease of
        # 40,000 beside the call's own 1,000, though 64,000 is asked for.
        budget = Check(BUDGET, "gh:b:key:kl15:0", 33_000 + LEASE_SHARE * 41_000, 1000, 0, 0)
        for _ in range(LEASE_CALLS + 1):
            await counters.admit([budget])
        assert counters.leases["gh:b:key:kl15:0"].left == 0
        await counters.admit([budget])
        assert counters.leases["gh:b:key:kl15:0"].left == 40_000
        assert redis.get("gh:b:key:kl15:0:r") == str(33_000 + 41_000)
        # Given back (here: the limit changed), the size starts over.
        await counters.admit([budget._replace(limit=10**12)])
        assert counters.leases["gh:b:key:kl15:0"].left == 1000 * LEASE_CALLS

    lease_scenario(redis_server, scenario, lease_idle=60, lease_max_age=600)


def test_a_bigger_lease_is_not_granted_when_not_even_the_first_size_fits(redis_server):
    async def scenario(counters, redis):
        # After the first lot (33,000 reserved), 1,627,000 is left: a fiftieth of it holds
        # the call's 1,000 and 31,540 more, less than a lease of LEASE_CALLS reservations.
        budget = Check(BUDGET, "gh:b:key:kl16:0", 1_660_000, 1000, 0, 0)
        for _ in range(LEASE_CALLS + 2):
            await counters.admit([budget])
        assert counters.leases["gh:b:key:kl16:0"].left == 0
        assert redis.get("gh:b:key:kl16:0:r") == str(33_000 + 1000)  # the call's own

    lease_scenario(redis_server, scenario, lease_idle=60, lease_max_age=600)


def test_a_lease_no_call_takes_from_is_given_back(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl4:0", 10**9, 1000, 0, 0)
        admission = await counters.admit([budget])
        assert "gh:b:key:kl4:0" in counters.leases
        counters.settle(settle_ops(admission, 400, 0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while redis.get("gh:b:key:kl4:0:r") != "0":
            assert loop.time() < deadline, "the idle lease was not given back"
            await asyncio.sleep(0.01)
        assert counters.leases == {} and counters.held == {}
        assert counters.lease_timer is None  # no lease left: nothing to look after

    lease_scenario(redis_server, scenario, lease_idle=0.05, settle_interval=0.01)


def test_a_lease_is_given_back_when_its_budget_limit_changes(redis_server):
    async def scenario(counters, redis):
        await counters.admit([Check(BUDGET, "gh:b:key:kl5:0", 10**9, 1000, 0, 0)])
        # An admin raised the budget: the old lease goes back, a new one is asked for.
        raised = await counters.admit([Check(BUDGET, "gh:b:key:kl5:0", 2 * 10**9, 1000, 0, 0)])
        assert raised.reserved == [1000]
        assert counters.leases["gh:b:key:kl5:0"].limit == 2 * 10**9
        await counters.flush()
        assert redis.get("gh:b:key:kl5:0:r") == "2000"  # the two running calls, no lease

    lease_scenario(redis_server, scenario, lease_idle=60)


def test_a_call_refused_by_a_rate_limit_puts_back_what_it_took_from_a_lease(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl6:0", 10**9, 1000, 0, 0)
        rpm = Check(REQUESTS, "gh:q:key:kl6:1", 1, 1, 0, 120)
        assert (await counters.admit([budget, rpm])).ok
        refused = await counters.admit([budget, rpm])
        assert (refused.ok, refused.failed) == (False, 1)  # the index of the RPM check
        assert counters.leases["gh:b:key:kl6:0"].left == 1000 * LEASE_CALLS
        assert redis.get("gh:b:key:kl6:0:r") == str(1000 * (1 + LEASE_CALLS))

    lease_scenario(redis_server, scenario, lease_idle=60)


def test_with_redis_away_a_call_is_refused_and_its_lease_draw_put_back(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl7:0", 10**9, 1000, 0, 0)
        await counters.admit([budget])
        redis_server.kill()
        with pytest.raises(CountersUnavailable):  # never admitted without Redis answering
            await counters.admit([budget])
        assert counters.leases["gh:b:key:kl7:0"].left == 1000 * LEASE_CALLS

    lease_scenario(redis_server, scenario, lease_idle=60, timeout=0.2)


def test_what_a_call_costs_beyond_its_reservation_is_taken_from_the_lease(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl10:0", 10**9, 1000, 0, 0)
        admission = await counters.admit([budget])
        counters.settle_call(admission, 6000, 0)  # 5000 beyond its reservation of 1000
        assert counters.leases["gh:b:key:kl10:0"].left == 1000 * LEASE_CALLS - 5000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while redis.get("gh:b:key:kl10:0:s") != "6000":
            assert loop.time() < deadline, "the settle was not sent"
            await asyncio.sleep(0.01)
        # Spend and reserved together: still what Redis granted the process, no more.
        assert redis.get("gh:b:key:kl10:0:r") == str(1000 * LEASE_CALLS - 5000)

    lease_scenario(redis_server, scenario, lease_idle=60, settle_interval=0.01)


def test_a_call_drawn_from_a_lease_settles_into_it_and_its_spend_moves_with_the_sweep(
    redis_server,
):
    async def scenario(counters, redis):
        key = "gh:b:key:kl17:0"
        budget = Check(BUDGET, key, 10**9, 1000, 0, 0)
        asker = await counters.admit([budget])  # reserved in Redis, with the lease: 33,000
        counters.settle_call(asker, 0, 0)  # not drawn: released in Redis, as without leases
        drawn = await counters.admit([budget])  # from the lease
        counters.settle_call(drawn, 6000, 0)  # 5000 beyond its reservation, from the lease
        lease = counters.leases[key]
        assert (lease.left, lease.spent) == (1000 * LEASE_CALLS - 6000, 6000)
        assert key + ":s" not in counters.settles  # noted, not sent per call
        assert counters.held == {key + ":r": 1}  # the lease's own hold only
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while redis.get(key + ":s") != "6000":  # moved with the sweep
            assert loop.time() < deadline, "the lease's spend was not moved"
            counters.settle_call(await counters.admit([budget]), 0, 0)  # in use, not idle
            await asyncio.sleep(0.02)
        assert counters.leases[key] is lease
        # Spend and reserved together: what Redis granted the lease, no more.
        assert redis.get(key + ":r") == str(1000 * LEASE_CALLS - 6000)
        await counters.flush()  # shutting down: given back
        assert (redis.get(key + ":r"), redis.get(key + ":s")) == ("0", "6000")

    lease_scenario(redis_server, scenario, lease_idle=0.3, lease_max_age=600, settle_interval=0.01)


def test_a_drawn_call_costing_more_than_its_lease_holds_adds_the_rest_to_spend(redis_server):
    async def scenario(counters, redis):
        key = "gh:b:key:kl18:0"
        budget = Check(BUDGET, key, 10**9, 1000, 0, 0)
        await counters.admit([budget])  # the asker, still running
        drawn = [await counters.admit([budget]) for _ in range(LEASE_CALLS)]
        assert counters.leases[key].left == 0
        counters.settle_call(drawn[0], 5000, 0)  # its 1000 reserved, nothing left to take
        assert (counters.leases[key].left, counters.leases[key].spent) == (0, 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while redis.get(key + ":s") != "4000":  # the rest, at once
            assert loop.time() < deadline, "the cost beyond the lease was not added"
            await asyncio.sleep(0.01)

    lease_scenario(redis_server, scenario, lease_idle=60, lease_max_age=600, settle_interval=0.01)


def test_near_the_limit_a_call_reserved_in_redis_is_released_there_despite_a_lease(redis_server):
    async def scenario(counters, redis):
        key = "gh:b:key:kl19:0"
        # Room for the first lot (33,000) and then, at most, single reservations.
        budget = Check(BUDGET, key, LEASE_SHARE * 1000 * (1 + LEASE_CALLS), 1000, 0, 0)
        await counters.admit([budget])
        for _ in range(LEASE_CALLS):
            counters.settle_call(await counters.admit([budget]), 1000, 0)  # drains the lease
        assert counters.leases[key].left == 0
        plain = await counters.admit([budget])  # no new lease: reserved in Redis
        assert plain.drawn == []
        counters.settle_call(plain, 100, 0)
        assert counters.leases[key].left == 0  # its unused 900 went back to Redis, not here
        await counters.flush()
        assert redis.get(key + ":s") == str(LEASE_CALLS * 1000 + 100)
        assert redis.get(key + ":r") == "1000"  # the first call, still running

    lease_scenario(redis_server, scenario, lease_idle=60, lease_max_age=600, settle_interval=0.01)


def test_a_lease_is_given_back_when_it_is_old_even_if_calls_still_take_from_it(redis_server):
    async def scenario(counters, redis):
        budget = Check(BUDGET, "gh:b:key:kl11:0", 10**9, 1000, 0, 0)
        running = await counters.admit([budget])
        first = counters.leases["gh:b:key:kl11:0"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        calls = 1
        while counters.leases.get("gh:b:key:kl11:0") is first:
            assert loop.time() < deadline, "the old lease was kept"
            counters.settle_call(await counters.admit([budget]), 1000, 0)  # busy, never idle
            calls += 1
            await asyncio.sleep(0.01)
        # A call drawn from the old lease settles into the new one.
        counters.settle_call(running, 1000, 0)
        await counters.flush()
        assert redis.get("gh:b:key:kl11:0:r") == "0"
        assert redis.get("gh:b:key:kl11:0:s") == str(1000 * calls)
        assert counters.held == {} and counters.leases == {}

    lease_scenario(redis_server, scenario, lease_idle=60, lease_max_age=0.05)


def test_a_stopping_process_asks_for_no_lease(redis_server):
    async def scenario(counters, redis):
        await counters.flush()  # shutting down
        budget = Check(BUDGET, "gh:b:key:kl12:0", 10**9, 1000, 0, 0)
        assert (await counters.admit([budget])).reserved == [1000]
        assert redis.get("gh:b:key:kl12:0:r") == "1000" and counters.leases == {}

    lease_scenario(redis_server, scenario)


class ReplyDroppingProxy:
    """Between the counters and Redis: passes commands on, and drops Redis's replies while
    ``dropping`` (a reply lost after the script ran)."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.dropping = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> ReplyDroppingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, client_reader, client_writer) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)

        async def pump(reader, writer, replies: bool) -> None:
            while data := await reader.read(65536):
                if not (replies and self.dropping):
                    writer.write(data)
            writer.close()

        await asyncio.gather(
            pump(client_reader, redis_writer, False),
            pump(redis_reader, client_writer, True),
            return_exceptions=True,
        )

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


def test_a_lease_granted_to_a_call_whose_reply_was_lost_is_given_back(redis_server):
    async def scenario():
        proxy = await ReplyDroppingProxy(redis_server.port).start()
        url = f"redis://127.0.0.1:{proxy.port}/0"
        counters = RedisCounters(url, timeout=0.2, lease_idle=60, settle_interval=0.01)
        redis = redis_server.client()
        budget = Check(BUDGET, "gh:b:key:kl13:0", 10**9, 1000, 0, 0)
        rpm = Check(REQUESTS, "gh:q:key:kl13:1", 100, 1, 0, 120)
        await counters.admit([rpm])  # Redis knows the script from now on
        proxy.dropping = True
        with pytest.raises(CountersUnavailable):
            await counters.admit([budget])
        # Redis ran the script: the call's reservation and a lease this process never saw.
        assert redis.get("gh:b:key:kl13:0:r") == str(1000 * (1 + LEASE_CALLS))
        assert counters.leases == {}
        proxy.dropping = False
        await counters.admit([rpm])  # the next script call
        assert redis.get("gh:b:key:kl13:0:r") == "0"  # given back by its marker
        assert counters.reclaims == {}
        await counters.close()
        proxy.close()

    run(scenario())
