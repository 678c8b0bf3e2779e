"""Reads of spend data, scoped to the caller (Decision 10).

A caller sees the spend it could see the keys of: proxy admins and viewers everything; org
admins their organizations'; team admins their teams'; everyone their own keys'. Spend rows
outlive what they name, so the scope goes by the ids on the rows, not by joins.

Reports read the daily rollups (``DailySpend``), never the raw log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import F, Q, QuerySet, Sum

from hierarchy.actors import ActorLike, as_actor
from hierarchy.governance import gatehouse_timezone
from hierarchy.selectors import organizations_managed_by, teams_managed_by
from keys.models import VirtualKey
from spend.models import ROLLUP_BUCKET, ROLLUP_SUMS, BudgetAlert, DailySpend, SpendLog

# A report groups by any of these (the API's names for the rollup's bucket), in this order.
REPORT_DIMENSIONS: dict[str, str] = {column.removesuffix("_id"): column for column in ROLLUP_BUCKET}


def local_day_start(day: date) -> datetime:
    """Midnight at the start of a day in ``GATEHOUSE_TIMEZONE``."""
    return datetime.combine(day, time.min).replace(tzinfo=gatehouse_timezone())


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a day in ``GATEHOUSE_TIMEZONE``."""
    return local_day_start(day), local_day_start(day + timedelta(days=1))


def local_today() -> date:
    return datetime.now(gatehouse_timezone()).date()


def spend_logs_started_before(before: datetime) -> QuerySet[SpendLog]:
    return SpendLog.objects.filter(started_at__lt=before)


def _spend_scope(actor: ActorLike) -> Q | None:
    """The rows a caller may read, as a condition on their ids (None: everything).

    The ids are read first (a handful per caller) and only those not covered already are
    kept, so that the database can walk one (id, started_at) index in order when one
    condition is left, instead of joining subqueries against millions of rows."""
    actor = as_actor(actor)
    if actor.can_read_everything:
        return None
    if actor.user is None:
        return Q(pk__in=[])
    orgs = list(organizations_managed_by(actor).values_list("pk", flat=True))
    teams = list(
        teams_managed_by(actor).exclude(organization_id__in=orgs).values_list("pk", flat=True)
    )
    # Own keys in none of those teams; a key never used has no spend rows.
    keys = list(
        VirtualKey.objects.filter(user=actor.user, last_used_at__isnull=False)
        .exclude(team_id__in=teams)
        .exclude(team__organization_id__in=orgs)
        .values_list("pk", flat=True)
    )
    scope = Q(pk__in=[])
    for column, ids in (("organization_id", orgs), ("team_id", teams), ("key_id", keys)):
        if ids:
            scope |= Q(**{f"{column}__in": ids})
    return scope


def spend_logs_visible_to(actor: ActorLike) -> QuerySet[SpendLog]:
    scope = _spend_scope(actor)
    return SpendLog.objects.all() if scope is None else SpendLog.objects.filter(scope)


def daily_spend_visible_to(actor: ActorLike) -> QuerySet[DailySpend]:
    scope = _spend_scope(actor)
    return DailySpend.objects.all() if scope is None else DailySpend.objects.filter(scope)


def report_columns(group_by: Sequence[str]) -> list[str]:
    """The rollup columns of ``group_by`` (names of ``REPORT_DIMENSIONS``), in bucket order."""
    return [column for name, column in REPORT_DIMENSIONS.items() if name in group_by]


def spend_report(rows: QuerySet[DailySpend], *, group_by: Sequence[str]) -> QuerySet[Any]:
    """Sums of ``rows`` per group (``group_by``: names of ``REPORT_DIMENSIONS``), as dicts
    with the groups' columns and ``sum_<name>`` for each of ``ROLLUP_SUMS``; ordered by day,
    then by spend, largest first."""
    columns = report_columns(group_by)
    sums = {f"sum_{name}": Sum(name) for name in ROLLUP_SUMS}
    ordering: list[Any] = ["day"] if "day" in group_by else []
    ordering += [F("sum_spend").desc(), *columns]
    return rows.order_by().values(*columns).annotate(**sums).order_by(*ordering)


def spend_totals(rows: QuerySet[DailySpend]) -> dict[str, Any]:
    """``ROLLUP_SUMS`` over all of ``rows`` (zeros when there are none)."""
    totals = rows.aggregate(**{name: Sum(name) for name in ROLLUP_SUMS})
    return {name: value or 0 for name, value in totals.items()}


def budget_alerts_visible_to(actor: ActorLike) -> QuerySet[BudgetAlert]:
    """Budget alerts name levels of every kind: proxy admins and viewers see them."""
    if as_actor(actor).can_read_everything:
        return BudgetAlert.objects.all()
    return BudgetAlert.objects.none()
