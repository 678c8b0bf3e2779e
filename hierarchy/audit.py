"""The audit log: who created, changed or deleted what, when, and through which surface.

The write services record every change inside their own transaction, so a failed write
leaves no entry and a committed one always has its entry:

- ``snapshot(obj)`` before a change reads the object's tracked fields from memory (no query);
- ``record_create`` / ``record_update`` / ``record_delete`` write one ``AuditEntry`` per object
  with the changed fields as ``{field: [before, after]}``. An update that changes nothing
  writes nothing.
- ``recording_in_bulk()`` holds the entries of many changes and writes them with one
  ``bulk_create`` when the block ends (for commands that change thousands of objects).

Who: the actor's label, user id and key id, never a key. Through what: ``source``, set per
request by ``AuditSourceMiddleware`` (by URL prefix) and for commands by ``AuditedCommand``;
anything else is ``system``. Secrets never reach an entry: password and key hashes read
``[redacted]`` (that they changed is kept), and so does any value shaped like a key
(``sk-`` and 16 or more characters) and any JSON member whose name looks secret.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import DecimalField, Model
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from hierarchy.actors import ActorLike, as_actor
from hierarchy.models import AuditAction, AuditEntry, AuditSource, Team

Snapshot = dict[str, Any]

REDACTED = "[redacted]"
BULK_BATCH_SIZE = 1_000

# The public name of each audited model (``object_type``), by its ``app_label.model_name``.
OBJECT_TYPES = {
    "hierarchy.user": "user",
    "hierarchy.organization": "organization",
    "hierarchy.team": "team",
    "hierarchy.organizationmembership": "organization_membership",
    "hierarchy.teammembership": "team_membership",
    "hierarchy.catalogmodel": "catalog_model",
    "hierarchy.accessgroup": "access_group",
    "projects.project": "project",
    "projects.uisettings": "ui_settings",
    "keys.virtualkey": "key",
}
# Bookkeeping (who and when is the entry itself) and what the gateway writes, not people.
UNTRACKED_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
        "spend",
        "model_spend",
        "last_used_at",
        "budget_reset_at",
        "last_login",
        "date_joined",
    }
)
SECRET_FIELDS = frozenset({"password", "token_hash"})
SECRET_NAME_RE = re.compile(r"passw|secret|token|api_?key|credential|private_?key", re.IGNORECASE)
SECRET_VALUE_RE = re.compile(r"sk-[A-Za-z0-9_-]{16,}")

_source: ContextVar[str] = ContextVar("gatehouse_audit_source", default=AuditSource.SYSTEM)
_pending: ContextVar[list[AuditEntry] | None] = ContextVar("gatehouse_audit_pending", default=None)


# --- where a change comes from ------------------------------------------------------------------


@contextmanager
def source(value: str) -> Iterator[None]:
    """Record the changes made inside the block as coming from ``value`` (an AuditSource)."""
    token = _source.set(AuditSource(value))
    try:
        yield
    finally:
        _source.reset(token)


def source_for_path(path: str) -> str:
    """The admin under /admin/, the REST API under /api/; Django serves nothing else but
    the LiteLLM-compatible endpoints (the gateway never reaches Django)."""
    if path.startswith("/admin/"):
        return AuditSource.ADMIN
    if path.startswith("/api/"):
        return AuditSource.API
    return AuditSource.LITELLM


class AuditSourceMiddleware:
    """Marks every change made while answering a request with the surface it came through."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with source(source_for_path(request.path)):
            return self.get_response(request)


class AuditedCommand(BaseCommand):
    """A management command whose changes the audit log records as ``command``."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        with source(AuditSource.COMMAND):
            return super().execute(*args, **options)


# --- what changed ---------------------------------------------------------------------------


@functools.cache
def _tracked_fields(model: type[Model]) -> tuple[tuple[str, bool], ...]:
    """Each tracked column's attribute (foreign keys as their id) and whether it holds money."""
    return tuple(
        (field.attname, isinstance(field, DecimalField))
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name not in UNTRACKED_FIELDS
    )


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def snapshot(instance: Model, *, copy: bool = True) -> Snapshot:
    """The tracked fields' current values, from memory. Take it before changing ``instance``;
    JSON values are copied, so that changes made to them in place still show (``copy=False``
    when nothing changes ``instance`` afterwards)."""
    values: Snapshot = {}
    for attribute, money in _tracked_fields(type(instance)):
        value = instance.__dict__.get(attribute)
        if copy and isinstance(value, (list, dict)):
            value = _copy_json(value)
        elif money and isinstance(value, (int, float)):  # set in memory, not yet read back
            value = Decimal(str(value))
        values[attribute] = value
    return values


def _redact_text(text: str) -> str:
    return SECRET_VALUE_RE.sub(REDACTED, text)


def _json(value: Any) -> Any:
    """A value as JSON the entry can hold exactly (money as a decimal string), key-shaped
    text and secret-named JSON members redacted."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if SECRET_NAME_RE.search(str(key)) else _json(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json(item) for item in value]
    return _redact_text(str(value))


def _field_json(name: str, value: Any) -> Any:
    if name in SECRET_FIELDS and value not in (None, ""):
        return REDACTED
    return _json(value)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every field whose value differs, redacted."""
    return {
        name: [_field_json(name, before.get(name)), _field_json(name, after.get(name))]
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    }


