"""Users, organizations, teams, memberships, the model catalog and access groups.

``Governed`` holds the governance fields (models, budgets, limits, blocked, metadata,
who and when) once; every governed level inherits it.
"""

from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models as db
from django.db.models import F, Q

from hierarchy.ids import new_public_id, public_id_validator


def public_id_field() -> db.CharField:
    return db.CharField(
        primary_key=True,
        max_length=128,
        default=new_public_id,
        editable=False,
        validators=[public_id_validator],
    )


def config_managed_field() -> db.BooleanField:
    """Set on objects that ``manage.py apply`` created: ``apply --prune`` may delete them once
    the file no longer declares them, and never touches objects without it."""
    return db.BooleanField(
        default=False,
        editable=False,
        verbose_name="managed by a config file",
        help_text="Created by manage.py apply; apply --prune deletes it when the file drops it.",
    )


def _governance_constraints() -> list[db.BaseConstraint]:
    return [
        db.CheckConstraint(
            condition=Q(max_budget__isnull=True) | Q(max_budget__gte=0),
            name="%(app_label)s_%(class)s_max_budget_not_negative",
        ),
        db.CheckConstraint(
            condition=Q(soft_budget__isnull=True) | Q(soft_budget__gte=0),
            name="%(app_label)s_%(class)s_soft_budget_not_negative",
        ),
        db.CheckConstraint(
            condition=Q(soft_budget__isnull=True)
            | Q(max_budget__isnull=True)
            | Q(soft_budget__lt=F("max_budget")),
            name="%(app_label)s_%(class)s_soft_budget_below_max_budget",
        ),
        db.CheckConstraint(
            condition=Q(spend__gte=0), name="%(app_label)s_%(class)s_spend_not_negative"
        ),
    ]


class Governed(db.Model):
    """The governance fields every level carries (DESIGN, "Domain"), defined once."""

    models = db.JSONField(
        default=list,
        blank=True,
        help_text="Model names, wildcards (openai/*) or access groups. "
        "Empty: all the parent allows.",
    )
    access_groups = db.ManyToManyField("hierarchy.AccessGroup", blank=True, related_name="+")
    max_budget = db.DecimalField(
        max_digits=21, decimal_places=9, null=True, blank=True, help_text="USD; empty = unlimited."
    )
    soft_budget = db.DecimalField(
        max_digits=21, decimal_places=9, null=True, blank=True, help_text="USD; alert threshold."
    )
    spend = db.DecimalField(max_digits=21, decimal_places=9, default=0, editable=False)
    model_spend = db.JSONField(default=dict, blank=True, editable=False)
    budget_duration = db.CharField(
        max_length=16, blank=True, help_text="Budget period: 30s, 30m, 24h, 7d, 1w or 1mo."
    )
    budget_reset_at = db.DateTimeField(null=True, blank=True, editable=False)
    rpm_limit = db.PositiveBigIntegerField(null=True, blank=True, verbose_name="RPM limit")
    tpm_limit = db.PositiveBigIntegerField(null=True, blank=True, verbose_name="TPM limit")
    model_rpm_limit = db.JSONField(default=dict, blank=True, verbose_name="per-model RPM limit")
    model_tpm_limit = db.JSONField(default=dict, blank=True, verbose_name="per-model TPM limit")
    model_max_budget = db.JSONField(default=dict, blank=True, verbose_name="per-model budget")
    blocked = db.BooleanField(default=False)
    metadata = db.JSONField(default=dict, blank=True)
    created_at = db.DateTimeField(auto_now_add=True)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=200, blank=True, editable=False)
    updated_by = db.CharField(max_length=200, blank=True, editable=False)
    config_managed = config_managed_field()

    # The level's name in messages ("team's allowed models") and its parent in the hierarchy.
    level_name: ClassVar[str] = "level"

    class Meta:
        abstract = True

    @property
    def governance_parent(self) -> Governed | None:
        return None

    @property
    def label(self) -> str:
        return str(self.pk)


class Role(db.TextChoices):
    PROXY_ADMIN = "proxy_admin", "Proxy admin"
    PROXY_ADMIN_VIEWER = "proxy_admin_viewer", "Proxy admin (viewer)"
    INTERNAL_USER = "internal_user", "Internal user"
    INTERNAL_USER_VIEWER = "internal_user_viewer", "Internal user (viewer)"


