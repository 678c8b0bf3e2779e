"""Configuration as code: the engine behind ``manage.py apply`` and ``manage.py export``.

A file declares the model catalog, access groups, users, organizations (with members) and
teams (with members, projects and keys), each identified by its natural key (Decision 2):
a catalog model or access group by ``name``, a user by ``email``, an organization by
``alias``, a team by ``alias`` within its ``organization`` (or among teams without one), a
project by ``alias`` within its team, a key by ``alias``.

The rules, as the README states them:

- An object that ``apply`` created is managed by the file (``config_managed``): the file is
  its whole truth, so a field left out goes back to its default. An object that existed
  before is changed only in the fields the file states, and stays unmanaged.
- ``members``, when given, is the exact list of members and their roles; left out, the
  memberships are not touched.
- ``--prune`` deletes managed objects that the file no longer declares, children first,
  and never an unmanaged one: a managed project that still holds keys made elsewhere is an
  error, not a deletion.
- Everything happens in the caller's transaction, through the write services: all of it, or
  nothing.

Steps: ``read`` checks the document's shape; ``make_plan`` matches it with the database and
lists every change field by field; ``execute`` carries the plan out (new teams, projects and
keys in batches). Every problem is named by its place in the file
(``teams[2].projects[0].models: ...``) and reported together.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

import yaml
from django.core.exceptions import ValidationError
from django.db.models import Field, Model, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hierarchy.actors import Actor
from hierarchy.commands import ErrorReport, join_path, validation_messages
from hierarchy.governance import GOVERNANCE_FIELDS, Catalog, clean_governance, gatehouse_timezone
from hierarchy.models import (
    AccessGroup,
    CatalogModel,
    Organization,
    OrganizationRole,
    Role,
    Team,
    TeamRole,
    User,
)
from hierarchy.services import (
    CATALOG_FIELDS,
    MSG_UNKNOWN_ACCESS_GROUPS,
    BatchValidationError,
    access_group_create,
    access_group_delete,
    access_group_update,
    catalog_model_create,
    catalog_model_delete,
    catalog_model_update,
    organization_create,
    organization_delete,
    organization_member_remove,
    organization_member_set,
    organization_update,
    team_create_many,
    team_delete,
    team_member_remove,
    team_member_set,
    team_update,
    user_create,
    user_delete,
    user_update,
)
from keys.models import VirtualKey
from keys.services import key_delete, key_generate_many, key_update
from projects.models import Project
from projects.services import project_create_many, project_delete, project_update

BATCH = 1_000

MSG_DOCUMENT_NOT_A_MAPPING = (
    "expected a mapping with any of: catalog, access_groups, users, organizations, teams."
)
MSG_NOT_A_LIST = "must be a list of {kind}s."
MSG_NOT_A_MAPPING = "must be a mapping (one {kind})."
MSG_UNKNOWN_FIELD = "unknown field."
MSG_UNKNOWN_FIELD_HINT = "unknown field; did you mean '{hint}'?"
MSG_KEY_REQUIRED = "required: the {kind}'s {key}, a non-empty text."
MSG_DUPLICATE = "{kind} '{label}' is declared twice (first at {first})."
MSG_MEMBER_NOT_A_MAPPING = "must be a mapping with user (an email) and role."
MSG_MEMBER_USER_REQUIRED = "required: the member's email."
MSG_MEMBER_TWICE = "'{email}' is listed twice (first at {first})."
MSG_BAD_ROLE = "'{role}' is not {a_kind} role; use one of: {choices}."
MSG_UNKNOWN_USER = "no user with email '{email}' in this file or the database."
MSG_UNKNOWN_ORGANIZATION = "no organization '{alias}' in this file or the database."
MSG_NOT_TEXT = "must be a text."
MSG_NOT_NAMES = "must be a list of names."
MSG_EXPIRES_INVALID = "must be a date or an instant with a time zone (e.g. 2027-01-01T00:00:00Z)."
MSG_EXPIRES_NAIVE = "needs a time zone (e.g. 2027-01-01T00:00:00Z)."
MSG_KEY_ELSEWHERE = "key '{alias}' already exists {where}; a key cannot move."
MSG_KEY_OWNER_FIXED = "key '{alias}' belongs to {owner}; the owner of a key cannot change."
MSG_PRUNE_BLOCKED = (
    "{kind} '{label}' is no longer in the file but still holds {count} {children} that apply "
    "did not create: delete or move them, or declare the {kind} again."
)

# The places in the file of fields that the services name otherwise.
FILE_NAMES = {"key_alias": "alias", "user_id": "members"}


# --- what a file may declare -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: each kind exists once
class Kind:
    name: str  # in messages and the plan: "team"
    model: type[Model]
    key: str  # the natural key's name in the file
    fields: tuple[str, ...]  # the other fields a file may state
    children: tuple[tuple[str, Kind], ...] = ()

    def __str__(self) -> str:
        return self.name


LEVEL_FIELDS = (*GOVERNANCE_FIELDS, "access_groups")
KEY = Kind("key", VirtualKey, "alias", ("user", "expires", *LEVEL_FIELDS))
PROJECT = Kind("project", Project, "alias", ("description", *LEVEL_FIELDS), (("keys", KEY),))
TEAM = Kind(
    "team",
    Team,
    "alias",
    ("organization", *LEVEL_FIELDS, "members"),
    (("projects", PROJECT), ("keys", KEY)),
)
ORGANIZATION = Kind("organization", Organization, "alias", (*LEVEL_FIELDS, "members"))
USER = Kind("user", User, "email", ("username", "role", *GOVERNANCE_FIELDS))
ACCESS_GROUP = Kind(
    "access group", AccessGroup, "name", ("description", "models", "mcp_servers", "agents")
)
CATALOG_MODEL = Kind(
    "catalog model", CatalogModel, "name", tuple(f for f in CATALOG_FIELDS if f != "name")
)
SECTIONS = (
    ("catalog", CATALOG_MODEL),
    ("access_groups", ACCESS_GROUP),
    ("users", USER),
    ("organizations", ORGANIZATION),
    ("teams", TEAM),
)
MEMBER_ROLES = {ORGANIZATION: OrganizationRole.values, TEAM: TeamRole.values}
# Deletion order for --prune: children before their parents, users and bundles last.
PRUNE_ORDER = (KEY, PROJECT, TEAM, ORGANIZATION, USER, ACCESS_GROUP, CATALOG_MODEL)


@dataclass(eq=False)
class Declared:
    """One object of the file: where it is, its natural key and what it states."""

    kind: Kind
    path: str
    name: str  # the natural key's own field: the alias, name or email
    key: Hashable  # the whole natural key (a project's includes its team's)
    label: str
    stated: dict[str, Any]
    parent: Declared | None = None
    members: dict[str, str] | None = None  # email -> role
    member_paths: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # ``stated``, normalised
    obj: Any = None  # the matching row, once known

    def place(self, name: str) -> str:
        """The place in the file of one of this object's fields ("" for the object)."""
        return join_path(self.path, FILE_NAMES.get(name, name)) if name else self.path