# --- which organization and team an entry belongs to (what org admins may read) -----------------


def _team_of(instance: Model) -> tuple[str, Team | None]:
    """The team id of a team-scoped object, and the team itself when already in memory."""
    team_id: str = getattr(instance, "team_id", None) or ""
    if not team_id:
        return "", None
    team_field = type(instance)._meta.get_field("team")
    team: Team | None = team_field.get_cached_value(instance, None)  # type: ignore[union-attr,assignment]
    return team_id, team


def _scopes(instances: list[Model]) -> list[tuple[str, str]]:
    """(organization id, team id) of each object. A team not in memory costs one query for
    all of them together."""
    scopes: list[tuple[str, str]] = []
    unknown_teams: set[str] = set()
    for instance in instances:
        kind = instance._meta.label_lower
        if kind == "hierarchy.organization":
            scopes.append((str(instance.pk), ""))
        elif kind == "hierarchy.organizationmembership":
            scopes.append((instance.organization_id, ""))  # type: ignore[attr-defined]
        elif kind == "hierarchy.team":
            scopes.append((instance.organization_id or "", str(instance.pk)))  # type: ignore[attr-defined]
        elif kind in ("hierarchy.teammembership", "projects.project", "keys.virtualkey"):
            team_id, team = _team_of(instance)
            if team is not None:
                scopes.append((team.organization_id or "", team_id))
            else:
                scopes.append(("?", team_id) if team_id else ("", ""))
                if team_id:
                    unknown_teams.add(team_id)
        else:
            scopes.append(("", ""))
    if unknown_teams:
        organizations = dict(
            Team.objects.filter(pk__in=unknown_teams).values_list("pk", "organization_id")
        )
        scopes = [
            (organizations.get(team_id) or "", team_id)
            if organization == "?"
            else (organization, team_id)
            for organization, team_id in scopes
        ]
    return scopes


# --- writing entries ------------------------------------------------------------------------------


def _entries(
    actor: ActorLike, action: str, changed: Iterable[tuple[Model, dict[str, list[Any]]]]
) -> list[AuditEntry]:
    actor = as_actor(actor)
    label = actor.label
    user_id = str(actor.user.pk) if actor.user is not None else ""
    key_id = actor.key_id or ""
    where = _source.get()
    changed = list(changed)
    at = timezone.now()
    return [
        AuditEntry(
            at=at,
            actor=label,
            actor_user_id=user_id,
            actor_key_id=key_id,
            source=where,
            action=action,
            object_type=OBJECT_TYPES[instance._meta.label_lower],
            object_id=str(instance.pk),
            object_repr=_redact_text(str(instance))[:200],
            organization_id=organization_id,
            team_id=team_id,
            changes=changes,
        )
        for (instance, changes), (organization_id, team_id) in zip(
            changed, _scopes([instance for instance, _ in changed]), strict=True
        )
    ]


def _write(entries: list[AuditEntry]) -> None:
    pending = _pending.get()
    if pending is not None:
        pending.extend(entries)
    elif len(entries) == 1:
        entries[0].save(force_insert=True)
    elif entries:
        AuditEntry.objects.bulk_create(entries, batch_size=BULK_BATCH_SIZE)


def record_create(actor: ActorLike, instance: Model, after: Snapshot | None = None) -> None:
    """``instance`` was created: its non-empty fields as ``[null, value]``."""
    values = snapshot(instance, copy=False) if after is None else after
    changes = diff({}, {name: value for name, value in values.items() if not _is_empty(value)})
    _write(_entries(actor, AuditAction.CREATE, [(instance, changes)]))


def record_update(
    actor: ActorLike, instance: Model, before: Snapshot, after: Snapshot | None = None
) -> None:
    """``instance`` was saved: the fields that differ from ``before``; nothing if none do."""
    changes = diff(before, snapshot(instance, copy=False) if after is None else after)
    if changes:
        _write(_entries(actor, AuditAction.UPDATE, [(instance, changes)]))


def record_delete(actor: ActorLike, instances: Iterable[Model]) -> None:
    """Each of ``instances`` was deleted: its last non-empty values as ``[value, null]``."""
    changed = [
        (
            instance,
            diff(
                {
                    name: value
                    for name, value in snapshot(instance, copy=False).items()
                    if not _is_empty(value)
                },
                {},
            ),
        )
        for instance in instances
    ]
    _write(_entries(actor, AuditAction.DELETE, changed))


@contextmanager
def recording_in_bulk() -> Iterator[None]:
    """Hold the entries recorded inside the block and write them with ``bulk_create`` at its
    end. Use it inside the transaction of the changes: if the block raises, nothing is
    written. Nested blocks write with the outermost one."""
    if _pending.get() is not None:
        yield
        return
    pending: list[AuditEntry] = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
    AuditEntry.objects.bulk_create(pending, batch_size=BULK_BATCH_SIZE)
