"""The REST API under /api/v1/ and its OpenAPI schema and docs."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from hierarchy.api import (
    AccessGroupViewSet,
    AuditEntryViewSet,
    CatalogModelViewSet,
    OrganizationViewSet,
    TeamViewSet,
    UserViewSet,
)
from keys.api import KeyViewSet
from projects.api import ProjectViewSet, UISettingsViewSet
from spend.api import SpendLogViewSet, SpendReportViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("users", UserViewSet, basename="user")
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("teams", TeamViewSet, basename="team")
router.register("projects", ProjectViewSet, basename="project")
router.register("keys", KeyViewSet, basename="key")
router.register("models", CatalogModelViewSet, basename="catalog-model")
router.register("access-groups", AccessGroupViewSet, basename="access-group")
router.register("spend/logs", SpendLogViewSet, basename="spend-log")
router.register("spend/report", SpendReportViewSet, basename="spend-report")
router.register("audit", AuditEntryViewSet, basename="audit-entry")

ui_settings = UISettingsViewSet.as_view({"get": "list", "patch": "partial_update_settings"})

urlpatterns = [
    path("v1/ui-settings/", ui_settings, name="ui-settings"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