@dataclass(eq=False)
class Change:
    """One line of the plan: create, update or delete one object, field by field."""

    action: str
    kind: Kind
    label: str
    path: str
    fields: dict[str, tuple[Any, Any]]
    declared: Declared | None = None
    obj: Any = None


@dataclass
class Plan:
    changes: list[Change]
    unchanged: int
    kept: int  # managed objects the file no longer declares, kept for want of --prune
    state: State

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def new_keys(self) -> int:
        return sum(1 for c in self.changes if c.action == "create" and c.kind is KEY)


class Progress(Protocol):
    def advance(self, step: int = 1) -> None: ...

    def finish(self) -> None: ...


# --- reading the document ----------------------------------------------------------------------


def read(document: Any, errors: ErrorReport) -> list[Declared]:
    """Every object the document declares, parents before their children. Problems of shape
    (unknown fields, missing keys, duplicates, bad roles) go to ``errors``."""
    if document is None:
        return []
    if not isinstance(document, dict):
        errors.add(f"(top): {MSG_DOCUMENT_NOT_A_MAPPING}")
        return []
    sections = dict(SECTIONS)
    for name in document:
        if name not in sections:
            errors.add(f"{name}: {_unknown(name, sections)}")
    declared: list[Declared] = []
    for name, kind in SECTIONS:
        _read_list(document.get(name), name, kind, None, declared, errors)
    _check_duplicates(declared, errors)
    return declared


def _unknown(name: Any, allowed: Iterable[str]) -> str:
    hints = difflib.get_close_matches(str(name), list(allowed), n=1)
    return MSG_UNKNOWN_FIELD_HINT.format(hint=hints[0]) if hints else MSG_UNKNOWN_FIELD


def _read_list(
    value: Any,
    path: str,
    kind: Kind,
    parent: Declared | None,
    out: list[Declared],
    errors: ErrorReport,
) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        errors.add(f"{path}: {MSG_NOT_A_LIST.format(kind=kind)}")
        return
    for index, item in enumerate(value):
        _read_item(item, join_path(path, index), kind, parent, out, errors)


def _read_item(
    item: Any,
    path: str,
    kind: Kind,
    parent: Declared | None,
    out: list[Declared],
    errors: ErrorReport,
) -> None:
    if not isinstance(item, dict):
        errors.add(f"{path}: {MSG_NOT_A_MAPPING.format(kind=kind)}")
        return
    allowed = [kind.key, *kind.fields, *(name for name, _ in kind.children)]
    for name in item:
        if name not in allowed:
            errors.add(f"{join_path(path, str(name))}: {_unknown(name, allowed)}")
    natural = item.get(kind.key)
    if not isinstance(natural, str) or not natural.strip():
        errors.add(
            f"{join_path(path, kind.key)}: {MSG_KEY_REQUIRED.format(kind=kind, key=kind.key)}"
        )
        return
    stated = {name: item[name] for name in kind.fields if name in item and name not in ("members",)}
    key: Hashable = natural
    label = natural
    if kind is TEAM:
        organization = stated.pop("organization", None)
        if organization is not None and (
            not isinstance(organization, str) or not organization.strip()
        ):
            errors.add(f"{join_path(path, 'organization')}: {MSG_NOT_TEXT}")
            organization = None
        key = (organization, natural)
        label = f"{organization}/{natural}" if organization else natural
    elif kind is PROJECT and parent is not None:
        key = (parent.key, natural)
        label = f"{parent.label}/{natural}"
    declared = Declared(
        kind=kind, path=path, name=natural, key=key, label=label, stated=stated, parent=parent
    )
    if "members" in item:
        _read_members(declared, item["members"], errors)
    out.append(declared)
    for name, child in kind.children:
        _read_list(item.get(name), join_path(path, name), child, declared, out, errors)


