"""REST viewset for keys: generate (the plaintext once, ``no-store``), regenerate, block."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import StrictSerializer
from config.api_fields import (
    GOVERNANCE_OUTPUT_FIELDS,
    GovernanceInput,
    GovernedOutput,
    id_field,
)
from hierarchy.access import get_visible
from hierarchy.api import CrudViewSet
from hierarchy.models import Role
from hierarchy.selectors import teams_managed_by, teams_visible_to, users_visible_to
from keys.filters import KeyFilter
from keys.models import VirtualKey
from keys.selectors import keys_managed_by, keys_visible_to
from keys.services import key_delete, key_generate, key_regenerate, key_set_blocked, key_update
from projects.selectors import projects_visible_to

NO_STORE = {"Cache-Control": "no-store"}


class KeyOutput(GovernedOutput):
    team: serializers.Field = serializers.PrimaryKeyRelatedField(read_only=True)
    project: serializers.Field = serializers.PrimaryKeyRelatedField(read_only=True)
    user: serializers.Field = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = VirtualKey
        fields = (
            "id",
            "key_name",
            "key_alias",
            "token_hash",
            "team",
            "project",
            "user",
            "expires",
            "last_used_at",
            *GOVERNANCE_OUTPUT_FIELDS,
            "access_groups",
        )


class KeyWithSecretOutput(KeyOutput):
    """Only in the response that creates or regenerates the key."""

    key = serializers.SerializerMethodField()

    class Meta(KeyOutput.Meta):
        fields: tuple[str, ...] = ("key", *KeyOutput.Meta.fields)  # type: ignore[assignment]

    def get_key(self, obj: VirtualKey) -> str:
        return self.context["plaintext"]


class KeyUpdateInput(GovernanceInput):
    key_alias = serializers.CharField(required=False, allow_null=True, max_length=200)
    duration = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=16
    )
    project = serializers.CharField(required=False, allow_null=True, max_length=128)


class KeyGenerateInput(KeyUpdateInput):
    id = id_field()
    team = serializers.CharField(required=False, allow_null=True, max_length=128)
    user = serializers.CharField(required=False, allow_null=True, max_length=128)
    key = serializers.CharField(required=False, max_length=256, write_only=True)


class KeyRegenerateInput(StrictSerializer):
    new_key = serializers.CharField(required=False, max_length=256, write_only=True)


class KeyViewSet(CrudViewSet):
    queryset = VirtualKey.objects.none()
    visible_selector = staticmethod(keys_visible_to)
    managed_selector = staticmethod(keys_managed_by)
    filterset_class = KeyFilter
    output_serializer = KeyOutput
    input_serializers = {
        "create": KeyGenerateInput,
        "partial_update": KeyUpdateInput,
        "regenerate": KeyRegenerateInput,
    }

    def refine_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.prefetch_related("access_groups")

    def may_create(self) -> bool:
        user = self.actor.user
        own_keys = user is not None and user.role == Role.INTERNAL_USER
        return self.actor.is_proxy_admin or own_keys or teams_managed_by(self.actor).exists()

    def _resolve(self, values: dict[str, Any]) -> None:
        """Ids in the body become objects the caller can see (404 otherwise)."""
        actor = self.actor
        for name, visible in (
            ("project", projects_visible_to),
            ("team", teams_visible_to),
            ("user", users_visible_to),
        ):
            if values.get(name) is not None:
                values[name] = get_visible(visible(actor), values[name], name)

    def with_secret(self, key: VirtualKey, plaintext: str, status_code: int) -> Response:
        context = {**self.get_serializer_context(), "plaintext": plaintext}
        return Response(
            KeyWithSecretOutput(key, context=context).data, status=status_code, headers=NO_STORE
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.ensure_may_create()
        values = self.validated(request)
        self._resolve(values)
        key, plaintext = key_generate(actor=self.actor, **values)
        return self.with_secret(key, plaintext, status.HTTP_201_CREATED)

    def update_object(self, obj: VirtualKey, values: dict[str, Any]) -> VirtualKey:
        self._resolve(values)
        return key_update(actor=self.actor, key=obj, **values)

    def delete_objects(self, objs: list[VirtualKey]) -> None:
        key_delete(actor=self.actor, keys=objs)

    @extend_schema(request=KeyRegenerateInput, responses=KeyWithSecretOutput)
    @action(detail=True, methods=["post"])
    def regenerate(self, request: Request, pk: str | None = None) -> Response:
        key = self.get_object_to_change()
        key, plaintext = key_regenerate(actor=self.actor, key=key, **self.validated(request))
        return self.with_secret(key, plaintext, status.HTTP_200_OK)

    @extend_schema(request=None, responses=KeyOutput)
    @action(detail=True, methods=["post"])
    def block(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(
            key_set_blocked(actor=self.actor, key=self.get_object_to_change(), blocked=True)
        )

    @extend_schema(request=None, responses=KeyOutput)
    @action(detail=True, methods=["post"])
    def unblock(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(
            key_set_blocked(actor=self.actor, key=self.get_object_to_change(), blocked=False)
        )
