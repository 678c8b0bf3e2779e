from __future__ import annotations

from django.apps import AppConfig


class HierarchyConfig(AppConfig):
    name = "hierarchy"
    verbose_name = "Organizations and teams"

    def ready(self) -> None:
        from hierarchy.changes import connect_signals

        connect_signals()
