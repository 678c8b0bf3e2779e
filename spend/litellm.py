"""LiteLLM's ``GET /spend/logs``: an array of log rows in LiteLLM's field names."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import MSG_UNSUPPORTED_FIELD
from config.litellm import litellm_view, parse
from hierarchy.actors import as_actor
from spend.filters import LiteLLMSpendLogFilter
from spend.models import SpendLog
from spend.selectors import spend_logs_visible_to

LIMIT_DEFAULT = 100
LIMIT_MAX = 1_000
ACCEPTED = {"limit", *LiteLLMSpendLogFilter.base_filters}


class SpendLogsQuery(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, default=LIMIT_DEFAULT, min_value=1, max_value=LIMIT_MAX
    )


def log_to_litellm(log: SpendLog) -> dict[str, Any]:
    return {
        "request_id": log.request_id,
        "call_type": log.call_type,
        "api_key": log.key_hash,
        "spend": float(log.cost),
        "total_tokens": log.total_tokens,
        "prompt_tokens": log.prompt_tokens,
        "completion_tokens": log.completion_tokens,
        "startTime": log.started_at.isoformat(),
        "endTime": log.ended_at.isoformat(),
        "model": log.model,
        "user": log.user_id,
        "team_id": log.team_id,
        "organization_id": log.organization_id,
        "project_id": log.project_id,
        "key_id": log.key_id,
        "status": log.status,
        "stream": log.stream,
    }


@litellm_view(["GET"])
def spend_logs_view(request: Request) -> Response:
    """Newest first, at most ``limit`` rows (default 100, at most 1,000); filters ``api_key``,
    ``project_id``, ``team_id``, ``user_id``, ``request_id``, ``start_date``, ``end_date``
    (days in ``GATEHOUSE_TIMEZONE``, both included)."""
    unknown = sorted(set(request.query_params) - ACCEPTED)
    if unknown:
        raise serializers.ValidationError({name: [MSG_UNSUPPORTED_FIELD] for name in unknown})
    limit = parse(SpendLogsQuery, request.query_params)["limit"]
    logs = LiteLLMSpendLogFilter(
        request.query_params, queryset=spend_logs_visible_to(as_actor(request.user))
    )
    if not logs.is_valid():
        raise serializers.ValidationError(logs.errors)
    return Response([log_to_litellm(log) for log in logs.qs.order_by("-started_at", "-id")[:limit]])
