"""Gatehouse's admin site and the scoped base every ModelAdmin builds on.

- ``GatehouseAdminSite`` adds the *Reports* section (Usage) and the *Admin Settings* section
  (UI Settings) to the navigation.
- ``ScopedModelAdmin`` scopes every page to the caller's visibility selector: an object
  outside it is a 404, and permissions come from Gatehouse's roles, not Django's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse

from hierarchy.actors import as_actor

Selector = Callable[[Any], QuerySet]


class GatehouseAdminSite(admin.AdminSite):
    site_header = "Gatehouse"
    site_title = "Gatehouse admin"
    index_title = "Control plane"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from projects.admin_views import ui_settings_view
        from spend.admin_views import usage_view

        return [
            path("settings/ui/", self.admin_view(ui_settings_view), name="ui_settings"),
            path("usage/", self.admin_view(usage_view), name="usage"),
            *super().get_urls(),
        ]

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        app_list = super().get_app_list(request, app_label)
        actor = as_actor(request.user)
        if app_label is None:
            # Every admin user has spend to read (their scope's); the page scopes it.
            url = reverse("admin:usage", current_app=self.name)
            app_list.append(
                {
                    "name": "Reports",
                    "app_label": "reports",
                    "app_url": url,
                    "has_module_perms": True,
                    "models": [
                        {
                            "name": "Usage",
                            "object_name": "Usage",
                            "admin_url": url,
                            "add_url": None,
                            "view_only": True,
                            "perms": {"view": True},
                        }
                    ],
                }
            )
        if app_label is None and actor.can_read_everything:
            url = reverse("admin:ui_settings", current_app=self.name)
            app_list.append(
                {
                    "name": "Admin Settings",
                    "app_label": "admin_settings",
                    "app_url": url,
                    "has_module_perms": True,
                    "models": [
                        {
                            "name": "UI Settings",
                            "object_name": "UISettings",
                            "admin_url": url,
                            "add_url": None,
                            "view_only": not actor.is_proxy_admin,
                            "perms": {"view": True, "change": actor.is_proxy_admin},
                        }
                    ],
                }
            )
        return app_list


class ScopedModelAdmin(admin.ModelAdmin):
    """Pages see ``visible_selector(user)``; changes need ``managed_selector(user)``.

    Subclasses refine the list query in ``scope_queryset`` and cannot bypass the scoping.
    """

    visible_selector: Selector
    managed_selector: Selector

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope_queryset(request, type(self).visible_selector(request.user))

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset

    def managed(self, request: HttpRequest) -> QuerySet:
        return type(self).managed_selector(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if not self.has_module_permission(request):
            return False
        if obj is None:
            return self.may_manage_some(request)
        return self.managed(request).filter(pk=obj.pk).exists()

    def may_manage_some(self, request: HttpRequest) -> bool:
        """Whether the caller may change objects of this kind at all (list and index pages)."""
        return self.managed(request).exists()

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)

    # --- writes go through the services ----------------------------------------------------

    def form_values(self, form: Any, change: bool) -> dict[str, Any]:
        """The form's cleaned values, named as the services' keyword arguments."""
        return {name: value for name, value in form.cleaned_data.items() if name in form.fields}

    def create(self, request: HttpRequest, values: dict[str, Any]) -> Model:
        raise NotImplementedError

    def update(self, request: HttpRequest, obj: Any, values: dict[str, Any]) -> Model:
        raise NotImplementedError

    def delete(self, request: HttpRequest, objs: list[Any]) -> None:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change and not form.has_changed():
            return
        values = self.form_values(form, change)
        if change:
            saved = self.update(request, type(obj)._default_manager.get(pk=obj.pk), values)
        else:
            saved = self.create(request, values)
        # The admin goes on with ``obj`` (history, redirect): make it the saved row.
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.delete(request, list(queryset))

    def ensure_in_scope(self, request: HttpRequest, object_id: str | None) -> None:
        if object_id and not self.get_queryset(request).filter(pk=unquote(object_id)).exists():
            raise Http404("Not found.")

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        self.ensure_in_scope(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self.ensure_in_scope(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self.ensure_in_scope(request, object_id)
        return super().history_view(request, object_id, extra_context)


class ReadOnlyScopedModelAdmin(ScopedModelAdmin):
    """A scoped page nobody adds to, changes or deletes from (logs the system writes)."""

    def managed(self, request: HttpRequest) -> QuerySet:
        return self.model._default_manager.none()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def add_service_errors(form: Any, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field when the form has it."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages)
