"""Filters for users, organizations and teams. Ids are plain strings: a filter on an object
outside the caller's scope matches nothing (it never says whether the object exists)."""

from __future__ import annotations

import django_filters

from hierarchy.models import AccessGroup, CatalogModel, Organization, Team, User


class CreatedRangeFilterSet(django_filters.FilterSet):
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")


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
