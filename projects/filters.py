from __future__ import annotations

import django_filters

from hierarchy.filters import CreatedRangeFilterSet
from projects.models import Project


class ProjectFilter(CreatedRangeFilterSet):
    organization = django_filters.CharFilter(field_name="team__organization_id")
    team = django_filters.CharFilter(field_name="team_id")
    search = django_filters.CharFilter(field_name="alias", lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ("blocked",)
