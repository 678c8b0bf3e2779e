"""Reads of spend data."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db.models import QuerySet

from hierarchy.governance import gatehouse_timezone
from spend.models import SpendLog


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a day in ``GATEHOUSE_TIMEZONE``."""
    zone = gatehouse_timezone()
    start = datetime.combine(day, time.min).replace(tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min).replace(tzinfo=zone)


def spend_logs_started_before(before: datetime) -> QuerySet[SpendLog]:
    return SpendLog.objects.filter(started_at__lt=before)
