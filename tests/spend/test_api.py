"""Spend reads over REST and LiteLLM's /spend/logs: report totals agree with the log they
summarise, pages of the log never repeat or skip a row, exports stream every row, and every
read is scoped to the caller."""

from __future__ import annotations

import csv
import io
import itertools
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierarchy.actors import SYSTEM
from keys.services import hash_key, key_generate
from spend.models import DailySpend, SpendLog
from spend.services import spend_record_batch
from tests.api_client import ApiClient, as_user, master
from tests.factories import UserFactory
from tests.spend.test_rollups import MIDNIGHTS, ZONE, call, calls

DAYS = [None, "2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"]


@pytest.fixture
def django_settings(settings):
    settings.GATEHOUSE_TIMEZONE = ZONE
    return settings


def query(**params: Any) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}


def all_logs(client: ApiClient, **params: Any) -> list[dict[str, Any]]:
    """Every row of the REST log, page after page."""
    rows: list[dict[str, Any]] = []
    response = client.get("/api/v1/spend/logs/", page_size=7, **params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        rows += body["results"]
        if not body["next"]:
            return rows
        response = client.client.get(body["next"], **client.headers)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=calls,
    project=st.sampled_from([None, "p1", "p2"]),
    model=st.sampled_from([None, "gpt-4o", "gpt-4o-mini"]),
    days=st.tuples(st.sampled_from(DAYS), st.sampled_from(DAYS)),
)
def test_report_totals_equal_the_sum_of_the_log_rows_for_the_same_filters(
    db, django_settings, calls, project, model, days
):
    SpendLog.objects.all().delete()
    DailySpend.objects.all().delete()
    spend_record_batch(records=calls)
    start, end = sorted(days, key=lambda d: d or "") if all(days) else days
    filters = query(project_id=project, model=model, start_date=start, end_date=end)
    client = master()

    report = client.get("/api/v1/spend/report/", group_by="day", **filters)
    assert report.status_code == 200, report.content
    body = report.json()
    logs = all_logs(client, **filters)

    # The log answers exactly the calls the filters name, worked out here from the input.
    def local_day(at: float) -> str:
        return datetime.fromtimestamp(at, ZoneInfo(ZONE)).date().isoformat()

    named = [
        c.request_id
        for c in calls
        if project in (None, c.project_id)
        and model in (None, c.model)
        and (start is None or local_day(c.started_at) >= start)
        and (end is None or local_day(c.started_at) <= end)
    ]
    assert sorted(r["request_id"] for r in logs) == sorted(named)

    zone = django_settings.GATEHOUSE_TIMEZONE
    by_day: dict[date, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    for row in logs:
        day = datetime.fromisoformat(row["started_at"]).astimezone(ZoneInfo(zone)).date()
        sums = by_day[day]
        sums[0 if row["status"] == "success" else 1] += 1
        sums[2] += row["prompt_tokens"]
        sums[3] += row["completion_tokens"]
        sums[4] += Decimal(str(row["cost"]))
    reported = {
        date.fromisoformat(row["day"]): [
            row["requests_ok"],
            row["requests_failed"],
            row["prompt_tokens"],
            row["completion_tokens"],
            Decimal(str(row["spend"])),
        ]
        for row in body["results"]
    }
    assert reported == dict(by_day)
    totals = body["totals"]
    assert totals["requests_ok"] + totals["requests_failed"] == len(logs)
    assert Decimal(str(totals["spend"])) == sum((s[4] for s in by_day.values()), Decimal(0))
    assert (body["start_date"], body["end_date"]) == (start, end)


def test_a_call_just_before_local_midnight_is_reported_on_the_day_before(db, django_settings):
    spend_record_batch(records=[call(MIDNIGHTS[1] - 0.5), call(MIDNIGHTS[1] + 0.5, cost=7)])
    client = master()
    day_before = client.get(
        "/api/v1/spend/report/", start_date="2026-11-26", end_date="2026-11-26"
    ).json()
    assert [r["day"] for r in day_before["results"]] == ["2026-11-26"]
    assert day_before["totals"]["requests_ok"] == 1
    logs = all_logs(client, start_date="2026-11-27", end_date="2026-11-27")
    assert [Decimal(str(r["cost"])) for r in logs] == [Decimal("0.000000007")]


def test_report_groups_by_several_dimensions_largest_spend_first(db, django_settings):
    spend_record_batch(
        records=[
            call(MIDNIGHTS[0] + 10, project="p1", model="gpt-4o", cost=1_000),
            call(MIDNIGHTS[0] + 20, project="p1", model="gpt-4o", cost=2_000),
            call(MIDNIGHTS[0] + 30, project="p2", model="gpt-4o-mini", cost=9_000),
            call(MIDNIGHTS[1] + 30, project="p1", model="gpt-4o-mini", cost=500, status=502),
        ]
    )
    body = master().get("/api/v1/spend/report/", group_by="project,model").json()
    assert body["group_by"] == ["project", "model"]
    assert [(r["project_id"], r["model"], r["spend"]) for r in body["results"]] == [
        ("p2", "gpt-4o-mini", 0.000009),
        ("p1", "gpt-4o", 0.000003),
        ("p1", "gpt-4o-mini", 0.0000005),
    ]
    assert "day" not in body["results"][0]
    assert body["results"][2]["requests_failed"] == 1
    assert body["has_more"] is False
    limited = master().get("/api/v1/spend/report/", group_by="project,model", limit=2).json()
    assert len(limited["results"]) == 2
    assert limited["has_more"] is True
    assert limited["totals"] == body["totals"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "project,colour"}, "group_by"),
        ({"group_by": ","}, "group_by"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100001"}, "limit"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"start_date": "2026-11-27", "end_date": "2026-11-26"}, "end_date"),
    ],
)
def test_a_bad_report_query_is_a_400_naming_the_parameter(db, params, field):
    response = master().get("/api/v1/spend/report/", **params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"], error


def test_bad_log_filters_are_a_400_naming_the_parameter(db):
    response = master().get("/api/v1/spend/logs/", start_date="2026-11-27", end_date="2026-11-01")
    assert response.status_code == 400
    assert "end_date" in response.json()["error"]["fields"]
    response = master().get("/api/v1/spend/logs/", started_after="not a time")
    assert response.status_code == 400
    assert "started_after" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("params", "matches"),
    [
        ({"end_date": "9999-12-31"}, True),
        ({"start_date": "0001-01-01"}, True),
        ({"start_date": "9999-12-31"}, False),
        ({"started_after": "9999-12-31T23:59:59-05:00"}, False),
        ({"started_before": "9999-12-31T23:59:59-05:00"}, True),
        ({"started_after": "0001-01-01T00:00:00+05:00"}, True),
        ({"started_before": "0001-01-01T00:00:00+05:00"}, False),
    ],
)
def test_dates_at_the_ends_of_the_calendar_bound_nothing_or_everything(
    db, django_settings, params, matches
):
    record = call(MIDNIGHTS[0])
    spend_record_batch(records=[record])
    client = master()
    rows = all_logs(client, **params)
    assert [r["request_id"] for r in rows] == ([record.request_id] if matches else [])
    litellm = client.get("/spend/logs", **params)
    assert litellm.status_code == 200, litellm.content
    assert len(litellm.json()) == len(rows)


