"""What every management endpoint shares (REST under /api/v1 and the LiteLLM adapters).

- one error contract (Decision 12): ``{"error": {message, type, param, code, fields}}``;
- ``ScopedViewSet``: the caller's visibility selector scopes every query (Decision 10);
- ``StrictSerializer``: unknown fields are refused by name, never dropped (Decision 13).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from hierarchy.actors import Actor, as_actor

ERROR_TYPES = {
    400: "bad_request",
    401: "auth_error",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "bad_request",
    415: "bad_request",
    429: "rate_limit_exceeded",
}
MSG_UNSUPPORTED_FIELD = "Unsupported field."


def error_response(
    status_code: int,
    message: str,
    *,
    fields: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    fields = dict(fields or {})
    body = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status_code, "internal_error"),
            "param": next(iter(fields), None),
            "code": str(status_code),
            "fields": fields,
        }
    }
    return Response(body, status=status_code, headers=headers)


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as ``{"field.sub": [messages]}``."""
    if isinstance(detail, Mapping):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = "non_field_errors" if key == "__all__" else str(key)
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(detail, list) and detail and all(isinstance(d, (Mapping, list)) for d in detail):
        out = {}
        for index, value in enumerate(detail):
            out.update(_flatten(value, f"{prefix}[{index}]"))
        return out
    messages = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(m) for m in messages]}


def _summary(fields: Mapping[str, list[str]]) -> str:
    return "; ".join(
        message if name == "non_field_errors" else f"{name}: {message}"
        for name, messages in fields.items()
        for message in messages
    )


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """Map Django's and DRF's exceptions onto the one error body."""
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        fields = _flatten(detail)
        return error_response(400, _summary(fields), fields=fields)
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        message = str(exc) if isinstance(exc, ObjectDoesNotExist) and str(exc) else "Not found."
        return error_response(404, message)
    if isinstance(exc, PermissionDenied):
        return error_response(403, str(exc) or "You do not have permission to do this.")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        return error_response(400, _summary(fields), fields=fields)
    if isinstance(exc, exceptions.APIException):
        headers: dict[str, str] = {}
        status_code: int = exc.status_code
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = "Bearer"
            status_code = status.HTTP_401_UNAUTHORIZED
        raw: Any = exc.detail
        message = _summary(_flatten(raw)) if isinstance(raw, (list, dict)) else str(raw)
        return error_response(status_code, message, headers=headers)
    return None


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare, naming each one."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [MSG_UNSUPPORTED_FIELD] for name in unknown}
                )
        return super().to_internal_value(data)


class CreatedCursorPagination(CursorPagination):
    """Stable cursor pages, no COUNT (Decision 13)."""

    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-created_at", "id")


Selector = Callable[[Any], QuerySet]


class ScopedViewSet(GenericViewSet):
    """Every query starts from ``visible_selector(actor)``; subclasses refine it in
    ``refine_queryset`` and cannot widen it. Writes on an object need ``managed_selector``:
    outsiders get 404, readers 403, before any input is validated (Decision 10)."""

    visible_selector: Selector
    managed_selector: Selector
    lookup_value_regex = "[^/]+"
    pagination_class: type[BasePagination] | None = CreatedCursorPagination
    input_serializers: Mapping[str, type[serializers.Serializer]] = {}
    output_serializer: type[serializers.Serializer]

    @property
    def actor(self) -> Actor:
        return as_actor(self.request.user)

    def get_queryset(self) -> QuerySet:
        return self.refine_queryset(type(self).visible_selector(self.actor))

    def refine_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return self.input_serializers.get(self.action, self.output_serializer)

    def get_object_to_change(self) -> Any:
        obj = self.get_object()
        if not type(self).managed_selector(self.actor).filter(pk=obj.pk).exists():
            raise PermissionDenied("You do not have permission to change this.")
        return obj

    def validated(self, request: Request, action: str | None = None) -> dict[str, Any]:
        serializer = self.input_serializers[action or self.action](
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def respond(self, instance: Model, status_code: int = 200, **headers: str) -> Response:
        data = self.output_serializer(instance, context=self.get_serializer_context()).data
        return Response(data, status=status_code, headers=headers or None)
