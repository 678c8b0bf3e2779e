"""REST viewsets for projects and the UI settings."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
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
from hierarchy.selectors import teams_visible_to
from projects.filters import ProjectFilter
from projects.models import Project, UISettings
from projects.selectors import projects_managed_by, projects_visible_to, ui_settings_get
from projects.services import (
    project_create,
    project_delete,
    project_update,
    ui_settings_ensure_can_change,
    ui_settings_update,
)


class ProjectOutput(GovernedOutput):
    team: serializers.Field = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Project
        fields = ("id", "alias", "description", "team", *GOVERNANCE_OUTPUT_FIELDS, "access_groups")


class ProjectUpdateInput(GovernanceInput):
    alias = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    team = serializers.CharField(required=False, max_length=128)


class ProjectCreateInput(ProjectUpdateInput):
    id = id_field()
    alias = serializers.CharField(max_length=200)
    team = serializers.CharField(max_length=128)


class ProjectViewSet(CrudViewSet):
    queryset = Project.objects.none()
    visible_selector = staticmethod(projects_visible_to)
    managed_selector = staticmethod(projects_managed_by)
    filterset_class = ProjectFilter
    output_serializer = ProjectOutput
    input_serializers = {"create": ProjectCreateInput, "partial_update": ProjectUpdateInput}

    def refine_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.prefetch_related("access_groups")

    def may_create(self) -> bool:
        return True  # the service checks the named team: scope (404), then permission (403)

    def _team(self, values: dict[str, Any]) -> None:
        if "team" in values:
            values["team"] = get_visible(teams_visible_to(self.actor), values["team"], "team")

    def create_object(self, values: dict[str, Any]) -> Project:
        self._team(values)
        return project_create(actor=self.actor, **values)

    def update_object(self, obj: Project, values: dict[str, Any]) -> Project:
        self._team(values)
        return project_update(actor=self.actor, project=obj, **values)

    def delete_objects(self, objs: list[Project]) -> None:
        project_delete(actor=self.actor, projects=objs)


class UISettingsOutput(serializers.ModelSerializer):
    class Meta:
        model = UISettings
        fields = ("enable_projects_ui", "updated_at", "updated_by")


class UISettingsInput(StrictSerializer):
    enable_projects_ui = serializers.BooleanField()


class UISettingsViewSet(viewsets.ViewSet):
    """The one UI settings row: anyone signed in reads it, proxy admins change it."""

    @extend_schema(responses=UISettingsOutput)
    def list(self, request: Request) -> Response:
        return Response(UISettingsOutput(ui_settings_get()).data)

    @extend_schema(request=UISettingsInput, responses=UISettingsOutput)
    def partial_update_settings(self, request: Request) -> Response:
        ui_settings_ensure_can_change(request.user)
        serializer = UISettingsInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        settings = ui_settings_update(actor=request.user, **serializer.validated_data)
        return Response(UISettingsOutput(settings).data)
