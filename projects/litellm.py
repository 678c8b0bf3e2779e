"""LiteLLM-compatible /project/* and UI settings endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import StrictSerializer
from config.api_fields import GovernanceInput, id_field
from config.litellm import (
    budget_fields,
    lift_per_model_limits,
    litellm_view,
    parse,
    query_id,
    required,
)
from hierarchy.access import get_visible
from hierarchy.actors import as_actor
from hierarchy.ids import new_public_id
from hierarchy.selectors import teams_visible_to
from projects.models import Project
from projects.selectors import project_list, projects_visible_to, ui_settings_get
from projects.services import (
    project_create,
    project_delete,
    project_update,
    ui_settings_ensure_can_change,
    ui_settings_update,
)


class ProjectUpdateRequest(GovernanceInput):
    project_id = serializers.CharField(max_length=128)
    project_alias = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=5000
    )
    team_id = serializers.CharField(required=False, max_length=128)


class ProjectNewRequest(ProjectUpdateRequest):
    project_id = id_field()
    team_id = serializers.CharField(max_length=128)


class ProjectDeleteRequest(StrictSerializer):
    project_ids = serializers.ListField(
        child=serializers.CharField(max_length=128), min_length=1, max_length=1000
    )


def project_to_litellm(project: Project) -> dict[str, Any]:
    return {
        "project_id": project.pk,
        "project_alias": project.alias,
        "description": project.description,
        "team_id": project.team_id,
        **budget_fields(project),
    }


def _service_values(values: dict[str, Any], actor: Any) -> dict[str, Any]:
    lift_per_model_limits(values)
    renamed = {"project_alias": "alias", "project_id": "id", "team_id": "team"}
    out = {renamed.get(name, name): value for name, value in values.items()}
    if "team" in out:
        out["team"] = get_visible(teams_visible_to(actor), out["team"], "team")
    return out


@litellm_view(["POST"])
def project_new(request: Request) -> Response:
    actor = as_actor(request.user)
    values = _service_values(parse(ProjectNewRequest, request.data), actor)
    if not values.get("alias"):  # LiteLLM makes the alias optional; ours is the project's name
        values["id"] = values.get("id") or new_public_id()
        values["alias"] = values["id"]
    return Response(project_to_litellm(project_create(actor=actor, **values)))


@litellm_view(["POST"])
def project_update_view(request: Request) -> Response:
    actor = as_actor(request.user)
    project = get_visible(
        projects_visible_to(actor), required(request.data, "project_id"), "project"
    )
    values = _service_values(parse(ProjectUpdateRequest, request.data), actor)
    values.pop("id")
    return Response(project_to_litellm(project_update(actor=actor, project=project, **values)))


@litellm_view(["GET"])
def project_info(request: Request) -> Response:
    actor = as_actor(request.user)
    project = get_visible(project_list(actor), query_id(request, "project_id"), "project")
    return Response(project_to_litellm(project))


@litellm_view(["GET"])
def project_list_view(request: Request) -> Response:
    """An array, as LiteLLM answers (Decision 13)."""
    return Response(
        [project_to_litellm(p) for p in project_list(as_actor(request.user)).order_by("created_at")]
    )


@litellm_view(["DELETE", "POST"])
def project_delete_view(request: Request) -> Response:
    """All or nothing: every id is checked before any project is deleted."""
    actor = as_actor(request.user)
    ids = parse(ProjectDeleteRequest, request.data)["project_ids"]
    visible = projects_visible_to(actor)
    projects = [get_visible(visible, pk, "project") for pk in dict.fromkeys(ids)]
    project_delete(actor=actor, projects=projects)
    return Response({"deleted_projects": [p.pk for p in projects]})


class UISettingsPatch(StrictSerializer):
    enable_projects_ui = serializers.BooleanField()


UI_FIELD_SCHEMA = {
    "enable_projects_ui": {
        "type": "boolean",
        "description": "Show the Projects pages in the admin.",
        "default": False,
    }
}


def _ui_settings_body() -> dict[str, Any]:
    settings = ui_settings_get()
    return {
        "values": {"enable_projects_ui": settings.enable_projects_ui},
        "field_schema": UI_FIELD_SCHEMA,
    }


@litellm_view(["GET"])
def get_ui_settings(request: Request) -> Response:
    return Response(_ui_settings_body())


@litellm_view(["PATCH"])
def update_ui_settings(request: Request) -> Response:
    ui_settings_ensure_can_change(request.user)
    ui_settings_update(actor=request.user, **parse(UISettingsPatch, request.data))
    return Response(_ui_settings_body())
