"""Recording spend: the gateway's batched write of finished calls.

``spend_record_batch`` inserts one spend log row per call and adds each call's cost to the
``spend`` / ``model_spend`` of its key, project, team, organization and user, rolling a
level's budget period over when its boundary has passed (Decision 8: ``spend`` is the spend
of the current period; no job resets it). Keys also get ``last_used_at``, and the daily
rollups (``DailySpend``) the calls' counts, tokens and cost. A level whose spend crosses its
``soft_budget`` or reaches its ``max_budget`` raises a ``BudgetAlert`` in the same transaction;
``budget_alerts_deliver`` sends the alerts to the webhook, away from the request path.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from hierarchy.governance import budget_period, gatehouse_timezone
from hierarchy.models import Governed, Organization, Team, User
from keys.models import VirtualKey
from projects.models import Project
from spend.models import ROLLUP_BUCKET, ROLLUP_SUMS, BudgetAlert, DailySpend, SpendLog
from spend.selectors import local_day_bounds, local_day_start, spend_logs_started_before

logger = logging.getLogger(__name__)

NANO = Decimal("0.000000001")
FLOAT_EXACT = 2**53  # integers below this are exact as floats
LEVEL_MODELS: dict[str, type[Governed]] = {
    "key": VirtualKey,
    "project": Project,
    "team": Team,
    "organization": Organization,
    "user": User,
}
LOG_COLUMNS = (
    "request_id",
    "key_hash",
    "key_id",
    "project_id",
    "team_id",
    "organization_id",
    "user_id",
    "model",
    "call_type",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "status",
    "http_status",
    "stream",
    "latency_ms",
    "started_at",
    "ended_at",
)


class CallRecord(NamedTuple):
    """One finished upstream call, as the gateway saw it. Money in integer nano-USD. A tuple:
    cheap to build on the request path and to hand to the spend writer process."""

    request_id: str
    key_hash: str
    key_id: str
    project_id: str
    team_id: str
    organization_id: str
    user_id: str
    model: str
    call_type: str
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    http_status: int
    stream: bool
    latency_ms: float
    started_at: float  # epoch seconds
    ended_at: float

    def level_ids(self) -> dict[str, str]:
        return {
            "key": self.key_id,
            "project": self.project_id,
            "team": self.team_id,
            "organization": self.organization_id,
            "user": self.user_id,
        }


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano) * NANO


def usd_to_nano(value: Any) -> int:
    if not isinstance(value, Decimal):
        value = Decimal(str(value))  # floats by their shortest repr, as JSON holds them
    return int(value.scaleb(9).to_integral_value())


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, models.Field)
    return found


def _column(model: type[models.Model], name: str) -> str:
    column = _field(model, name).column
    assert column is not None
    return column


def _prepared(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """Rows as the database driver takes them (where COPY and arrays are not used)."""
    fields = [_field(model, name) for name in columns]
    return [
        [f.get_db_prep_save(value, connection) for f, value in zip(fields, row, strict=True)]
        for row in rows
    ]


def succeeded(record: CallRecord) -> bool:
    return record.http_status < 400


def _log_row(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.request_id,
        record.key_hash,
        record.key_id,
        record.project_id,
        record.team_id,
        record.organization_id,
        record.user_id,
        record.model,
        record.call_type,
        record.prompt_tokens,
        record.completion_tokens,
        record.prompt_tokens + record.completion_tokens,
        nano_to_usd(record.cost_nano),
        SpendLog.Status.SUCCESS if succeeded(record) else SpendLog.Status.FAILURE,
        record.http_status,
        record.stream,
        record.latency_ms,
        datetime.fromtimestamp(record.started_at, UTC),
        datetime.fromtimestamp(record.ended_at, UTC),
    )


def _insert_logs(records: Sequence[CallRecord]) -> None:
    rows = [_log_row(record) for record in records]
    table = SpendLog._meta.db_table
    columns = ", ".join(LOG_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Binary COPY with the columns' types given: the cheapest way in for thousands of
            # rows a second (a third of the driver's time of text COPY guessing each value's).
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_log_types())
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join(["%s"] * len(LOG_COLUMNS))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            _prepared(SpendLog, LOG_COLUMNS, rows),
        )


@functools.cache
def _log_types() -> list[str]:
    """The spend log columns' PostgreSQL types, without modifiers (``varchar``, ``numeric``)."""
    types = [_field(SpendLog, name).db_type(connection) for name in LOG_COLUMNS]
    assert all(types)
    return [str(kind).split("(")[0] for kind in types]


