"""Budget alerts in the admin: a read-only list for proxy admins and viewers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from config.admin_site import ReadOnlyScopedModelAdmin
from hierarchy.actors import as_actor
from spend.models import BudgetAlert
from spend.selectors import budget_alerts_visible_to
from spend.services import LEVEL_MODELS


class DeliveryFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("delivered", "Delivered"), ("pending", "Pending"), ("given_up", "Given up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "delivered":
            return queryset.filter(delivered_at__isnull=False)
        if self.value() == "pending":
            return queryset.filter(next_attempt_at__isnull=False)
        if self.value() == "given_up":
            return queryset.filter(delivered_at__isnull=True, next_attempt_at__isnull=True)
        return queryset


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyScopedModelAdmin):
    """Alerts are raised by the spend pipeline and sent by the webhook sender: nobody adds,
    changes or deletes them here."""

    visible_selector = staticmethod(budget_alerts_visible_to)

    list_display = (
        "created_at",
        "level",
        "level_object",
        "threshold",
        "budget",
        "spend",
        "period",
        "delivery",
        "attempts",
    )
    list_filter = ("level", "threshold", DeliveryFilter)
    search_fields = ("^object_id",)
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and as_actor(request.user).can_read_everything)

    @admin.display(description="object", ordering="object_id")
    def level_object(self, alert: BudgetAlert) -> str:
        """The level's id, linked to its admin page (no query per row)."""
        opts = LEVEL_MODELS[alert.level]._meta
        try:
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=[alert.object_id],
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:
            return alert.object_id
        return format_html('<a href="{}">{}</a>', url, alert.object_id)

    @admin.display(description="delivery")
    def delivery(self, alert: BudgetAlert) -> str:
        if alert.delivered_at is not None:
            return "delivered"
        if alert.next_attempt_at is None:
            return f"given up: {alert.last_error}"
        return f"pending: {alert.last_error}" if alert.last_error else "pending"
