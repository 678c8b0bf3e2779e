"""Writes of users, organizations, teams, memberships, the catalog and access groups.

Every write takes ``actor=`` (Decision 9), checks scope then permission then validation
(Decision 10) and leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model, UniqueConstraint, prefetch_related_objects
from django.utils import timezone

from hierarchy.access import ensure_allowed, ensure_can, ensure_can_all
from hierarchy.actors import Actor, ActorLike, as_actor
from hierarchy.audit import (
    Snapshot,
    record_create,
    record_delete,
    record_update,
    recording_in_bulk,
    snapshot,
)
from hierarchy.changes import announce
from hierarchy.governance import (
    Catalog,
    check_descendants_fit,
    check_levels_fit,
    clean_governance,
    levels_naming_access_group,
    levels_using_access_group,
    next_budget_reset,
)
from hierarchy.ids import public_id_validator
from hierarchy.models import (
    AccessGroup,
    CatalogModel,
    Governed,
    Organization,
    OrganizationMembership,
    OrganizationRole,
    Role,
    Team,
    TeamMembership,
    TeamRole,
    User,
)
from hierarchy.selectors import (
    organizations_managed_by,
    organizations_visible_to,
    teams_governed_by,
    teams_managed_by,
    teams_visible_to,
    user_has_staff_role,
    users_visible_to,
)

MSG_PROXY_ADMIN_ONLY = "Only proxy admins can {action}."
MSG_TEAM_CREATE_DENIED = "Only proxy admins or organization admins can create teams."
MSG_TEAM_GOVERN_DENIED = "Only proxy admins or organization admins can change a team."
MSG_TEAM_MEMBERS_DENIED = "Only admins or team admins can manage team members."
MSG_ORG_MEMBERS_DENIED = "Only proxy admins or organization admins can manage organization members."
MSG_ID_TAKEN = "The id '{id}' is already in use."
MSG_DELETE_HAS_CHILDREN = (
    "Cannot delete {level} {label}. {count} {children} are associated with it. "
    "Please delete or move them first."
)
MSG_NOT_A_MEMBER = "User {user} is not a member of {level} {label}."
MSG_UNKNOWN_ACCESS_GROUPS = "Unknown access groups: {names}."
MSG_GROUP_IN_USE = "Access group '{group}' is still used by {level} '{label}'."


# --- shared helpers (used by the projects and keys services too) ----------------------------


def check_new_id(model: type[Model], pk: str | None) -> None:
    """Caller-chosen ids (Decision 1): right shape and not taken."""
    if pk is None:
        return
    try:
        public_id_validator(pk)
    except ValidationError as error:
        raise ValidationError({"id": error.messages}) from None
    if model._default_manager.filter(pk=pk).exists():
        raise ValidationError({"id": [MSG_ID_TAKEN.format(id=pk)]})


def save_governed(
    instance: Governed,
    *,
    actor: Actor,
    cleaned: Mapping[str, Any],
    access_groups: Iterable[AccessGroup] | None = None,
    before: Snapshot | None = None,
) -> Governed:
    """Apply cleaned governance values, stamp who did it, validate, save and record it in
    the audit log. An update passes ``before``, the ``snapshot`` taken before the service
    changed anything (without it, the stored row is read once to compare with)."""
    creating = instance._state.adding
    if not creating and before is None:
        before = snapshot(type(instance)._default_manager.get(pk=instance.pk))
    for name, value in cleaned.items():
        setattr(instance, name, value)
    if "budget_duration" in cleaned or creating:
        instance.budget_reset_at = (
            next_budget_reset(instance.budget_duration, timezone.now())
            if instance.budget_duration
            else None
        )
    if creating:
        instance.created_by = actor.label
    instance.updated_by = actor.label
    instance.full_clean()
    if creating:
        instance.save()
    else:
        # Spend and last use belong to the gateway's batched writer: never write them back.
        skip = set() if "budget_duration" in cleaned else {"budget_reset_at"}
        instance.save(update_fields=_saved_fields(type(instance), skip))
    after = snapshot(instance, copy=False)
    if access_groups is not None:
        access_groups = list(access_groups)
        if before is not None:
            before["access_groups"] = sorted(instance.access_groups.values_list("name", flat=True))
        after["access_groups"] = sorted(group.name for group in access_groups)
        instance.access_groups.set(access_groups)
    if before is None:
        record_create(actor, instance, after)
    else:
        record_update(actor, instance, before, after)
    return instance


GATEWAY_OWNED_FIELDS = frozenset({"spend", "model_spend", "last_used_at"})


def _saved_fields(model: type[Governed], skip: set[str]) -> list[str]:
    return [
        f.name
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in GATEWAY_OWNED_FIELDS | skip
    ]


def resolve_access_groups(names: Iterable[str] | None) -> list[AccessGroup] | None:
    if names is None:
        return None
    names = list(dict.fromkeys(names))
    groups = list(AccessGroup.objects.filter(name__in=names))
    missing = sorted(set(names) - {g.name for g in groups})
    if missing:
        raise ValidationError(
            {"access_groups": [MSG_UNKNOWN_ACCESS_GROUPS.format(names=", ".join(missing))]}
        )
    return groups


def group_names(groups: list[AccessGroup] | None) -> list[str] | None:
    return None if groups is None else [group.name for group in groups]


def refuse_delete_with_children(level: Governed, count: int, children: str) -> None:
    if count:
        raise ValidationError(
            MSG_DELETE_HAS_CHILDREN.format(
                level=level.level_name, label=level.label, count=count, children=children
            ),
            code="protected",
        )


# --- users --------------------------------------------------------------------------------


def _refresh_staff(user: User, *, actor: Actor) -> None:
    is_staff = user_has_staff_role(user)
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])
        record_update(actor, user, {"is_staff": not is_staff}, {"is_staff": is_staff})


def _set_password(user: User, password: str) -> None:
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password": error.messages}) from None
    user.set_password(password)


@transaction.atomic
def user_create(
    *,
    actor: ActorLike,
    username: str,
    email: str = "",
    password: str | None = None,
    role: str = Role.INTERNAL_USER,
    id: str | None = None,
    config_managed: bool = False,
    **governance: Any,
) -> User:
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="create users"))
    check_new_id(User, id)
    cleaned = clean_governance(governance, level_name="user", parent=None)
    user = User(username=username, email=email or "", role=role, config_managed=config_managed)
    if id is not None:
        user.pk = id
    if password:
        _set_password(user, password)
    else:
        user.set_unusable_password()
    user.is_superuser = role == Role.PROXY_ADMIN
    user.is_staff = role in (Role.PROXY_ADMIN, Role.PROXY_ADMIN_VIEWER)
    save_governed(user, actor=actor, cleaned=cleaned)
    return user


@transaction.atomic
def user_update(*, actor: ActorLike, user: User, **fields: Any) -> User:
    actor = as_actor(actor)
    ensure_can(
        user,
        visible=users_visible_to(actor),
        managed=users_visible_to(actor) if actor.is_proxy_admin else User.objects.none(),
        level_name="user",
        message=MSG_PROXY_ADMIN_ONLY.format(action="change users"),
    )
    before = snapshot(user)
    for name in ("username", "email", "first_name", "last_name", "is_active"):
        if name in fields:
            setattr(user, name, fields.pop(name) or ("" if name != "is_active" else False))
    if "role" in fields:
        user.role = fields.pop("role")
        user.is_superuser = user.role == Role.PROXY_ADMIN
    if fields.get("password"):
        _set_password(user, fields.pop("password"))
    fields.pop("password", None)
    cleaned = clean_governance(fields, level_name="user", parent=None, current=user)
    user.is_staff = user_has_staff_role(user)
    save_governed(user, actor=actor, cleaned=cleaned, before=before)
    return user


def user_delete(*, actor: ActorLike, users: Iterable[User]) -> int:
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="delete users"))
    users = list(users)
    with transaction.atomic():
        record_delete(actor, users)
        return User.objects.filter(pk__in=[u.pk for u in users]).delete()[0]


# --- organizations -------------------------------------------------------------------------


@transaction.atomic
def organization_create(
    *,
    actor: ActorLike,
    alias: str,
    id: str | None = None,
    access_groups: Iterable[str] | None = None,
    config_managed: bool = False,
    **governance: Any,
) -> Organization:
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="create organizations"))
    check_new_id(Organization, id)
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(governance, level_name="organization", parent=None)
    organization = Organization(alias=alias, config_managed=config_managed)
    if id is not None:
        organization.pk = id
    save_governed(organization, actor=actor, cleaned=cleaned, access_groups=groups)
    return organization


@transaction.atomic
def organization_update(
    *,
    actor: ActorLike,
    organization: Organization,
    access_groups: Iterable[str] | None = None,
    **fields: Any,
) -> Organization:
    actor = as_actor(actor)
    ensure_can(
        organization,
        visible=organizations_visible_to(actor),
        managed=organizations_managed_by(actor)
        if actor.is_proxy_admin
        else Organization.objects.none(),
        level_name="organization",
        message=MSG_PROXY_ADMIN_ONLY.format(action="change organizations"),
    )
    before = snapshot(organization)
    if "alias" in fields:
        organization.alias = fields.pop("alias")
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(fields, level_name="organization", parent=None, current=organization)
    check_descendants_fit(organization, cleaned, access_groups=group_names(groups))
    save_governed(organization, actor=actor, cleaned=cleaned, access_groups=groups, before=before)
    return organization


@transaction.atomic
def organization_delete(*, actor: ActorLike, organizations: Iterable[Organization]) -> int:
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="delete organizations"))
    organizations = list(organizations)
    for organization in organizations:
        refuse_delete_with_children(organization, organization.teams.count(), "team(s)")
    record_delete(actor, organizations)
    return Organization.objects.filter(pk__in=[o.pk for o in organizations]).delete()[0]


def organization_member_set(
    *, actor: ActorLike, organization: Organization, user: User, role: str = OrganizationRole.MEMBER
) -> OrganizationMembership:
    """Add ``user`` to ``organization`` with ``role``, or change the role of a member."""
    actor = as_actor(actor)
    ensure_can(
        organization,
        visible=organizations_visible_to(actor),
        managed=organizations_managed_by(actor),
        level_name="organization",
        message=MSG_ORG_MEMBERS_DENIED,
    )
    with transaction.atomic():
        membership = OrganizationMembership.objects.filter(
            organization=organization, user=user
        ).first() or OrganizationMembership(organization=organization, user=user)
        before = None if membership._state.adding else snapshot(membership)
        membership.role = role
        membership.full_clean()
        membership.save()
        if before is None:
            record_create(actor, membership)
        else:
            record_update(actor, membership, before)
        _refresh_staff(user, actor=actor)
    return membership


def organization_member_remove(*, actor: ActorLike, organization: Organization, user: User) -> None:
    actor = as_actor(actor)
    ensure_can(
        organization,
        visible=organizations_visible_to(actor),
        managed=organizations_managed_by(actor),
        level_name="organization",
        message=MSG_ORG_MEMBERS_DENIED,
    )
    with transaction.atomic():
        membership = OrganizationMembership.objects.filter(
            organization=organization, user=user
        ).first()
        if membership is None:
            raise ValidationError(
                {
                    "user_id": [
                        MSG_NOT_A_MEMBER.format(
                            user=user.pk, level="organization", label=organization.alias
                        )
                    ]
                }
            )
        membership.organization, membership.user = organization, user
        membership.delete()
        record_delete(actor, [membership])
        _refresh_staff(user, actor=actor)


# --- teams -----------------------------------------------------------------------------------


@transaction.atomic
def team_create(
    *,
    actor: ActorLike,
    alias: str,
    organization: Organization | None = None,
    id: str | None = None,
    access_groups: Iterable[str] | None = None,
    members: Iterable[tuple[User, str]] = (),
    **governance: Any,
) -> Team:
    actor = as_actor(actor)
    if organization is not None:
        ensure_can(
            organization,
            visible=organizations_visible_to(actor),
            managed=organizations_managed_by(actor),
            level_name="organization",
            message=MSG_TEAM_CREATE_DENIED,
        )
    else:
        ensure_allowed(actor.is_proxy_admin, MSG_TEAM_CREATE_DENIED)
    check_new_id(Team, id)
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(
        governance, level_name="team", parent=organization, access_groups=group_names(groups)
    )
    team = Team(alias=alias, organization=organization)
    if id is not None:
        team.pk = id
    save_governed(team, actor=actor, cleaned=cleaned, access_groups=groups)
    for user, role in members:
        team_member_set(actor=actor, team=team, user=user, role=role)
    return team


@transaction.atomic
def team_update(
    *, actor: ActorLike, team: Team, access_groups: Iterable[str] | None = None, **fields: Any
) -> Team:
    actor = as_actor(actor)
    ensure_can(
        team,
        visible=teams_visible_to(actor),
        managed=teams_governed_by(actor),
        level_name="team",
        message=MSG_TEAM_GOVERN_DENIED,
    )
    before = snapshot(team)
    if "alias" in fields:
        team.alias = fields.pop("alias")
    target = team.organization
    if "organization" in fields and fields["organization"] != team.organization:
        target = fields.pop("organization")
        if target is not None:
            ensure_can(
                target,
                visible=organizations_visible_to(actor),
                managed=organizations_managed_by(actor),
                level_name="organization",
                message=MSG_TEAM_GOVERN_DENIED,
            )
        else:
            ensure_allowed(actor.is_proxy_admin, MSG_TEAM_GOVERN_DENIED)
        # Re-check the team's own settings against its new organization.
        for name in ("models", "max_budget", "rpm_limit", "tpm_limit"):
            fields.setdefault(name, getattr(team, name))
    fields.pop("organization", None)
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(
        fields, level_name="team", parent=target, current=team, access_groups=group_names(groups)
    )
    check_descendants_fit(team, cleaned, access_groups=group_names(groups), parent=target)
    team.organization = target
    save_governed(team, actor=actor, cleaned=cleaned, access_groups=groups, before=before)
    return team


@transaction.atomic
def team_delete(*, actor: ActorLike, teams: Iterable[Team]) -> int:
    actor = as_actor(actor)
    teams = list(teams)
    for team in teams:
        ensure_can(
            team,
            visible=teams_visible_to(actor),
            managed=teams_governed_by(actor),
            level_name="team",
            message=MSG_TEAM_GOVERN_DENIED,
        )
    for team in teams:
        refuse_delete_with_children(team, team.projects.count(), "project(s)")
        refuse_delete_with_children(team, team.keys.count(), "key(s)")
    record_delete(actor, teams)
    return Team.objects.filter(pk__in=[t.pk for t in teams]).delete()[0]


def team_member_set(
    *, actor: ActorLike, team: Team, user: User, role: str = TeamRole.MEMBER
) -> TeamMembership:
    """Add ``user`` to ``team`` with ``role`` (LiteLLM's ``user`` means member), or change it."""
    actor = as_actor(actor)
    ensure_can(
        team,
        visible=teams_visible_to(actor),
        managed=teams_managed_by(actor),
        level_name="team",
        message=MSG_TEAM_MEMBERS_DENIED,
    )
    role = TeamRole.MEMBER if role == "user" else role
    with transaction.atomic():
        membership = TeamMembership.objects.filter(team=team, user=user).first() or TeamMembership(
            team=team, user=user
        )
        before = None if membership._state.adding else snapshot(membership)
        membership.team, membership.role = team, role
        membership.full_clean()
        membership.save()
        if before is None:
            record_create(actor, membership)
        else:
            record_update(actor, membership, before)
        _refresh_staff(user, actor=actor)
    return membership


def team_member_remove(*, actor: ActorLike, team: Team, user: User) -> None:
    actor = as_actor(actor)
    ensure_can(
        team,
        visible=teams_visible_to(actor),
        managed=teams_managed_by(actor),
        level_name="team",
        message=MSG_TEAM_MEMBERS_DENIED,
    )
    with transaction.atomic():
        membership = TeamMembership.objects.filter(team=team, user=user).first()
        if membership is None:
            raise ValidationError(
                {"user_id": [MSG_NOT_A_MEMBER.format(user=user.pk, level="team", label=team.alias)]}
            )
        membership.team, membership.user = team, user
        membership.delete()
        record_delete(actor, [membership])
        _refresh_staff(user, actor=actor)


# --- catalog and access groups -------------------------------------------------------------

ACCESS_GROUP_FIELDS = ("name", "description", "models", "mcp_servers", "agents")
CATALOG_FIELDS = (
    "name",
    "mode",
    "provider",
    "upstream_model",
    "api_base",
    "api_key_env",
    "input_cost_per_token",
    "output_cost_per_token",
    "max_output_tokens",
)


def _save_stamped(
    instance: CatalogModel | AccessGroup,
    *,
    actor: Actor,
    fields: Mapping[str, Any],
    allowed: Iterable[str],
) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in unknown})
    before = None if instance._state.adding else snapshot(instance)
    for name, value in fields.items():
        setattr(instance, name, value)
    if before is None:
        instance.created_by = actor.label
    instance.updated_by = actor.label
    instance.full_clean()
    instance.save()
    if before is None:
        record_create(actor, instance)
    else:
        record_update(actor, instance, before)


