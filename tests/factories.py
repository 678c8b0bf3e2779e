"""Factories that keep parents consistent (a project's key is in the project's team)."""

from __future__ import annotations

from decimal import Decimal

import factory

from hierarchy.models import (
    AccessGroup,
    CatalogModel,
    Organization,
    OrganizationMembership,
    Role,
    Team,
    TeamMembership,
    User,
)
from keys.models import VirtualKey
from keys.services import display_name, hash_key
from projects.models import Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    role = Role.INTERNAL_USER
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-123")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogModel
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"model-{n}")
    provider = "mock"
    input_cost_per_token = Decimal("0.0000025")
    output_cost_per_token = Decimal("0.00001")


class AccessGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessGroup

    name = factory.Sequence(lambda n: f"group-{n}")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    alias = factory.Sequence(lambda n: f"org-{n}")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    alias = factory.Sequence(lambda n: f"team-{n}")
    organization = factory.SubFactory(OrganizationFactory)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    alias = factory.Sequence(lambda n: f"project-{n}")
    team = factory.SubFactory(TeamFactory)


class VirtualKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VirtualKey
        exclude = ("plaintext",)

    plaintext = factory.Sequence(lambda n: f"sk-test-{n:040d}")
    token_hash = factory.LazyAttribute(lambda k: hash_key(k.plaintext))
    key_name = factory.LazyAttribute(lambda k: display_name(k.plaintext))
    project = factory.SubFactory(ProjectFactory)
    team = factory.LazyAttribute(lambda k: k.project.team if k.project else None)


class TeamMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TeamMembership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = "member"


class OrganizationMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrganizationMembership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = "member"
