"""REST reads of spend: the raw log (cursor pages, no COUNT) and reports over the daily
rollups, each also as a streamed CSV export. Scoped like every read (Decision 10)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import CreatedCursorPagination, ScopedViewSet
from config.api_fields import money_field
from config.streaming import csv_response
from spend.filters import DailySpendFilter, SpendLogFilter
from spend.models import ROLLUP_SUMS, DailySpend, SpendLog
from spend.selectors import (
    REPORT_DIMENSIONS,
    daily_spend_visible_to,
    report_columns,
    spend_logs_visible_to,
    spend_report,
    spend_totals,
)
from spend.services import LOG_COLUMNS

# Every column of the log but the key's hash.
LOG_FIELDS = tuple(name for name in LOG_COLUMNS if name != "key_hash")
REPORT_LIMIT_DEFAULT = 1_000
REPORT_LIMIT_MAX = 10_000
DIMENSIONS = ", ".join(REPORT_DIMENSIONS)
MSG_GROUP_BY_UNKNOWN = "Unknown: {unknown}. Choose from: {known}."
MSG_GROUP_BY_EMPTY = f"Name at least one of: {DIMENSIONS}."


class SpendLogPagination(CreatedCursorPagination):
    """Newest first; the position is the start time, so a deep page costs what page 1 does."""

    ordering = ("-started_at", "-id")


class SpendLogOutput(serializers.ModelSerializer):
    cost = money_field(read_only=True)

    class Meta:
        model = SpendLog
        fields = LOG_FIELDS


class SpendLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """One row per upstream call, newest first. ``start_date`` / ``end_date`` are days in
    ``GATEHOUSE_TIMEZONE`` (both included); ``started_after`` / ``started_before`` instants."""

    queryset = SpendLog.objects.none()
    visible_selector = staticmethod(spend_logs_visible_to)
    lookup_field = "request_id"
    filter_backends = [DjangoFilterBackend]
    filterset_class = SpendLogFilter
    pagination_class = SpendLogPagination
    output_serializer = SpendLogOutput

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Rows go out as read (``SpendLogOutput``'s shape, which JSON gives plain columns
        as is): a page costs its query, not 18 serializer fields per row."""
        rows = self.filter_queryset(self.get_queryset()).values(*LOG_FIELDS)
        return self.get_paginated_response(self.paginate_queryset(rows))

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request: Request) -> StreamingHttpResponse:
        """Every matching row, newest first, as CSV (streamed; no page size)."""
        rows = self.filter_queryset(self.get_queryset()).order_by("-started_at", "-id")
        return csv_response(
            "spend-logs.csv", LOG_FIELDS, rows.values_list(*LOG_FIELDS).iterator(2_000)
        )


class ReportQuery(serializers.Serializer):
    group_by = serializers.CharField(
        required=False,
        default="day",
        help_text=f"Comma-separated, any of: {DIMENSIONS}.",
    )
    limit = serializers.IntegerField(
        required=False, default=REPORT_LIMIT_DEFAULT, min_value=1, max_value=REPORT_LIMIT_MAX
    )

    def validate_group_by(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in REPORT_DIMENSIONS]
        if unknown:
            raise serializers.ValidationError(
                MSG_GROUP_BY_UNKNOWN.format(unknown=", ".join(unknown), known=DIMENSIONS)
            )
        if not names:
            raise serializers.ValidationError(MSG_GROUP_BY_EMPTY)
        return list(dict.fromkeys(names))


class ReportSums(serializers.Serializer):
    requests_ok = serializers.IntegerField()
    requests_failed = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    spend = serializers.DecimalField(max_digits=24, decimal_places=9, coerce_to_string=False)


class ReportRow(ReportSums):
    day = serializers.DateField(required=False)
    organization_id = serializers.CharField(required=False)
    team_id = serializers.CharField(required=False)
    project_id = serializers.CharField(required=False)
    key_id = serializers.CharField(required=False)
    model = serializers.CharField(required=False)


class ReportOutput(serializers.Serializer):
    start_date = serializers.DateField(allow_null=True)
    end_date = serializers.DateField(allow_null=True)
    group_by = serializers.ListField(child=serializers.CharField())
    results = ReportRow(many=True)
    totals = ReportSums()
    has_more = serializers.BooleanField()


def _report_row(row: dict[str, Any]) -> dict[str, Any]:
    """A grouped row with the sums under their own names (blank ids: no such level)."""
    out = {column: row[column] for column in REPORT_DIMENSIONS.values() if column in row}
    out.update({name: row[f"sum_{name}"] or 0 for name in ROLLUP_SUMS})
    return out


class SpendReportViewSet(ScopedViewSet):
    """Spend, requests and tokens per group over a date range, from the daily rollups.
    ``start_date`` / ``end_date`` are days in ``GATEHOUSE_TIMEZONE``, both included."""

    queryset = DailySpend.objects.none()
    visible_selector = staticmethod(daily_spend_visible_to)
    filter_backends = [DjangoFilterBackend]
    filterset_class = DailySpendFilter
    pagination_class = None
    output_serializer = ReportOutput

    def _query(self, request: Request) -> tuple[QuerySet[DailySpend], dict[str, Any]]:
        """The filtered rows, and the group_by / limit / dates the caller asked for."""
        filterset = DjangoFilterBackend().get_filterset(request, self.get_queryset(), self)
        assert filterset is not None
        query = ReportQuery(data=request.query_params)
        errors = {} if filterset.is_valid() else filterset.errors
        if not query.is_valid():
            errors = {**errors, **query.errors}
        if errors:
            raise serializers.ValidationError(errors)
        dates = {name: filterset.form.cleaned_data.get(name) for name in ("start_date", "end_date")}
        return filterset.qs, {**query.validated_data, **dates}

    @extend_schema(parameters=[ReportQuery], responses=ReportOutput)
    def list(self, request: Request) -> Response:
        rows, query = self._query(request)
        limit, group_by = query["limit"], query["group_by"]
        grouped = list(spend_report(rows, group_by=group_by)[: limit + 1])
        body = {
            "start_date": query["start_date"],
            "end_date": query["end_date"],
            "group_by": group_by,
            "results": [_report_row(row) for row in grouped[:limit]],
            "totals": spend_totals(rows),
            "has_more": len(grouped) > limit,
        }
        return Response(ReportOutput(body).data)

    @extend_schema(parameters=[ReportQuery], responses={(200, "text/csv"): str})
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request: Request) -> StreamingHttpResponse:
        """Every group (no limit), as CSV (streamed)."""
        rows, query = self._query(request)
        group_by = query["group_by"]
        columns = report_columns(group_by)
        sums = [f"sum_{name}" for name in ROLLUP_SUMS]
        grouped = spend_report(rows, group_by=group_by).values_list(*columns, *sums)
        return csv_response("spend-report.csv", [*columns, *ROLLUP_SUMS], grouped.iterator(2_000))
