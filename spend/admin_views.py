"""Admin > Reports > Usage: spend over time, by project, by model and by key, with totals.

Everything on the page is scoped to the caller (Decision 10): the numbers come from
``daily_spend_visible_to`` through ``DailySpendFilter`` (the same selector and filter as
``/api/v1/spend/report/``), and the names and filter choices from the scoped selectors of each
level. Charts are server-side SVG (``spend.charts``): no JavaScript, nothing fetched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from hierarchy.actors import Actor, as_actor
from hierarchy.selectors import organizations_visible_to, teams_visible_to, user_has_staff_role
from keys.selectors import keys_visible_to
from projects.selectors import projects_visible_to
from spend.charts import Mark, bar_chart, column_chart, daily_points, format_usd, total_of
from spend.filters import DailySpendFilter
from spend.models import DailySpend
from spend.selectors import daily_spend_visible_to, local_today, spend_report, spend_totals

DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 366
TOP_PROJECTS = 25
TOP_MODELS = 25
TOP_KEYS = 10
# A filter offers a select up to this many choices, and an id box beyond.
MAX_CHOICES = 200

# The query parameters of the page, in the order of the form.
PARAMS = ("start_date", "end_date", "organization_id", "team_id", "project_id")
FIELD_LABELS = {
    "start_date": "From",
    "end_date": "To",
    "organization_id": "Organization",
    "team_id": "Team",
    "project_id": "Project",
}
DEFAULT_SPAN = timedelta(days=DEFAULT_DAYS - 1)
MSG_RANGE_TOO_LONG = "The date range may span at most {days} days."
MSG_OUTSIDE_CALENDAR = f"A range of {DEFAULT_DAYS} days from that date leaves the calendar."
NO_PROJECT = "(no project)"
NO_KEY = "(master key)"


@dataclass(frozen=True)
class FilterField:
    """One organization / team / project filter: a bounded select, or an id box when the
    caller can see more than ``MAX_CHOICES`` of them (``choices`` is then None)."""

    name: str
    label: str
    value: str
    choices: list[tuple[str, str]] | None
    value_label: str = ""


@dataclass(frozen=True)
class Breakdown:
    """A chart of the ``shown`` largest groups; ``more``: there are others, which together
    spent ``rest``."""

    chart: SafeString
    more: bool
    shown: int
    rest: Decimal

    @property
    def rest_text(self) -> str:
        return format_usd(self.rest)


def usage_view(request: HttpRequest) -> HttpResponse:
    actor = as_actor(request.user)
    if not user_has_staff_role(request.user):  # type: ignore[arg-type]
        raise PermissionDenied  # admin_view let in an active staff user: a role is needed too
    params = {name: request.GET.get(name, "").strip() for name in PARAMS}
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Usage",
        "params": params,
        "filters": filter_fields(actor, params),
        "errors": [],
    }
    filterset, errors = usage_filterset(actor, params)
    if filterset is None:
        context["errors"] = errors
        return TemplateResponse(request, "admin/spend/usage.html", context)
    rows: QuerySet[DailySpend] = filterset.qs
    start: date = filterset.form.cleaned_data["start_date"]
    end: date = filterset.form.cleaned_data["end_date"]
    totals = spend_totals(rows)
    total = Decimal(totals["spend"])
    context.update(
        start_date=start,
        end_date=end,
        timezone=settings.GATEHOUSE_TIMEZONE,
        totals=totals,
        totals_spend=format_usd(total),
        **usage_charts(
            actor,
            rows,
            start=start,
            end=end,
            total=total,
            params={**params, "start_date": start.isoformat(), "end_date": end.isoformat()},
        ),
    )
    return TemplateResponse(request, "admin/spend/usage.html", context)


def usage_filterset(
    actor: Actor, params: Mapping[str, str]
) -> tuple[DailySpendFilter | None, list[str]]:
    """The caller's rollups filtered by ``params``, with the date range completed: by default
    the last ``DEFAULT_DAYS`` local days; a start alone runs ``DEFAULT_DAYS`` days or to today.
    Invalid input gives messages instead."""
    rows = daily_spend_visible_to(actor)
    given = DailySpendFilter(_query(params), queryset=rows)
    if not given.is_valid():
        return None, _messages(given.errors)
    start: date | None = given.form.cleaned_data.get("start_date")
    end: date | None = given.form.cleaned_data.get("end_date")
    try:
        if end is None:
            today = local_today()
            end = today if start is None or start <= today else start + DEFAULT_SPAN
        if start is None:
            start = end - DEFAULT_SPAN
    except OverflowError:
        return None, [MSG_OUTSIDE_CALENDAR]
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        return None, [MSG_RANGE_TOO_LONG.format(days=MAX_RANGE_DAYS)]
    completed = {**params, "start_date": start.isoformat(), "end_date": end.isoformat()}
    filterset = DailySpendFilter(_query(completed), queryset=rows)
    if not filterset.is_valid():
        return None, _messages(filterset.errors)
    return filterset, []


def _query(params: Mapping[str, str]) -> QueryDict:
    """``params`` without the empty ones, as the data of a filter."""
    query = QueryDict(mutable=True)
    for name, value in params.items():
        if value:
            query[name] = value
    return query


def _messages(errors: Mapping[str, list[str]]) -> list[str]:
    messages: list[str] = []
    for name, field_errors in errors.items():
        prefix = f"{FIELD_LABELS[name]}: " if name in FIELD_LABELS else ""
        messages.extend(f"{prefix}{message}" for message in field_errors)
    return messages


# --- charts ----------------------------------------------------------------------------------


def usage_charts(
    actor: Actor,
    rows: QuerySet[DailySpend],
    *,
    start: date,
    end: date,
    total: Decimal,
    params: Mapping[str, str],
) -> dict[str, Any]:
    """The four charts over ``rows``; a project's bar links to this page narrowed to it."""
    by_day = {row["day"]: row["sum_spend"] for row in spend_report(rows, group_by=["day"])}
    projects, more_projects = _top(rows, "project", TOP_PROJECTS)
    models, more_models = _top(rows, "model", TOP_MODELS)
    keys, more_keys = _top(rows, "key", TOP_KEYS)
    project_names = project_labels(actor, [row["project_id"] for row in projects])
    key_names = key_labels(actor, [row["key_id"] for row in keys])

    project_marks = [
        Mark(
            label=project_names.get(row["project_id"], row["project_id"]) or NO_PROJECT,
            value=row["sum_spend"],
            id=row["project_id"],
            href=_link(params, project_id=row["project_id"]) if row["project_id"] else "",
        )
        for row in projects
    ]
    model_marks = [
        Mark(label=row["model"], value=row["sum_spend"], id=row["model"]) for row in models
    ]
    key_marks = [
        Mark(
            label=key_names.get(row["key_id"], row["key_id"]) or NO_KEY,
            value=row["sum_spend"],
            id=row["key_id"],
        )
        for row in keys
    ]
    return {
        "over_time": column_chart(daily_points(start, end, by_day), title="Spend per day"),
        "breakdowns": [
            (
                "usage-by-project",
                "Spend by project",
                _breakdown(project_marks, "Spend by project", more_projects, total),
            ),
            (
                "usage-by-model",
                "Spend by model",
                _breakdown(model_marks, "Spend by model", more_models, total),
            ),
            (
                "usage-top-keys",
                "Top keys",
                _breakdown(key_marks, "Top keys by spend", more_keys, total),
            ),
        ],
    }


