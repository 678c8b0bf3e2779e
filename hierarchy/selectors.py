"""Reads of users, organizations, teams and the catalog, scoped to the caller (Decision 10).

``*_visible_to`` decides what a caller may see (everything else is a 404);
``*_managed_by`` what it may change (visible but not managed is a 403).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from hierarchy.actors import ActorLike, as_actor
from hierarchy.models import (
    AccessGroup,
    AuditEntry,
    CatalogModel,
    Organization,
    OrganizationMembership,
    OrganizationRole,
    Role,
    Team,
    TeamMembership,
    TeamRole,
    User,
)


def _admin_org_ids(user: User) -> QuerySet[OrganizationMembership, Any]:
    return OrganizationMembership.objects.filter(user=user, role=OrganizationRole.ORG_ADMIN).values(
        "organization_id"
    )


def _team_ids(user: User, *, admin_only: bool = False) -> QuerySet[TeamMembership, Any]:
    memberships = TeamMembership.objects.filter(user=user)
    if admin_only:
        memberships = memberships.filter(role=TeamRole.ADMIN)
    return memberships.values("team_id")


def organizations_visible_to(actor: ActorLike) -> QuerySet[Organization]:
    actor = as_actor(actor)
    if actor.can_read_everything:
        return Organization.objects.all()
    if actor.user is None:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=actor.user).distinct()


def organizations_managed_by(actor: ActorLike) -> QuerySet[Organization]:
    """Organizations whose teams the caller manages (proxy admins: all; org admins: theirs)."""
    actor = as_actor(actor)
    if actor.is_proxy_admin:
        return Organization.objects.all()
    if actor.user is None:
        return Organization.objects.none()
    return Organization.objects.filter(pk__in=_admin_org_ids(actor.user))


def teams_visible_to(actor: ActorLike) -> QuerySet[Team]:
    actor = as_actor(actor)
    if actor.can_read_everything:
        return Team.objects.all()
    if actor.user is None:
        return Team.objects.none()
    return Team.objects.filter(
        Q(pk__in=_team_ids(actor.user)) | Q(organization__in=_admin_org_ids(actor.user))
    )


def teams_governed_by(actor: ActorLike) -> QuerySet[Team]:
    """Teams whose models, budgets and limits the caller may change (Decision 11)."""
    actor = as_actor(actor)
    if actor.is_proxy_admin:
        return Team.objects.all()
    if actor.user is None:
        return Team.objects.none()
    return Team.objects.filter(organization__in=_admin_org_ids(actor.user))


def teams_managed_by(actor: ActorLike) -> QuerySet[Team]:
    """Teams whose projects, keys and members the caller manages."""
    actor = as_actor(actor)
    if actor.is_proxy_admin:
        return Team.objects.all()
    if actor.user is None:
        return Team.objects.none()
    return Team.objects.filter(
        Q(pk__in=_team_ids(actor.user, admin_only=True))
        | Q(organization__in=_admin_org_ids(actor.user))
    )


def users_visible_to(actor: ActorLike) -> QuerySet[User]:
    actor = as_actor(actor)
    if actor.can_read_everything:
        return User.objects.all()
    if actor.user is None:
        return User.objects.none()
    managed_teams = teams_managed_by(actor).values("pk")
    return User.objects.filter(
        Q(pk=actor.user.pk)
        | Q(team_memberships__team__in=managed_teams)
        | Q(organization_memberships__organization__in=_admin_org_ids(actor.user))
    ).distinct()


def catalog_models_visible_to(actor: ActorLike) -> QuerySet[CatalogModel]:
    return CatalogModel.objects.all()


def access_groups_visible_to(actor: ActorLike) -> QuerySet[AccessGroup]:
    actor = as_actor(actor)
    if actor.can_read_everything:
        return AccessGroup.objects.all()
    return AccessGroup.objects.none()


def user_has_staff_role(user: User) -> bool:
    """Admin access follows from an admin or viewer role at any level (Decision 3)."""
    if user.is_superuser or user.role in (Role.PROXY_ADMIN, Role.PROXY_ADMIN_VIEWER):
        return True
    return (
        OrganizationMembership.objects.filter(user=user, role=OrganizationRole.ORG_ADMIN).exists()
        or TeamMembership.objects.filter(user=user, role=TeamRole.ADMIN).exists()
    )


def audit_entries_visible_to(actor: ActorLike) -> QuerySet[AuditEntry]:
    """Proxy admins and viewers read the whole audit log; organization admins the entries of
    their organizations (the organization, its members, teams, team members, projects and
    keys, as placed when the change was made); everyone else nothing."""
    actor = as_actor(actor)
    if actor.can_read_everything:
        return AuditEntry.objects.all()
    if actor.user is None:
        return AuditEntry.objects.none()
    return AuditEntry.objects.filter(organization_id__in=_admin_org_ids(actor.user))


def audit_log_readable_by(actor: ActorLike) -> bool:
    """Whether the audit log has anything for the caller (the admin shows it or hides it)."""
    actor = as_actor(actor)
    if actor.can_read_everything:
        return True
    return actor.user is not None and _admin_org_ids(actor.user).exists()
