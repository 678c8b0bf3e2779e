"""Admin form pieces shared by every governed level."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from config.admin_site import add_service_errors
from hierarchy.governance import GOVERNANCE_FIELDS, check_descendants_fit, clean_governance
from hierarchy.models import Governed


class ModelListField(forms.CharField):
    """A list of model names typed as ``gpt-4o, openai/*`` (comma or space separated)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "Comma-separated names, wildcards (openai/*) or access groups. "
            "Empty: all the parent allows.",
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        return [part for part in re.split(r"[,\s]+", value or "") if part]


class GovernedForm(forms.ModelForm):
    """Validates the governance fields with the same rules the services apply."""

    level_name = "level"

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def governance_parent(self) -> Governed | None:
        return None

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        if self.errors:
            return cleaned_data
        values = {
            n: cleaned_data[n] for n in GOVERNANCE_FIELDS if n in cleaned_data and n in self.fields
        }
        current = None if self.instance._state.adding else self.instance
        try:
            normalised = clean_governance(
                values, level_name=self.level_name, parent=self.governance_parent(), current=current
            )
            if current is not None:
                check_descendants_fit(current, normalised)
        except ValidationError as error:
            add_service_errors(self, error)
        return cleaned_data
