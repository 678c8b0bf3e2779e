"""Budget and rate-limit counters, atomic across processes.

A call is admitted by one atomic step over all its *checks* (every level's budget, per-model
budget, RPM and TPM): either every check passes and all are counted, or none is (refused
calls do not count). Budgets: admitted while ``spend + reserved < max_budget``; the call
reserves its estimate, capped at what is left, and on settle releases the reservation and
adds the real cost. So spend can pass ``max_budget`` by at most one call's cost beyond its
reservation. RPM/TPM: fixed one-minute windows aligned to the minute; TPM reserves the
token allowance and settles to the tokens really used.

``RedisCounters`` sends everything that queued up during one event-loop tick as one Lua
script call (admissions of many requests plus pending settles); ``LocalCounters`` does the
same in process memory when no Redis is configured (embedded, one process).

Budget leases (``RedisCounters``): while a budget has plenty left, an admission that goes to
Redis for it also reserves a lease, LEASE_CALLS more calls' reservations (twice as many each
time the last lease ran short while in use, up to LEASE_CALLS_MAX), which later calls of the
same process take their reservations from without sending that budget to Redis (rate limits
are always counted in Redis, exact across processes). A lease is counted in ``reserved``
like any reservation, and a call's cost beyond its reservation is taken from its process's
lease first, so what a process admits from a lease stays within what Redis granted it. A
call that reserved from a lease settles into it: what it did not use is the lease's again,
and its cost is moved from reserved to spend in Redis with the next sweep of the leases
(``spend + reserved`` is the same either way), not with two counts per call. A grant (lease
and the call's own reservation) is at most 1/LEASE_SHARE of what is left, and made only if
that holds a lease of LEASE_CALLS reservations: near the limit every call reserves in Redis
as without leases. Leases are given back when unused for ``lease_idle`` seconds, after
``lease_max_age``, when their budget's limit changes, and at shutdown. A grant whose reply
was lost (Redis answered too late) leaves a marker in Redis, by which the process gives it
back with its next script call.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from gateway.resp import RedisUnavailable, RespClient

logger = logging.getLogger(__name__)

BUDGET, REQUESTS, TOKENS = "b", "q", "t"
WINDOW_TTL = 120
RESERVATION_TTL = 900
# Redis counts in signed 64-bit integers, its Lua in doubles. Limits and seeds are only
# compared in Lua (and seeds sent as strings, stored exactly): clamped to COUNTER_MAX, a budget
# of billions of dollars. Amounts are added by Lua and must stay exact integers there: clamped
# to AMOUNT_MAX (9 million dollars, or tokens, in one call). Clamping changes no decision.
COUNTER_MAX = 2**62
AMOUNT_MAX = 2**53
LEASE_CALLS = 32  # a lease asks for this many reservations of the call that takes it ...
LEASE_CALLS_MAX = 1024  # ... twice as many each time it ran short before it was given back
LEASE_SHARE = 50  # a grant (lease and the call's reservation) is at most 1/this of what is left
LEASE_MARKER_TTL = 300  # seconds a grant's marker waits for a process that lost the reply


def clamp(value: int, bound: int = COUNTER_MAX) -> int:
    return max(-bound, min(value, bound))


class Check(NamedTuple):
    kind: str  # BUDGET, REQUESTS or TOKENS
    key: str
    limit: int
    amount: int  # reservation (nano-USD), 1 request, or reserved tokens
    seed: int  # a budget's spend in the database, used when Redis has none yet
    ttl: int  # seconds; 0 = no expiry
    lease: int = 0  # budgets in Redis: a lease asked for beyond this call's reservation
    marker: str = ""  # ... and the key Redis notes the grant under


@dataclass(slots=True)
class Admission:
    ok: bool
    checks: Sequence[Check] = ()
    failed: int = -1  # index of the first check that refused
    reserved: list[int] = field(default_factory=list)  # per check
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    drawn: list[str] = field(default_factory=list)  # budgets reserved from this process's lease


class CountersUnavailable(Exception):
    """Redis did not answer in time."""


def settle_ops(
    admission: Admission, cost_nano: int, tokens_used: int, leased: Sequence[str] = ()
) -> list[tuple[str, int, int]]:
    """What to add to which counter once the call's real cost and tokens are known (but for
    the ``leased`` budgets, which the caller settles into its leases)."""
    ops: list[tuple[str, int, int]] = []
    for check, reserved in zip(admission.checks, admission.reserved, strict=True):
        if check.kind == BUDGET and check.key in leased:
            continue
        if check.kind == BUDGET:
            if reserved:  # released; a negative ttl refreshes the reservation's expiry
                ops.append((check.key + ":r", -reserved, -RESERVATION_TTL))
            if cost_nano:
                ops.append((check.key + ":s", cost_nano, check.ttl))
        elif check.kind == TOKENS and tokens_used != check.amount:
            ops.append((check.key, tokens_used - check.amount, check.ttl))
    return ops


def _decide(values: list[int], checks: Sequence[Check]) -> Admission:
    """Shared by both backends: the outcome for current ``values`` (one per check)."""
    for index, (check, used) in enumerate(zip(checks, values, strict=True)):
        if used >= check.limit:
            return Admission(ok=False, checks=checks, failed=index)
    return _admitted(values, checks)


def _admitted(values: Sequence[int], checks: Sequence[Check]) -> Admission:
    """An admission's reservations and what its rate limits have left, once every check
    passed with these ``values``."""
    admission = Admission(ok=True, checks=checks)
    for check, used in zip(checks, values, strict=True):
        if check.kind == BUDGET:
            admission.reserved.append(min(check.amount, check.limit - used))
            continue
        admission.reserved.append(0)
        left = max(0, check.limit - used - check.amount)
        if check.kind == REQUESTS:
            if admission.remaining_requests is None or left < admission.remaining_requests:
                admission.remaining_requests = left
        elif admission.remaining_tokens is None or left < admission.remaining_tokens:
            admission.remaining_tokens = left
    return admission


# --- in process -----------------------------------------------------------------------------


class LocalCounters:
    """The embedded default: exact within this one process."""

    SWEEP_INTERVAL = 60.0

    def __init__(self) -> None:
        self.values: dict[str, tuple[int, float]] = {}
        self.swept = time.time()

    def _get(self, key: str, now: float) -> int | None:
        found = self.values.get(key)
        if found is None or found[1] <= now:
            return None
        return found[0]

    def _add(self, key: str, delta: int, ttl: int, now: float) -> None:
        """``ttl`` as in the settles: > 0 applies to a new counter, < 0 is set every time."""
        found = self.values.get(key)
        if found is None or found[1] <= now:
            found = (0, now + abs(ttl) if ttl else float("inf"))
        expires = now - ttl if ttl < 0 else found[1]
        self.values[key] = (max(0, found[0] + delta), expires)

    def _sweep(self, now: float) -> None:
        """Forget expired windows and periods (each minute makes new window keys)."""
        if now - self.swept >= self.SWEEP_INTERVAL:
            self.swept = now
            for key in [k for k, (_, expires) in self.values.items() if expires <= now]:
                del self.values[key]

    async def admit(self, checks: Sequence[Check]) -> Admission:
        now = time.time()
        self._sweep(now)
        values = []
        for check in checks:
            if check.kind == BUDGET:
                spend = self._get(check.key + ":s", now)
                if spend is None:
                    self._add(check.key + ":s", check.seed, check.ttl, now)
                    spend = check.seed
                values.append(spend + (self._get(check.key + ":r", now) or 0))
            else:
                values.append(self._get(check.key, now) or 0)
        admission = _decide(values, checks)
        if admission.ok:
            for check, reserved in zip(checks, admission.reserved, strict=True):
                if check.kind == BUDGET:  # one process: holding is admitting, no refresh
                    self._add(check.key + ":r", reserved, -RESERVATION_TTL, now)
                else:
                    self._add(check.key, check.amount, check.ttl, now)
        return admission

    def settle(self, ops: list[tuple[str, int, int]]) -> None:
        now = time.time()
        for key, delta, ttl in ops:
            self._add(key, delta, ttl, now)

    def settle_call(self, admission: Admission, cost_nano: int, tokens_used: int) -> None:
        self.settle(settle_ops(admission, cost_nano, tokens_used))

    async def flush(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


# --- Redis ----------------------------------------------------------------------------------

# ARGV[1]: the settles, a JSON array of [key, delta, ttl] (ttl > 0: set when the counter is
# new; ttl < 0: set to -ttl every time) and of [marker, key] (a lease grant whose reply was
# lost: what the marker notes is given back); ARGV[2...]: one admission each, a JSON array of
# its checks [kind, key, limit, amount, "seed", ttl, lease, marker] (cjson decodes in C: a
# third less of Redis's time than splitting strings in Lua). Each admission reads its budgets
# (spend and reserved) with one MGET, and counts each rate limit with one INCRBY whose result
# is the check (a redis.call costs more than the rest of a check): if a later check refuses,
# the rate counts are taken back, so a refused call counts nowhere. Then the budgets reserve.
# (An admission names each counter once: keys carry the level, its id and the window. Were one
# named twice, its second check here would see the first's count, unlike LocalCounters.)
# A reservation counter expires RESERVATION_TTL after it was created, settled or refreshed
# (RedisCounters refreshes those its calls hold), so a process that died leaves reservations
# behind only until no process touches that counter for RESERVATION_TTL.
# Returns one entry per admission: {0, failed index} or {1, used value per check, then what
# each budget check that asked for a lease reserved}. A lease is granted, with the call's own
# reservation, as big as asked but so that what is left is at least LEASE_SHARE times both,
# and only if that is at least LEASE_CALLS reservations (or the whole ask, if smaller); it is
# noted under the check's marker for LEASE_MARKER_TTL. Otherwise only the call's reservation
# is (capped at what is left). Lua numbers are doubles: counters are exact up to 2^53
# (9 million USD in nano-USD).
SCRIPT = """
if #ARGV[1] > 2 then
  for _, op in ipairs(cjson.decode(ARGV[1])) do
    if #op == 2 then
      local granted = redis.call('GETDEL', op[1])
      if granted then
        if redis.call('DECRBY', op[2], granted) < 0 then redis.call('SET', op[2], 0, 'KEEPTTL') end
      end
    else
      local key, delta, ttl = op[1], op[2], op[3]
      local value = redis.call('INCRBY', key, delta)
      if value < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
      if ttl < 0 then redis.call('EXPIRE', key, -ttl)
      elseif ttl > 0 and value == delta then redis.call('EXPIRE', key, ttl) end
    end
  end
