"""The Create Project / change project form: the team's models only, checked on the server."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from config.admin_site import add_service_errors
from hierarchy.forms import GovernedForm
from hierarchy.governance import effective_model_names
from hierarchy.models import Governed, Team
from hierarchy.selectors import teams_managed_by
from projects.models import Project
from projects.services import project_check_move

MODELS_HELP = "None selected means all of the team's models."


class TeamChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Team) -> str:  # type: ignore[override]
        return obj.alias


class ProjectForm(GovernedForm):
    level_name = "project"

    alias = forms.CharField(label="Project Name", max_length=200)
    team = TeamChoiceField(queryset=Team.objects.none(), label="Team", empty_label="Select a team")
    models = forms.MultipleChoiceField(
        label="Models",
        required=False,
        help_text=MODELS_HELP,
        widget=forms.SelectMultiple(attrs={"size": 8}),
    )
    model_rpm_limit = forms.JSONField(
        required=False, label="Per-model RPM limit", help_text='e.g. {"gpt-4o": 500}'
    )
    model_tpm_limit = forms.JSONField(
        required=False, label="Per-model TPM limit", help_text='e.g. {"gpt-4o": 200000}'
    )

    class Meta:
        model = Project
        fields = (
            "alias",
            "description",
            "team",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "rpm_limit",
            "tpm_limit",
            "model_rpm_limit",
            "model_tpm_limit",
            "blocked",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = teams_managed_by(self.user).select_related("organization")
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]
        team = self._chosen_team(teams)
        names = effective_model_names(team) if team is not None else []
        kept = [m for m in (self.instance.models or []) if m not in names]
        self.fields["models"].choices = [(n, n) for n in [*names, *kept]]  # type: ignore[attr-defined]

    def _chosen_team(self, teams: Any) -> Team | None:
        team_id = self.data.get(self.add_prefix("team")) if self.is_bound else None
        if team_id is None:
            team_id = self.initial.get("team") or self.instance.team_id
        if not team_id:
            return None
        return teams.filter(pk=team_id).first()

    def governance_parent(self) -> Governed | None:
        return self.cleaned_data.get("team")

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        team = cleaned_data.get("team")
        if (
            not self.instance._state.adding
            and team is not None
            and team.pk != self.instance.team_id
        ):
            try:
                project_check_move(self.instance)
            except ValidationError as error:
                add_service_errors(self, error)
        return cleaned_data
