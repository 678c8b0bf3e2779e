"""Virtual keys: generation, hashing, rotation, blocking, deletion (Decisions 6 and 15).

A key's plaintext exists only in the return value of ``key_generate`` / ``key_regenerate``;
the database holds its SHA-256 hex digest and a display name ``sk-...abcd``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from hierarchy.access import ensure_allowed, ensure_can, ensure_can_all
from hierarchy.actors import Actor, ActorLike, as_actor
from hierarchy.audit import record_delete, record_update, snapshot
from hierarchy.governance import Catalog, clean_governance, parse_duration
from hierarchy.models import AccessGroup, Governed, Role, Team, User
from hierarchy.selectors import teams_managed_by, teams_visible_to
from hierarchy.services import (
    BatchValidationError,
    access_groups_by_name,
    build_governed,
    check_new_id,
    group_names,
    insert_governed,
    pick_access_groups,
    resolve_access_groups,
    save_governed,
    unique_violation,
)
from keys.models import VirtualKey
from keys.selectors import keys_managed_by, keys_visible_to
from projects.models import Project
from projects.selectors import projects_visible_to

KEY_PREFIX = "sk-"
RANDOM_BYTES = 32  # token_urlsafe(32) gives 43 URL-safe characters
CUSTOM_KEY_RE = re.compile(r"sk-[A-Za-z0-9_-]{32,}")

MSG_PROJECT_TEAM_MISMATCH = (
    "Project {project} belongs to team {project_team}, but the key belongs to team {team}."
)
MSG_TEAM_DENIED = "Only admins or team admins can manage this team's keys."
MSG_PERSONAL_KEY_DENIED = "Only proxy admins can create keys for other users or without a team."
MSG_CHANGE_DENIED = "Only admins or team admins can change this key."
MSG_PROJECT_REASSIGN = "Project reassignment is not supported. Use null to detach the key."
MSG_CUSTOM_KEY_INVALID = "A custom key must be 'sk-' followed by at least 32 URL-safe characters."
MSG_KEY_TAKEN = "This key value is already in use."


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def display_name(plaintext: str) -> str:
    return f"{KEY_PREFIX}...{plaintext[-4:]}"


def new_key_plaintext() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def expires_after(duration: str, start: datetime) -> datetime:
    """``duration`` from ``start``: s/m/h/d/w as elapsed time, mo as calendar months."""
    amount, unit = parse_duration(duration)
    if unit != "mo":
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return start + timedelta(seconds=amount * seconds)
    month_index = start.year * 12 + start.month - 1 + amount
    year, month = divmod(month_index, 12)
    day = start.day
    while True:
        try:
            return start.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1


def check_custom_key(plaintext: str, field: str) -> None:
    """A caller-chosen secret: the generated keys' shape, and not in use."""
    if not CUSTOM_KEY_RE.fullmatch(plaintext):
        raise ValidationError({field: [MSG_CUSTOM_KEY_INVALID]})
    if VirtualKey.objects.filter(token_hash=hash_key(plaintext)).exists():
        raise ValidationError({field: [MSG_KEY_TAKEN]})


def _set_secret(key: VirtualKey, plaintext: str) -> None:
    key.token_hash = hash_key(plaintext)
    key.key_name = display_name(plaintext)


def _expires_from(duration: str | None, now: datetime) -> datetime | None:
    """When a key given ``duration`` (Decision 6) expires; None without one."""
    if not duration:
        return None
    try:
        return expires_after(duration, now)
    except ValidationError as error:
        raise ValidationError({"duration": error.messages}) from None


def _resolve_placement(
    actor: Actor, *, project: Project | None, team: Team | None, user: User | None
) -> tuple[Team | None, Governed | None]:
    """The key's team and governance parent; scope → permission as everywhere."""
    if project is not None:
        ensure_can(
            project,
            visible=projects_visible_to(actor),
            managed=Project.objects.filter(team__in=teams_managed_by(actor).values("pk")),
            level_name="project",
            message=MSG_TEAM_DENIED,
        )
        if team is not None and team.pk != project.team_id:
            raise PermissionDenied(
                MSG_PROJECT_TEAM_MISMATCH.format(
                    project=project.pk, project_team=project.team_id, team=team.pk
                )
            )
        return project.team, project
    if team is not None:
        ensure_can(
            team,
            visible=teams_visible_to(actor),
            managed=teams_managed_by(actor),
            level_name="team",
            message=MSG_TEAM_DENIED,
        )
        return team, team
    own_key = (
        actor.user is not None
        and user is not None
        and user.pk == actor.user.pk
        and actor.user.role == Role.INTERNAL_USER
    )
    ensure_allowed(actor.is_proxy_admin or own_key, MSG_PERSONAL_KEY_DENIED)
    return None, None


