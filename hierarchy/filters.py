"""Filters for users, organizations and teams. Ids are plain strings: a filter on an object
outside the caller's scope matches nothing (it never says whether the object exists)."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django.db.models import QuerySet

from hierarchy.models import AccessGroup, CatalogModel, Organization, Team, User


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant, compared in UTC (any offset the caller sends is valid)."""

    def filter(self, qs: QuerySet, value: datetime | None) -> QuerySet:
        return super().filter(qs, value.astimezone(UTC) if value is not None else None)


class CreatedRangeFilterSet(django_filters.FilterSet):
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")


class UserFilter(django_filters.FilterSet):
    role = django_filters.CharFilter()
    search = django_filters.CharFilter(field_name="username", lookup_expr="icontains")
    team = django_filters.CharFilter(field_name="team_memberships__team_id", distinct=True)
    organization = django_filters.CharFilter(
        field_name="organization_memberships__organization_id", distinct=True
    )

    class Meta:
        model = User
        fields = ("role", "is_active")


class OrganizationFilter(CreatedRangeFilterSet):
    search = django_filters.CharFilter(field_name="alias", lookup_expr="icontains")

    class Meta:
        model = Organization
        fields = ("blocked",)


class TeamFilter(CreatedRangeFilterSet):
    organization = django_filters.CharFilter(field_name="organization_id")
    search = django_filters.CharFilter(field_name="alias", lookup_expr="icontains")

    class Meta:
        model = Team
        fields = ("blocked",)


class CatalogModelFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = CatalogModel
        fields = ("mode", "provider")


class AccessGroupFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = AccessGroup
        fields = ()
