"""Tell every gateway process that the configuration changed (keys, limits, catalog).

Any committed change to a governed object, a membership, the catalog or an access group is
noted in a journal in Redis (``REDIS_URL``): a stream whose newest entry id is the
configuration's version. An entry names the keys that changed, or says that anything may
have (``EVERYTHING``); a gateway re-reads just those keys, or everything. Without Redis, or
when Redis cannot be reached, a version in this process moves instead: this process re-reads
everything, the other processes within their periodic full reload (30 s). The next entry this
process gets into Redis says ``EVERYTHING``, which may bring that forward. This is cache
invalidation only; no rule lives here.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Collection
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

logger = logging.getLogger(__name__)

JOURNAL_KEY = "gatehouse:config:changes"
JOURNAL_LENGTH = 10_000  # entries Redis keeps (about): a gateway further behind reloads all
EVERYTHING = "*"
KEYS_PER_ENTRY = 100  # more keys changed at once: one entry saying EVERYTHING
_local = {"version": 0, "unpublished": 0}  # ... changes Redis did not take
_lock = threading.Lock()
_redis: Any = None


def _redis_client() -> Any:
    global _redis
    if _redis is None and settings.REDIS_URL:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        _redis = redis.Redis.from_url(  # no retries: a commit waits for this
            settings.REDIS_URL,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
    return _redis


def publish(key_ids: Collection[str] | None = None) -> None:
    """Announce a committed change: of these keys only, or of anything (``None``)."""
    client = _redis_client()
    if client is not None:
        with _lock:  # changes Redis missed: this entry says EVERYTHING for them
            missed, _local["unpublished"] = _local["unpublished"], 0
        entry: dict[str, str | bytes] = {"keys": EVERYTHING}
        if key_ids is not None and len(key_ids) <= KEYS_PER_ENTRY and not missed:
            entry = {"keys": orjson.dumps(sorted(key_ids))}
        try:
            client.xadd(JOURNAL_KEY, entry, maxlen=JOURNAL_LENGTH, approximate=True)
            return
        except Exception:
            logger.warning("Could not publish a configuration change to Redis.", exc_info=True)
            with _lock:
                _local["unpublished"] += missed + 1
    with _lock:
        _local["version"] += 1


def local_version() -> int:
    return _local["version"]


def journal_entry(fields: Any) -> frozenset[str] | None:
    """The key ids a journal entry (as Redis returns its fields) names; ``None``: anything."""
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    keys = values.get(b"keys", EVERYTHING.encode())
    return None if keys == EVERYTHING.encode() else frozenset(orjson.loads(keys))


def _announces(kwargs: dict[str, Any]) -> bool:
    """Whether a signal tells of a change a gateway reads: ``m2m_changed`` also fires before
    the change, and a login saves only ``last_login``."""
    if not kwargs.get("action", "post_").startswith("post_"):
        return False
    return kwargs.get("update_fields") != frozenset({"last_login"})


def announce(level_name: str, ids: Collection[str]) -> None:
    """Once the transaction commits, announce a change of these levels: keys by their ids,
    any other level as a change of anything (its keys' chains change with it)."""
    if level_name == "key":
        transaction.on_commit(functools.partial(publish, list(ids)))
    else:
        transaction.on_commit(publish)


def _changed(sender: Any, **kwargs: Any) -> None:
    if _announces(kwargs):
        transaction.on_commit(publish)


def _key_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _announces(kwargs):
        announce("key", [instance.pk])


def _key_groups_changed(sender: Any, instance: Any, reverse: bool, **kwargs: Any) -> None:
    if reverse:  # a group's keys: which ones is not worth working out
        _changed(sender, **kwargs)
    else:
        _key_changed(sender, instance, **kwargs)


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

    governed = (Organization, Team, Project, User)
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
    post_save.connect(_key_changed, sender=VirtualKey, dispatch_uid="gatehouse-change-save-key")
    post_delete.connect(_key_changed, sender=VirtualKey, dispatch_uid="gatehouse-change-delete-key")
    m2m_changed.connect(
        _key_groups_changed,
        sender=VirtualKey.access_groups.through,
        dispatch_uid="gatehouse-change-groups-key",
    )
