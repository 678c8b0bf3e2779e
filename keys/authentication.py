"""``Authorization: Bearer <key>`` for the management API (the master key or a virtual key)."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from hierarchy.actors import MASTER_KEY, Actor
from keys.selectors import KeyRejected, key_by_plaintext

MSG_BAD_HEADER = "Send your key as 'Authorization: Bearer <key>'."


def master_key_matches(presented: str) -> bool:
    master = settings.GATEHOUSE_MASTER_KEY
    return bool(master) and hmac.compare_digest(presented.encode(), master.encode())


class BearerKeyAuthentication(BaseAuthentication):
    """The master key acts as proxy admin; a virtual key acts as the user who owns it."""

    def authenticate(self, request: Request) -> tuple[Actor, Any] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        scheme, _, presented = header.decode(errors="replace").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise AuthenticationFailed(MSG_BAD_HEADER)
        if master_key_matches(presented):
            return MASTER_KEY, None
        try:
            key = key_by_plaintext(presented)
        except KeyRejected as rejected:
            raise AuthenticationFailed(str(rejected)) from None
        return Actor(user=key.user, key_id=key.pk), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="gatehouse"'
