"""Shared pieces of the LiteLLM-compatible endpoints (Decision 13: LiteLLM's shapes).

The adapters in ``<app>/litellm.py`` parse LiteLLM's field names, call the same services
and selectors as the REST API, and answer in LiteLLM's JSON shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request

from hierarchy.models import Governed

PER_MODEL_FIELDS = ("model_rpm_limit", "model_tpm_limit", "model_max_budget")
MSG_REQUIRED = "{field} is required."


def litellm_view(methods: list[str]) -> Any:
    """A DRF function view outside the OpenAPI schema (which documents /api/v1 only)."""

    def decorate(view: Any) -> Any:
        return extend_schema(exclude=True)(api_view(methods)(view))

    return decorate


def parse(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def required(source: Any, field: str) -> str:
    """``source[field]`` as a non-empty string (a body that is not an object has none)."""
    value = source.get(field) if isinstance(source, Mapping) else None
    if not isinstance(value, str) or not value:
        raise ValidationError({field: [MSG_REQUIRED.format(field=field)]})
    return value


def query_id(request: Request, field: str) -> str:
    return required(request.query_params, field)


def lift_per_model_limits(values: dict[str, Any]) -> None:
    """LiteLLM also takes per-model limits inside ``metadata``: move them to their fields."""
    metadata = values.get("metadata")
    if not isinstance(metadata, dict):
        return
    for name in PER_MODEL_FIELDS:
        if name in metadata and name not in values:
            values[name] = metadata.pop(name)


def money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def budget_fields(level: Governed) -> dict[str, Any]:
    """Budget fields flat and also under ``litellm_budget_table``, as LiteLLM answers."""
    table = {
        "budget_id": level.pk,
        "max_budget": money(level.max_budget),
        "soft_budget": money(level.soft_budget),
        "tpm_limit": level.tpm_limit,
        "rpm_limit": level.rpm_limit,
        "budget_duration": level.budget_duration or None,
        "budget_reset_at": level.budget_reset_at,
        "model_max_budget": level.model_max_budget,
    }
    return {
        **table,
        "spend": float(level.spend),
        "model_spend": {name: float(amount) for name, amount in (level.model_spend or {}).items()},
        "models": level.models,
        "model_rpm_limit": level.model_rpm_limit,
        "model_tpm_limit": level.model_tpm_limit,
        "metadata": level.metadata,
        "blocked": level.blocked,
        "created_at": level.created_at,
        "updated_at": level.updated_at,
        "created_by": level.created_by,
        "updated_by": level.updated_by,
        "litellm_budget_table": table,
    }


def page_bounds(
    request: Request, *, default_size: int = 10, max_size: int = 100
) -> tuple[int, int]:
    """LiteLLM's ``page`` (1-based) and ``size`` query parameters, validated."""
    errors: dict[str, list[str]] = {}
    values = {}
    for name, default, ceiling in (("page", 1, 1_000_000), ("size", default_size, max_size)):
        raw = request.query_params.get(name, str(default))
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if not 1 <= number <= ceiling:
            errors[name] = [f"{name} must be a whole number from 1 to {ceiling}."]
        values[name] = number
    if errors:
        raise ValidationError(errors)
    return values["page"], values["size"]