@transaction.atomic
def catalog_model_create(
    *, actor: ActorLike, id: str | None = None, config_managed: bool = False, **fields: Any
) -> CatalogModel:
    actor = as_actor(actor)
    ensure_allowed(
        actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="change the model catalog")
    )
    check_new_id(CatalogModel, id)
    model = CatalogModel(config_managed=config_managed)
    if id is not None:
        model.pk = id
    _save_stamped(model, actor=actor, fields=fields, allowed=CATALOG_FIELDS)
    return model


@transaction.atomic
def catalog_model_update(*, actor: ActorLike, model: CatalogModel, **fields: Any) -> CatalogModel:
    actor = as_actor(actor)
    ensure_allowed(
        actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="change the model catalog")
    )
    _save_stamped(model, actor=actor, fields=fields, allowed=CATALOG_FIELDS)
    return model


@transaction.atomic
def catalog_model_delete(*, actor: ActorLike, models: Iterable[CatalogModel]) -> int:
    actor = as_actor(actor)
    ensure_allowed(
        actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="change the model catalog")
    )
    models = list(models)
    record_delete(actor, models)
    return CatalogModel.objects.filter(pk__in=[m.pk for m in models]).delete()[0]


def _clean_group_models(fields: dict[str, Any]) -> None:
    if "models" in fields:
        fields["models"] = clean_governance(
            {"models": fields["models"]}, level_name="access group", parent=None
        )["models"]