def _period_spend(
    duration: str, reset_at: datetime | None, spend: Decimal, model_spend: Any, now: datetime
) -> tuple[int, dict[str, int], datetime | None, float | None]:
    """A level's spend in the budget period containing ``now`` (nano-USD, total and per
    model): what the row holds, or nothing when a new period began since it was written (its
    ``budget_reset_at`` then moves to the new period's end). Also the period's start (epoch
    seconds): calls that ended before it belong to the period before."""
    total = usd_to_nano(spend)
    per_model = {name: usd_to_nano(value) for name, value in (model_spend or {}).items()}
    if not duration:
        return total, per_model, reset_at, None
    start, end = budget_period(duration, reset_at, now)
    if reset_at != end:
        total, per_model, reset_at = 0, {}, end
    return total, per_model, reset_at, start.timestamp()


def _usd_by_model(per_model: dict[str, int]) -> dict[str, float]:
    # An integer below 2**53 and 1e9 are exact doubles, and a division of exact doubles is
    # rounded once: the same float as float(nano_to_usd(value)), without the Decimal.
    return {
        name: value / 1e9 if abs(value) < FLOAT_EXACT else float(nano_to_usd(value))
        for name, value in per_model.items()
    }


@transaction.atomic
def budgets_roll_over(*, now: datetime | None = None) -> dict[str, int]:
    """Start the current budget period on every level whose period ended since its spend was
    last written: ``spend`` and ``model_spend`` to 0, ``budget_reset_at`` to the period's end.
    The gateway and the spend pipeline do this by themselves at the boundary (Decision 8);
    this makes the database show it for levels without traffic. Idempotent. Rows are locked in
    the spend pipeline's order (level, then id). Returns the rows rolled over per level."""
    now = now or timezone.now()
    rolled: dict[str, int] = {}
    for level, model in LEVEL_MODELS.items():
        rows = (
            model._default_manager.select_for_update()
            .exclude(budget_duration="")
            .filter(Q(budget_reset_at__isnull=True) | Q(budget_reset_at__lte=now))
            .order_by("pk")
            .values_list("pk", "budget_duration", "budget_reset_at", "spend", "model_spend")
        )
        updates: list[tuple[Any, ...]] = []
        for pk, duration, reset_at, spend, model_spend in rows:
            total, per_model, new_reset_at, _ = _period_spend(
                duration, reset_at, spend, model_spend, now
            )
            if new_reset_at != reset_at:
                updates.append((pk, nano_to_usd(total), _usd_by_model(per_model), new_reset_at))
        if updates:
            _write_spend(model, updates, set_last_used=False)
        rolled[level] = len(updates)
    return rolled


SPEND_FIELDS = (
    "budget_duration",
    "budget_reset_at",
    "spend",
    "model_spend",
    "soft_budget",
    "max_budget",
)


def _lock_levels(model: type[Governed], pks: list[str]) -> Iterator[tuple[Any, ...]]:
    """The rows' primary key and ``SPEND_FIELDS``, locked for update in primary key order.
    PostgreSQL: one array parameter instead of the ORM's placeholder per key (a batch names
    up to thousands of keys, and building that query cost more than running it)."""
    if connection.vendor != "postgresql":
        yield from (
            model._default_manager.select_for_update()
            .filter(pk__in=pks)
            .order_by("pk")
            .values_list("pk", *SPEND_FIELDS)
        )
        return
    columns = ", ".join(_column(model, name) for name in SPEND_FIELDS)
    pk_column = model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {pk_column}, {columns} FROM {model._meta.db_table} "
            f"WHERE {pk_column} = ANY(%s) ORDER BY {pk_column} FOR UPDATE",
            [pks],
        )
        for pk, duration, reset_at, spend, model_spend, soft, limit in cursor.fetchall():
            yield pk, duration, reset_at, spend, orjson.loads(model_spend), soft, limit