def test_log_pages_follow_the_cursor_without_repeats_or_counts(db, django_settings):
    # Ten calls share one start time: the cursor must still not repeat or skip them.
    started = [MIDNIGHTS[0] + i for i in range(20)] + [MIDNIGHTS[0] + 100] * 10
    records = [call(at) for at in started]
    spend_record_batch(records=records)
    client = master()
    with CaptureQueriesContext(connection) as queries:
        rows = all_logs(client)
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in records)
    assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


def test_a_listed_row_reads_as_the_row_read_alone(db, django_settings):
    spend_record_batch(records=[call(MIDNIGHTS[0] + 0.123456, cost=123_456_789, status=502)])
    client = master()
    [listed] = client.get("/api/v1/spend/logs/").json()["results"]
    alone = client.get(f"/api/v1/spend/logs/{listed['request_id']}/").json()
    assert listed == alone
    assert listed["started_at"].endswith("Z")


def test_a_log_row_is_read_by_its_request_id(db, django_settings):
    record = call(MIDNIGHTS[0], cost=123_456_789)
    spend_record_batch(records=[record])
    body = master().get(f"/api/v1/spend/logs/{record.request_id}/").json()
    assert body["request_id"] == record.request_id
    assert Decimal(str(body["cost"])) == Decimal("0.123456789")
    assert body["status"] == "success"
    assert "key_hash" not in body
    assert master().get("/api/v1/spend/logs/no-such-request/").status_code == 404


def collect(response: Any) -> str:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    assert response.streaming
    return async_to_sync(read)().decode()


