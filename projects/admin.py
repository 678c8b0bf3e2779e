"""The Projects pages: behind Admin Settings > UI Settings > Projects, scoped to the caller."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from hierarchy.admin_base import GovernedAdmin
from hierarchy.governance import effective_model_names
from hierarchy.selectors import teams_managed_by
from projects.forms import ProjectForm
from projects.models import Project
from projects.selectors import (
    project_list,
    projects_managed_by,
    projects_ui_enabled,
    projects_visible_to,
)
from projects.services import project_create, project_delete, project_update
from spend.charts import budget_bar

MSG_PROJECTS_OFF = (
    "The Projects pages are turned off. Turn them on in Admin Settings > UI Settings "
    "by switching on Projects."
)


def projects_ui_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Project pages answer only while the Projects switch is on; else go to UI Settings."""

    @functools.wraps(view)
    def wrapper(
        self: ProjectAdmin, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        if not projects_ui_enabled():
            messages.info(request, MSG_PROJECTS_OFF)
            return HttpResponseRedirect(reverse("admin:ui_settings"))
        return view(self, request, *args, **kwargs)

    return wrapper


@admin.register(Project)
class ProjectAdmin(GovernedAdmin):
    visible_selector = staticmethod(projects_visible_to)
    managed_selector = staticmethod(projects_managed_by)

    form = ProjectForm
    list_display = ("alias", "team_name", "models_display", "spend_budget", "keys_link", "blocked")
    list_display_links = ("alias",)
    list_filter = (
        ("team__organization", RelatedOnlyFieldListFilter),
        ("team", RelatedOnlyFieldListFilter),
        "blocked",
    )
    search_fields = ("alias", "description", "id")
    list_per_page = 50
    actions = ("block_projects", "unblock_projects")
    fieldsets = (
        (None, {"fields": ("alias", "description", "team", "models")}),
        (
            "Budget and limits",
            {
                "fields": (
                    "max_budget",
                    "soft_budget",
                    "budget_duration",
                    "rpm_limit",
                    "tpm_limit",
                    "model_rpm_limit",
                    "model_tpm_limit",
                )
            },
        ),
        ("Status", {"fields": ("blocked",)}),
    )

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return project_list(request.user).filter(pk__in=queryset.values("pk"))

    def get_fieldsets(self, request: HttpRequest, obj: Project | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        return [
            *fieldsets[:1],
            ("Spend against budget", {"fields": ("budget_usage",)}),
            *fieldsets[1:],
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if obj is None else (*fields, "budget_usage")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) and projects_ui_enabled()

    def may_manage_some(self, request: HttpRequest) -> bool:
        return teams_managed_by(request.user).exists()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) and self.may_manage_some(request)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, with the keys check
        return actions

    # --- columns ---------------------------------------------------------------------------

    @admin.display(description="Team", ordering="team__alias")
    def team_name(self, obj: Project) -> str:
        return obj.team.alias

    @admin.display(description="Models")
    def models_display(self, obj: Project) -> str:  # type: ignore[override]
        return GovernedAdmin.models_display(obj)

    @admin.display(description="Spend / budget")
    def spend_budget(self, obj: Project) -> str:  # type: ignore[override]
        return GovernedAdmin.spend_budget(obj)

    @admin.display(description="This budget period")
    def budget_usage(self, obj: Project) -> str:
        """Spend against budget as a bar with the soft budget marked, and a link to Usage."""
        bar = budget_bar(spend=obj.spend, max_budget=obj.max_budget, soft_budget=obj.soft_budget)
        usage_url = reverse("admin:usage") + "?" + urlencode({"project_id": obj.pk})
        return render_to_string("admin/spend/budget_bar.html", {"bar": bar, "usage_url": usage_url})

    @admin.display(description="Keys", ordering="keys_count")
    def keys_link(self, obj: Project) -> str:
        url = reverse("admin:keys_virtualkey_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">{} key(s)</a>', url, obj.keys_count)  # type: ignore[attr-defined]

    # --- saving through the services -------------------------------------------------------

    def create(self, request: HttpRequest, values: dict[str, Any]) -> Project:
        return project_create(actor=request.user, **values)

    def update(self, request: HttpRequest, obj: Project, values: dict[str, Any]) -> Project:
        return project_update(actor=request.user, project=obj, **values)

    def delete(self, request: HttpRequest, objs: list[Project]) -> None:
        project_delete(actor=request.user, projects=objs)

    @admin.action(description="Block selected projects")
    def block_projects(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_blocked(request, queryset, True)

    @admin.action(description="Unblock selected projects")
    def unblock_projects(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_blocked(request, queryset, False)

    def _set_blocked(self, request: HttpRequest, queryset: QuerySet, blocked: bool) -> None:
        count = 0
        for project in queryset:
            project_update(actor=request.user, project=project, blocked=blocked)
            count += 1
        messages.success(request, f"{'Blocked' if blocked else 'Unblocked'} {count} project(s).")

    # --- pages -----------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:  # type: ignore[override]
        return [
            path(
                "team-models/",
                self.admin_site.admin_view(self.team_models_view),
                name="projects_project_team_models",
            ),
            *super().get_urls(),
        ]

    @projects_ui_required
    def team_models_view(self, request: HttpRequest) -> HttpResponse:
        """The chosen team's effective model names, for the Models field (JSON)."""
        team = teams_managed_by(request.user).filter(pk=request.GET.get("team", "")).first()
        if team is None:
            raise Http404("Team not found.")
        return JsonResponse({"team": team.pk, "models": effective_model_names(team)})

    @projects_ui_required
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, extra_context)

    @projects_ui_required
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "team_models_url": reverse("admin:projects_project_team_models"),
        }
        if object_id is None:
            extra_context["title"] = "Create Project"
        return super().changeform_view(request, object_id, form_url, extra_context)

    @projects_ui_required
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self.ensure_in_scope(request, object_id)
        project = self.get_queryset(request).get(pk=unquote(object_id))
        if project.keys_count:
            try:
                project_delete(actor=request.user, projects=[project])
            except ValidationError as error:
                for message in error.messages:
                    messages.error(request, message)
                return HttpResponseRedirect(
                    reverse("admin:projects_project_change", args=[project.pk])
                )
        return super().delete_view(request, object_id, extra_context)

    @projects_ui_required
    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().history_view(request, object_id, extra_context)