@transaction.atomic
def key_generate(
    *,
    actor: ActorLike,
    project: Project | None = None,
    team: Team | None = None,
    user: User | None = None,
    key_alias: str | None = None,
    duration: str | None = None,
    key: str | None = None,
    id: str | None = None,
    access_groups: Iterable[str] | None = None,
    **governance: Any,
) -> tuple[VirtualKey, str]:
    """Create a key and return it with its plaintext, which is never stored or shown again."""
    actor = as_actor(actor)
    if user is None and project is None and team is None and not actor.is_proxy_admin:
        user = actor.user  # a personal key for the caller
    key_team, parent = _resolve_placement(actor, project=project, team=team, user=user)
    check_new_id(VirtualKey, id)
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(
        governance, level_name="key", parent=parent, access_groups=group_names(groups)
    )
    expires = _expires_from(duration, timezone.now())
    if key is not None:
        check_custom_key(key, "key")
    plaintext = key or new_key_plaintext()
    virtual_key = VirtualKey(
        project=project, team=key_team, user=user, key_alias=key_alias or None, expires=expires
    )
    if id is not None:
        virtual_key.pk = id
    _set_secret(virtual_key, plaintext)
    save_governed(virtual_key, actor=actor, cleaned=cleaned, access_groups=groups)
    return virtual_key, plaintext


def _ensure_manages(actor: Actor, key: VirtualKey) -> None:
    ensure_can(
        key,
        visible=keys_visible_to(actor),
        managed=keys_managed_by(actor),
        level_name="key",
        message=MSG_CHANGE_DENIED,
    )


@transaction.atomic
def key_update(
    *, actor: ActorLike, key: VirtualKey, access_groups: Iterable[str] | None = None, **fields: Any
) -> VirtualKey:
    """Change a key's settings. ``project=None`` detaches it; another project is refused."""
    actor = as_actor(actor)
    _ensure_manages(actor, key)
    before = snapshot(key)
    if "project" in fields:
        project = fields.pop("project")
        if project is not None and project.pk != key.project_id:
            raise ValidationError({"project_id": [MSG_PROJECT_REASSIGN]})
        key.project = project
    if "key_alias" in fields:
        key.key_alias = fields.pop("key_alias") or None
    if "duration" in fields:
        duration = fields.pop("duration")
        try:
            key.expires = expires_after(duration, timezone.now()) if duration else None
        except ValidationError as error:
            raise ValidationError({"duration": error.messages}) from None
    if "expires" in fields:
        key.expires = fields.pop("expires")
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(
        fields,
        level_name="key",
        parent=key.governance_parent,
        current=key,
        access_groups=group_names(groups),
    )
    save_governed(key, actor=actor, cleaned=cleaned, access_groups=groups, before=before)
    return key


@transaction.atomic
def key_regenerate(
    *, actor: ActorLike, key: VirtualKey, new_key: str | None = None
) -> tuple[VirtualKey, str]:
    """A new secret for the same key id and settings; the old secret stops working at once."""
    actor = as_actor(actor)
    _ensure_manages(actor, key)
    if new_key is not None:
        check_custom_key(new_key, "new_key")
    plaintext = new_key or new_key_plaintext()
    before = snapshot(key)
    _set_secret(key, plaintext)
    key.updated_by = actor.label
    key.full_clean()
    key.save(update_fields=["token_hash", "key_name", "updated_by", "updated_at"])
    record_update(actor, key, before)
    return key, plaintext