def _read_members(declared: Declared, value: Any, errors: ErrorReport) -> None:
    path = join_path(declared.path, "members")
    if value is None:
        value = []
    if not isinstance(value, list):
        errors.add(f"{path}: {MSG_NOT_A_LIST.format(kind='member')}")
        return
    roles = MEMBER_ROLES[declared.kind]
    members: dict[str, str] = {}
    for index, item in enumerate(value):
        place = join_path(path, index)
        if not isinstance(item, dict):
            errors.add(f"{place}: {MSG_MEMBER_NOT_A_MAPPING}")
            continue
        for name in item:
            if name not in ("user", "role"):
                errors.add(f"{join_path(place, str(name))}: {_unknown(name, ('user', 'role'))}")
        email, role = item.get("user"), item.get("role", "member")
        if not isinstance(email, str) or not email.strip():
            errors.add(f"{join_path(place, 'user')}: {MSG_MEMBER_USER_REQUIRED}")
            continue
        if role not in roles:
            a_kind = f"an {declared.kind}" if declared.kind is ORGANIZATION else "a team"
            errors.add(
                f"{join_path(place, 'role')}: "
                + MSG_BAD_ROLE.format(role=role, a_kind=a_kind, choices=", ".join(roles))
            )
            continue
        if email in members:
            twice = MSG_MEMBER_TWICE.format(email=email, first=declared.member_paths[email])
            errors.add(f"{join_path(place, 'user')}: {twice}")
            continue
        members[email] = role
        declared.member_paths[email] = place
    declared.members = members


def _check_duplicates(declared: list[Declared], errors: ErrorReport) -> None:
    first: dict[tuple[str, Hashable], Declared] = {}
    for item in declared:
        seen = first.setdefault((item.kind.name, item.key), item)
        if seen is not item:
            errors.add(
                f"{item.place(item.kind.key)}: "
                + MSG_DUPLICATE.format(kind=item.kind, label=item.label, first=seen.path)
            )


# --- the database's side -----------------------------------------------------------------------


@dataclass
class State:
    """The rows the file may touch: all it names, and every managed row (for --prune)."""

    catalog: dict[str, CatalogModel]
    groups: dict[str, AccessGroup]
    users: dict[str, User]  # by email
    organizations: dict[str, Organization]
    teams: dict[tuple[str | None, str], Team]
    projects: dict[tuple[str, str], Project]  # (team id, alias)
    keys: dict[str, VirtualKey]
    managed_users: list[User]
    attached: dict[tuple[type[Model], Any], list[str]]  # access group names by row


# Columns the plan never compares: left out of the (large) reads, loaded back for the few rows
# a service then changes or deletes (``_load_deferred``).
UNCOMPARED = (
    "model_spend",
    "spend",
    "budget_reset_at",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
)


def _load_deferred(row: Model) -> None:
    deferred = row.get_deferred_fields()
    if deferred:
        row.refresh_from_db(fields=sorted(deferred))


def _attach(rows: list[Any], attribute: str, loaded: dict[Any, Any], extra: Any) -> None:
    """Point each row's ``attribute`` at one shared instance per parent, so that a change made
    to a parent is seen by its children and no row costs a query; parents not loaded yet
    come from ``extra`` in one query."""
    column = f"{attribute}_id"
    missing = {getattr(row, column) for row in rows} - set(loaded) - {None}
    if missing:
        loaded.update({parent.pk: parent for parent in extra.filter(pk__in=missing)})
    for row in rows:
        parent_id = getattr(row, column)
        if parent_id is not None:
            setattr(row, attribute, loaded[parent_id])


IN_CHUNK = 5_000  # values per IN (...): SQLite takes at most 32,766 parameters a query


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    ordered = sorted(values, key=str)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


def _named_or_managed(rows: QuerySet[Any], field: str, values: set[Any]) -> list[Any]:
    """The rows whose ``field`` is one of ``values``, and every managed row."""
    found = list(rows.filter(config_managed=True))
    for chunk in _chunks(values):
        found += rows.filter(config_managed=False, **{f"{field}__in": chunk})
    return found


def load_state(declared: list[Declared]) -> State:
    """Every row the file names, and every managed row, in a few queries."""
    by_kind: dict[Kind, list[Declared]] = {}
    for item in declared:
        by_kind.setdefault(item.kind, []).append(item)

    emails = {d.name for d in by_kind.get(USER, [])}
    for item in declared:
        emails.update(item.members or {})
        if item.kind is KEY and isinstance(item.stated.get("user"), str):
            emails.add(item.stated["user"])
    users = _named_or_managed(User.objects.all(), "email", emails)

    org_aliases = {d.name for d in by_kind.get(ORGANIZATION, [])}
    org_aliases |= {d.key[0] for d in by_kind.get(TEAM, []) if d.key[0]}  # type: ignore[index]
    organizations = _named_or_managed(
        Organization.objects.defer(*UNCOMPARED).prefetch_related("memberships__user"),
        "alias",
        org_aliases,
    )
    team_aliases = {d.key[1] for d in by_kind.get(TEAM, [])}  # type: ignore[index]
    teams = _named_or_managed(
        Team.objects.defer(*UNCOMPARED).prefetch_related("memberships__user"),
        "alias",
        team_aliases,
    )
    teams_by_pk = {t.pk: t for t in teams}
    _attach(teams, "organization", {o.pk: o for o in organizations}, Organization.objects)
    projects = _named_or_managed(Project.objects.defer(*UNCOMPARED), "team", set(teams_by_pk))
    all_teams = dict(teams_by_pk)
    _attach(projects, "team", all_teams, Team.objects.select_related("organization"))
    aliases = {d.name for d in by_kind.get(KEY, [])}
    keys = _named_or_managed(
        VirtualKey.objects.defer(*UNCOMPARED).select_related("user"), "key_alias", aliases
    )
    projects_by_pk = {p.pk: p for p in projects}
    _attach(keys, "project", projects_by_pk, Project.objects.select_related("team__organization"))
    _attach(keys, "team", all_teams, Team.objects.select_related("organization"))

    return State(
        catalog={m.name: m for m in CatalogModel.objects.order_by("name")},
        groups={g.name: g for g in AccessGroup.objects.order_by("name")},
        users={u.email: u for u in users if u.email},
        organizations={o.alias: o for o in organizations},
        teams={(t.organization.alias if t.organization else None, t.alias): t for t in teams},
        projects={(p.team_id, p.alias): p for p in projects},
        keys={k.key_alias: k for k in keys if k.key_alias},
        managed_users=[u for u in users if u.config_managed],
        attached=attached_groups([*organizations, *teams, *projects, *keys]),
    )


