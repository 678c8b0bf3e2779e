"""Virtual keys. Only the SHA-256 hex digest of a key is stored (Decision 6)."""

from __future__ import annotations

from django.conf import settings
from django.db import models as db
from django.db.models import Q

from hierarchy.models import Governed, Team, _governance_constraints, public_id_field
from projects.models import Project


class VirtualKey(Governed):
    id = public_id_field()
    token_hash = db.CharField(max_length=64, unique=True, editable=False)
    key_name = db.CharField(max_length=32, editable=False, help_text="sk-... and the last 4.")
    key_alias = db.CharField(max_length=200, null=True, blank=True, unique=True)
    user = db.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=db.SET_NULL, related_name="keys"
    )
    team = db.ForeignKey(Team, null=True, blank=True, on_delete=db.PROTECT, related_name="keys")
    project = db.ForeignKey(
        Project, null=True, blank=True, on_delete=db.PROTECT, related_name="keys"
    )
    expires = db.DateTimeField(null=True, blank=True)
    last_used_at = db.DateTimeField(null=True, blank=True, editable=False)

    level_name = "key"

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "key"
        constraints = [
            *_governance_constraints(),
            db.CheckConstraint(
                condition=Q(project__isnull=True) | Q(team__isnull=False),
                name="keys_virtualkey_project_has_team",
            ),
            db.CheckConstraint(
                condition=Q(key_alias__isnull=True) | ~Q(key_alias=""),
                name="keys_virtualkey_alias_null_or_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return self.key_alias or self.key_name

    @property
    def governance_parent(self) -> Governed | None:
        return self.project or self.team

    @property
    def label(self) -> str:
        return self.key_alias or self.key_name
