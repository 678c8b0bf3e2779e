"""Filters for users, organizations and teams. Ids are plain strings: a filter on an object
outside the caller's scope matches nothing (it never says whether the object exists)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import django_filters
from django.db.models import Q, QuerySet

from hierarchy.models import (
    AccessGroup,
    AuditAction,
    AuditEntry,
    AuditSource,
    CatalogModel,
    Organization,
    Team,
    User,
)


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant, compared in UTC (any offset the caller sends is valid)."""

    def filter(self, qs: QuerySet, value: datetime | None) -> QuerySet:
        if value is None:
            return qs
        try:
            instant = value.astimezone(UTC)
        except OverflowError:  # beyond the calendar in UTC, after it or before it
            later = (value.utcoffset() or timedelta()) < timedelta()
            everything = later == (self.lookup_expr in ("lt", "lte"))
            return qs if everything else qs.none()
        return super().filter(qs, instant)


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


class AuditEntryFilter(django_filters.FilterSet):
    """``actor`` matches the actor's label, user id or key id; ``at_after`` / ``at_before``
    are instants (after included, before excluded)."""

    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    action = django_filters.ChoiceFilter(choices=AuditAction.choices)
    source = django_filters.ChoiceFilter(choices=AuditSource.choices)
    actor = django_filters.CharFilter(method="filter_actor")
    organization_id = django_filters.CharFilter()
    team_id = django_filters.CharFilter()
    at_after = UTCDateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = UTCDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields = ()

    def filter_actor(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(actor=value) | Q(actor_user_id=value) | Q(actor_key_id=value))
