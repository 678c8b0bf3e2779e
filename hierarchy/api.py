"""REST viewsets for users, organizations (+ members), teams (+ members), catalog, access groups.

Input serializer → service → output serializer; scoping comes from ``ScopedViewSet``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import CreatedCursorPagination, ScopedViewSet, StrictSerializer
from config.api_fields import (
    GOVERNANCE_OUTPUT_FIELDS,
    GovernanceInput,
    GovernedOutput,
    id_field,
)
from hierarchy.access import get_visible
from hierarchy.filters import (
    AccessGroupFilter,
    AuditEntryFilter,
    CatalogModelFilter,
    OrganizationFilter,
    TeamFilter,
    UserFilter,
)
from hierarchy.models import (
    AccessGroup,
    AuditEntry,
    CatalogModel,
    ModelMode,
    Organization,
    Provider,
    Role,
    Team,
    User,
)
from hierarchy.selectors import (
    access_groups_visible_to,
    audit_entries_visible_to,
    catalog_models_visible_to,
    organizations_visible_to,
    teams_governed_by,
    teams_visible_to,
    users_visible_to,
)
from hierarchy.services import (
    access_group_create,
    access_group_delete,
    access_group_update,
    catalog_model_create,
    catalog_model_delete,
    catalog_model_update,
    organization_create,
    organization_delete,
    organization_member_remove,
    organization_member_set,
    organization_update,
    team_create,
    team_delete,
    team_member_remove,
    team_member_set,
    team_update,
    user_create,
    user_delete,
    user_update,
)


def _proxy_admin_scope(model: type[Any]) -> Any:
    def managed(actor: Any) -> QuerySet:
        return (
            model._default_manager.all() if actor.is_proxy_admin else model._default_manager.none()
        )

    return managed


# --- output ----------------------------------------------------------------------------------


class UserOutput(GovernedOutput):
    class Meta:
        model = User
        fields = (
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "role",
            "is_active",
            "is_staff",
            *GOVERNANCE_OUTPUT_FIELDS,
            "access_groups",
        )


class OrganizationOutput(GovernedOutput):
    class Meta:
        model = Organization
        fields = ("id", "alias", *GOVERNANCE_OUTPUT_FIELDS, "access_groups")


class TeamOutput(GovernedOutput):
    organization: serializers.Field = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Team
        fields = ("id", "alias", "organization", *GOVERNANCE_OUTPUT_FIELDS, "access_groups")


class MembershipOutput(serializers.Serializer):
    user = serializers.CharField(source="user_id")
    role = serializers.CharField()


class CatalogModelOutput(serializers.ModelSerializer):
    input_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, coerce_to_string=False, read_only=True
    )
    output_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, coerce_to_string=False, read_only=True
    )

    class Meta:
        model = CatalogModel
        fields = (
            "id",
            "name",
            "mode",
            "provider",
            "upstream_model",
            "api_base",
            "api_key_env",
            "input_cost_per_token",
            "output_cost_per_token",
            "max_output_tokens",
            "created_at",
            "updated_at",
        )


class AccessGroupOutput(serializers.ModelSerializer):
    class Meta:
        model = AccessGroup
        fields = (
            "id",
            "name",
            "description",
            "models",
            "mcp_servers",
            "agents",
            "created_at",
            "updated_at",
        )


# --- input -----------------------------------------------------------------------------------


class UserUpdateInput(GovernanceInput):
    username = serializers.CharField(required=False, max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    is_active = serializers.BooleanField(required=False)
    password = serializers.CharField(required=False, write_only=True, max_length=128)


class UserCreateInput(UserUpdateInput):
    id = id_field()
    username = serializers.CharField(max_length=150)


class OrganizationUpdateInput(GovernanceInput):
    alias = serializers.CharField(required=False, max_length=200)


class OrganizationCreateInput(OrganizationUpdateInput):
    id = id_field()
    alias = serializers.CharField(max_length=200)


class TeamUpdateInput(GovernanceInput):
    alias = serializers.CharField(required=False, max_length=200)
    organization = serializers.CharField(required=False, allow_null=True, max_length=128)


class TeamCreateInput(TeamUpdateInput):
    id = id_field()
    alias = serializers.CharField(max_length=200)


class MemberInput(StrictSerializer):
    user = serializers.CharField(max_length=128)
    role = serializers.CharField(max_length=16, required=False)


class MemberRemoveInput(StrictSerializer):
    user = serializers.CharField(max_length=128)


class CatalogModelUpdateInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    mode = serializers.ChoiceField(choices=ModelMode.choices, required=False)
    provider = serializers.ChoiceField(choices=Provider.choices, required=False)
    upstream_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    api_base = serializers.URLField(required=False, allow_blank=True, max_length=200)
    api_key_env = serializers.CharField(required=False, allow_blank=True, max_length=100)
    input_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, min_value=0, required=False
    )
    output_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, min_value=0, required=False
    )
    max_output_tokens = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)


class CatalogModelCreateInput(CatalogModelUpdateInput):
    id = id_field()
    name = serializers.CharField(max_length=200)


class AccessGroupUpdateInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    models = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=1000
    )
    mcp_servers = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=1000
    )
    agents = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=1000
    )


class AccessGroupCreateInput(AccessGroupUpdateInput):
    id = id_field()
    name = serializers.CharField(max_length=200)


# --- viewsets --------------------------------------------------------------------------------


class CrudViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ScopedViewSet,
):
    """list / retrieve from the scoped queryset; create / partial_update / destroy through
    the subclass's ``create_object`` / ``update_object`` / ``delete_objects`` services."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def may_create(self) -> bool:
        """Checked before the body is read: a caller who can create nothing gets 403."""
        return self.actor.is_proxy_admin

    def create_object(self, values: dict[str, Any]) -> Any:
        raise NotImplementedError

    def update_object(self, obj: Any, values: dict[str, Any]) -> Any:
        raise NotImplementedError

    def delete_objects(self, objs: list[Any]) -> None:
        raise NotImplementedError

    def ensure_may_create(self) -> None:
        if not self.may_create():
            raise PermissionDenied("You do not have permission to create this.")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.ensure_may_create()
        return self.respond(self.create_object(self.validated(request)), status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.get_object_to_change()
        return self.respond(self.update_object(obj, self.validated(request)))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.delete_objects([self.get_object_to_change()])
        return Response(status=status.HTTP_204_NO_CONTENT)


def _resolve_organization(actor: Any, values: dict[str, Any]) -> None:
    if "organization" in values and values["organization"] is not None:
        values["organization"] = get_visible(
            organizations_visible_to(actor), values["organization"], "organization"
        )


class UserViewSet(CrudViewSet):
    queryset = User.objects.none()
    visible_selector = staticmethod(users_visible_to)
    managed_selector = staticmethod(_proxy_admin_scope(User))
    filterset_class = UserFilter
    output_serializer = UserOutput
    input_serializers = {"create": UserCreateInput, "partial_update": UserUpdateInput}

    def refine_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.prefetch_related("access_groups")

    def create_object(self, values: dict[str, Any]) -> User:
        return user_create(actor=self.actor, **values)

    def update_object(self, obj: User, values: dict[str, Any]) -> User:
        return user_update(actor=self.actor, user=obj, **values)

    def delete_objects(self, objs: list[User]) -> None:
        user_delete(actor=self.actor, users=objs)


class MembersMixin:
    """``POST {id}/members/`` adds a member or changes a role; ``DELETE`` removes one."""

    member_set: Any
    member_remove: Any
    parent_keyword: str

    @extend_schema(request=MemberInput, responses=MembershipOutput)
    @action(detail=True, methods=["post", "delete"], url_path="members")
    def members(self, request: Request, pk: str | None = None) -> Response:
        view: Any = self
        parent = view.get_object()
        if request.method == "DELETE":
            values = view.validated(request, "members_delete")
            user = get_visible(users_visible_to(view.actor), values["user"], "user")
            type(self).member_remove(actor=view.actor, user=user, **{self.parent_keyword: parent})
            return Response(status=status.HTTP_204_NO_CONTENT)
        values = view.validated(request, "members")
        user = get_visible(users_visible_to(view.actor), values["user"], "user")
        role = values.get("role") or "member"
        membership = type(self).member_set(
            actor=view.actor, user=user, role=role, **{self.parent_keyword: parent}
        )
        return Response(MembershipOutput(membership).data, status=status.HTTP_200_OK)


class OrganizationViewSet(MembersMixin, CrudViewSet):
    queryset = Organization.objects.none()
    visible_selector = staticmethod(organizations_visible_to)
    managed_selector = staticmethod(_proxy_admin_scope(Organization))
    filterset_class = OrganizationFilter
    output_serializer = OrganizationOutput
    input_serializers = {
        "create": OrganizationCreateInput,
        "partial_update": OrganizationUpdateInput,
        "members": MemberInput,
        "members_delete": MemberRemoveInput,
    }
    member_set = staticmethod(organization_member_set)
    member_remove = staticmethod(organization_member_remove)
    parent_keyword = "organization"

    def refine_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.prefetch_related("access_groups")

    def create_object(self, values: dict[str, Any]) -> Organization:
        return organization_create(actor=self.actor, **values)

    def update_object(self, obj: Organization, values: dict[str, Any]) -> Organization:
        return organization_update(actor=self.actor, organization=obj, **values)

    def delete_objects(self, objs: list[Organization]) -> None:
        organization_delete(actor=self.actor, organizations=objs)


class TeamViewSet(MembersMixin, CrudViewSet):
    queryset = Team.objects.none()
    visible_selector = staticmethod(teams_visible_to)
    managed_selector = staticmethod(teams_governed_by)
    filterset_class = TeamFilter
    output_serializer = TeamOutput
    input_serializers = {
        "create": TeamCreateInput,
        "partial_update": TeamUpdateInput,
        "members": MemberInput,
        "members_delete": MemberRemoveInput,
    }
    member_set = staticmethod(team_member_set)
    member_remove = staticmethod(team_member_remove)
    parent_keyword = "team"

    def refine_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("organization").prefetch_related("access_groups")

    def may_create(self) -> bool:
        return True  # the service checks the named organization: 404, then 403

    def create_object(self, values: dict[str, Any]) -> Team:
        _resolve_organization(self.actor, values)
        return team_create(actor=self.actor, **values)

    def update_object(self, obj: Team, values: dict[str, Any]) -> Team:
        _resolve_organization(self.actor, values)
        return team_update(actor=self.actor, team=obj, **values)

    def delete_objects(self, objs: list[Team]) -> None:
        team_delete(actor=self.actor, teams=objs)


class CatalogModelViewSet(CrudViewSet):
    queryset = CatalogModel.objects.none()
    visible_selector = staticmethod(catalog_models_visible_to)
    managed_selector = staticmethod(_proxy_admin_scope(CatalogModel))
    filterset_class = CatalogModelFilter
    output_serializer = CatalogModelOutput
    input_serializers = {
        "create": CatalogModelCreateInput,
        "partial_update": CatalogModelUpdateInput,
    }

    def create_object(self, values: dict[str, Any]) -> CatalogModel:
        return catalog_model_create(actor=self.actor, **values)

    def update_object(self, obj: CatalogModel, values: dict[str, Any]) -> CatalogModel:
        return catalog_model_update(actor=self.actor, model=obj, **values)

    def delete_objects(self, objs: list[CatalogModel]) -> None:
        catalog_model_delete(actor=self.actor, models=objs)


class AccessGroupViewSet(CrudViewSet):
    queryset = AccessGroup.objects.none()
    visible_selector = staticmethod(access_groups_visible_to)
    managed_selector = staticmethod(_proxy_admin_scope(AccessGroup))
    filterset_class = AccessGroupFilter
    output_serializer = AccessGroupOutput
    input_serializers = {"create": AccessGroupCreateInput, "partial_update": AccessGroupUpdateInput}

    def create_object(self, values: dict[str, Any]) -> AccessGroup:
        return access_group_create(actor=self.actor, **values)

    def update_object(self, obj: AccessGroup, values: dict[str, Any]) -> AccessGroup:
        return access_group_update(actor=self.actor, group=obj, **values)

    def delete_objects(self, objs: list[AccessGroup]) -> None:
        access_group_delete(actor=self.actor, groups=objs)


# --- the audit log (read-only) ------------------------------------------------------------------


class AuditPagination(CreatedCursorPagination):
    """Newest first; the position is the time, so a deep page costs what page 1 does."""

    ordering = ("-at", "-id")


class AuditEntryOutput(serializers.ModelSerializer):
    changes = serializers.JSONField(
        read_only=True, help_text="{field: [before, after]}; secrets read '[redacted]'."
    )

    class Meta:
        model = AuditEntry
        fields = (
            "id",
            "at",
            "actor",
            "actor_user_id",
            "actor_key_id",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "organization_id",
            "team_id",
            "changes",
        )


class AuditEntryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Who created, changed or deleted what, newest first. Proxy admins and viewers read
    every entry, organization admins their organizations' entries, everyone else none."""

    queryset = AuditEntry.objects.none()
    visible_selector = staticmethod(audit_entries_visible_to)
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEntryFilter
    pagination_class = AuditPagination
    output_serializer = AuditEntryOutput
