"""Reads of virtual keys, scoped to the caller (Decision 10)."""

from __future__ import annotations

from datetime import datetime

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


def key_refusal(
    *, blocked: bool, expires: datetime | None, user_active: bool, now: datetime
) -> str | None:
    """Why a key found by its hash must not be used now, or None. The one rule that the
    management API's authentication and the gateway both apply."""
    if blocked:
        return MSG_KEY_BLOCKED
    if expires is not None and expires <= now:
        return MSG_KEY_EXPIRED.format(expires=expires.isoformat())
    if not user_active:
        return MSG_KEY_USER_INACTIVE
    return None


def key_by_plaintext(plaintext: str) -> VirtualKey:
    """The key for a presented secret (one indexed lookup by its SHA-256), if usable now."""
    from keys.services import hash_key

    key = VirtualKey.objects.select_related("user").filter(token_hash=hash_key(plaintext)).first()
    if key is None:
        raise KeyRejected(MSG_KEY_INVALID)
    refusal = key_refusal(
        blocked=key.blocked,
        expires=key.expires,
        user_active=key.user is None or key.user.is_active,
        now=timezone.now(),
    )
    if refusal is not None:
        raise KeyRejected(refusal)
    return key