end
local out = {}
for a = 2, #ARGV do
  local checks = cjson.decode(ARGV[a])
  local names = {}
  for c = 1, #checks do
    local f = checks[c]
    if f[1] == 'b' then
      names[#names + 1] = f[2] .. ':s'
      names[#names + 1] = f[2] .. ':r'
    end
  end
  local got = {}
  if #names > 0 then got = redis.call('MGET', unpack(names)) end
  local values, failed, n = {}, 0, 1
  for c = 1, #checks do
    local f = checks[c]
    local used
    if f[1] == 'b' then
      local spend = got[n]
      if not spend then
        spend = f[5]
        if f[6] > 0 then redis.call('SET', names[n], spend, 'EX', f[6])
        else redis.call('SET', names[n], spend) end
      end
      used = tonumber(spend) + tonumber(got[n + 1] or '0')
      n = n + 2
    else
      local value = redis.call('INCRBY', f[2], f[4])
      if value == f[4] then redis.call('EXPIRE', f[2], f[6]) end
      used = value - f[4]
    end
    values[c] = used
    if used >= f[3] then
      failed = c
      break
    end
  end
  if failed > 0 then
    for c = 1, failed do
      local f = checks[c]
      if f[1] ~= 'b' then redis.call('DECRBY', f[2], f[4]) end
    end
    out[#out + 1] = {0, failed - 1}
  else
    local reply, grants = {1}, {}
    for c = 1, #checks do
      local f = checks[c]
      if f[1] == 'b' then
        local left = f[3] - values[c]
        local amount = math.min(f[4], left)
        if f[7] > 0 then
          local lease = math.min(f[7], math.floor(left / LEASE_SHARE) - f[4])
          if lease >= math.min(LEASE_CALLS * f[4], f[7]) then
            amount = f[4] + lease
            redis.call('SET', f[8], amount, 'EX', LEASE_MARKER_TTL)
          end
          grants[#grants + 1] = amount
        end
        if amount > 0 then
          local reserved = f[2] .. ':r'
          if redis.call('INCRBY', reserved, amount) == amount then
            redis.call('EXPIRE', reserved, RESERVATION_TTL)
          end
        end
      end
      reply[c + 1] = values[c]
    end
    for g = 1, #grants do reply[#reply + 1] = grants[g] end
    out[#out + 1] = reply
  end
end
return out
"""
for _name, _value in (  # longest names first: none is replaced inside another
    ("LEASE_MARKER_TTL", LEASE_MARKER_TTL),
    ("RESERVATION_TTL", RESERVATION_TTL),
    ("LEASE_SHARE", LEASE_SHARE),
    ("LEASE_CALLS", LEASE_CALLS),
):
    SCRIPT = SCRIPT.replace(_name, str(_value))


def encode_checks(checks: Sequence[Check]) -> bytes:
    return orjson.dumps(
        [(c.kind, c.key, c.limit, c.amount, str(c.seed), c.ttl, c.lease, c.marker) for c in checks]
    )


Settles = dict[str, list[int]]  # counter key → [summed delta, ttl]: one INCRBY per counter


def add_settles(settles: Settles, ops: Sequence[tuple[str, int, int]]) -> None:
    for key, delta, ttl in ops:
        found = settles.get(key)
        if found is None:
            settles[key] = [delta, ttl]
        else:
            found[0] += delta


def encode_settles(settles: Settles, reclaims: dict[str, str] | None = None) -> bytes:
    ops: list[tuple[Any, ...]] = [
        (key, clamp(delta, AMOUNT_MAX), ttl) for key, (delta, ttl) in settles.items()
    ]
    if reclaims:
        ops += reclaims.items()
    return orjson.dumps(ops)


@dataclass(slots=True)
class Lease:
    """Part of a budget reserved in Redis by this process for its next calls."""

    limit: int  # the budget's limit when the lease was granted
    granted_at: float  # monotonic
    left: int = 0
    used_at: float = 0.0
    calls: int = LEASE_CALLS  # reservations asked for last time
    spent: int = 0  # what calls cost, still reserved in Redis: moved to spend by the sweep
    spend_ttl: int = 0  # the budget's spend counter's expiry, should the move create it


def lease_ask(check: Check, marker: str, calls: int) -> Check:
    """A budget check as sent to Redis: asking for a lease of ``calls`` reservations."""
    if check.kind != BUDGET or check.amount <= 0:
        return check
    lease = min(calls * check.amount, AMOUNT_MAX - check.amount)
    return check._replace(lease=lease, marker=marker)


class RedisCounters:
    """Shared counters in Redis: one script call per event-loop tick carries every admission
    that queued up in that tick; settles collect for ``settle_interval`` and then ride with the
    next call (so a lone admission's latency does not include settling earlier calls). Up to
    ``MAX_SENDS`` script calls are on their way at once (pipelined on one connection, so
    Redis runs them in order): the next tick's admissions need not wait for the previous
    reply. Budget leases: see the module's docstring."""

    MAX_SENDS = 2

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.5,
        settle_interval: float = 0.05,
        refresh_interval: float = RESERVATION_TTL / 3,
        lease_idle: float = 1.0,
        lease_max_age: float = 10.0,
    ) -> None:
        self.client = RespClient(url, timeout=timeout)
        self.settle_interval = settle_interval
        self.pending: list[tuple[Sequence[Check], asyncio.Future[list[int]]]] = []
        self.settles: Settles = {}  # summed per counter until sent
        self.senders: set[asyncio.Task[None]] = set()  # script calls in flight
        self.scheduled = False
        self.settle_timer: asyncio.TimerHandle | None = None
        self.settles_due = False
        # Reservation counters this process holds reservations on, with the number of calls
        # holding one: their expiry is pushed back every ``refresh_interval`` while any is
        # in flight, so only the reservations of a process that died expire.
        self.held: collections.Counter[str] = collections.Counter()
        self.refresh_interval = refresh_interval
        self.refresh_timer: asyncio.TimerHandle | None = None
        self.leases: dict[str, Lease] = {}  # budget counter key → this process's lease
        self.asking: set[str] = set()  # budgets with an ask for a lease on its way
        self.lease_idle = lease_idle
        self.lease_max_age = lease_max_age
        self._sweep_interval = min(lease_idle, lease_max_age)
        self.lease_timer: asyncio.TimerHandle | None = None
        self.markers = (f"gh:lg:{os.urandom(8).hex()}:{n}" for n in itertools.count())
        self.reclaims: dict[str, str] = {}  # marker → reservation counter: grants to give back
        self.closing = False  # shutting down: no more leases

    async def admit(self, checks: Sequence[Check]) -> Admission:
        """Budgets this process holds a big enough lease of are taken from the lease; the
        other checks go to Redis (an empty admission too: a call is never admitted without
        Redis answering)."""
        now = time.monotonic()
        reserved = [0] * len(checks)
        remote: list[Check] = []
        positions: list[int] = []  # remote check → its index in ``checks``
        asked: list[str] = []  # budgets this call asks for a lease of
        drawn: list[str] = []  # budgets reserved from a lease
        for index, check in enumerate(checks):
            if check.kind == BUDGET:
                lease = self.leases.get(check.key)
                calls = LEASE_CALLS
                if lease is not None and lease.limit != check.limit:
                    self._give_back(check.key)  # the budget changed since it was granted
                elif lease is not None and lease.left >= check.amount and lease.left > 0:
                    lease.left -= check.amount
                    lease.used_at = now
                    reserved[index] = check.amount
                    drawn.append(check.key)
                    continue
                elif lease is not None:  # ran short while in use: a bigger one this time
                    calls = min(2 * lease.calls, LEASE_CALLS_MAX)
                if check.key not in self.asking and not self.closing:  # one ask at a time
                    check = lease_ask(check, next(self.markers), calls)
                    if check.lease:
                        self.asking.add(check.key)
                        asked.append(check.key)
            remote.append(check)
            positions.append(index)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self.pending.append((remote, future))
        self._schedule(loop)
        try:
            reply = await future
        except BaseException:
            self._undraw(checks, reserved)
            self._reclaim(remote)
            raise
        finally:
            if asked:
                self.asking.difference_update(asked)
        if reply[0] == 0:
            self._undraw(checks, reserved)
            return Admission(ok=False, checks=checks, failed=positions[reply[1]])
        # Every check passed in Redis (integers in the reply): the reservations it made.
        count = len(remote)
        admission = _admitted(reply[1 : count + 1], remote)
        grants = iter(reply[count + 1 :])
        for check, index, own in zip(remote, positions, admission.reserved, strict=True):
            reserved[index] = own
            if check.lease:
                self._lease(check, next(grants) - own, now)
        admission.checks, admission.reserved, admission.drawn = checks, reserved, drawn
        self._hold(admission)
        return admission

    def _lease(self, check: Check, extra: int, now: float) -> None:
        if extra <= 0:
            return
        if self.closing:  # granted as the process stops: given back at once
            self._add_settles([(check.key + ":r", -extra, -RESERVATION_TTL)])
            return
        lease = self.leases.get(check.key)
        if lease is None:
            lease = self.leases[check.key] = Lease(check.limit, now, spend_ttl=check.ttl)
            self.held[check.key + ":r"] += 1  # refreshed while the lease lasts
            if self.lease_timer is None:
                loop = asyncio.get_running_loop()
                self.lease_timer = loop.call_later(self._sweep_interval, self._sweep_leases, loop)
        else:  # the lease this ask was sized for: the next may grow from this size
            lease.calls = max(lease.calls, check.lease // check.amount)
        lease.left += extra
        lease.used_at = now

    def _undraw(self, checks: Sequence[Check], reserved: list[int]) -> None:
        """Put back what a call that was not admitted took from leases (released in Redis
        if its lease was given back meanwhile)."""
        for check, amount in zip(checks, reserved, strict=True):
            if not amount:
                continue
            lease = self.leases.get(check.key)
            if lease is not None:
                lease.left += amount
            else:
                self._add_settles([(check.key + ":r", -amount, -RESERVATION_TTL)])

    def _reclaim(self, remote: Sequence[Check]) -> None:
        """The reply to these checks was lost: any lease Redis granted them (noted under
        their markers) is given back with the next script call."""
        for check in remote:
            if check.marker:
                self.reclaims[check.marker] = check.key + ":r"
        if self.reclaims and self.settle_timer is None:  # or with an earlier script call
            loop = asyncio.get_running_loop()
            self.settle_timer = loop.call_later(self.settle_interval, self._settles_due, loop)

    def settle_call(self, admission: Admission, cost_nano: int, tokens_used: int) -> None:
        """Settle a finished call. A reservation the call drew from this process's lease goes
        back into the lease: what the call did not use is left for the next calls, and what
        it cost is noted as the lease's spend, still reserved in Redis and moved there from
        reserved to spend with the sweep of the leases and when the lease is given back
        (``spend + reserved`` is the same either way), instead of two counts per call. Other
        reservations (made in Redis) are released there and the cost added, as without
        leases. Either way, what the call cost beyond its reservation is taken from the
        lease first, so that the lease cannot admit more than Redis granted."""
        leased = []
        for check, reserved in zip(admission.checks, admission.reserved, strict=True):
            lease = self.leases.get(check.key) if check.kind == BUDGET else None
            if lease is None:
                continue
            if check.key in admission.drawn:
                leased.append(check.key)
                if reserved:
                    self._unhold(check.key + ":r")
                covered = min(cost_nano, reserved + lease.left)
                lease.left += reserved - covered
                lease.spent += covered
                if cost_nano > covered:
                    self._add_settles([(check.key + ":s", cost_nano - covered, check.ttl)])
            elif cost_nano > reserved and lease.left > 0:
                taken = min(cost_nano - reserved, lease.left)
                lease.left -= taken
                self._add_settles([(check.key + ":r", -taken, -RESERVATION_TTL)])
        self.settle(settle_ops(admission, cost_nano, tokens_used, leased))

    def _give_back(self, key: str) -> None:
        lease = self.leases.pop(key)
        self._unhold(key + ":r")
        self._move_spent(key, lease, lease.left)

    def _move_spent(self, key: str, lease: Lease, released: int = 0) -> None:
        """Send what the lease's calls cost from reserved to spend, with ``released`` more
        released from reserved."""
        ops = []
        if lease.spent + released > 0:
            ops.append((key + ":r", -(lease.spent + released), -RESERVATION_TTL))
        if lease.spent > 0:
            ops.append((key + ":s", lease.spent, lease.spend_ttl))
        lease.spent = 0
        if ops:
            self._add_settles(ops)

    def _sweep_leases(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give back the leases no call took from for ``lease_idle`` seconds, and those older
        than ``lease_max_age`` (a budget near its limit gets no new lease, so an old one would
        keep its share from the other processes); move the others' spend."""
        self.lease_timer = None
        now = time.monotonic()
        idle_since, granted_since = now - self.lease_idle, now - self.lease_max_age
        for key in [
            k
            for k, lease in self.leases.items()
            if lease.used_at <= idle_since or lease.granted_at <= granted_since
        ]:
            self._give_back(key)
        for key, lease in self.leases.items():
            self._move_spent(key, lease)
        if self.leases:
            self.lease_timer = loop.call_later(self._sweep_interval, self._sweep_leases, loop)

    def settle(self, ops: list[tuple[str, int, int]]) -> None:
        if not ops:
            return
        for key, delta, _ in ops:
            if delta < 0 and key in self.held:  # a reservation released
                self._unhold(key)
        self._add_settles(ops)

    def _add_settles(self, ops: Sequence[tuple[str, int, int]]) -> None:
        add_settles(self.settles, ops)
        if self.settle_timer is None:
            loop = asyncio.get_running_loop()
            self.settle_timer = loop.call_later(self.settle_interval, self._settles_due, loop)

    def _unhold(self, key: str) -> None:
        self.held[key] -= 1
        if not self.held[key]:
            del self.held[key]

    def _settles_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self.settle_timer = None
        self.settles_due = True
        self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.scheduled and len(self.senders) < self.MAX_SENDS:
            self.scheduled = True
            loop.call_soon(self._start_send, loop)

    def _start_send(self, loop: asyncio.AbstractEventLoop) -> None:
        self.scheduled = False
        settles: Settles = {}
        if self.settles_due:
            self.settles_due = False
            settles, self.settles = self.settles, {}
        if not self.pending and not settles and not self.reclaims:
            return
        batch, self.pending = self.pending, []
        reclaims, self.reclaims = self.reclaims, {}
        sender = loop.create_task(self._run(batch, settles, reclaims))
        self.senders.add(sender)
        sender.add_done_callback(self._sent)

    def _sent(self, sender: asyncio.Task[None]) -> None:
        self.senders.discard(sender)
        if self.pending or self.settles_due:
            self._schedule(asyncio.get_running_loop())

    async def _run(
        self,
        batch: list[tuple[Sequence[Check], asyncio.Future[list[int]]]],
        settles: Settles,
        reclaims: dict[str, str] | None = None,
    ) -> None:
        try:
            args = [
                encode_settles(settles, reclaims),
                *(encode_checks(checks) for checks, _ in batch),
            ]
            replies = await self.client.evalsha(SCRIPT, *args)
        except Exception as exc:  # unreachable, timed out, broke mid-call, script error
            loop = asyncio.get_running_loop()
            if not isinstance(exc, RedisUnavailable) or exc.sent:
                # The script may have run, or partly (Lua does not roll back): sending these
                # settles again could count them twice. Dropped instead (spend can only be
                # under-counted, by these calls).
                logger.warning("Redis did not answer; %d counter settles dropped.", len(settles))
            else:
                # Never reached Redis: sent with a later batch.
                for key, (delta, ttl) in settles.items():
                    self.settles.setdefault(key, [0, ttl])[0] += delta
                if len(self.settles) > 100_000:  # Redis away for long: keep the newest counters
                    for key in list(self.settles)[: len(self.settles) - 100_000]:
                        del self.settles[key]
            if reclaims:  # giving a grant back twice gives it back once: always kept
                self.reclaims = {**reclaims, **self.reclaims}
            # Kept settles wait for the retry timer: no spinning while Redis is away.
            if (self.settles or self.reclaims) and self.settle_timer is None:
                self.settle_timer = loop.call_later(1.0, self._settles_due, loop)
            logger.warning("Redis counters unavailable: %s", exc.__class__.__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(CountersUnavailable(str(exc)))
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    def _hold(self, admission: Admission) -> None:
        for check, reserved in zip(admission.checks, admission.reserved, strict=True):
            if reserved and check.kind == BUDGET:
                self.held[check.key + ":r"] += 1
        if self.held and self.refresh_timer is None:
            loop = asyncio.get_running_loop()
            self.refresh_timer = loop.call_later(self.refresh_interval, self._refresh, loop)

    def _refresh(self, loop: asyncio.AbstractEventLoop) -> None:
        """Push back the expiry of every reservation counter a call of this process holds."""
        self.refresh_timer = None
        if not self.held:
            return
        for key in self.held:  # an expiry-only settle, or one already waiting made one
            self.settles.setdefault(key, [0, 0])[1] = -RESERVATION_TTL
        self.settles_due = True
        self._schedule(loop)
        self.refresh_timer = loop.call_later(self.refresh_interval, self._refresh, loop)

    async def flush(self) -> None:
        """Give back the leases and send the settles still waiting (shutdown)."""
        self.closing = True
        if self.lease_timer is not None:
            self.lease_timer.cancel()
            self.lease_timer = None
        if self.refresh_timer is not None:
            self.refresh_timer.cancel()
            self.refresh_timer = None
        if self.settle_timer is not None:
            self.settle_timer.cancel()
            self.settle_timer = None
        while self.senders:
            await asyncio.wait(list(self.senders))
        await asyncio.sleep(0)  # the admissions just answered take their leases first
        for key in list(self.leases):
            self._give_back(key)
        if self.settle_timer is not None:
            self.settle_timer.cancel()
            self.settle_timer = None
        if self.settles or self.pending or self.reclaims:
            batch, self.pending = self.pending, []
            settles, self.settles = self.settles, {}
            reclaims, self.reclaims = self.reclaims, {}
            await self._run(batch, settles, reclaims)
        if self.settle_timer is not None:  # the last try failed: nothing will come after it
            self.settle_timer.cancel()
            self.settle_timer = None
        if self.settles:
            logger.warning("Shutting down; %d counter settles dropped.", len(self.settles))
            self.settles = {}

    async def ping(self) -> bool:
        try:
            return bool(await self.client.execute("PING") == b"PONG")
        except Exception:
            return False

    async def execute(self, *args: Any) -> Any:
        """Any other command, on the counters' connection."""
        return await self.client.execute(*args)

    async def close(self) -> None:
        await self.client.close()
