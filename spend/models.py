"""Spend logs (one row per upstream call the gateway made; refused calls are not logged),
their daily rollups, and budget alerts.

The ids of every level are plain indexed columns, not foreign keys: a log outlives the key,
project or team it names, and the gateway inserts rows in batches without joins.
"""

from __future__ import annotations

from django.db import models as db
from django.db.models import Q
from django.utils import timezone

from hierarchy.models import public_id_field


class SpendLog(db.Model):
    class Status(db.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"

    id = db.BigAutoField(primary_key=True)
    # Unique and indexed through Meta, not the fields' flags: on PostgreSQL those would add a
    # second (LIKE) index each, which nothing queries and every spend row pays for.
    request_id = db.CharField(max_length=64)
    key_hash = db.CharField(max_length=64, blank=True)
    key_id = db.CharField(max_length=128, blank=True, default="")
    project_id = db.CharField(max_length=128, blank=True, default="")
    team_id = db.CharField(max_length=128, blank=True, default="")
    organization_id = db.CharField(max_length=128, blank=True, default="")
    user_id = db.CharField(max_length=128, blank=True, default="")
    model = db.CharField(max_length=200)
    call_type = db.CharField(max_length=32, default="chat.completions")
    prompt_tokens = db.PositiveIntegerField(default=0)
    completion_tokens = db.PositiveIntegerField(default=0)
    total_tokens = db.PositiveIntegerField(default=0)
    cost = db.DecimalField(max_digits=21, decimal_places=9, default=0, help_text="USD")
    status = db.CharField(max_length=16, choices=Status.choices)
    http_status = db.PositiveSmallIntegerField()
    stream = db.BooleanField(default=False)
    latency_ms = db.FloatField(help_text="Upstream call, milliseconds.")
    started_at = db.DateTimeField()
    ended_at = db.DateTimeField()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            db.Index(fields=["key_id", "started_at"], name="spend_log_key_started"),
            db.Index(fields=["project_id", "started_at"], name="spend_log_project_started"),
            db.Index(fields=["team_id", "started_at"], name="spend_log_team_started"),
            db.Index(fields=["organization_id", "started_at"], name="spend_log_org_started"),
            db.Index(fields=["user_id", "started_at"], name="spend_log_user_started"),
            db.Index(fields=["started_at"], name="spend_log_started"),
            db.Index(fields=["key_hash"], name="spend_log_key_hash"),
        ]
        constraints = [
            db.UniqueConstraint(fields=["request_id"], name="spend_log_request_id_unique"),
            db.CheckConstraint(condition=Q(cost__gte=0), name="spend_spendlog_cost_not_negative"),
            db.CheckConstraint(
                condition=Q(status__in=["success", "failure"]), name="spend_spendlog_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.request_id


# A rollup row's bucket and the sums kept per bucket (the spend pipeline's upserts, the
# rebuild and the reports all use these).
ROLLUP_BUCKET = ("day", "organization_id", "team_id", "project_id", "key_id", "model")
ROLLUP_SUMS = ("requests_ok", "requests_failed", "prompt_tokens", "completion_tokens", "spend")


class DailySpend(db.Model):
    """Spend per day (in ``GATEHOUSE_TIMEZONE``, by the call's start), organization, team,
    project, key and model, kept by the spend pipeline as it writes the log: reports read these
    rows, never the raw log. Blank ids: the call had no such level (e.g. the master key)."""

    id = db.BigAutoField(primary_key=True)
    day = db.DateField()
    organization_id = db.CharField(max_length=128, blank=True, default="")
    team_id = db.CharField(max_length=128, blank=True, default="")
    project_id = db.CharField(max_length=128, blank=True, default="")
    key_id = db.CharField(max_length=128, blank=True, default="")
    model = db.CharField(max_length=200)
    requests_ok = db.PositiveBigIntegerField(default=0)
    requests_failed = db.PositiveBigIntegerField(default=0)
    prompt_tokens = db.PositiveBigIntegerField(default=0)
    completion_tokens = db.PositiveBigIntegerField(default=0)
    spend = db.DecimalField(max_digits=24, decimal_places=9, default=0, help_text="USD")

    class Meta:
        ordering = ["-day", "organization_id", "team_id", "project_id", "key_id", "model"]
        constraints = [
            db.UniqueConstraint(
                fields=["day", "organization_id", "team_id", "project_id", "key_id", "model"],
                name="spend_dailyspend_one_row_per_bucket",
            ),
            db.CheckConstraint(
                condition=Q(spend__gte=0), name="spend_dailyspend_spend_not_negative"
            ),
        ]
        indexes = [
            db.Index(fields=["organization_id", "day"], name="spend_daily_org_day"),
            db.Index(fields=["team_id", "day"], name="spend_daily_team_day"),
            db.Index(fields=["project_id", "day"], name="spend_daily_project_day"),
            db.Index(fields=["key_id", "day"], name="spend_daily_key_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.project_id or '-'} {self.model}"


class BudgetAlert(db.Model):
    """A level's spend crossed its soft budget or reached its max budget in a budget period.

    Raised by the spend pipeline inside the transaction that wrote the crossing spend; the
    unique constraint makes it one row per level, threshold and period, however many gateway
    processes write at once. The row also carries its webhook's delivery state.
    """

    class Level(db.TextChoices):
        KEY = "key", "Key"
        PROJECT = "project", "Project"
        TEAM = "team", "Team"
        ORGANIZATION = "organization", "Organization"
        USER = "user", "User"

    class Threshold(db.TextChoices):
        SOFT = "soft", "Soft budget"
        MAX = "max", "Max budget"

    LIFETIME = "lifetime"  # the period of a level without budget_duration

    id = public_id_field()
    level = db.CharField(max_length=16, choices=Level.choices)
    object_id = db.CharField(max_length=128)
    threshold = db.CharField(max_length=8, choices=Threshold.choices)
    period = db.CharField(
        max_length=40, help_text="The period's end (ISO 8601, UTC), or 'lifetime'."
    )
    period_end = db.DateTimeField(null=True, blank=True)
    budget = db.DecimalField(max_digits=21, decimal_places=9, help_text="USD")
    spend = db.DecimalField(
        max_digits=21, decimal_places=9, help_text="USD spent in the period when it was raised."
    )
    created_at = db.DateTimeField(default=timezone.now)
    next_attempt_at = db.DateTimeField(
        null=True,
        blank=True,
        help_text="When a delivery is due. Claiming moves it a lease ahead, so that an alert "
        "whose sender died is sent again. Empty once delivered or given up.",
    )
    claim = db.CharField(max_length=32, blank=True, help_text="The sender holding the lease.")
    attempts = db.PositiveSmallIntegerField(default=0)
    delivered_at = db.DateTimeField(null=True, blank=True)
    last_error = db.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            db.UniqueConstraint(
                fields=["level", "object_id", "threshold", "period"],
                name="spend_budgetalert_once_per_period",
            ),
            db.CheckConstraint(
                condition=Q(level__in=["key", "project", "team", "organization", "user"]),
                name="spend_budgetalert_level_valid",
            ),
            db.CheckConstraint(
                condition=Q(threshold__in=["soft", "max"]),
                name="spend_budgetalert_threshold_valid",
            ),
        ]
        indexes = [
            db.Index(fields=["next_attempt_at"], name="spend_alert_next_attempt"),
            db.Index(fields=["object_id", "created_at"], name="spend_alert_object_created"),
        ]

    def __str__(self) -> str:
        return f"{self.level} {self.object_id}: {self.get_threshold_display()} ({self.period})"
