from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class GatehouseAdminConfig(AdminConfig):
    """The Django admin, served by Gatehouse's own site (Admin Settings section, scoped pages)."""

    default_site = "config.admin_site.GatehouseAdminSite"
