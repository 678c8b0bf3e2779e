from __future__ import annotations

import django_filters

from hierarchy.filters import CreatedRangeFilterSet
from keys.models import VirtualKey


class KeyFilter(CreatedRangeFilterSet):
    organization = django_filters.CharFilter(field_name="team__organization_id")
    team = django_filters.CharFilter(field_name="team_id")
    project = django_filters.CharFilter(field_name="project_id")
    user = django_filters.CharFilter(field_name="user_id")
    search = django_filters.CharFilter(field_name="key_alias", lookup_expr="icontains")

    class Meta:
        model = VirtualKey
        fields = ("blocked",)
