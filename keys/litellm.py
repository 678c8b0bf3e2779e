"""LiteLLM-compatible /key/* endpoints. The plaintext appears only in generate/regenerate."""

from __future__ import annotations

import math
import re
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import StrictSerializer
from config.api_fields import GovernanceInput, id_field
from config.litellm import budget_fields, lift_per_model_limits, litellm_view, page_bounds, parse
from hierarchy.access import NotFound, get_visible
from hierarchy.actors import Actor, as_actor
from hierarchy.selectors import teams_visible_to, users_visible_to
from keys.models import VirtualKey
from keys.selectors import key_list, keys_visible_to
from keys.services import (
    hash_key,
    key_delete,
    key_generate,
    key_regenerate,
    key_set_blocked,
    key_update,
)
from projects.selectors import projects_visible_to

NO_STORE = {"Cache-Control": "no-store"}
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MSG_KEY_NOT_FOUND = "Key not found."
MSG_KEY_OR_ALIAS = "Send key or key_alias."


class KeyUpdateRequest(GovernanceInput):
    key = serializers.CharField(required=False, max_length=256)
    key_alias = serializers.CharField(required=False, allow_null=True, max_length=200)
    duration = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=16
    )
    project_id = serializers.CharField(required=False, allow_null=True, max_length=128)


class KeyGenerateRequest(GovernanceInput):
    key = serializers.CharField(required=False, max_length=256)
    key_alias = serializers.CharField(required=False, allow_null=True, max_length=200)
    duration = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=16
    )
    project_id = serializers.CharField(required=False, allow_null=True, max_length=128)
    team_id = serializers.CharField(required=False, allow_null=True, max_length=128)
    user_id = serializers.CharField(required=False, allow_null=True, max_length=128)
    key_id = id_field()


class KeyRef(StrictSerializer):
    key = serializers.CharField(max_length=256)


class KeyRegenerateRequest(KeyRef):
    new_key = serializers.CharField(required=False, max_length=256)


class KeyDeleteRequest(StrictSerializer):
    keys = serializers.ListField(
        child=serializers.CharField(max_length=256), required=False, max_length=1000
    )
    key_aliases = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=1000
    )


def key_to_litellm(key: VirtualKey) -> dict[str, Any]:
    return {
        "token": key.token_hash,
        "key_id": key.pk,
        "key_name": key.key_name,
        "key_alias": key.key_alias,
        "expires": key.expires,
        "last_used_at": key.last_used_at,
        "user_id": key.user_id,
        "team_id": key.team_id,
        "project_id": key.project_id,
        "access_groups": [group.name for group in key.access_groups.all()],
        **budget_fields(key),
    }


def with_secret(key: VirtualKey, plaintext: str) -> Response:
    return Response({"key": plaintext, **key_to_litellm(key)}, headers=NO_STORE)


def find_key(actor: Actor, reference: str) -> VirtualKey:
    """A key by its plaintext or its SHA-256 hex, among the caller's; never echoes the secret."""
    token_hash = reference if SHA256_HEX.match(reference) else hash_key(reference)
    key = keys_visible_to(actor).filter(token_hash=token_hash).first()
    if key is None:
        raise NotFound(MSG_KEY_NOT_FOUND)
    return key


def _resolve(actor: Actor, values: dict[str, Any]) -> dict[str, Any]:
    lift_per_model_limits(values)
    for field, name, visible in (
        ("project_id", "project", projects_visible_to),
        ("team_id", "team", teams_visible_to),
        ("user_id", "user", users_visible_to),
    ):
        if field in values:
            pk = values.pop(field)
            values[name] = get_visible(visible(actor), pk, name) if pk is not None else None
    if "key_id" in values:
        values["id"] = values.pop("key_id")
    return values


@litellm_view(["POST"])
def key_generate_view(request: Request) -> Response:
    actor = as_actor(request.user)
    values = _resolve(actor, parse(KeyGenerateRequest, request.data))
    key, plaintext = key_generate(actor=actor, **values)
    return with_secret(key, plaintext)