def attached_groups(rows: list[Any]) -> dict[tuple[type[Model], Any], list[str]]:
    """The names of the access groups attached to each row, sorted: one query per model
    (reading them through each row's manager costs more than the query)."""
    attached: dict[tuple[type[Model], Any], list[str]] = {}
    by_model: dict[type[Model], list[Any]] = {}
    for row in rows:
        by_model.setdefault(type(row), []).append(row.pk)
    for model, pks in by_model.items():
        through = model.access_groups.through  # type: ignore[attr-defined]
        column = f"{model._meta.model_name}_id"
        for chunk in _chunks(pks):
            links = through._default_manager.filter(**{f"{column}__in": chunk}).values_list(
                column, "accessgroup__name"
            )
            for pk, name in links:
                attached.setdefault((model, pk), []).append(name)
    return {row: sorted(names) for row, names in attached.items()}


# --- values: what the file states, what the row holds, what a field's default is -------------


def _model_field(kind: Kind, name: str) -> Field:
    model_field = kind.model._meta.get_field(name)
    assert isinstance(model_field, Field)
    return model_field


_DEFAULTS: dict[Kind, dict[str, Any]] = {}


def _default(kind: Kind, name: str, declared: Declared) -> Any:
    """A field's value when a managed object's entry leaves it out."""
    if kind is USER and name == "username":
        return declared.name
    if kind not in _DEFAULTS:
        _DEFAULTS[kind] = {
            field_name: [] if field_name == "access_groups" else None
            for field_name in kind.fields
            if field_name in ("access_groups", "user")
        }
    defaults = _DEFAULTS[kind]
    if name not in defaults:
        defaults[name] = _model_field(kind, name).get_default()
    return defaults[name]


def current_values(kind: Kind, obj: Any, groups: list[str] | None = None) -> dict[str, Any]:
    """A row's values of the fields a file may state, as the file would state them;
    ``groups``, the names of its access groups when already known."""
    values: dict[str, Any] = {}
    for name in kind.fields:
        if name in ("members", "organization"):
            continue
        if name == "access_groups":
            values[name] = (
                groups if groups is not None else sorted(g.name for g in obj.access_groups.all())
            )
        elif kind is KEY and name == "user":
            values[name] = obj.user.email if obj.user_id else None
        else:
            values[name] = getattr(obj, name)
    return values


def current_members(obj: Organization | Team) -> dict[str, str]:
    """Members that a file can name (users with an email) and their roles."""
    return {m.user.email: m.role for m in obj.memberships.all() if m.user.email}


class _Normaliser:
    """Turns stated values into the values the services store, naming bad ones."""

    def __init__(self, state: State, declared: list[Declared], errors: ErrorReport) -> None:
        self.errors = errors
        self.emails = set(state.users) | {d.name for d in declared if d.kind is USER}
        file_groups = {
            d.name: [m for m in d.stated.get("models") or [] if isinstance(m, str)]
            for d in declared
            if d.kind is ACCESS_GROUP
        }
        self.group_names = set(state.groups) | set(file_groups)
        names = set(state.catalog) | {d.name for d in declared if d.kind is CATALOG_MODEL}
        self.catalog = Catalog(
            names=sorted(names),
            groups={**{g.name: list(g.models) for g in state.groups.values()}, **file_groups},
        )

    def __call__(self, item: Declared) -> bool:
        stated, kind = item.stated, item.kind
        values: dict[str, Any] = {}
        ok = True

        def fail(name: str, error: Any) -> None:
            nonlocal ok
            ok = False
            for place, message in validation_messages(error, name):
                self.errors.add(f"{item.place(place)}: {message}")

        governance = {name: stated[name] for name in GOVERNANCE_FIELDS if name in stated}
        if kind is ACCESS_GROUP:
            governance = {"models": stated["models"]} if "models" in stated else {}
        if governance:
            try:
                values.update(
                    clean_governance(
                        governance, level_name=kind.name, parent=None, catalog=self.catalog
                    )
                )
            except ValidationError as error:
                fail("", error)
        for name in kind.fields:
            if name not in stated or name in GOVERNANCE_FIELDS or name == "organization":
                continue
            value = stated[name]
            try:
                values[name] = self._value(item, name, value)
            except ValidationError as error:
                fail(name, error)
        item.values = values
        return ok

    def _value(self, item: Declared, name: str, value: Any) -> Any:
        kind = item.kind
        if name == "access_groups":
            names = self._names(value)
            unknown = sorted(set(names) - self.group_names)
            if unknown:
                raise ValidationError(MSG_UNKNOWN_ACCESS_GROUPS.format(names=", ".join(unknown)))
            return sorted(set(names))
        if name in ("mcp_servers", "agents"):
            return self._names(value)
        if name in ("description", "username"):
            if value is None:
                return _default(kind, name, item)
            if not isinstance(value, str):
                raise ValidationError(MSG_NOT_TEXT)
            return value
        if name == "role":
            if value not in Role.values:
                raise ValidationError(
                    MSG_BAD_ROLE.format(role=value, a_kind="a user", choices=", ".join(Role.values))
                )
            return value
        if name == "user":
            if value is None:
                return None
            if not isinstance(value, str) or value not in self.emails:
                raise ValidationError(MSG_UNKNOWN_USER.format(email=value))
            return value
        if name == "expires":
            return _instant(value)
        # A catalog model's column: the model field's own conversion and checks.
        model_field = _model_field(kind, name)
        if value is None:
            return model_field.get_default()
        return model_field.clean(value, None)

    @staticmethod
    def _names(value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValidationError(MSG_NOT_NAMES)
        return list(dict.fromkeys(value))


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValidationError(MSG_EXPIRES_INVALID)
        value = parsed
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            raise ValidationError(MSG_EXPIRES_NAIVE)
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=gatehouse_timezone())
    raise ValidationError(MSG_EXPIRES_INVALID)


