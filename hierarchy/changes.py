"""Tell every gateway process that the configuration changed (keys, limits, catalog).

Any committed change to a governed object, a membership, the catalog or an access group
bumps a version: in this process at once, and in Redis (``REDIS_URL``) for the others,
which reload within a second. This is cache invalidation only; no rule lives here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

logger = logging.getLogger(__name__)

VERSION_KEY = "gatehouse:config:version"
_local = {"version": 0}
_lock = threading.Lock()
_redis: Any = None


def _redis_client() -> Any:
    global _redis
    if _redis is None and settings.REDIS_URL:
        import redis

        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
    return _redis


def publish() -> None:
    with _lock:
        _local["version"] += 1
    client = _redis_client()
    if client is not None:
        try:
            client.incr(VERSION_KEY)
        except Exception:  # Redis down: the gateways' periodic reload catches up
            logger.warning("Could not publish a configuration change to Redis.", exc_info=True)


def local_version() -> int:
    return _local["version"]


def _changed(sender: Any, **kwargs: Any) -> None:
    transaction.on_commit(publish)


def connect_signals() -> None:
    from hierarchy.models import (
        AccessGroup,
        CatalogModel,
        Organization,
        OrganizationMembership,
        Team,
        TeamMembership,
        User,
    )
    from keys.models import VirtualKey
    from projects.models import Project

    governed = (Organization, Team, Project, VirtualKey, User)
    for model in (*governed, OrganizationMembership, TeamMembership, CatalogModel, AccessGroup):
        post_save.connect(
            _changed, sender=model, dispatch_uid=f"gatehouse-change-save-{model.__name__}"
        )
        post_delete.connect(
            _changed, sender=model, dispatch_uid=f"gatehouse-change-delete-{model.__name__}"
        )
    for model in governed:
        m2m_changed.connect(
            _changed,
            sender=model.access_groups.through,
            dispatch_uid=f"gatehouse-change-groups-{model.__name__}",
        )
