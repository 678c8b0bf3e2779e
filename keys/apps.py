from __future__ import annotations

from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "Keys"

    def ready(self) -> None:
        from keys import schema  # noqa: F401  (registers the OpenAPI auth scheme)
