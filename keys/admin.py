"""Keys in the admin: a project's keys, generate / block / regenerate / delete.

A new plaintext key is shown once, on the response page itself (``Cache-Control: no-store``);
it never goes into a message, a URL, a log line or the admin's history.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import patch_cache_control

from hierarchy.admin_base import GovernedAdmin
from hierarchy.selectors import teams_managed_by
from keys.forms import KeyChangeForm, KeyGenerateForm
from keys.models import VirtualKey
from keys.selectors import key_list, keys_managed_by, keys_visible_to
from keys.services import key_delete, key_generate, key_regenerate, key_set_blocked, key_update

NEW_KEYS_ATTRIBUTE = "_gatehouse_new_keys"


def shown_once(
    request: HttpRequest, admin_site: admin.AdminSite, new_keys: list[tuple[VirtualKey, str]]
) -> HttpResponse:
    """The only page that ever shows these plaintext keys."""
    context = {
        **admin_site.each_context(request),
        "title": "Copy your new key now" if len(new_keys) == 1 else "Copy your new keys now",
        "new_keys": new_keys,
        "opts": VirtualKey._meta,
    }
    response = TemplateResponse(request, "admin/keys/virtualkey/key_created.html", context)
    patch_cache_control(response, no_store=True, no_cache=True, private=True)
    return response


@admin.register(VirtualKey)
class VirtualKeyAdmin(GovernedAdmin):
    visible_selector = staticmethod(keys_visible_to)
    managed_selector = staticmethod(keys_managed_by)

    list_display = (
        "key_name",
        "key_alias",
        "project",
        "team",
        "spend_budget",
        "blocked",
        "expires",
        "last_used_at",
    )
    list_filter = (
        ("project", RelatedOnlyFieldListFilter),
        ("team", RelatedOnlyFieldListFilter),
        "blocked",
    )
    search_fields = ("key_alias", "key_name", "id")
    raw_id_fields = ("user",)
    actions = ("block_keys", "unblock_keys", "regenerate_keys", "delete_keys")
    readonly_fields = (
        "key_name",
        "project",
        "team",
        "user",
        "spend",
        "last_used_at",
        "created_at",
        "created_by",
    )
    list_per_page = 50
    show_full_result_count = False

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return key_list(request.user).filter(pk__in=queryset.values("pk"))

    def may_manage_some(self, request: HttpRequest) -> bool:
        return teams_managed_by(request.user).exists()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request) and self.may_manage_some(request)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        kwargs["form"] = KeyChangeForm if obj is not None else KeyGenerateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return [
                "key_alias",
                "project",
                "team",
                "user",
                "models",
                "duration",
                "max_budget",
                "soft_budget",
                "budget_duration",
                "rpm_limit",
                "tpm_limit",
                "blocked",
            ]
        return [
            "key_name",
            "key_alias",
            "project",
            "team",
            "user",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "rpm_limit",
            "tpm_limit",
            "expires",
            "blocked",
            "spend",
            "last_used_at",
            "created_at",
            "created_by",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:  # type: ignore[override]
        return self.readonly_fields if obj is not None else ()

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="Spend / budget")
    def spend_budget(self, obj: VirtualKey) -> str:  # type: ignore[override]
        return GovernedAdmin.spend_budget(obj)

    # --- saving through the services -------------------------------------------------------

    def create(self, request: HttpRequest, values: dict[str, Any]) -> VirtualKey:
        key, plaintext = key_generate(actor=request.user, **values)
        setattr(request, NEW_KEYS_ATTRIBUTE, [(key, plaintext)])
        return key

    def update(self, request: HttpRequest, obj: VirtualKey, values: dict[str, Any]) -> VirtualKey:
        return key_update(actor=request.user, key=obj, **values)

    def delete(self, request: HttpRequest, objs: list[VirtualKey]) -> None:
        key_delete(actor=request.user, keys=objs)

    def response_add(
        self, request: HttpRequest, obj: VirtualKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        return shown_once(request, self.admin_site, getattr(request, NEW_KEYS_ATTRIBUTE))

    # --- actions ---------------------------------------------------------------------------

    @admin.action(description="Block selected keys")
    def block_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        for key in queryset:
            key_set_blocked(actor=request.user, key=key, blocked=True)
        messages.success(request, f"Blocked {len(queryset)} key(s).")

    @admin.action(description="Unblock selected keys")
    def unblock_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        for key in queryset:
            key_set_blocked(actor=request.user, key=key, blocked=False)
        messages.success(request, f"Unblocked {len(queryset)} key(s).")

    @admin.action(description="Regenerate selected keys (the old secrets stop working)")
    def regenerate_keys(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        new_keys = [key_regenerate(actor=request.user, key=key) for key in queryset]
        return shown_once(request, self.admin_site, new_keys)

    @admin.action(description="Delete selected keys")
    def delete_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = key_delete(actor=request.user, keys=list(queryset))
        messages.success(request, f"Deleted {count} key(s).")
