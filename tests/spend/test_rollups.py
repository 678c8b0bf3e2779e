"""Daily rollups: kept by the spend pipeline, equal to the spend log they summarise, and
rebuilt from it by a command. Days are local days of GATEHOUSE_TIMEZONE."""

from __future__ import annotations

import itertools
import re
import uuid
import zoneinfo
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spend.models import DailySpend, SpendLog
from spend.services import (
    CallRecord,
    nano_to_usd,
    spend_logs_prune,
    spend_logs_prune_cutoff,
    spend_record_batch,
)

ZONE = "Asia/Kolkata"  # UTC+05:30: local midnight is 18:30 UTC
# Local midnights of 2026-11-26 and 2026-11-27 in Kolkata, as epoch seconds.
MIDNIGHTS = [
    datetime(2026, 11, day, tzinfo=zoneinfo.ZoneInfo(ZONE)).timestamp() for day in (26, 27)
]


def call(
    started: float,
    *,
    project: str = "p1",
    model: str = "gpt-4o",
    status: int = 200,
    cost: int = 1_000,
    prompt: int = 10,
    completion: int = 5,
) -> CallRecord:
    return CallRecord(
        request_id=uuid.uuid4().hex,
        key_hash="",
        key_id=f"k-{project}",
        project_id=project,
        team_id="t1" if project else "",
        organization_id="o1" if project else "",
        user_id="",
        model=model,
        call_type="chat.completions",
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_nano=cost,
        http_status=status,
        stream=False,
        latency_ms=1.0,
        started_at=started,
        ended_at=started + 0.5,
    )


def rollups() -> dict[tuple[object, ...], tuple[object, ...]]:
    return {
        (r.day, r.organization_id, r.team_id, r.project_id, r.key_id, r.model): (
            r.requests_ok,
            r.requests_failed,
            r.prompt_tokens,
            r.completion_tokens,
            r.spend,
        )
        for r in DailySpend.objects.all()
    }