# --- the plan ------------------------------------------------------------------------------------


def make_plan(declared: list[Declared], *, prune: bool, errors: ErrorReport) -> Plan:
    """Match the file with the database by natural keys and list the changes. Problems go to
    ``errors``; the plan is meaningful only when there are none."""
    state = load_state(declared)
    normalise = _Normaliser(state, declared, errors)
    organizations = set(state.organizations) | {d.name for d in declared if d.kind is ORGANIZATION}
    changes: list[Change] = []
    unchanged = 0
    matched: set[tuple[type[Model], Any]] = set()
    for item in declared:
        if not normalise(item):
            continue
        unknown = [email for email in item.members or {} if email not in normalise.emails]
        for email in unknown:
            errors.add(
                f"{join_path(item.member_paths[email], 'user')}: "
                + MSG_UNKNOWN_USER.format(email=email)
            )
        if unknown:
            continue
        if item.kind is TEAM:
            organization = item.key[0]  # type: ignore[index]
            if organization is not None and organization not in organizations:
                errors.add(
                    f"{item.place('organization')}: "
                    + MSG_UNKNOWN_ORGANIZATION.format(alias=organization)
                )
                continue
        item.obj = _match(item, state, errors)
        if item.obj is not None:
            matched.add((type(item.obj), item.obj.pk))
        change = _compare(item, state)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    forgotten = [row for row in _managed_rows(state) if (type(row), row.pk) not in matched]
    if prune:
        changes += _deletions(forgotten, errors)
    return Plan(
        changes=changes, unchanged=unchanged, kept=0 if prune else len(forgotten), state=state
    )


def _match(item: Declared, state: State, errors: ErrorReport) -> Any:
    """The row ``item`` names, if any; a key found elsewhere in the hierarchy is an error."""
    kind = item.kind
    if kind is CATALOG_MODEL:
        return state.catalog.get(item.name)
    if kind is ACCESS_GROUP:
        return state.groups.get(item.name)
    if kind is USER:
        return state.users.get(item.name)
    if kind is ORGANIZATION:
        return state.organizations.get(item.name)
    if kind is TEAM:
        team_key: tuple[str | None, str] = item.key  # type: ignore[assignment]
        return state.teams.get(team_key)
    parent = item.parent.obj if item.parent is not None else None
    if kind is PROJECT:
        return state.projects.get((parent.pk, item.name)) if parent is not None else None
    key = state.keys.get(item.name)
    if key is None:
        return None
    under_project = item.parent is not None and item.parent.kind is PROJECT
    in_place = parent is not None and (
        key.project_id == parent.pk
        if under_project
        else key.project_id is None and key.team_id == parent.pk
    )
    if not in_place:
        errors.add(
            f"{item.place('alias')}: "
            + MSG_KEY_ELSEWHERE.format(alias=item.name, where=_where(key))
        )
        return None
    owner = key.user.email if key.user is not None else None
    wanted = item.values.get("user", None if key.config_managed else owner)
    if wanted != owner:
        errors.add(
            f"{item.place('user')}: "
            + MSG_KEY_OWNER_FIXED.format(alias=item.name, owner=owner or "no user")
        )
    return key


def _where(key: VirtualKey) -> str:
    if key.project is not None:
        return f"in project '{key.project.alias}' of team '{_team_label(key.project.team)}'"
    if key.team is not None:
        return f"in team '{_team_label(key.team)}' without a project"
    return "without a team"


def _team_label(team: Team) -> str:
    return f"{team.organization.alias}/{team.alias}" if team.organization else team.alias


def _compare(item: Declared, state: State) -> Change | None:
    kind, obj = item.kind, item.obj
    if obj is None:
        fields: dict[str, tuple[Any, Any]] = {
            name: (None, value) for name, value in item.values.items()
        }
        for email, role in (item.members or {}).items():
            fields[f"members[{email}]"] = (None, role)
        return Change("create", kind, item.label, item.path, fields, declared=item)
    current = current_values(kind, obj, state.attached.get((type(obj), obj.pk), []))
    wanted = dict(item.values)
    if obj.config_managed:
        for name in current:
            if name not in wanted:
                wanted[name] = _default(kind, name, item)
    fields = {
        name: (current[name], value) for name, value in wanted.items() if current[name] != value
    }
    if item.members is not None:
        have = current_members(obj)
        for email in sorted(set(have) | set(item.members)):
            if have.get(email) != item.members.get(email):
                fields[f"members[{email}]"] = (have.get(email), item.members.get(email))
    if not fields:
        return None
    return Change("update", kind, item.label, item.path, fields, declared=item, obj=obj)


def _managed_rows(state: State) -> list[Any]:
    return [
        *(k for k in state.keys.values() if k.config_managed),
        *(p for p in state.projects.values() if p.config_managed),
        *(t for t in state.teams.values() if t.config_managed),
        *(o for o in state.organizations.values() if o.config_managed),
        *state.managed_users,
        *(g for g in state.groups.values() if g.config_managed),
        *(m for m in state.catalog.values() if m.config_managed),
    ]


KIND_OF_MODEL: dict[type[Model], Kind] = {kind.model: kind for kind in PRUNE_ORDER}