@transaction.atomic
def access_group_create(
    *, actor: ActorLike, id: str | None = None, config_managed: bool = False, **fields: Any
) -> AccessGroup:
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="change access groups"))
    check_new_id(AccessGroup, id)
    group = AccessGroup(config_managed=config_managed)
    if id is not None:
        group.pk = id
    _clean_group_models(fields)
    _save_stamped(group, actor=actor, fields=fields, allowed=ACCESS_GROUP_FIELDS)
    return group


@transaction.atomic
def access_group_update(*, actor: ActorLike, group: AccessGroup, **fields: Any) -> AccessGroup:
    """Change a group; refused when a level using it would no longer fit its hierarchy."""
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="change access groups"))
    if fields.get("name", group.name) != group.name:
        named = levels_naming_access_group(group.name)
        if named:
            raise ValidationError(
                {
                    "name": [
                        MSG_GROUP_IN_USE.format(
                            group=group.name, level=lvl.level_name, label=lvl.label
                        )
                        for lvl in named
                    ]
                }
            )
    _clean_group_models(fields)
    _save_stamped(group, actor=actor, fields=fields, allowed=ACCESS_GROUP_FIELDS)
    if "models" in fields:
        check_levels_fit(levels_using_access_group(group))
    return group


@transaction.atomic
def access_group_delete(*, actor: ActorLike, groups: Iterable[AccessGroup]) -> int:
    """Refused while a level uses the group: deleting it would widen that level's models."""
    actor = as_actor(actor)
    ensure_allowed(actor.is_proxy_admin, MSG_PROXY_ADMIN_ONLY.format(action="change access groups"))
    groups = list(groups)
    errors = [
        MSG_GROUP_IN_USE.format(group=group.name, level=level.level_name, label=level.label)
        for group in groups
        for level in levels_using_access_group(group)
    ]
    if errors:
        raise ValidationError(errors, code="protected")
    record_delete(actor, groups)
    return AccessGroup.objects.filter(pk__in=[g.pk for g in groups]).delete()[0]