def key_set_blocked(*, actor: ActorLike, key: VirtualKey, blocked: bool) -> VirtualKey:
    actor = as_actor(actor)
    _ensure_manages(actor, key)
    before = snapshot(key)
    key.blocked = blocked
    key.updated_by = actor.label
    with transaction.atomic():
        key.save(update_fields=["blocked", "updated_by", "updated_at"])
        record_update(actor, key, before)
    return key


@transaction.atomic
def key_delete(*, actor: ActorLike, keys: Iterable[VirtualKey]) -> int:
    """Delete all of ``keys`` or none."""
    actor = as_actor(actor)
    keys = list(keys)
    for key in keys:
        _ensure_manages(actor, key)
    record_delete(actor, keys)
    return VirtualKey.objects.filter(pk__in=[k.pk for k in keys]).delete()[0]


@transaction.atomic
def key_generate_many(
    *, actor: ActorLike, keys: Sequence[Mapping[str, Any]], config_managed: bool = False
) -> list[tuple[VirtualKey, str]]:
    """Generate many keys under ``key_generate``'s rules in a few queries, each with its
    plaintext (never stored). Each item holds ``key_generate``'s arguments except ``id`` and
    ``key``, plus ``expires`` (an instant, instead of ``duration``). Raises
    ``BatchValidationError`` naming every invalid item; then nothing is written."""
    actor = as_actor(actor)
    projects = {item["project"].pk: item["project"] for item in keys if item.get("project")}
    teams = {
        item["team"].pk: item["team"]
        for item in keys
        if item.get("team") and not item.get("project")
    }
    ensure_can_all(
        projects.values(),
        visible=projects_visible_to(actor),
        managed=Project.objects.filter(team__in=teams_managed_by(actor).values("pk")),
        level_name="project",
        message=MSG_TEAM_DENIED,
    )
    ensure_can_all(
        teams.values(),
        visible=teams_visible_to(actor),
        managed=teams_managed_by(actor),
        level_name="team",
        message=MSG_TEAM_DENIED,
    )
    prefetch_related_objects(
        list(projects.values()),
        "access_groups",
        "team__access_groups",
        "team__organization__access_groups",
    )
    prefetch_related_objects(list(teams.values()), "access_groups", "organization__access_groups")
    catalog = Catalog.load()
    groups = access_groups_by_name(keys)
    aliases = {item["key_alias"] for item in keys if item.get("key_alias")}
    taken = set(
        VirtualKey.objects.filter(key_alias__in=aliases).values_list("key_alias", flat=True)
    )
    now = timezone.now()
    built: list[tuple[Governed, list[AccessGroup]]] = []
    plaintexts: list[str] = []
    errors: dict[int, ValidationError] = {}
    for index, item in enumerate(keys):
        fields = dict(item)
        project, team = fields.pop("project", None), fields.pop("team", None)
        if project is not None:
            project = projects[project.pk]
            team = project.team
        elif team is not None:
            team = teams[team.pk]
        user = fields.pop("user", None)
        duration = fields.pop("duration", None)
        virtual_key = VirtualKey(
            project=project,
            team=team,
            user=user,
            key_alias=fields.pop("key_alias", None) or None,
            expires=fields.pop("expires", None),
        )
        try:
            if project is None and team is None:
                _resolve_placement(actor, project=None, team=None, user=user)
            if duration:
                virtual_key.expires = _expires_from(duration, now)
            chosen = pick_access_groups(fields.pop("access_groups", None), groups)
            plaintext = new_key_plaintext()
            _set_secret(virtual_key, plaintext)
            build_governed(
                virtual_key,
                actor=actor,
                governance=fields,
                parent=project or team,
                catalog=catalog,
                groups=chosen,
                config_managed=config_managed,
            )
            if virtual_key.key_alias is not None and virtual_key.key_alias in taken:
                raise unique_violation(virtual_key, "key_alias", "key_alias")
        except ValidationError as error:
            errors[index] = error
            continue
        if virtual_key.key_alias is not None:
            taken.add(virtual_key.key_alias)
        built.append((virtual_key, chosen))
        plaintexts.append(plaintext)
    if errors:
        raise BatchValidationError(errors)
    insert_governed(VirtualKey, built, actor=actor)
    return [(key, plaintext) for (key, _), plaintext in zip(built, plaintexts, strict=True)]  # type: ignore[misc]