def label_of(obj: Any) -> str:
    """A row's natural key as the plan shows it."""
    if isinstance(obj, Team):
        return _team_label(obj)
    if isinstance(obj, Project):
        return f"{_team_label(obj.team)}/{obj.alias}"
    if isinstance(obj, User):
        return obj.email or obj.username
    return str(obj)


def _deletions(rows: list[Any], errors: ErrorReport) -> list[Change]:
    """Deletions for --prune, children first, refusing to orphan rows apply did not make."""
    doomed: dict[type[Model], list[Any]] = {}
    for row in rows:
        doomed.setdefault(type(row), []).append(row.pk)

    def remaining(model: type[Model], parent: str, parents: list[Any]) -> Counter[Any]:
        rest = model._default_manager.filter(**{f"{parent}__in": parents}).exclude(
            pk__in=doomed.get(model, [])
        )
        return Counter(rest.values_list(f"{parent}_id", flat=True))

    checks = (
        (Project, VirtualKey, "project", "key(s)"),
        (Team, Project, "team", "project(s)"),
        (Team, VirtualKey, "team", "key(s)"),
        (Organization, Team, "organization", "team(s)"),
    )
    for model, child, parent, children in checks:
        parents = [row for row in rows if isinstance(row, model)]
        if not parents:
            continue
        counts = remaining(child, parent, parents)
        for row in parents:
            if counts[row.pk]:
                errors.add(
                    "--prune: "
                    + MSG_PRUNE_BLOCKED.format(
                        kind=KIND_OF_MODEL[model],
                        label=label_of(row),
                        count=counts[row.pk],
                        children=children,
                    )
                )
    order = {kind.model: index for index, kind in enumerate(PRUNE_ORDER)}
    deletions = [
        Change("delete", KIND_OF_MODEL[type(row)], label_of(row), "", {}, obj=row) for row in rows
    ]
    return sorted(deletions, key=lambda change: (order[change.kind.model], change.label))


def plan_document(document: Any, *, prune: bool, errors: ErrorReport) -> Plan:
    """``read`` and ``make_plan``: the plan for a loaded YAML document."""
    return make_plan(read(document, errors), prune=prune, errors=errors)


def show(value: Any) -> str:
    """A value as the plan prints it."""
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool | int):
        return json.dumps(value)
    return json.dumps(value, default=show, ensure_ascii=False)


SYMBOLS = {"create": "+", "update": "~", "delete": "-"}


def describe(plan: Plan) -> Iterator[str]:
    """The plan, one line per object and one per changed field."""
    for change in plan.changes:
        where = f"  ({change.path})" if change.path else ""
        yield f"{SYMBOLS[change.action]} {change.action} {change.kind} {change.label}{where}"
        for name, (before, after) in change.fields.items():
            if change.action == "create":
                yield f"    {name}: {show(after)}"
            else:
                yield f"    {name}: {show(before)} -> {show(after)}"


# --- carrying the plan out -----------------------------------------------------------------------

NewKey = Callable[[Declared, VirtualKey, str], None]