# --- batches: many new levels under the rules above, in a few queries (manage.py apply) -----

BATCH_SIZE = 1_000


class BatchValidationError(ValidationError):
    """Some items of a batch write are invalid: ``by_item`` maps each one's index to its
    ValidationError. Nothing of the batch was written."""

    def __init__(self, by_item: Mapping[int, ValidationError]) -> None:
        self.by_item = dict(by_item)
        super().__init__([message for error in self.by_item.values() for message in error.messages])


def access_groups_by_name(items: Iterable[Mapping[str, Any]]) -> dict[str, AccessGroup]:
    """The access groups that the items of a batch name, in one query."""
    names = {name for item in items for name in item.get("access_groups") or ()}
    return {group.name: group for group in AccessGroup.objects.filter(name__in=names)}


def pick_access_groups(
    names: Iterable[str] | None, known: Mapping[str, AccessGroup]
) -> list[AccessGroup]:
    """``resolve_access_groups`` against groups loaded once for a batch."""
    names = list(dict.fromkeys(names or ()))
    missing = sorted(set(names) - set(known))
    if missing:
        raise ValidationError(
            {"access_groups": [MSG_UNKNOWN_ACCESS_GROUPS.format(names=", ".join(missing))]}
        )
    return [known[name] for name in names]


def unique_violation(instance: Model, constraint: str, field: str) -> ValidationError:
    """The message ``full_clean`` gives when ``instance`` breaks the unique ``constraint`` (a
    constraint's name, or a unique field's name), under ``field``."""
    model = type(instance)
    named = [c for c in model._meta.constraints if getattr(c, "name", None) == constraint]
    if named and isinstance(named[0], UniqueConstraint):
        unique = named[0]
        if unique.violation_error_message != unique.default_violation_error_message:
            message = unique.get_violation_error_message()
        else:
            message = instance.unique_error_message(model, unique.fields).messages[0]
    else:
        message = instance.unique_error_message(model, (constraint,)).messages[0]
    return ValidationError({field: [message]})


