"""Admin forms for keys: generate (project, team and user scoped to the caller) and change."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from hierarchy.forms import GovernedForm, ModelListField
from hierarchy.governance import parse_duration
from hierarchy.models import Governed, Team
from hierarchy.selectors import teams_managed_by, users_visible_to
from keys.models import VirtualKey
from keys.services import MSG_PROJECT_TEAM_MISMATCH
from projects.models import Project
from projects.selectors import projects_managed_by

GOVERNANCE = (
    "models",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "blocked",
)


class ProjectChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Project) -> str:  # type: ignore[override]
        return f"{obj.alias} ({obj.team.alias})"


class KeyGenerateForm(GovernedForm):
    level_name = "key"

    project = ProjectChoiceField(queryset=Project.objects.none(), required=False)
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(),
        required=False,
        help_text="Only for a key without a project; a project's key is in the project's team.",
    )
    models = ModelListField()
    duration = forms.CharField(
        required=False, max_length=16, help_text="Expires after 30m, 24h, 30d, 1mo... Empty: never."
    )

    class Meta:
        model = VirtualKey
        fields = ("key_alias", "project", "team", "user", *GOVERNANCE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_managed_by(self.user).select_related("team")  # type: ignore[attr-defined]
        self.fields["team"].queryset = teams_managed_by(self.user)  # type: ignore[attr-defined]
        self.fields["user"].queryset = users_visible_to(self.user)  # type: ignore[attr-defined]

    def governance_parent(self) -> Governed | None:
        return self.cleaned_data.get("project") or self.cleaned_data.get("team")

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        project, team = cleaned_data.get("project"), cleaned_data.get("team")
        if project is not None and team is not None and team.pk != project.team_id:
            self.add_error(
                "team",
                MSG_PROJECT_TEAM_MISMATCH.format(
                    project=project.pk, project_team=project.team_id, team=team.pk
                ),
            )
        if project is not None and team is None:
            cleaned_data["team"] = project.team  # a project's key is in the project's team
        duration = cleaned_data.get("duration")
        if duration:
            try:
                parse_duration(duration)
            except ValidationError as error:
                self.add_error("duration", error)
        return cleaned_data


class KeyChangeForm(GovernedForm):
    level_name = "key"

    models = ModelListField()

    class Meta:
        model = VirtualKey
        fields = ("key_alias", "expires", *GOVERNANCE)

    def governance_parent(self) -> Governed | None:
        return self.instance.governance_parent
