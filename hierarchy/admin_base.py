"""The base for admin pages of governed levels: scoped, and saving through the services."""

from __future__ import annotations

from typing import Any

from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html

from config.admin_site import ScopedModelAdmin
from hierarchy.models import Governed


class GovernedAdmin(ScopedModelAdmin):
    """A governed level's pages: the form is built for the caller and checks the shared rules."""

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        """The form, built for the caller: its choices are scoped to what they manage."""
        form_class = super().get_form(request, obj, change=change, **kwargs)
        user = request.user

        class CallerForm(form_class):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, user=user, **kw)

        CallerForm.__name__ = form_class.__name__
        return CallerForm

    @staticmethod
    def spend_budget(obj: Governed) -> str:
        budget = "unlimited" if obj.max_budget is None else f"${obj.max_budget:.2f}"
        return format_html("${} / {}", f"{obj.spend:.2f}", budget)

    @staticmethod
    def models_display(obj: Governed) -> str:
        return ", ".join(obj.models) if obj.models else "all allowed"