@litellm_view(["POST"])
def key_update_view(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(KeyUpdateRequest, request.data)
    reference = values.pop("key", None)
    if reference is not None:
        key = find_key(actor, reference)
    elif values.get("key_alias"):
        key = _by_alias(actor, values.pop("key_alias"))
    else:
        raise serializers.ValidationError({"key": [MSG_KEY_OR_ALIAS]})
    return Response(key_to_litellm(key_update(actor=actor, key=key, **_resolve(actor, values))))


def _by_alias(actor: Actor, alias: str) -> VirtualKey:
    key = keys_visible_to(actor).filter(key_alias=alias).first()
    if key is None:
        raise NotFound(MSG_KEY_NOT_FOUND)
    return key


@litellm_view(["GET"])
def key_info(request: Request) -> Response:
    actor = as_actor(request.user)
    reference = request.query_params.get("key")
    if reference:
        key = find_key(actor, reference)
    elif actor.key_id:
        key = get_visible(keys_visible_to(actor), actor.key_id, "key")  # the caller's own key
    else:
        raise serializers.ValidationError({"key": ["key is required."]})
    return Response({"key": key.token_hash, "info": key_to_litellm(key)})


def _filtered(actor: Actor, request: Request) -> QuerySet[VirtualKey]:
    keys = key_list(actor).prefetch_related("access_groups")
    for param, field in (
        ("team_id", "team_id"),
        ("project_id", "project_id"),
        ("user_id", "user_id"),
        ("key_alias", "key_alias"),
    ):
        value = request.query_params.get(param)
        if value:
            keys = keys.filter(**{field: value})
    return keys.order_by("-created_at", "id")


@litellm_view(["GET"])
def key_list_view(request: Request) -> Response:
    """``{keys, total_count, current_page, total_pages}``; hashes unless return_full_object."""
    actor = as_actor(request.user)
    page, size = page_bounds(request)
    keys = _filtered(actor, request)
    total = keys.count()
    rows = list(keys[(page - 1) * size : page * size])
    full = request.query_params.get("return_full_object", "").lower() == "true"
    return Response(
        {
            "keys": [key_to_litellm(k) for k in rows] if full else [k.token_hash for k in rows],
            "total_count": total,
            "current_page": page,
            "total_pages": max(1, math.ceil(total / size)),
        }
    )


@litellm_view(["POST", "DELETE"])
def key_delete_view(request: Request) -> Response:
    """All or nothing: every key is found and checked before any is deleted."""
    actor = as_actor(request.user)
    values = parse(KeyDeleteRequest, request.data)
    if not values.get("keys") and not values.get("key_aliases"):
        raise serializers.ValidationError({"keys": [MSG_KEY_OR_ALIAS]})
    keys = [find_key(actor, ref) for ref in values.get("keys", [])]
    keys += [_by_alias(actor, alias) for alias in values.get("key_aliases", [])]
    unique = list({k.pk: k for k in keys}.values())
    key_delete(actor=actor, keys=unique)
    return Response({"deleted_keys": values.get("keys", []) + values.get("key_aliases", [])})


@litellm_view(["POST"])
def key_regenerate_view(request: Request, key: str | None = None) -> Response:
    actor = as_actor(request.user)
    data: Any = request.data
    if key is not None:  # /key/{key}/regenerate
        data = {**data, "key": key} if isinstance(data, dict) else data
    values = parse(KeyRegenerateRequest, data)
    target = find_key(actor, values["key"])
    regenerated, plaintext = key_regenerate(actor=actor, key=target, new_key=values.get("new_key"))
    return with_secret(regenerated, plaintext)


def _set_blocked(request: Request, blocked: bool) -> Response:
    actor = as_actor(request.user)
    key = find_key(actor, parse(KeyRef, request.data)["key"])
    return Response(key_to_litellm(key_set_blocked(actor=actor, key=key, blocked=blocked)))


@litellm_view(["POST"])
def key_block(request: Request) -> Response:
    return _set_blocked(request, True)


@litellm_view(["POST"])
def key_unblock(request: Request) -> Response:
    return _set_blocked(request, False)
