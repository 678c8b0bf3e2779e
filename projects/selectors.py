"""Reads of projects and the UI settings, scoped to the caller (Decision 10)."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from hierarchy.actors import ActorLike
from hierarchy.selectors import teams_managed_by, teams_visible_to
from projects.models import Project, UISettings


def projects_visible_to(actor: ActorLike) -> QuerySet[Project]:
    return Project.objects.filter(team__in=teams_visible_to(actor).values("pk"))


def projects_managed_by(actor: ActorLike) -> QuerySet[Project]:
    return Project.objects.filter(team__in=teams_managed_by(actor).values("pk"))


def project_list(actor: ActorLike) -> QuerySet[Project]:
    """Projects for list pages: team and organization joined, keys counted in the same query."""
    return (
        projects_visible_to(actor)
        .select_related("team", "team__organization")
        .annotate(keys_count=Count("keys", distinct=True))
    )


def ui_settings_get() -> UISettings:
    settings, _ = UISettings.objects.get_or_create(pk=UISettings.SINGLETON_ID)
    return settings


def projects_ui_enabled() -> bool:
    return UISettings.objects.filter(pk=UISettings.SINGLETON_ID, enable_projects_ui=True).exists()
