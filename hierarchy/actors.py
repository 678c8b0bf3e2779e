"""Who does a write (Decision 9): a user, a key acting for its user, or the system."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from hierarchy.models import User


@dataclass(frozen=True)
class Actor:
    """The caller of a service. ``user`` is None for the system and the master key."""

    user: User | None = None
    key_id: str | None = None
    system: bool = False
    master_key: bool = False

    @property
    def label(self) -> str:
        """What created_by / updated_by store: never a secret."""
        if self.key_id:
            return f"key:{self.key_id}"
        if self.user is not None:
            return str(self.user.pk)
        return "master_key" if self.master_key else "system"

    @property
    def is_authenticated(self) -> bool:
        return self.system or self.user is not None or self.key_id is not None

    @property
    def pk(self) -> str:
        return self.label

    @property
    def is_proxy_admin(self) -> bool:
        return self.system or (self.user is not None and self.user.is_proxy_admin)

    @property
    def can_read_everything(self) -> bool:
        return self.system or (self.user is not None and self.user.can_read_everything)


SYSTEM = Actor(system=True)
MASTER_KEY = Actor(system=True, master_key=True)

ActorLike = Union["User", "AnonymousUser", Actor]


def as_actor(actor: ActorLike) -> Actor:
    """Services take a user (as the admin's ``request.user``) or an explicit Actor."""
    if isinstance(actor, Actor):
        return actor
    if not actor.is_authenticated:
        return Actor()
    return Actor(user=actor)  # type: ignore[arg-type]
