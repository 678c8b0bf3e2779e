"""Serializer pieces shared by every governed level, in and out (one definition)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.api import StrictSerializer
from hierarchy.ids import PUBLIC_ID_PATTERN


def money_field(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=21, decimal_places=9, min_value=0, coerce_to_string=False, **kwargs
    )


def id_field() -> serializers.RegexField:
    """A caller-chosen id (Decision 1); omitted: a new uuid4."""
    return serializers.RegexField(PUBLIC_ID_PATTERN, required=False, max_length=128)


class GovernanceInput(StrictSerializer):
    """The governance fields a caller may send; omitted fields stay as they are."""

    models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        allow_null=True,
        max_length=1000,
    )
    access_groups = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        allow_null=True,
        max_length=1000,
    )
    max_budget = money_field(required=False, allow_null=True)
    soft_budget = money_field(required=False, allow_null=True)
    budget_duration = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=16
    )
    rpm_limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**62
    )
    tpm_limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**62
    )
    model_rpm_limit = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=2**62),
        required=False,
        allow_null=True,
    )
    model_tpm_limit = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=2**62),
        required=False,
        allow_null=True,
    )
    model_max_budget = serializers.DictField(
        child=serializers.JSONField(), required=False, allow_null=True
    )
    blocked = serializers.BooleanField(required=False)
    metadata = serializers.DictField(child=serializers.JSONField(), required=False, allow_null=True)


GOVERNANCE_OUTPUT_FIELDS = (
    "models",
    "max_budget",
    "soft_budget",
    "spend",
    "model_spend",
    "budget_duration",
    "budget_reset_at",
    "rpm_limit",
    "tpm_limit",
    "model_rpm_limit",
    "model_tpm_limit",
    "model_max_budget",
    "blocked",
    "metadata",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
)


class GovernedOutput(serializers.ModelSerializer):
    """Output of a governed level; money as JSON numbers, access groups by name."""

    max_budget = money_field(read_only=True)
    soft_budget = money_field(read_only=True)
    spend = money_field(read_only=True)
    access_groups: serializers.Field = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )
