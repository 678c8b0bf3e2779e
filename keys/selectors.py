"""Reads of virtual keys, scoped to the caller (Decision 10)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from hierarchy.actors import ActorLike, as_actor
from hierarchy.selectors import teams_managed_by
from keys.models import VirtualKey


def keys_visible_to(actor: ActorLike) -> QuerySet[VirtualKey]:
    """Everything for proxy admins and viewers; the keys of managed teams; one's own keys."""
    actor = as_actor(actor)
    if actor.can_read_everything:
        return VirtualKey.objects.all()
    if actor.user is None:
        return VirtualKey.objects.none()
    return VirtualKey.objects.filter(
        Q(team__in=teams_managed_by(actor).values("pk")) | Q(user=actor.user)
    )


def keys_managed_by(actor: ActorLike) -> QuerySet[VirtualKey]:
    actor = as_actor(actor)
    if actor.is_proxy_admin:
        return VirtualKey.objects.all()
    if actor.user is None:
        return VirtualKey.objects.none()
    return VirtualKey.objects.filter(
        Q(team__in=teams_managed_by(actor).values("pk")) | Q(user=actor.user, team__isnull=True)
    )


def key_list(actor: ActorLike) -> QuerySet[VirtualKey]:
    return keys_visible_to(actor).select_related("project", "team", "user")
