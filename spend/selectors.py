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
from spend.models import BudgetAlert, DailySpend, SpendLog

# A report groups by any of these (the API's names), in this order.
REPORT_DIMENSIONS: dict[str, str] = {
    "day": "day",
    "organization": "organization_id",
    "team": "team_id",
    "project": "project_id",
    "key": "key_id",
    "model": "model",
}
REPORT_SUMS = ("requests_ok", "requests_failed", "prompt_tokens", "completion_tokens", "spend")


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a day in ``GATEHOUSE_TIMEZONE``."""
    zone = gatehouse_timezone()
    start = datetime.combine(day, time.min).replace(tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min).replace(tzinfo=zone)


def local_today() -> date:
    return datetime.now(gatehouse_timezone()).date()


def spend_logs_started_before(before: datetime) -> QuerySet[SpendLog]:
    return SpendLog.objects.filter(started_at__lt=before)


def _spend_scope(actor: ActorLike, *, with_user: bool) -> Q | None:
    """The rows a caller may read, as a condition on their ids (None: everything)."""
    actor = as_actor(actor)
    if actor.can_read_everything:
        return None
    if actor.user is None:
        return Q(pk__in=[])
    own_keys = VirtualKey.objects.filter(user=actor.user).values("pk")
    scope = (
        Q(organization_id__in=organizations_managed_by(actor).values("pk"))
        | Q(team_id__in=teams_managed_by(actor).values("pk"))
        | Q(key_id__in=own_keys)
    )
    if with_user:
        scope |= Q(user_id=actor.user.pk)
    return scope


def spend_logs_visible_to(actor: ActorLike) -> QuerySet[SpendLog]:
    scope = _spend_scope(actor, with_user=True)
    return SpendLog.objects.all() if scope is None else SpendLog.objects.filter(scope)


def daily_spend_visible_to(actor: ActorLike) -> QuerySet[DailySpend]:
    scope = _spend_scope(actor, with_user=False)
    return DailySpend.objects.all() if scope is None else DailySpend.objects.filter(scope)


def spend_report(rows: QuerySet[DailySpend], *, group_by: Sequence[str]) -> QuerySet[Any]:
    """Sums of ``rows`` per group (``group_by``: names of ``REPORT_DIMENSIONS``), as dicts
    with the groups' columns and ``sum_<name>`` for each of ``REPORT_SUMS``; ordered by day,
    then by spend, largest first."""
    columns = [REPORT_DIMENSIONS[name] for name in REPORT_DIMENSIONS if name in group_by]
    sums = {f"sum_{name}": Sum(name) for name in REPORT_SUMS}
    ordering: list[Any] = ["day"] if "day" in group_by else []
    ordering += [F("sum_spend").desc(), *columns]
    return rows.order_by().values(*columns).annotate(**sums).order_by(*ordering)


def spend_totals(rows: QuerySet[DailySpend]) -> dict[str, Any]:
    """``REPORT_SUMS`` over all of ``rows`` (zeros when there are none)."""
    totals = rows.aggregate(**{name: Sum(name) for name in REPORT_SUMS})
    return {name: value or 0 for name, value in totals.items()}


def budget_alerts_visible_to(actor: ActorLike) -> QuerySet[BudgetAlert]:
    """Budget alerts name levels of every kind: proxy admins and viewers see them."""
    if as_actor(actor).can_read_everything:
        return BudgetAlert.objects.all()
    return BudgetAlert.objects.none()
