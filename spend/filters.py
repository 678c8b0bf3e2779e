"""Filters for spend logs and reports. Dates are days in ``GATEHOUSE_TIMEZONE``, both ends
included; ids are plain strings (an id outside the caller's scope matches nothing)."""

from __future__ import annotations

from datetime import UTC, date, timedelta

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from hierarchy.filters import UTCDateTimeFilter
from spend.models import DailySpend, SpendLog
from spend.selectors import local_day_start

MSG_END_BEFORE_START = "end_date must not be before start_date."


class LocalDayFilter(django_filters.DateFilter):
    """Calls that started on or after (``first``) / on or before (``last``) a local day."""

    def __init__(self, *, last: bool, **kwargs: object) -> None:
        self.last = last
        super().__init__(field_name="started_at", **kwargs)  # type: ignore[arg-type]

    def filter(self, qs: QuerySet, value: date | None) -> QuerySet:
        if value is None:
            return qs
        try:  # from the start of the first day, or up to the start of the day after the last
            bound = local_day_start(value + timedelta(days=1) if self.last else value)
            bound = bound.astimezone(UTC)
        except OverflowError:  # a bound beyond the calendar (year 1 or 9999) bounds nothing
            return qs
        return qs.filter(started_at__lt=bound) if self.last else qs.filter(started_at__gte=bound)


class DateRangeFilterSet(django_filters.FilterSet):
    def is_valid(self) -> bool:
        valid = super().is_valid()
        if valid:
            start = self.form.cleaned_data.get("start_date")
            end = self.form.cleaned_data.get("end_date")
            if start and end and end < start:
                self.form.add_error("end_date", ValidationError(MSG_END_BEFORE_START))
                return False
        return valid


class SpendLogFilter(DateRangeFilterSet):
    start_date = LocalDayFilter(last=False)
    end_date = LocalDayFilter(last=True)
    started_after = UTCDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = UTCDateTimeFilter(field_name="started_at", lookup_expr="lt")

    class Meta:
        model = SpendLog
        fields = (
            "request_id",
            "key_id",
            "project_id",
            "team_id",
            "organization_id",
            "user_id",
            "model",
            "status",
        )


class DailySpendFilter(DateRangeFilterSet):
    start_date = django_filters.DateFilter(field_name="day", lookup_expr="gte")
    end_date = django_filters.DateFilter(field_name="day", lookup_expr="lte")

    class Meta:
        model = DailySpend
        fields = ("organization_id", "team_id", "project_id", "key_id", "model")


class LiteLLMSpendLogFilter(SpendLogFilter):
    """LiteLLM's ``/spend/logs`` also names a key by ``api_key``: its plaintext or its hash."""

    api_key = django_filters.CharFilter(method="filter_api_key")

    def filter_api_key(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        from keys.services import hash_key

        return qs.filter(key_hash=hash_key(value) if value.startswith("sk-") else value)