def test_log_export_streams_every_matching_row_as_csv(db, django_settings):
    records = [call(MIDNIGHTS[0] + i, project="p1" if i % 3 else "p2") for i in range(2_500)]
    spend_record_batch(records=records)
    response = master().get("/api/v1/spend/logs/export/", project_id="p1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(collect(response))))
    wanted = {r.request_id for r in records if r.project_id == "p1"}
    assert len(rows) == len(wanted)
    assert {row["request_id"] for row in rows} == wanted
    assert {row["project_id"] for row in rows} == {"p1"}
    assert sum(Decimal(row["cost"]) for row in rows) == Decimal("0.000001") * len(wanted)


def test_report_export_has_every_group_and_the_same_sums(db, django_settings):
    spend_record_batch(
        records=[
            call(MIDNIGHTS[0] + i, project=project, model=model)
            for i, (project, model) in enumerate(
                itertools.product(["p1", "p2", ""], ["gpt-4o", "gpt-4o-mini"])
            )
        ]
    )
    client = master()
    body = client.get("/api/v1/spend/report/", group_by="day,project,model").json()
    exported = list(
        csv.DictReader(
            io.StringIO(
                collect(client.get("/api/v1/spend/report/export/", group_by="day,project,model"))
            )
        )
    )
    assert list(exported[0]) == [
        "day",
        "project_id",
        "model",
        "requests_ok",
        "requests_failed",
        "prompt_tokens",
        "completion_tokens",
        "spend",
    ]
    assert [(r["day"], r["project_id"], r["model"], Decimal(r["spend"])) for r in exported] == [
        (r["day"], r["project_id"], r["model"], Decimal(str(r["spend"]))) for r in body["results"]
    ]


def test_a_member_reads_the_spend_of_their_own_keys_only(db, django_settings, team):
    member, other = UserFactory(), UserFactory()
    mine, _ = key_generate(actor=SYSTEM, user=member)
    theirs, _ = key_generate(actor=SYSTEM, user=other)
    spend_record_batch(
        records=[
            call(MIDNIGHTS[0])._replace(key_id=mine.pk, project_id="", team_id=""),
            call(MIDNIGHTS[0])._replace(key_id=theirs.pk, project_id="", team_id=""),
            call(MIDNIGHTS[0])._replace(key_id="gone", user_id=member.pk, project_id=""),
        ]
    )
    client = as_user(member)
    logs = all_logs(client)
    # Logs and reports share one scope (by key), so their totals always agree.
    assert {r["key_id"] for r in logs} == {mine.pk}
    report = client.get("/api/v1/spend/report/", group_by="key").json()
    assert {r["key_id"] for r in report["results"]} == {mine.pk}
    # A filter on someone else's key matches nothing rather than revealing it.
    assert all_logs(client, key_id=theirs.pk) == []


def test_litellm_spend_logs_is_an_array_filtered_by_key_plaintext_or_hash(db, django_settings):
    plaintext = "sk-spend-logs-test-0123456789abcdefghijklmn"
    mine = call(MIDNIGHTS[0])._replace(key_hash=hash_key(plaintext))
    other = call(MIDNIGHTS[0] + 1)
    spend_record_batch(records=[mine, other])
    client = master()
    everything = client.get("/spend/logs").json()
    assert [row["request_id"] for row in everything] == [other.request_id, mine.request_id]
    assert set(everything[0]) >= {"request_id", "api_key", "spend", "startTime", "endTime"}
    for api_key in (plaintext, hash_key(plaintext)):
        rows = client.get("/spend/logs", api_key=api_key).json()
        assert [row["request_id"] for row in rows] == [mine.request_id]
    assert all(plaintext not in str(row) for row in everything)


def test_litellm_spend_logs_filters_by_project_and_team(db, django_settings):
    ours, theirs = call(MIDNIGHTS[0], project="p1"), call(MIDNIGHTS[0] + 1, project="p2")
    masters = call(MIDNIGHTS[0] + 2, project="")  # no project, no team
    spend_record_batch(records=[ours, theirs, masters])
    client = master()
    by_project = client.get("/spend/logs", project_id="p1").json()
    assert [row["request_id"] for row in by_project] == [ours.request_id]
    by_team = client.get("/spend/logs", team_id="t1").json()
    assert [row["request_id"] for row in by_team] == [theirs.request_id, ours.request_id]


def test_litellm_spend_logs_has_a_bounded_default_limit(db, django_settings):
    spend_record_batch(records=[call(MIDNIGHTS[0] + i) for i in range(120)])
    client = master()
    assert len(client.get("/spend/logs").json()) == 100
    assert len(client.get("/spend/logs", limit=5).json()) == 5
    response = client.get("/spend/logs", limit=5000)
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["fields"]
    response = client.get("/spend/logs", start_date="2026-13-01")
    assert response.status_code == 400
    assert "start_date" in response.json()["error"]["fields"]
    # A parameter Gatehouse does not support is refused by name, never ignored (Decision 13).
    response = client.get("/spend/logs", start_data="2026-11-01", summarize="false")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"start_data", "summarize"}