def build_governed(
    level: Governed,
    *,
    actor: Actor,
    governance: Mapping[str, Any],
    parent: Governed | None,
    catalog: Catalog,
    groups: list[AccessGroup],
    config_managed: bool,
) -> Governed:
    """A new level checked as the create services check it (``clean_governance`` against its
    parent chain, then ``full_clean``) and stamped as ``save_governed`` stamps it, not saved.
    Uniqueness is left to the batch, which checks it for all its items in one query, and so
    is the existence of the parents (the batch holds them, loaded and checked once); the
    check constraints hold already (``clean_governance`` enforces the budget rules and
    ``full_clean`` the non-empty names)."""
    cleaned = clean_governance(
        governance,
        level_name=level.level_name,
        parent=parent,
        catalog=catalog,
        access_groups=[group.name for group in groups],
    )
    for name, value in cleaned.items():
        setattr(level, name, value)
    level.budget_reset_at = (
        next_budget_reset(level.budget_duration, timezone.now()) if level.budget_duration else None
    )
    level.created_by = level.updated_by = actor.label
    level.config_managed = config_managed
    relations = [field.name for field in level._meta.concrete_fields if field.is_relation]
    level.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)
    return level


def insert_governed(
    model: type[Governed], built: list[tuple[Governed, list[AccessGroup]]], *, actor: Actor
) -> None:
    """Insert levels made by ``build_governed`` with their access groups, record each in the
    audit log, and tell the gateways once the transaction commits."""
    model._default_manager.bulk_create([level for level, _ in built], batch_size=BATCH_SIZE)
    through = model.access_groups.through
    column = f"{model._meta.model_name}_id"
    through._default_manager.bulk_create(
        [
            through(**{column: level.pk, "accessgroup_id": group.pk})
            for level, groups in built
            for group in groups
        ],
        batch_size=BATCH_SIZE,
    )
    with recording_in_bulk():
        for level, groups in built:
            after = snapshot(level)
            if groups:
                after["access_groups"] = sorted(group.name for group in groups)
            record_create(actor, level, after)
    announce(model.level_name, [level.pk for level, _ in built])


