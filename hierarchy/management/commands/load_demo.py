"""Load the demo data (idempotent) and rotate the demo key."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandParser
from django.db import transaction

from hierarchy.actors import SYSTEM
from hierarchy.audit import AuditedCommand
from hierarchy.models import CatalogModel, Organization, Role, Team, TeamRole, User
from hierarchy.services import (
    catalog_model_create,
    organization_create,
    team_create,
    team_member_set,
    user_create,
)
from keys.models import VirtualKey
from keys.services import key_generate, key_regenerate
from projects.models import Project
from projects.services import project_create

PER_MILLION = Decimal("1000000")
# DESIGN "Demo catalog": name, mode, input and output USD per 1M tokens.
DEMO_CATALOG = (
    ("gpt-4o", "chat", "2.50", "10.00"),
    ("gpt-4o-mini", "chat", "0.15", "0.60"),
    ("claude-3-5-sonnet", "chat", "3.00", "15.00"),
    ("claude-3-5-haiku", "chat", "0.80", "4.00"),
    ("text-embedding-3-small", "embedding", "0.02", "0"),
)
DEMO_TEAMS = (
    ("Search", ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"], Decimal("500")),
    ("Support", ["claude-3-5-sonnet", "claude-3-5-haiku"], Decimal("300")),
)
DEMO_ADMIN = "admin"
DEMO_PASSWORD_ENV = "GATEHOUSE_DEMO_PASSWORD"
DEMO_PASSWORD_DEFAULT = "gatehouse-demo"
DEMO_KEY_ALIAS = "demo-key"


class Command(AuditedCommand):
    help = (
        "Create the demo organization, two teams with different models, the demo catalog "
        "(mock provider), a project and a superuser, creating only what is missing; then "
        "rotate the demo key and print where to log in and the new key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, host: str, port: str, **options: Any) -> None:
        created: list[str] = []
        with transaction.atomic():
            for name, mode, input_price, output_price in DEMO_CATALOG:
                if not CatalogModel.objects.filter(name=name).exists():
                    catalog_model_create(
                        actor=SYSTEM,
                        name=name,
                        mode=mode,
                        provider="mock",
                        upstream_model=name,
                        input_cost_per_token=Decimal(input_price) / PER_MILLION,
                        output_cost_per_token=Decimal(output_price) / PER_MILLION,
                    )
                    created.append(f"model {name}")
            organization = Organization.objects.filter(alias="Acme").first()
            if organization is None:
                organization = organization_create(
                    actor=SYSTEM, alias="Acme", max_budget=Decimal("1000")
                )
                created.append("organization Acme")
            teams = {}
            for alias, models, budget in DEMO_TEAMS:
                team = Team.objects.filter(organization=organization, alias=alias).first()
                if team is None:
                    team = team_create(
                        actor=SYSTEM,
                        alias=alias,
                        organization=organization,
                        models=models,
                        max_budget=budget,
                    )
                    created.append(f"team {alias}")
                teams[alias] = team
            project = Project.objects.filter(
                team=teams["Search"], alias="flight-search-assistant"
            ).first()
            if project is None:
                project = project_create(
                    actor=SYSTEM,
                    team=teams["Search"],
                    alias="flight-search-assistant",
                    description="Demo project",
                    models=["gpt-4o", "gpt-4o-mini"],
                    max_budget=Decimal("100"),
                    soft_budget=Decimal("80"),
                    budget_duration="1mo",
                )
                created.append("project flight-search-assistant")
            password = os.environ.get(DEMO_PASSWORD_ENV, DEMO_PASSWORD_DEFAULT)
            admin = User.objects.filter(username=DEMO_ADMIN).first()
            if admin is None:
                admin = user_create(
                    actor=SYSTEM,
                    username=DEMO_ADMIN,
                    email="admin@example.com",
                    password=password,
                    role=Role.PROXY_ADMIN,
                )
                created.append(f"superuser {DEMO_ADMIN}")
            if not teams["Search"].memberships.filter(user=admin).exists():
                team_member_set(actor=SYSTEM, team=teams["Search"], user=admin, role=TeamRole.ADMIN)
            demo_key = VirtualKey.objects.filter(key_alias=DEMO_KEY_ALIAS).first()
            if demo_key is None:
                demo_key, plaintext = key_generate(
                    actor=SYSTEM, project=project, user=admin, key_alias=DEMO_KEY_ALIAS
                )
                created.append(f"key {DEMO_KEY_ALIAS}")
            else:
                demo_key, plaintext = key_regenerate(actor=SYSTEM, key=demo_key)

        base = f"http://{host}:{port}"
        self.stdout.write(f"Demo data: created {', '.join(created) if created else 'nothing new'}.")
        self.stdout.write(self.style.SUCCESS(f"Admin:    {base}/admin/"))
        self.stdout.write(f"Login:    {DEMO_ADMIN} / {password}")
        self.stdout.write(
            f"Demo key: {plaintext}  "
            "(project flight-search-assistant; shown once, rotated on every run)"
        )