def _link(params: Mapping[str, str], **changes: str) -> str:
    """This page with ``params`` changed by ``changes``."""
    return "?" + _query({**params, **changes}).urlencode()


def _top(
    rows: QuerySet[DailySpend], dimension: str, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The ``limit`` largest groups by spend, and whether there are more."""
    found = list(spend_report(rows, group_by=[dimension])[: limit + 1])
    return found[:limit], len(found) > limit


def _breakdown(marks: list[Mark], title: str, more: bool, total: Decimal) -> Breakdown:
    return Breakdown(
        chart=bar_chart(marks, title=title),
        more=more,
        shown=len(marks),
        rest=total - total_of(marks),
    )


def project_labels(actor: Actor, ids: list[str]) -> dict[str, str]:
    """Names of the projects the caller may see among ``ids``: the alias, with the team's
    alias when two of them share one. Others keep their id."""
    found = list(
        projects_visible_to(actor)
        .filter(pk__in=[pk for pk in ids if pk])
        .values_list("pk", "alias", "team__alias")
    )
    shared = {alias for alias, count in Counter(a for _, a, _ in found).items() if count > 1}
    return {pk: f"{alias} ({team})" if alias in shared else alias for pk, alias, team in found}


def key_labels(actor: Actor, ids: list[str]) -> dict[str, str]:
    """Key aliases, else the ``sk-...abcd`` preview (never a secret), for the keys the caller
    may see among ``ids``."""
    found = keys_visible_to(actor).filter(pk__in=[pk for pk in ids if pk])
    return {
        pk: alias or preview
        for pk, alias, preview in found.values_list("pk", "key_alias", "key_name")
    }


# --- filters ---------------------------------------------------------------------------------


def filter_fields(actor: Actor, params: Mapping[str, str]) -> list[FilterField]:
    """The organization, team and project filters, each offering only what the caller may see;
    teams narrow to the chosen organization and projects to the chosen team."""
    organization, team = params["organization_id"], params["team_id"]
    organizations = organizations_visible_to(actor).order_by("alias")
    teams = teams_visible_to(actor).order_by("alias")
    projects = projects_visible_to(actor).order_by("team__alias", "alias")
    if organization:
        teams = teams.filter(organization_id=organization)
        projects = projects.filter(team__organization_id=organization)
    if team:
        projects = projects.filter(team_id=team)
    return [
        _filter_field(
            "organization_id", organizations.values_list("pk", "alias"), params, lambda r: r[1]
        ),
        _filter_field(
            "team_id",
            teams.values_list("pk", "alias", "organization__alias"),
            params,
            lambda r: f"{r[2]} / {r[1]}" if r[2] else r[1],
        ),
        _filter_field(
            "project_id",
            projects.values_list("pk", "alias", "team__alias"),
            params,
            lambda r: f"{r[2]} / {r[1]}",
        ),
    ]


def _filter_field(
    name: str, rows: QuerySet[Any, tuple[Any, ...]], params: Mapping[str, str], label: Any
) -> FilterField:
    value = params[name]
    found = list(rows[: MAX_CHOICES + 1])
    if len(found) <= MAX_CHOICES:
        choices = [(row[0], label(row)) for row in found]
        return FilterField(name=name, label=FIELD_LABELS[name], value=value, choices=choices)
    chosen = rows.filter(pk=value).first() if value else None
    return FilterField(
        name=name,
        label=FIELD_LABELS[name],
        value=value,
        choices=None,
        value_label=label(chosen) if chosen else "",
    )
