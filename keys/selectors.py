"""Reads of virtual keys, scoped to the caller (Decision 10)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

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


MSG_KEY_INVALID = "Invalid API key."
MSG_KEY_BLOCKED = "This key is blocked."
MSG_KEY_EXPIRED = "This key expired at {expires}."
MSG_KEY_USER_INACTIVE = "This key's user is deactivated."


class KeyRejected(Exception):
    """A presented key that must not authenticate; the message says why."""


def key_by_plaintext(plaintext: str) -> VirtualKey:
    """The key for a presented secret (one indexed lookup by its SHA-256), if usable now."""
    from keys.services import hash_key

    key = VirtualKey.objects.select_related("user").filter(token_hash=hash_key(plaintext)).first()
    if key is None:
        raise KeyRejected(MSG_KEY_INVALID)
    if key.blocked:
        raise KeyRejected(MSG_KEY_BLOCKED)
    if key.expires is not None and key.expires <= timezone.now():
        raise KeyRejected(MSG_KEY_EXPIRED.format(expires=key.expires.isoformat()))
    if key.user is not None and not key.user.is_active:
        raise KeyRejected(MSG_KEY_USER_INACTIVE)
    return key
