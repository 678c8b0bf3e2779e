"""Recording spend: log rows, every level's spend, and budget periods rolling over."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from gateway.snapshot import Level
from hierarchy.models import Team
from keys.models import VirtualKey
from projects.models import Project
from spend.models import SpendLog
from spend.services import (
    NANO,
    CallRecord,
    _usd_by_model,
    budgets_roll_over,
    spend_record_batch,
    usd_to_nano,
)
from tests.factories import UserFactory, VirtualKeyFactory

BOUNDARY = datetime(2026, 11, 27, tzinfo=UTC)


def record(key: VirtualKey, cost_nano: int, ended: datetime, model: str = "gpt-4o") -> CallRecord:
    team = key.team
    return CallRecord(
        request_id=uuid.uuid4().hex,
        key_hash=key.token_hash,
        key_id=key.pk,
        project_id=key.project_id or "",
        team_id=key.team_id or "",
        organization_id=team.organization_id if team and team.organization_id else "",
        user_id=key.user_id or "",
        model=model,
        call_type="chat.completions",
        prompt_tokens=10,
        completion_tokens=5,
        cost_nano=cost_nano,
        http_status=200,
        stream=False,
        latency_ms=1.5,
        started_at=ended.timestamp() - 0.1,
        ended_at=ended.timestamp(),
    )


@pytest.fixture
def key(db):
    return VirtualKeyFactory(user=UserFactory())


def test_calls_sent_again_after_a_writer_died_are_not_counted_twice(key):
    at = BOUNDARY + timedelta(hours=1)
    written = record(key, 1_000, at)
    spend_record_batch(records=[written], now=at)
    spend_record_batch(records=[written, record(key, 500, at)], now=at, skip_logged=True)
    assert SpendLog.objects.filter(key_id=key.pk).count() == 2
    key.refresh_from_db()
    assert key.spend == Decimal("0.0000015")


def test_a_batch_writes_rows_and_adds_cost_at_every_level(key):
    at = BOUNDARY + timedelta(hours=1)
    spend_record_batch(
        records=[record(key, 1_500, at), record(key, 500, at, model="gpt-4o-mini")], now=at
    )
    assert SpendLog.objects.filter(key_id=key.pk).count() == 2
    row = SpendLog.objects.filter(model="gpt-4o").get()
    assert (row.total_tokens, row.cost, row.status) == (15, Decimal("0.0000015"), "success")
    assert row.organization_id == key.team.organization_id
    for level in (key, key.project, key.team, key.team.organization, key.user):
        level.refresh_from_db()
        assert level.spend == Decimal("0.000002"), level
        assert level.model_spend == {"gpt-4o": 0.0000015, "gpt-4o-mini": 0.0000005}
    assert key.last_used_at == at


def test_spend_rolls_over_exactly_at_the_period_boundary(key):
    Team.objects.filter(pk=key.team_id).update(
        budget_duration="1d", budget_reset_at=BOUNDARY, spend=Decimal("5")
    )
    before = BOUNDARY - timedelta(microseconds=1)
    spend_record_batch(records=[record(key, 1_000, before)], now=before)
    key.team.refresh_from_db()
    assert key.team.spend == Decimal("5.000001")  # still the old period

    late = record(key, 2_000, before)  # ended before the boundary, written after it
    spend_record_batch(records=[late, record(key, 3_000, BOUNDARY)], now=BOUNDARY)
    key.team.refresh_from_db()
    assert key.team.spend == Decimal("0.000003")  # a new period: only the call inside it
    assert key.team.budget_reset_at == BOUNDARY + timedelta(days=1)
    assert SpendLog.objects.count() == 3  # every call is logged
    key.refresh_from_db()
    assert key.spend == Decimal("0.000006")  # the key has no period


def test_reset_budgets_starts_ended_periods_only_and_is_idempotent(key):
    Team.objects.filter(pk=key.team_id).update(
        budget_duration="1d",
        budget_reset_at=BOUNDARY,
        spend=Decimal("5"),
        model_spend={"gpt-4o": 5.0},
    )
    VirtualKey.objects.filter(pk=key.pk).update(
        budget_duration="1mo", budget_reset_at=BOUNDARY + timedelta(days=3), spend=Decimal("2")
    )
    assert budgets_roll_over(now=BOUNDARY - timedelta(microseconds=1))["team"] == 0
    rolled = budgets_roll_over(now=BOUNDARY)
    assert (rolled["team"], rolled["key"]) == (1, 0)
    key.team.refresh_from_db()
    assert (key.team.spend, key.team.model_spend) == (Decimal("0"), {})
    assert key.team.budget_reset_at == BOUNDARY + timedelta(days=1)
    key.refresh_from_db()
    assert key.spend == Decimal("2")  # its month is not over
    assert budgets_roll_over(now=BOUNDARY + timedelta(hours=1)) == dict.fromkeys(
        ["key", "project", "team", "organization", "user"], 0
    )


def test_the_reset_budgets_command_reports_and_repeats_safely(key):
    Project.objects.filter(pk=key.project_id).update(
        budget_duration="1d",
        budget_reset_at=timezone.now() - timedelta(days=3),
        spend=Decimal("7"),
    )
    out = StringIO()
    call_command("reset_budgets", stdout=out)
    assert "project: 1 rolled over" in out.getvalue()
    assert "Started a new budget period on 1 rows." in out.getvalue()
    key.project.refresh_from_db()
    assert key.project.spend == Decimal("0")
    out = StringIO()
    call_command("reset_budgets", stdout=out)
    assert "Started a new budget period on 0 rows." in out.getvalue()


def level(**overrides) -> Level:
    values = dict(
        kind="team",
        id="t",
        label="t",
        blocked=False,
        models=[],
        max_budget=10**9,
        budget_duration="1d",
        budget_reset_at=BOUNDARY,
        spend=700,
        model_spend={"m": 70},
        rpm_limit=None,
        tpm_limit=None,
        model_rpm_limit={},
        model_tpm_limit={},
        model_max_budget={},
    )
    return Level(**{**values, **overrides})


def test_gateway_periods_change_at_the_boundary_and_seed_only_the_current_one():
    team = level()
    tag_before, end_before = team.period(BOUNDARY.timestamp() - 0.001)
    assert end_before == BOUNDARY.timestamp()
    assert (team.seed(), team.seed("m")) == (700, 70)  # the database holds this period
    tag_after, end_after = team.period(BOUNDARY.timestamp())
    assert tag_after != tag_before
    assert end_after == (BOUNDARY + timedelta(days=1)).timestamp()
    assert team.seed() == 0  # nothing spent yet in the new period


def test_own_model_periods_agree_across_processes():
    now = BOUNDARY.timestamp() + 95
    first, second = level(), level()
    assert first.own_period("30s", now) == second.own_period("30s", now)
    assert first.own_period("30s", now)[1] == BOUNDARY.timestamp() + 120


def test_per_model_periods_sit_on_a_fixed_grid_whenever_a_process_started():
    early = level()
    inside = BOUNDARY.timestamp() + 3 * 86_400
    tag, end = early.own_period("30d", inside)
    later = level()  # another process, or a reloaded snapshot, days later
    assert later.own_period("30d", inside + 5 * 86_400) == (tag, end)
    assert end - inside > 86_400  # a 30-day period does not end at the next midnight
    assert later.own_period("30d", end)[0] != tag


@pytest.mark.django_db
def test_spend_log_rows_pay_only_for_the_indexes_that_lookups_use():
    """Every spend row updates every index of the log: no LIKE (pattern_ops) index, which
    Django adds beside a text field's own on PostgreSQL and no lookup here would use."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pattern_ops indexes exist only on PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            [SpendLog._meta.db_table],
        )
        indexes = dict(cursor.fetchall())
    assert not [name for name, sql in indexes.items() if "pattern_ops" in sql]
    unique = [sql for sql in indexes.values() if "UNIQUE" in sql]
    assert any("(request_id)" in sql for sql in unique)
    assert any("(key_hash)" in sql for sql in indexes.values())


@pytest.mark.parametrize(
    ("value", "nano"),
    [
        (Decimal("1.000000001"), 1_000_000_001),
        (Decimal("0.0000000005"), 0),  # half a nano-dollar: to the even neighbour
        (Decimal("0.0000000015"), 2),
        (Decimal("-0.0000000025"), -2),
        (Decimal("123456789012.123456789"), 123_456_789_012_123_456_789),
        (0.1, 100_000_000),  # a float by its shortest repr, as JSON holds it
        (1e-9, 1),
        (3, 3_000_000_000),
        ("2.5", 2_500_000_000),
    ],
)
def test_dollars_convert_to_whole_nano_dollars(value, nano):
    assert usd_to_nano(value) == nano


@pytest.mark.parametrize("nano", [1, 123_456_789, 2**53 - 1, -(2**53 - 1), 2**53, 10**20])
def test_model_spend_in_dollars_is_the_float_nearest_the_exact_amount(nano):
    assert _usd_by_model({"m": nano}) == {"m": float(Decimal(nano) * NANO)}