class _Executor:
    """Runs a plan through the write services, top down: catalog, access groups, users,
    organizations, teams, projects, keys; then the updates that failed only because a level
    below still held what they take away (narrowing a team after its projects); then
    --prune's deletions. Failures go to ``errors``; the caller rolls back when there are any."""

    def __init__(
        self,
        plan: Plan,
        *,
        actor: Actor,
        errors: ErrorReport,
        progress: Progress | None,
    ) -> None:
        self.plan = plan
        self.actor = actor
        self.errors = errors
        self.progress = progress
        self.users = dict(plan.state.users)
        self.organizations = dict(plan.state.organizations)
        self.deferred: list[tuple[Change, ValidationError]] = []
        self.plaintexts: dict[Declared, str] = {}  # new keys' secrets, until handed over

    def run(self) -> None:
        changes = self.plan.changes
        for kind in (CATALOG_MODEL, ACCESS_GROUP, USER, ORGANIZATION, TEAM, PROJECT, KEY):
            updates = [c for c in changes if c.kind is kind and c.action == "update"]
            creates = [c for c in changes if c.kind is kind and c.action == "create"]
            for change in updates:
                self._update(change)
                self._advance()
            if kind in (TEAM, PROJECT, KEY):
                self._create_batches(kind, creates)
            else:
                for change in creates:
                    self._create(change)
                    self._advance()
            for change in [*creates, *updates]:
                self._members(change)
        self._retry_deferred()
        deletions = [c for c in changes if c.action == "delete"]
        for kind in PRUNE_ORDER:
            rows = [c.obj for c in deletions if c.kind is kind]
            if rows:
                self._delete(kind, rows)
                self._advance(len(rows))
        if self.progress is not None:
            self.progress.finish()

    def _advance(self, step: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(step)

    def _fail(self, change: Change, error: ValidationError) -> None:
        declared = change.declared
        for place, message in validation_messages(error):
            where = declared.place(place) if declared is not None else "--prune"
            self.errors.add(f"{where}: {message}")

    # creating

    def _create(self, change: Change) -> None:
        declared = change.declared
        assert declared is not None
        values = dict(declared.values)
        key = declared.name
        actor = self.actor
        try:
            if change.kind is CATALOG_MODEL:
                declared.obj = catalog_model_create(
                    actor=actor, config_managed=True, name=key, **values
                )
            elif change.kind is ACCESS_GROUP:
                declared.obj = access_group_create(
                    actor=actor, config_managed=True, name=key, **values
                )
            elif change.kind is USER:
                declared.obj = user_create(
                    actor=actor,
                    config_managed=True,
                    email=key,
                    username=values.pop("username", key),
                    role=values.pop("role", Role.INTERNAL_USER),
                    **values,
                )
                self.users[key] = declared.obj
            else:
                declared.obj = organization_create(
                    actor=actor,
                    config_managed=True,
                    alias=key,
                    access_groups=values.pop("access_groups", None),
                    **values,
                )
                self.organizations[key] = declared.obj
        except ValidationError as error:
            self._fail(change, error)

    def _batch_item(self, change: Change) -> dict[str, Any] | None:
        """The batch service's arguments for one new team, project or key; None when its
        parent could not be made."""
        declared = change.declared
        assert declared is not None
        item = dict(declared.values)
        if change.kind is TEAM:
            organization_alias: str | None = declared.key[0]  # type: ignore[index]
            organization = None
            if organization_alias is not None:
                organization = self.organizations.get(organization_alias)
                if organization is None:
                    return None
            return {**item, "alias": declared.name, "organization": organization}
        parent = declared.parent.obj if declared.parent is not None else None
        if parent is None:
            return None
        if change.kind is PROJECT:
            return {**item, "alias": declared.name, "team": parent}
        place = "project" if isinstance(parent, Project) else "team"
        email = item.pop("user", None)
        return {
            **item,
            "key_alias": declared.name,
            place: parent,
            "user": self.users.get(email) if email else None,
        }

    def _create_batches(self, kind: Kind, creates: list[Change]) -> None:
        ready = [(c, item) for c in creates if (item := self._batch_item(c)) is not None]
        self._advance(len(creates) - len(ready))
        for start in range(0, len(ready), BATCH):
            chunk = ready[start : start + BATCH]
            while chunk:
                items = [item for _, item in chunk]
                try:
                    made = self._create_many(kind, items)
                except BatchValidationError as error:
                    for index, item_error in error.by_item.items():
                        self._fail(chunk[index][0], item_error)
                    chunk = [pair for i, pair in enumerate(chunk) if i not in error.by_item]
                    continue
                for (change, _), obj in zip(chunk, made, strict=True):
                    assert change.declared is not None
                    if kind is KEY:
                        obj, self.plaintexts[change.declared] = obj
                    change.declared.obj = obj
                break
            self._advance(len(ready[start : start + BATCH]))

    def _create_many(self, kind: Kind, items: list[dict[str, Any]]) -> list[Any]:
        if kind is TEAM:
            return list(team_create_many(actor=self.actor, teams=items, config_managed=True))
        if kind is PROJECT:
            return list(project_create_many(actor=self.actor, projects=items, config_managed=True))
        return list(key_generate_many(actor=self.actor, keys=items, config_managed=True))

    # updating

    def _update(self, change: Change, *, retrying: bool = False) -> bool:
        plain = {
            name: after
            for name, (_, after) in change.fields.items()
            if not name.startswith("members[")
        }
        if not plain:
            return True
        obj, actor = change.obj, self.actor
        _load_deferred(obj)
        groups = plain.pop("access_groups", None)
        try:
            if change.kind is CATALOG_MODEL:
                catalog_model_update(actor=actor, model=obj, **plain)
            elif change.kind is ACCESS_GROUP:
                access_group_update(actor=actor, group=obj, **plain)
            elif change.kind is USER:
                user_update(actor=actor, user=obj, **plain)
            elif change.kind is ORGANIZATION:
                organization_update(actor=actor, organization=obj, access_groups=groups, **plain)
            elif change.kind is TEAM:
                team_update(actor=actor, team=obj, access_groups=groups, **plain)
            elif change.kind is PROJECT:
                project_update(actor=actor, project=obj, access_groups=groups, **plain)
            else:
                plain.pop("user", None)
                key_update(actor=actor, key=obj, access_groups=groups, **plain)
        except ValidationError as error:
            obj.refresh_from_db()  # the service may have changed it in memory before refusing
            if retrying:
                return False
            self.deferred.append((change, error))
            return False
        return True

    def _retry_deferred(self) -> None:
        """Narrowing a level fails while a level below holds what it takes away, even when
        the file narrows that one too: retry after everything else, while any succeeds."""
        while self.deferred:
            waiting, self.deferred = self.deferred, []
            failed = [
                (change, error)
                for change, error in waiting
                if not self._update(change, retrying=True)
            ]
            if len(failed) == len(waiting):
                for change, error in failed:
                    self._fail(change, error)
                return
            self.deferred = failed

    # members

    def _members(self, change: Change) -> None:
        declared = change.declared
        assert declared is not None
        group = declared.obj
        if group is None:
            return
        for name, (_, after) in change.fields.items():
            if not name.startswith("members["):
                continue
            email = name[len("members[") : -1]
            user = self.users.get(email) or User.objects.get(email=email)  # a member to remove
            try:
                if isinstance(group, Team):
                    if after is None:
                        team_member_remove(actor=self.actor, team=group, user=user)
                    else:
                        team_member_set(actor=self.actor, team=group, user=user, role=after)
                elif after is None:
                    organization_member_remove(actor=self.actor, organization=group, user=user)
                else:
                    organization_member_set(
                        actor=self.actor, organization=group, user=user, role=after
                    )
            except ValidationError as error:
                for _, message in validation_messages(error):
                    where = declared.member_paths.get(email, declared.place("members"))
                    self.errors.add(f"{where}: {message}")

    # deleting (--prune)

    def _delete(self, kind: Kind, rows: list[Any]) -> None:
        actor = self.actor
        for row in rows:
            _load_deferred(row)  # the audit log keeps a deleted row's last values
        try:
            if kind is KEY:
                key_delete(actor=actor, keys=rows)
            elif kind is PROJECT:
                project_delete(actor=actor, projects=rows)
            elif kind is TEAM:
                team_delete(actor=actor, teams=rows)
            elif kind is ORGANIZATION:
                organization_delete(actor=actor, organizations=rows)
            elif kind is USER:
                user_delete(actor=actor, users=rows)
            elif kind is ACCESS_GROUP:
                access_group_delete(actor=actor, groups=rows)
            else:
                catalog_model_delete(actor=actor, models=rows)
        except ValidationError as error:
            for _, message in validation_messages(error):
                self.errors.add(f"--prune: {message}")


def execute(
    plan: Plan,
    *,
    actor: Actor,
    errors: ErrorReport,
    new_key: NewKey | None = None,
    progress: Progress | None = None,
) -> None:
    """Carry ``plan`` out inside the caller's transaction. ``new_key`` receives each new key
    with its plaintext (the only time it exists). Problems go to ``errors``: the caller
    must roll back when there are any."""
    executor = _Executor(plan, actor=actor, errors=errors, progress=progress)
    executor.run()
    plaintexts, executor.plaintexts = executor.plaintexts, {}
    if new_key is not None and not errors:
        for declared, plaintext in plaintexts.items():
            new_key(declared, declared.obj, plaintext)


# --- export ------------------------------------------------------------------------------------


def _stated(kind: Kind, obj: Any, name: str, groups: list[str] | None = None) -> dict[str, Any]:
    """The fields of a managed row that differ from their defaults: what a file states."""
    probe = Declared(kind=kind, path="", name=name, key=name, label="", stated={})
    return {
        field_name: value
        for field_name, value in current_values(kind, obj, groups).items()
        if value != _default(kind, field_name, probe)
    }


def _members_list(obj: Organization | Team) -> list[dict[str, str]]:
    return [{"user": email, "role": role} for email, role in sorted(current_members(obj).items())]


def export_document() -> dict[str, Any]:
    """What ``apply`` manages, as a document that applies as a no-op: managed rows in full,
    and the teams and projects that hold managed rows by their natural keys (apply leaves the
    fields of such unmanaged holders alone)."""
    document: dict[str, Any] = {}
    catalog = CatalogModel.objects.filter(config_managed=True).order_by("name")
    document["catalog"] = [{"name": m.name, **_stated(CATALOG_MODEL, m, m.name)} for m in catalog]
    groups = AccessGroup.objects.filter(config_managed=True).order_by("name")
    document["access_groups"] = [
        {"name": g.name, **_stated(ACCESS_GROUP, g, g.name)} for g in groups
    ]
    users = User.objects.filter(config_managed=True).exclude(email="").order_by("email")
    document["users"] = [{"email": u.email, **_stated(USER, u, u.email, [])} for u in users]

    managed_keys = VirtualKey.objects.filter(config_managed=True, team__isnull=False).exclude(
        key_alias=None
    )
    holders = Project.objects.filter(
        Q(config_managed=True) | Q(pk__in=managed_keys.values("project_id"))
    )
    organizations = list(
        Organization.objects.filter(config_managed=True)
        .prefetch_related("memberships__user")
        .order_by("alias")
    )
    teams = list(
        Team.objects.filter(
            Q(config_managed=True)
            | Q(pk__in=holders.values("team_id"))
            | Q(pk__in=managed_keys.filter(project=None).values("team_id"))
        )
        .select_related("organization")
        .prefetch_related("memberships__user")
        .order_by("organization__alias", "alias")
    )
    projects = list(holders.order_by("alias"))
    keys = list(managed_keys.select_related("user").order_by("key_alias"))
    attached = attached_groups([*organizations, *teams, *projects, *keys])

    def level(kind: Kind, obj: Any, natural: dict[str, Any]) -> dict[str, Any]:
        """A managed row in full; a row that merely holds managed ones by natural key."""
        entry = dict(natural)
        if obj.config_managed:
            name = next(iter(natural.values()))
            entry.update(_stated(kind, obj, name, attached.get((type(obj), obj.pk), [])))
            if kind in (ORGANIZATION, TEAM) and (members := _members_list(obj)):
                entry["members"] = members
        return entry

    document["organizations"] = [level(ORGANIZATION, o, {"alias": o.alias}) for o in organizations]
    keys_of: dict[Any, list[VirtualKey]] = {}
    for key in keys:
        keys_of.setdefault(key.project_id or ("team", key.team_id), []).append(key)
    projects_of: dict[str, list[Project]] = {}
    for project in projects:
        projects_of.setdefault(project.team_id, []).append(project)

    def key_entries(holder: Any) -> list[dict[str, Any]]:
        return [level(KEY, k, {"alias": k.key_alias}) for k in keys_of.get(holder, [])]

    document["teams"] = []
    for team in teams:
        natural: dict[str, Any] = {"alias": team.alias}
        if team.organization is not None:
            natural["organization"] = team.organization.alias
        entry = level(TEAM, team, natural)
        children = []
        for project in projects_of.get(team.pk, []):
            child = level(PROJECT, project, {"alias": project.alias})
            if project_keys := key_entries(project.pk):
                child["keys"] = project_keys
            children.append(child)
        if children:
            entry["projects"] = children
        if team_keys := key_entries(("team", team.pk)):
            entry["keys"] = team_keys
        document["teams"].append(entry)
    return {name: items for name, items in document.items() if items}


class _Dumper(yaml.SafeDumper):
    """Money and prices as exact numbers (the loader reads them back as Decimals)."""


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    text = format(value.normalize(), "f")
    tag = "tag:yaml.org,2002:float" if "." in text else "tag:yaml.org,2002:int"
    return dumper.represent_scalar(tag, text)


_Dumper.add_representer(Decimal, _represent_decimal)


def dump(document: dict[str, Any]) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