def _add_spend(
    level: str,
    calls: dict[str, list[CallRecord]],
    now: datetime,
) -> list[BudgetAlert]:
    """Add the calls' cost to each level row, inside the current budget period. Returns the
    alerts of the budgets this spend crossed (not saved yet)."""
    model = LEVEL_MODELS[level]
    set_last_used = level == "key"
    updates: list[tuple[Any, ...]] = []
    alerts: list[BudgetAlert] = []
    for pk, duration, reset_at, spend, model_spend, soft_budget, max_budget in _lock_levels(
        model, list(calls)
    ):
        total, per_model, reset_at, since = _period_spend(
            duration, reset_at, spend, model_spend, now
        )
        before = total
        for record in calls[pk]:
            if since is not None and record.ended_at < since:
                continue  # belongs to the period that just ended
            total += record.cost_nano
            per_model[record.model] = per_model.get(record.model, 0) + record.cost_nano
        update: tuple[Any, ...] = (pk, nano_to_usd(total), _usd_by_model(per_model), reset_at)
        if set_last_used:
            last = max(record.ended_at for record in calls[pk])
            update += (datetime.fromtimestamp(last, UTC),)
        updates.append(update)
        period_end = reset_at if duration else None
        for threshold, budget in (
            (BudgetAlert.Threshold.SOFT, soft_budget),
            (BudgetAlert.Threshold.MAX, max_budget),
        ):
            if budget is not None and before < usd_to_nano(budget) <= total:
                alerts.append(
                    BudgetAlert(
                        level=level,
                        object_id=pk,
                        threshold=threshold,
                        period=budget_alert_period(period_end),
                        period_end=period_end,
                        budget=budget,
                        spend=nano_to_usd(total),
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
    if updates:
        _write_spend(model, updates, set_last_used)
    return alerts


def budget_alert_period(period_end: datetime | None) -> str:
    """An alert's period: the end of the budget period the crossing spend belongs to (UTC),
    or ``lifetime`` for a level without ``budget_duration``."""
    if period_end is None:
        return BudgetAlert.LIFETIME
    return period_end.astimezone(UTC).isoformat()


def _recordset(names: Sequence[str], types: Sequence[str]) -> str:
    """PostgreSQL: rows sent as one JSON array (see ``_json_rows``), typed as a relation ``v``.
    One text parameter costs far less to send than an array per column, whose elements the
    driver would format one by one in Python."""
    columns = ", ".join(f"{name} {kind}" for name, kind in zip(names, types, strict=True))
    return f"json_to_recordset(%s::json) AS v({columns})"


def _json_rows(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as JSON objects; decimals as strings, so that numeric columns get them exactly."""
    return orjson.dumps(
        [dict(zip(names, row, strict=True)) for row in rows], default=_json_default
    ).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{value.__class__.__name__} is not JSON serializable")


def _write_spend(
    model: type[models.Model], updates: list[tuple[Any, ...]], set_last_used: bool
) -> None:
    """One statement for all rows on PostgreSQL (a JSON recordset joined in); row by row
    elsewhere."""
    table, pk_column = model._meta.db_table, model._meta.pk.column
    columns = ["spend", "model_spend", "budget_reset_at"]
    if set_last_used:
        columns.append("last_used_at")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ["pk", *columns]
            types = ["text", "numeric", "jsonb", "timestamptz", "timestamptz"][: len(names)]
            assignments = ", ".join(f"{name} = v.{name}" for name in columns)
            cursor.execute(
                f"UPDATE {table} AS t SET {assignments} FROM {_recordset(names, types)} "
                f"WHERE t.{pk_column} = v.pk",
                [_json_rows(names, updates)],
            )
            return
        values = _prepared(model, columns, [row[1:] for row in updates])
        params = [[*prepared, row[0]] for prepared, row in zip(values, updates, strict=True)]
        assignments = ", ".join(f"{name} = %s" for name in columns)
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {pk_column} = %s", params)


@transaction.atomic
def spend_record_batch(
    *, records: Sequence[CallRecord], now: datetime | None = None, skip_logged: bool = False
) -> int:
    """Write a batch of finished calls: log rows, then every level's spend, in one transaction.

    Levels are locked in a fixed order (level, then id) so that concurrent writers from
    several gateway processes serialise instead of deadlocking. ``skip_logged``: calls whose
    request id is logged already (sent again after a writer died) are left out, so that
    nothing is counted twice.

    A level whose period spend goes from below its ``soft_budget`` to at or above it, or
    from below its ``max_budget`` to at or above it, raises a budget alert. The level's row
    is locked meanwhile, so only one batch sees the crossing, and the alert's unique
    constraint (level, id, threshold, period) holds even if the budget changed since.
    Returns the number of crossings found (each a new alert unless its period has one).
    """
    if skip_logged and records:
        logged = set(
            SpendLog.objects.filter(
                request_id__in=[record.request_id for record in records]
            ).values_list("request_id", flat=True)
        )
        records = [record for record in records if record.request_id not in logged]
    if not records:
        return 0
    now = now or timezone.now()
    _insert_logs(records)
    by_level: dict[str, dict[str, list[CallRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for level, pk in record.level_ids().items():
            if pk:
                by_level[level][pk].append(record)
    alerts: list[BudgetAlert] = []
    for level in LEVEL_MODELS:
        if by_level.get(level):
            alerts += _add_spend(level, by_level[level], now)
    _add_daily(records)
    if alerts:
        BudgetAlert.objects.bulk_create(alerts, ignore_conflicts=True)
    return len(alerts)


def _add_daily(records: Sequence[CallRecord]) -> None:
    """Add the calls to their day's rollup rows (upserts, in a fixed order)."""
    zone = gatehouse_timezone()
    buckets: dict[tuple[Any, ...], list[int]] = {}
    # The local day last seen, and the epoch seconds well inside it: a call started there is
    # on that day. Within a microsecond of midnight the conversion decides (it rounds to the
    # microsecond, as the log row's timestamp does).
    day, inside_from, inside_to = date.min, 0.0, 0.0
    for record in records:
        if not inside_from <= record.started_at < inside_to:  # a batch's calls share a day
            day = datetime.fromtimestamp(record.started_at, zone).date()
            start, end = local_day_bounds(day)
            inside_from, inside_to = start.timestamp() + 1e-6, end.timestamp() - 1e-6
        bucket = (
            day,
            record.organization_id,
            record.team_id,
            record.project_id,
            record.key_id,
            record.model,
        )
        sums = buckets.setdefault(bucket, [0, 0, 0, 0, 0])
        ok = succeeded(record)
        sums[0] += ok
        sums[1] += not ok
        sums[2] += record.prompt_tokens
        sums[3] += record.completion_tokens
        sums[4] += record.cost_nano
    rows = [(*bucket, *sums[:4], nano_to_usd(sums[4])) for bucket, sums in sorted(buckets.items())]
    table = DailySpend._meta.db_table
    columns = (*ROLLUP_BUCKET, *ROLLUP_SUMS)
    conflict = f"ON CONFLICT ({', '.join(ROLLUP_BUCKET)}) DO UPDATE SET " + ", ".join(
        f"{name} = {table}.{name} + EXCLUDED.{name}" for name in ROLLUP_SUMS
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            types = ["date", *["text"] * 5, *["bigint"] * 4, "numeric"]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM "
                f"{_recordset(columns, types)} " + conflict,
                [_json_rows(columns, rows)],
            )
            return
        marks = ", ".join(["%s"] * len(columns))
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) " + conflict,
            _prepared(DailySpend, columns, rows),
        )


def daily_spend_rebuild(*, day: date) -> tuple[int, int] | None:
    """Recompute one day's rollup rows from the spend log (rows, calls). Safe beside a running
    gateway: on PostgreSQL the rollup table is locked against the pipeline's upserts meanwhile,
    so a batch lands either before (and is recomputed) or after (and is added). A day whose
    log was pruned (rollups, no log rows; pruning takes whole days) is left as it is: None."""
    start, end = local_day_bounds(day)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                table = DailySpend._meta.db_table
                cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        logged = SpendLog.objects.filter(started_at__gte=start, started_at__lt=end)
        if not logged.exists() and DailySpend.objects.filter(day=day).exists():
            return None
        DailySpend.objects.filter(day=day).delete()
        groups = (
            logged.values(*ROLLUP_BUCKET[1:])
            .annotate(
                requests_ok=Count("id", filter=Q(status=SpendLog.Status.SUCCESS)),
                requests_failed=Count("id", filter=Q(status=SpendLog.Status.FAILURE)),
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                cost=Sum("cost"),
            )
            .order_by()
        )
        rows = [
            DailySpend(
                day=day,
                organization_id=group["organization_id"],
                team_id=group["team_id"],
                project_id=group["project_id"],
                key_id=group["key_id"],
                model=group["model"],
                requests_ok=group["requests_ok"],
                requests_failed=group["requests_failed"],
                prompt_tokens=group["prompt"],
                completion_tokens=group["completion"],
                spend=group["cost"],
            )
            for group in groups
        ]
        DailySpend.objects.bulk_create(rows, batch_size=5000)
    return len(rows), sum(row.requests_ok + row.requests_failed for row in rows)


def spend_logs_prune_cutoff(age: timedelta, now: datetime | None = None) -> datetime:
    """The start of the local day ``age`` ago: pruning takes whole days, so a day's log is
    either all there (and its rollups can be rebuilt) or gone (and its rollups are kept)."""
    moment = (now or timezone.now()) - age
    return local_day_start(moment.astimezone(gatehouse_timezone()).date())


def spend_logs_prune(*, before: datetime, batch_size: int = 10_000) -> Iterator[int]:
    """Delete spend log rows of calls started before ``before`` (a local midnight, see
    ``spend_logs_prune_cutoff``), ``batch_size`` rows per transaction (short locks beside a
    running gateway), yielding each batch's count. Daily rollups are kept. Safe to repeat or
    to run twice at once."""
    old = spend_logs_started_before(before).order_by("id")
    while True:
        with transaction.atomic():
            ids = list(old.values_list("id", flat=True)[:batch_size])
            if not ids:
                return
            deleted, _ = SpendLog.objects.filter(id__in=ids).delete()
        yield deleted


# --- budget alerts: the webhook ----------------------------------------------------------------

ALERT_TIMEOUT = 5.0  # seconds the receiver has to answer one alert
ALERT_LEASE = timedelta(seconds=60)  # a claim outlives one attempt by far
ALERT_MAX_ATTEMPTS = 10
ALERT_FIRST_RETRY = 10.0  # seconds after the first failure, doubling after each one
ALERT_LONGEST_RETRY = 3600.0
ALERT_ERROR_LENGTH = 500


@dataclass
class AlertDeliveries:
    """What one ``budget_alerts_deliver`` call did."""

    delivered: int = 0
    retrying: int = 0
    given_up: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.given_up


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 2xx: the alert was not taken."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_webhook_opener = urllib.request.build_opener(_NoRedirects)


def alert_retry_delay(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt."""
    return timedelta(seconds=min(ALERT_FIRST_RETRY * 2 ** (attempts - 1), ALERT_LONGEST_RETRY))


def budget_alert_payload(alert: BudgetAlert) -> dict[str, Any]:
    """The webhook's JSON body. Names a key by its alias or ``sk-...abcd``, never its secret."""
    level = LEVEL_MODELS[alert.level]._default_manager.filter(pk=alert.object_id).first()
    name = level.label if level is not None else ""
    what = "crossed its soft budget" if alert.threshold == "soft" else "reached its max budget"
    spent = "in this budget period" if alert.period_end else "so far"
    return {
        "id": alert.pk,
        "type": "budget_alert",
        "level": alert.level,
        "object_id": alert.object_id,
        "object_name": name,
        "threshold": alert.threshold,
        "budget": float(alert.budget),
        "spend": float(alert.spend),
        "period": alert.period,
        "period_end": alert.period_end.isoformat() if alert.period_end else None,
        "created_at": alert.created_at.isoformat(),
        "message": (
            f"{alert.get_level_display()} '{name or alert.object_id}' {what} of "
            f"{alert.budget.normalize():f} USD: {alert.spend.normalize():f} USD spent {spent}."
        ),
    }


MSG_ALERT_URL_INVALID = "GATEHOUSE_ALERT_WEBHOOK_URL is not a valid http(s) URL."


def _webhook_post(url: str, alert_id: str, body: bytes) -> str:
    """POST one alert; '' when the receiver took it (a 2xx answer), else what went wrong.
    The error never holds the URL (webhook URLs often carry a token)."""
    if not url.lower().startswith(("http://", "https://")):
        return MSG_ALERT_URL_INVALID
    try:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Gatehouse-Alerts/1",
                "Idempotency-Key": alert_id,
            },
        )
        with _webhook_opener.open(request, timeout=ALERT_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return f"{type(exc.reason).__name__}: {exc.reason}"
    except ValueError:  # its message quotes the URL
        return MSG_ALERT_URL_INVALID
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "" if 200 <= status < 300 else f"HTTP {status}"


def _budget_alert_claim(now: datetime) -> BudgetAlert | None:
    """Take the alert due first, if any: one conditional UPDATE, so that of several senders
    (gateway processes, cron) exactly one gets it. The claim lasts ``ALERT_LEASE``: a sender
    that dies holding it leaves the alert due again after that."""
    due = BudgetAlert.objects.filter(next_attempt_at__lte=now)
    while True:
        pk = due.order_by("next_attempt_at", "id").values_list("pk", flat=True).first()
        if pk is None:
            return None
        claim = uuid.uuid4().hex
        taken = due.filter(pk=pk).update(
            claim=claim, next_attempt_at=now + ALERT_LEASE, attempts=F("attempts") + 1
        )
        if taken:
            return BudgetAlert.objects.get(pk=pk)
        # Another sender took it between the read and the update: try the next one.


def budget_alerts_deliver(
    *, url: str | None = None, now: datetime | None = None, limit: int = 100
) -> AlertDeliveries:
    """Send up to ``limit`` due budget alerts to the webhook (``url``, by default
    ``GATEHOUSE_ALERT_WEBHOOK_URL``), one POST each, with the alert's id as Idempotency-Key.

    A 2xx answer marks the alert delivered. Anything else (an error, a timeout, a redirect)
    is retried 10 s later, then 20 s, 40 s ... up to an hour apart, ``ALERT_MAX_ATTEMPTS``
    attempts in all; the last error is kept. Without a URL nothing is sent and alerts wait.
    Safe beside other senders: each alert is claimed by one of them. Never called on the
    request path: the spend writer process and the ``send_budget_alerts`` command call it.
    """
    url = settings.GATEHOUSE_ALERT_WEBHOOK_URL if url is None else url
    result = AlertDeliveries()
    if not url:
        return result
    for _ in range(limit):
        alert = _budget_alert_claim(now or timezone.now())
        if alert is None:
            break
        body = json.dumps(budget_alert_payload(alert)).encode()
        error = _webhook_post(url, alert.pk, body)
        finished = now or timezone.now()
        mine = BudgetAlert.objects.filter(pk=alert.pk, claim=alert.claim)
        if not error:
            mine.update(delivered_at=finished, next_attempt_at=None, claim="", last_error="")
            result.delivered += 1
            continue
        retry = alert.attempts < ALERT_MAX_ATTEMPTS
        mine.update(
            next_attempt_at=finished + alert_retry_delay(alert.attempts) if retry else None,
            claim="",
            last_error=error[:ALERT_ERROR_LENGTH],
        )
        if retry:
            logger.warning(
                "Budget alert %s not delivered (attempt %d): %s", alert.pk, alert.attempts, error
            )
            result.retrying += 1
        else:
            logger.error(
                "Budget alert %s given up after %d attempts: %s", alert.pk, alert.attempts, error
            )
            result.given_up += 1
    return result