def summed_from_the_log() -> dict[tuple[object, ...], tuple[object, ...]]:
    zone = zoneinfo.ZoneInfo(ZONE)
    sums: dict[tuple[object, ...], list[object]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    for row in SpendLog.objects.all():
        day = row.started_at.astimezone(zone).date()
        bucket = (day, row.organization_id, row.team_id, row.project_id, row.key_id, row.model)
        found = sums[bucket]
        found[0 if row.status == SpendLog.Status.SUCCESS else 1] += 1  # type: ignore[operator]
        found[2] += row.prompt_tokens  # type: ignore[operator]
        found[3] += row.completion_tokens  # type: ignore[operator]
        found[4] += row.cost  # type: ignore[operator]
    return {bucket: tuple(found) for bucket, found in sums.items()}


calls = st.lists(
    st.builds(
        call,
        # Within three hours either side of a local midnight, to the microsecond.
        st.builds(
            lambda midnight, offset: midnight + offset,
            st.sampled_from(MIDNIGHTS),
            st.floats(-3 * 3600, 3 * 3600, allow_nan=False).map(lambda x: round(x, 6)),
        ),
        project=st.sampled_from(["p1", "p2", ""]),
        model=st.sampled_from(["gpt-4o", "gpt-4o-mini"]),
        status=st.sampled_from([200, 200, 429, 502]),
        cost=st.integers(0, 5_000_000),
        prompt=st.integers(0, 2_000),
        completion=st.integers(0, 2_000),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=calls, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_rollups_equal_the_log_they_summarise_in_any_batching(db, django_settings, calls, cuts):
    SpendLog.objects.all().delete()
    DailySpend.objects.all().delete()
    bounds = sorted({0, len(calls), *(c for c in cuts if c < len(calls))})
    for start, end in itertools.pairwise(bounds):
        spend_record_batch(records=calls[start:end])
    assert rollups() == summed_from_the_log()
    # Rebuilding from the log gives the same rows.
    days = sorted(DailySpend.objects.values_list("day", flat=True))
    call_command("rebuild_spend_rollups", start=str(days[0]), end=str(days[-1]), stdout=StringIO())
    assert rollups() == summed_from_the_log()


@pytest.fixture
def django_settings(settings):
    settings.GATEHOUSE_TIMEZONE = ZONE
    return settings


def test_a_call_counts_on_its_local_day(db, django_settings):
    before, after = MIDNIGHTS[1] - 1e-6, MIDNIGHTS[1]
    spend_record_batch(records=[call(before), call(after, status=502, cost=0)])
    by_day = {r.day: r for r in DailySpend.objects.all()}
    assert set(by_day) == {date(2026, 11, 26), date(2026, 11, 27)}
    assert (by_day[date(2026, 11, 26)].requests_ok, by_day[date(2026, 11, 26)].spend) == (
        1,
        nano_to_usd(1_000),
    )
    assert (by_day[date(2026, 11, 27)].requests_ok, by_day[date(2026, 11, 27)].requests_failed) == (
        0,
        1,
    )
    # 18:30 UTC is local midnight: the second call is 2026-11-27 in Kolkata, 11-26 in UTC.
    assert datetime.fromtimestamp(after, UTC).date() == date(2026, 11, 26)


def test_a_call_a_fraction_of_a_microsecond_before_midnight_counts_as_its_log_row_says(
    db, django_settings
):
    # Logged to the microsecond, 2.4e-7 s before midnight is midnight: the next day, even
    # after a call of the day before (whose day the batch then knows).
    spend_record_batch(records=[call(MIDNIGHTS[1] - 60), call(MIDNIGHTS[1] - 2.4e-7)])
    assert rollups() == summed_from_the_log()
    assert {r.day: r.requests_ok for r in DailySpend.objects.all()} == {
        date(2026, 11, 26): 1,
        date(2026, 11, 27): 1,
    }


def test_rebuild_restores_lost_rows_and_leaves_other_days_alone(db, django_settings):
    spend_record_batch(
        records=[call(MIDNIGHTS[0] + 60), call(MIDNIGHTS[1] + 60), call(MIDNIGHTS[1] + 120)]
    )
    DailySpend.objects.filter(day=date(2026, 11, 26)).update(spend=Decimal("99"))  # drifted
    DailySpend.objects.filter(day=date(2026, 11, 27)).delete()  # lost
    out = StringIO()
    call_command("rebuild_spend_rollups", start="2026-11-27", end="2026-11-27", stdout=out)
    assert "[1/1] 2026-11-27: 1 rollup rows, 2 calls" in out.getvalue()
    assert DailySpend.objects.get(day=date(2026, 11, 27)).requests_ok == 2
    assert DailySpend.objects.get(day=date(2026, 11, 26)).spend == Decimal("99")


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-27", "2026-11-26", "--end is before --start."),
        ("yesterday", "2026-11-26", "'yesterday' is not a date (YYYY-MM-DD)."),
        ("2000-01-01", "2026-11-26", "At most 3660 days at once."),
    ],
)
def test_rebuild_refuses_a_bad_range_and_writes_nothing(db, start, end, message):
    spend_record_batch(records=[call(MIDNIGHTS[0] + 60)])
    before = rollups()
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("rebuild_spend_rollups", start=start, end=end, stdout=StringIO())
    assert rollups() == before


def test_rollups_have_one_row_per_bucket(db):
    later = datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp()
    spend_record_batch(records=[call(later), call(later + timedelta(minutes=1).seconds)])
    spend_record_batch(records=[call(later + 120)])
    row = DailySpend.objects.get()
    assert (row.requests_ok, row.prompt_tokens, row.spend) == (3, 30, nano_to_usd(3_000))


def test_pruning_deletes_old_log_rows_in_batches_and_keeps_the_rollups(db):
    now = datetime.now(UTC).timestamp()
    old = [call(now - 92 * 86_400 + i) for i in range(5)]
    recent = call(now - 89 * 86_400)
    spend_record_batch(records=[*old, recent])
    rollups_before = rollups()
    out = StringIO()
    call_command("prune_spend_logs", older_than="90d", batch_size=2, stdout=out)
    assert list(SpendLog.objects.values_list("request_id", flat=True)) == [recent.request_id]
    assert rollups() == rollups_before
    assert "deleted 2 rows so far" in out.getvalue()
    assert "Deleted 5 spend log rows" in out.getvalue()
    # From cron, again: nothing left to do.
    out = StringIO()
    call_command("prune_spend_logs", older_than="90d", stdout=out)
    assert "Deleted 0 spend log rows" in out.getvalue()


def test_pruning_takes_whole_local_days_and_a_rebuild_keeps_a_pruned_days_rollups(
    db, django_settings
):
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)  # 17:30 in Kolkata
    cutoff = spend_logs_prune_cutoff(timedelta(days=90), now=now)
    assert cutoff == datetime(2026, 8, 29, tzinfo=zoneinfo.ZoneInfo(ZONE))
    pruned_day = call((cutoff - timedelta(hours=1)).timestamp())
    kept_day = call(cutoff.timestamp())
    spend_record_batch(records=[pruned_day, kept_day])
    before = rollups()
    assert sum(spend_logs_prune(before=cutoff)) == 1
    out = StringIO()
    call_command("rebuild_spend_rollups", start="2026-08-28", end="2026-08-29", stdout=out)
    assert "2026-08-28: log pruned, rollups kept" in out.getvalue()
    assert "2026-08-29: 1 rollup rows, 1 calls" in out.getvalue()
    assert rollups() == before


def test_a_dry_run_prunes_nothing(db):
    spend_record_batch(records=[call(datetime.now(UTC).timestamp() - 100 * 86_400)])
    out = StringIO()
    call_command("prune_spend_logs", older_than="13w", dry_run=True, stdout=out)
    assert "Would delete 1 spend log rows" in out.getvalue()
    assert SpendLog.objects.count() == 1


@pytest.mark.parametrize(
    ("age", "message"),
    [
        ("3mo", "--older-than: use days or weeks (e.g. 90d, 13w), not months."),
        ("ninety", "--older-than: Invalid duration 'ninety'"),
    ],
)
def test_pruning_refuses_an_unclear_age(db, age, message):
    spend_record_batch(records=[call(datetime.now(UTC).timestamp() - 100 * 86_400)])
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("prune_spend_logs", older_than=age, stdout=StringIO())
    assert SpendLog.objects.count() == 1