@transaction.atomic
def team_create_many(
    *, actor: ActorLike, teams: Sequence[Mapping[str, Any]], config_managed: bool = False
) -> list[Team]:
    """Create many teams under ``team_create``'s rules in a few queries. Each item holds
    ``team_create``'s arguments except ``id`` and ``members`` (add members with
    ``team_member_set``). Raises ``BatchValidationError`` naming every invalid item; then
    nothing is written."""
    actor = as_actor(actor)
    organizations = list(
        {
            item["organization"].pk: item["organization"]
            for item in teams
            if item.get("organization")
        }.values()
    )
    ensure_can_all(
        organizations,
        visible=organizations_visible_to(actor),
        managed=organizations_managed_by(actor),
        level_name="organization",
        message=MSG_TEAM_CREATE_DENIED,
    )
    if any(item.get("organization") is None for item in teams):
        ensure_allowed(actor.is_proxy_admin, MSG_TEAM_CREATE_DENIED)
    by_pk = {organization.pk: organization for organization in organizations}
    prefetch_related_objects(organizations, "access_groups")
    catalog = Catalog.load()
    groups = access_groups_by_name(teams)
    taken = set(
        Team.objects.filter(alias__in={item["alias"] for item in teams}).values_list(
            "organization_id", "alias"
        )
    )
    built: list[tuple[Governed, list[AccessGroup]]] = []
    errors: dict[int, ValidationError] = {}
    for index, item in enumerate(teams):
        fields = dict(item)
        organization = fields.pop("organization", None)
        parent = by_pk[organization.pk] if organization is not None else None
        team = Team(alias=fields.pop("alias"), organization=parent)
        try:
            chosen = pick_access_groups(fields.pop("access_groups", None), groups)
            build_governed(
                team,
                actor=actor,
                governance=fields,
                parent=parent,
                catalog=catalog,
                groups=chosen,
                config_managed=config_managed,
            )
            if (team.organization_id, team.alias) in taken:
                raise unique_violation(
                    team,
                    "hierarchy_team_alias_unique_in_organization"
                    if parent is not None
                    else "hierarchy_team_alias_unique_without_organization",
                    "alias",
                )
        except ValidationError as error:
            errors[index] = error
            continue
        taken.add((team.organization_id, team.alias))
        built.append((team, chosen))
    if errors:
        raise BatchValidationError(errors)
    insert_governed(Team, built, actor=actor)
    return [team for team, _ in built]  # type: ignore[misc]
