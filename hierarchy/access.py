"""Scope before permission (Decision 10): an object outside the caller's view is "not found"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import Model, QuerySet


class NotFound(ObjectDoesNotExist):
    """Raised for an object the caller may not see (the API answers 404)."""


def not_found_message(level_name: str, pk: object) -> str:
    return f"{level_name.capitalize()} not found, {level_name}_id={pk}"


def get_visible(visible: QuerySet, pk: Any, level_name: str) -> Any:
    """The object with ``pk`` among ``visible``, or NotFound naming the id."""
    obj = visible.filter(pk=pk).first() if isinstance(pk, str) and pk else None
    if obj is None:
        raise NotFound(not_found_message(level_name, pk))
    return obj


def ensure_visible(obj: Model, visible: QuerySet, level_name: str) -> None:
    if not visible.filter(pk=obj.pk).exists():
        raise NotFound(not_found_message(level_name, obj.pk))


def ensure_allowed(allowed: bool, message: str) -> None:
    if not allowed:
        raise PermissionDenied(message)


def ensure_can(
    obj: Model, *, visible: QuerySet, managed: QuerySet, level_name: str, message: str
) -> None:
    """404 when ``obj`` is outside ``visible``, then 403 when outside ``managed``."""
    ensure_visible(obj, visible, level_name)
    ensure_allowed(managed.filter(pk=obj.pk).exists(), message)


def ensure_can_all(
    objs: Iterable[Model], *, visible: QuerySet, managed: QuerySet, level_name: str, message: str
) -> None:
    """``ensure_can`` for many objects in two queries: 404 naming the first one outside
    ``visible``, else 403 when any is outside ``managed``."""
    pks = list(dict.fromkeys(obj.pk for obj in objs))
    if not pks:
        return
    seen = set(visible.filter(pk__in=pks).values_list("pk", flat=True))
    hidden = next((pk for pk in pks if pk not in seen), None)
    if hidden is not None:
        raise NotFound(not_found_message(level_name, hidden))
    ensure_allowed(managed.filter(pk__in=pks).count() == len(pks), message)