class GatehouseUserManager(UserManager["User"]):
    def create_superuser(self, username, email=None, password=None, **extra_fields):  # type: ignore[no-untyped-def,override]
        extra_fields.setdefault("role", Role.PROXY_ADMIN)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser, Governed):
    """A person. Staff access follows from holding an admin or viewer role (Decision 3)."""

    id = public_id_field()
    role = db.CharField(max_length=32, choices=Role.choices, default=Role.INTERNAL_USER)

    objects = GatehouseUserManager()  # type: ignore[misc]
    level_name = "user"

    class Meta:
        constraints = [
            *_governance_constraints(),
            db.UniqueConstraint(
                fields=["email"],
                condition=~Q(email=""),
                name="hierarchy_user_email_unique",
                violation_error_message="A user with this email already exists.",
            ),
            db.CheckConstraint(condition=Q(role__in=Role.values), name="hierarchy_user_role_valid"),
        ]

    @property
    def is_proxy_admin(self) -> bool:
        return self.is_superuser or self.role == Role.PROXY_ADMIN

    @property
    def can_read_everything(self) -> bool:
        return self.is_proxy_admin or self.role == Role.PROXY_ADMIN_VIEWER

    @property
    def label(self) -> str:
        return self.email or self.username


class Organization(Governed):
    id = public_id_field()
    alias = db.CharField(max_length=200, unique=True, verbose_name="name")

    level_name = "organization"

    class Meta:
        ordering = ["alias"]
        constraints = [
            *_governance_constraints(),
            db.CheckConstraint(
                condition=~Q(alias=""), name="hierarchy_organization_alias_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.alias

    @property
    def label(self) -> str:
        return self.alias


class Team(Governed):
    id = public_id_field()
    alias = db.CharField(max_length=200, verbose_name="name")
    organization = db.ForeignKey(
        Organization, null=True, blank=True, on_delete=db.PROTECT, related_name="teams"
    )

    level_name = "team"

    class Meta:
        ordering = ["alias"]
        constraints = [
            *_governance_constraints(),
            db.UniqueConstraint(
                fields=["organization", "alias"], name="hierarchy_team_alias_unique_in_organization"
            ),
            db.UniqueConstraint(
                fields=["alias"],
                condition=Q(organization__isnull=True),
                name="hierarchy_team_alias_unique_without_organization",
                violation_error_message="A team with this name and no organization already exists.",
            ),
            db.CheckConstraint(condition=~Q(alias=""), name="hierarchy_team_alias_not_empty"),
        ]

    def __str__(self) -> str:
        return self.alias

    @property
    def governance_parent(self) -> Governed | None:
        return self.organization

    @property
    def label(self) -> str:
        return self.alias


class OrganizationRole(db.TextChoices):
    ORG_ADMIN = "org_admin", "Organization admin"
    MEMBER = "member", "Member"


class TeamRole(db.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class OrganizationMembership(db.Model):
    organization = db.ForeignKey(Organization, on_delete=db.CASCADE, related_name="memberships")
    user = db.ForeignKey(User, on_delete=db.CASCADE, related_name="organization_memberships")
    role = db.CharField(
        max_length=16, choices=OrganizationRole.choices, default=OrganizationRole.MEMBER
    )
    created_at = db.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            db.UniqueConstraint(
                fields=["organization", "user"], name="hierarchy_organizationmembership_unique"
            ),
            db.CheckConstraint(
                condition=Q(role__in=OrganizationRole.values),
                name="hierarchy_organizationmembership_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class TeamMembership(db.Model):
    team = db.ForeignKey(Team, on_delete=db.CASCADE, related_name="memberships")
    user = db.ForeignKey(User, on_delete=db.CASCADE, related_name="team_memberships")
    role = db.CharField(max_length=16, choices=TeamRole.choices, default=TeamRole.MEMBER)
    created_at = db.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            db.UniqueConstraint(fields=["team", "user"], name="hierarchy_teammembership_unique"),
            db.CheckConstraint(
                condition=Q(role__in=TeamRole.values), name="hierarchy_teammembership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ModelMode(db.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDING = "embedding", "Embedding"


class Provider(db.TextChoices):
    OPENAI = "openai", "OpenAI-compatible"
    MOCK = "mock", "Offline mock"


class CatalogModel(db.Model):
    """A model the gateway can serve, under its public name."""

    id = public_id_field()
    name = db.CharField(max_length=200, unique=True, help_text="Public name clients ask for.")
    mode = db.CharField(max_length=16, choices=ModelMode.choices, default=ModelMode.CHAT)
    provider = db.CharField(max_length=16, choices=Provider.choices, default=Provider.MOCK)
    upstream_model = db.CharField(max_length=200, blank=True)
    api_base = db.URLField(blank=True, verbose_name="base URL")
    api_key_env = db.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding the API key.",
    )
    input_cost_per_token = db.DecimalField(max_digits=21, decimal_places=15, default=0)
    output_cost_per_token = db.DecimalField(max_digits=21, decimal_places=15, default=0)
    max_output_tokens = db.PositiveIntegerField(default=4096)
    created_at = db.DateTimeField(auto_now_add=True)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=200, blank=True, editable=False)
    updated_by = db.CharField(max_length=200, blank=True, editable=False)
    config_managed = config_managed_field()

    class Meta:
        ordering = ["name"]
        verbose_name = "catalog model"
        constraints = [
            db.CheckConstraint(
                condition=Q(input_cost_per_token__gte=0) & Q(output_cost_per_token__gte=0),
                name="hierarchy_catalogmodel_prices_not_negative",
            ),
            db.CheckConstraint(
                condition=Q(mode__in=ModelMode.values), name="hierarchy_catalogmodel_mode_valid"
            ),
            db.CheckConstraint(
                condition=Q(provider__in=Provider.values),
                name="hierarchy_catalogmodel_provider_valid",
            ),
            db.CheckConstraint(condition=~Q(name=""), name="hierarchy_catalogmodel_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class AccessGroup(db.Model):
    """A named bundle of models, MCP servers and agents; its name stands for its models."""

    id = public_id_field()
    name = db.CharField(max_length=200, unique=True)
    description = db.TextField(blank=True)
    models = db.JSONField(default=list, blank=True)
    mcp_servers = db.JSONField(default=list, blank=True, verbose_name="MCP servers")
    agents = db.JSONField(default=list, blank=True)
    created_at = db.DateTimeField(auto_now_add=True)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=200, blank=True, editable=False)
    updated_by = db.CharField(max_length=200, blank=True, editable=False)
    config_managed = config_managed_field()

    class Meta:
        ordering = ["name"]
        constraints = [
            db.CheckConstraint(condition=~Q(name=""), name="hierarchy_accessgroup_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class AuditAction(db.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"


class AuditSource(db.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "REST API"
    LITELLM = "litellm", "LiteLLM endpoint"
    COMMAND = "command", "Management command"
    SYSTEM = "system", "System"


class AuditEntry(db.Model):
    """One create, update or delete of one object: who, when, through which surface, and the
    changed fields as ``{field: [before, after]}`` with secrets redacted. Written only by
    ``hierarchy.audit``; never changed afterwards. Ids are plain strings, not foreign keys,
    so an entry outlives the objects and users it names."""

    id = db.BigAutoField(primary_key=True)
    at = db.DateTimeField(db_index=True)
    actor = db.CharField(max_length=200, help_text="The actor's label: a user or key id.")
    actor_user_id = db.CharField(max_length=128, blank=True)
    actor_key_id = db.CharField(max_length=128, blank=True)
    source = db.CharField(max_length=16, choices=AuditSource.choices, default=AuditSource.SYSTEM)
    action = db.CharField(max_length=16, choices=AuditAction.choices)
    object_type = db.CharField(max_length=64)
    object_id = db.CharField(max_length=128)
    object_repr = db.CharField(max_length=200, blank=True)
    organization_id = db.CharField(max_length=128, blank=True)
    team_id = db.CharField(max_length=128, blank=True)
    changes = db.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [
            db.Index(fields=["object_type", "object_id"], name="hierarchy_audit_object"),
            db.Index(fields=["organization_id", "at"], name="hierarchy_audit_org_at"),
        ]
        constraints = [
            db.CheckConstraint(
                condition=Q(action__in=AuditAction.values), name="hierarchy_auditentry_action_valid"
            ),
            db.CheckConstraint(
                condition=Q(source__in=AuditSource.values), name="hierarchy_auditentry_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id}"
