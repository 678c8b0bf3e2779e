"""Admin Settings > UI Settings: the Projects switch, stored in the database."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from hierarchy.actors import as_actor
from projects.models import UISettings
from projects.selectors import ui_settings_get
from projects.services import ui_settings_update

MSG_SAVED = "UI settings saved. The Projects pages are now {state}."


class UISettingsForm(forms.Form):
    enable_projects_ui = forms.BooleanField(
        required=False,
        label="Projects",
        help_text="Show the Projects pages (list, Create Project, project keys) in the admin.",
    )


def ui_settings_view(request: HttpRequest) -> HttpResponse:
    actor = as_actor(request.user)
    if not actor.can_read_everything:
        raise PermissionDenied
    can_change = actor.is_proxy_admin
    settings = ui_settings_get()
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied
        form = UISettingsForm(request.POST)
        if form.is_valid():
            enabled = form.cleaned_data["enable_projects_ui"]
            ui_settings_update(actor=actor, enable_projects_ui=enabled)
            LogEntry.objects.log_actions(
                user_id=str(request.user.pk),
                queryset=[settings],
                action_flag=CHANGE,
                change_message=f"Projects {'enabled' if enabled else 'disabled'}",
                single_object=True,
            )
            messages.success(request, MSG_SAVED.format(state="on" if enabled else "off"))
            return HttpResponseRedirect(reverse("admin:ui_settings"))
    else:
        form = UISettingsForm(initial={"enable_projects_ui": settings.enable_projects_ui})
    context = {
        **admin.site.each_context(request),
        "title": "UI Settings",
        "form": form,
        "can_change": can_change,
        "opts": UISettings._meta,
        "content_type": ContentType.objects.get_for_model(UISettings),
    }
    return TemplateResponse(request, "admin/ui_settings.html", context)
