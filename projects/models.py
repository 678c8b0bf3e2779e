"""Projects (between teams and keys) and the UI settings singleton."""

from __future__ import annotations

from django.db import models as db
from django.db.models import Q

from hierarchy.models import Governed, Team, _governance_constraints, public_id_field


class Project(Governed):
    id = public_id_field()
    alias = db.CharField(max_length=200, verbose_name="project name")
    description = db.TextField(blank=True)
    team = db.ForeignKey(Team, on_delete=db.PROTECT, related_name="projects")

    level_name = "project"

    class Meta:
        ordering = ["alias"]
        constraints = [
            *_governance_constraints(),
            db.UniqueConstraint(
                fields=["team", "alias"], name="projects_project_alias_unique_in_team"
            ),
            db.CheckConstraint(condition=~Q(alias=""), name="projects_project_alias_not_empty"),
        ]

    def __str__(self) -> str:
        return self.alias

    @property
    def governance_parent(self) -> Governed | None:
        return self.team

    @property
    def label(self) -> str:
        return self.alias


class UISettings(db.Model):
    """Admin UI switches, one row (id 1). The Projects pages show only when enabled."""

    SINGLETON_ID = 1

    id = db.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    enable_projects_ui = db.BooleanField(
        default=False,
        verbose_name="Projects",
        help_text="Show the Projects pages in the admin.",
    )
    updated_at = db.DateTimeField(auto_now=True)
    updated_by = db.CharField(max_length=200, blank=True, editable=False)

    class Meta:
        verbose_name = "UI settings"
        verbose_name_plural = "UI settings"
        constraints = [
            db.CheckConstraint(condition=Q(id=1), name="projects_uisettings_singleton"),
        ]

    def __str__(self) -> str:
        return "UI settings"
