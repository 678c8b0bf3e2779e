"""Users, organizations, teams (with members), the model catalog and access groups."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any, ClassVar

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserCreationForm
from django.db.models import Count, Model, QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from config.admin_site import ReadOnlyScopedModelAdmin, ScopedModelAdmin
from hierarchy.admin_base import GovernedAdmin
from hierarchy.audit import OBJECT_TYPES
from hierarchy.forms import GovernedForm, ModelListField
from hierarchy.models import (
    AccessGroup,
    AuditEntry,
    CatalogModel,
    Governed,
    Organization,
    OrganizationMembership,
    Team,
    TeamMembership,
    User,
)
from hierarchy.selectors import (
    access_groups_visible_to,
    audit_entries_visible_to,
    audit_log_readable_by,
    catalog_models_visible_to,
    organizations_managed_by,
    organizations_visible_to,
    teams_governed_by,
    teams_managed_by,
    teams_visible_to,
    users_visible_to,
)
from hierarchy.services import (
    access_group_create,
    access_group_delete,
    access_group_update,
    catalog_model_create,
    catalog_model_delete,
    catalog_model_update,
    organization_create,
    organization_delete,
    organization_member_remove,
    organization_member_set,
    organization_update,
    team_create,
    team_delete,
    team_member_remove,
    team_member_set,
    team_update,
    user_create,
    user_delete,
    user_update,
)

GOVERNANCE_FIELDSET: Any = (
    "Budget and limits",
    {"fields": ("max_budget", "soft_budget", "budget_duration", "rpm_limit", "tpm_limit")},
)


def _proxy_admins_only(actor: Any) -> QuerySet:
    return User.objects.all() if actor.is_proxy_admin else User.objects.none()


# --- memberships: inlines that save through the membership services --------------------------


class MembershipFormSet(BaseInlineFormSet):
    """Adds, role changes and removals, each through ``member_set`` / ``member_remove``."""

    member_set: Any
    member_remove: Any
    parent_keyword: str

    def save(self, commit: bool = True) -> list[Model]:
        actor = self.request_user  # type: ignore[attr-defined]
        parent = {self.parent_keyword: self.instance}
        # What the admin's history message reads.
        self.new_objects: list[Model] = []
        self.changed_objects: list[tuple[Model, list[str]]] = []
        self.deleted_objects: list[Model] = []
        for form in self.forms:
            deleting = self.can_delete and form.cleaned_data.get("DELETE", False)
            if deleting:
                if form.instance.pk:
                    type(self).member_remove(actor=actor, user=form.instance.user, **parent)
                    self.deleted_objects.append(form.instance)
                continue
            if not form.has_changed():
                continue
            membership = type(self).member_set(
                actor=actor,
                user=form.cleaned_data["user"],
                role=form.cleaned_data["role"],
                **parent,
            )
            if form.instance.pk:
                self.changed_objects.append((membership, form.changed_data))
            else:
                self.new_objects.append(membership)
        return [*self.new_objects, *(obj for obj, _ in self.changed_objects)]


class TeamMembershipFormSet(MembershipFormSet):
    member_set = staticmethod(team_member_set)
    member_remove = staticmethod(team_member_remove)
    parent_keyword = "team"


class OrganizationMembershipFormSet(MembershipFormSet):
    member_set = staticmethod(organization_member_set)
    member_remove = staticmethod(organization_member_remove)
    parent_keyword = "organization"


class MembershipInline(admin.TabularInline):
    raw_id_fields = ("user",)
    extra = 1
    fields = ("user", "role")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.request_user = request.user  # type: ignore[attr-defined]
        return formset

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and self.parent_manages(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and self.parent_manages(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and self.parent_manages(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_staff)

    def parent_manages(self, request: HttpRequest, obj: Any) -> bool:
        raise NotImplementedError


class TeamMembershipInline(MembershipInline):
    model = TeamMembership
    formset = TeamMembershipFormSet

    def parent_manages(self, request: HttpRequest, obj: Team) -> bool:
        return teams_managed_by(request.user).filter(pk=obj.pk).exists()


class OrganizationMembershipInline(MembershipInline):
    model = OrganizationMembership
    formset = OrganizationMembershipFormSet

    def parent_manages(self, request: HttpRequest, obj: Organization) -> bool:
        return organizations_managed_by(request.user).filter(pk=obj.pk).exists()


# --- organizations -------------------------------------------------------------------------


class OrganizationForm(GovernedForm):
    level_name = "organization"
    models = ModelListField()

    class Meta:
        model = Organization
        fields = (
            "alias",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "rpm_limit",
            "tpm_limit",
            "blocked",
        )


@admin.register(Organization)
class OrganizationAdmin(GovernedAdmin):
    visible_selector = staticmethod(organizations_visible_to)
    managed_selector = staticmethod(
        lambda actor: (
            organizations_managed_by(actor) if actor.is_proxy_admin else Organization.objects.none()
        )
    )

    form = OrganizationForm
    inlines = (OrganizationMembershipInline,)
    list_display = ("alias", "models_display", "spend_budget", "teams_count", "blocked")
    search_fields = ("alias", "id")
    fieldsets: ClassVar[Any] = (
        (None, {"fields": ("alias", "models", "blocked")}),
        GOVERNANCE_FIELDSET,
    )

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.annotate(teams_count=Count("teams", distinct=True))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Organization admins manage members on their organization's page.
        if obj is not None and organizations_managed_by(request.user).filter(pk=obj.pk).exists():
            return True
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_proxy_admin", False))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:  # type: ignore[override]
        if getattr(request.user, "is_proxy_admin", False):
            return ()
        return (
            "alias",
            "models",
            "blocked",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "rpm_limit",
            "tpm_limit",
        )

    @admin.display(description="Teams", ordering="teams_count")
    def teams_count(self, obj: Organization) -> int:
        return obj.teams_count  # type: ignore[attr-defined]

    @admin.display(description="Models")
    def models_display(self, obj: Governed) -> str:  # type: ignore[override]
        return GovernedAdmin.models_display(obj)

    @admin.display(description="Spend / budget")
    def spend_budget(self, obj: Governed) -> str:  # type: ignore[override]
        return GovernedAdmin.spend_budget(obj)

    def create(self, request: HttpRequest, values: dict[str, Any]) -> Organization:
        return organization_create(actor=request.user, **values)

    def update(
        self, request: HttpRequest, obj: Organization, values: dict[str, Any]
    ) -> Organization:
        return organization_update(actor=request.user, organization=obj, **values)

    def delete(self, request: HttpRequest, objs: list[Organization]) -> None:
        organization_delete(actor=request.user, organizations=objs)


# --- teams ---------------------------------------------------------------------------------


class OrganizationChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Organization) -> str:  # type: ignore[override]
        return obj.alias


class TeamForm(GovernedForm):
    level_name = "team"
    models = ModelListField()
    organization = OrganizationChoiceField(queryset=Organization.objects.none(), required=False)

    class Meta:
        model = Team
        fields = (
            "alias",
            "organization",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "rpm_limit",
            "tpm_limit",
            "blocked",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "organization" in self.fields:
            self.fields["organization"].queryset = organizations_managed_by(self.user)  # type: ignore[attr-defined]

    def governance_parent(self) -> Governed | None:
        if "organization" in self.fields:
            return self.cleaned_data.get("organization")
        return self.instance.organization


@admin.register(Team)
class TeamAdmin(GovernedAdmin):
    visible_selector = staticmethod(teams_visible_to)
    managed_selector = staticmethod(teams_managed_by)

    form = TeamForm
    inlines = (TeamMembershipInline,)
    list_display = (
        "alias",
        "organization",
        "models_display",
        "spend_budget",
        "members_count",
        "projects_count",
        "blocked",
    )
    list_select_related = ("organization",)
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter), "blocked")
    search_fields = ("alias", "id")
    fieldsets: ClassVar[Any] = (
        (None, {"fields": ("alias", "organization", "models", "blocked")}),
        GOVERNANCE_FIELDSET,
    )

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.annotate(
            members_count=Count("memberships", distinct=True),
            projects_count=Count("projects", distinct=True),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return (
            self.has_module_permission(request) and organizations_managed_by(request.user).exists()
        ) or bool(getattr(request.user, "is_proxy_admin", False))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        governed = teams_governed_by(request.user)
        return governed.filter(pk=obj.pk).exists() if obj is not None else governed.exists()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:  # type: ignore[override]
        if obj is None or teams_governed_by(request.user).filter(pk=obj.pk).exists():
            return ()
        # Team admins manage members, projects and keys, not their team's settings.
        return (
            "alias",
            "organization",
            "models",
            "blocked",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "rpm_limit",
            "tpm_limit",
        )

    @admin.display(description="Members", ordering="members_count")
    def members_count(self, obj: Team) -> int:
        return obj.members_count  # type: ignore[attr-defined]

    @admin.display(description="Projects", ordering="projects_count")
    def projects_count(self, obj: Team) -> int:
        return obj.projects_count  # type: ignore[attr-defined]

    @admin.display(description="Models")
    def models_display(self, obj: Governed) -> str:  # type: ignore[override]
        return GovernedAdmin.models_display(obj)

    @admin.display(description="Spend / budget")
    def spend_budget(self, obj: Governed) -> str:  # type: ignore[override]
        return GovernedAdmin.spend_budget(obj)

    def create(self, request: HttpRequest, values: dict[str, Any]) -> Team:
        return team_create(actor=request.user, **values)

    def update(self, request: HttpRequest, obj: Team, values: dict[str, Any]) -> Team:
        return team_update(actor=request.user, team=obj, **values)

    def delete(self, request: HttpRequest, objs: list[Team]) -> None:
        team_delete(actor=request.user, teams=objs)


# --- users ---------------------------------------------------------------------------------


class UserAddForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "role")


# Who submits the admin's password page: its form saves through the service as them.
_password_setter: ContextVar[Any] = ContextVar("gatehouse_password_setter")


class UserPasswordForm(AdminPasswordChangeForm):
    """The admin's password page, saved through ``user_update`` (permission checked, audited
    with the password redacted, ``updated_by`` stamped); it always sets a password."""

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.fields.pop("usable_password", None)
        self.fields["password1"].required = self.fields["password2"].required = True

    def save(self, commit: bool = True) -> User:
        password = self.cleaned_data["password1"]
        return user_update(actor=_password_setter.get(), user=self.user, password=password)


@admin.register(User)
class UserAdmin(ScopedModelAdmin, DjangoUserAdmin):
    visible_selector = staticmethod(users_visible_to)
    managed_selector = staticmethod(_proxy_admins_only)

    add_form = UserAddForm
    change_password_form = UserPasswordForm
    list_display = ("username", "email", "role", "is_staff", "is_active", "last_login")
    list_filter = ("role", "is_staff", "is_active")
    search_fields = ("username", "email", "id")
    ordering = ("username",)
    fieldsets: ClassVar[Any] = (
        (None, {"fields": ("username", "password")}),
        ("Person", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "is_active")}),
        GOVERNANCE_FIELDSET,
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "role", "password1", "password2"),
            },
        ),
    )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "can_read_everything", False))

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        token = _password_setter.set(request.user)
        try:
            return super().user_change_password(request, id, form_url)
        finally:
            _password_setter.reset(token)

    def form_values(self, form: Any, change: bool) -> dict[str, Any]:
        data = form.cleaned_data
        if change:
            return {n: data[n] for n in form.changed_data if n in data and n != "password"}
        return {
            "username": data["username"],
            "email": data.get("email") or "",
            "role": data["role"],
            "password": data.get("password1"),
        }

    def create(self, request: HttpRequest, values: dict[str, Any]) -> User:
        return user_create(actor=request.user, **values)

    def update(self, request: HttpRequest, obj: User, values: dict[str, Any]) -> User:
        return user_update(actor=request.user, user=obj, **values)

    def delete(self, request: HttpRequest, objs: list[User]) -> None:
        user_delete(actor=request.user, users=objs)


# --- catalog and access groups -------------------------------------------------------------


class ProxyAdminOnly(ScopedModelAdmin):
    managed_selector = staticmethod(lambda actor: type(actor).objects.none())

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_proxy_admin", False))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "can_read_everything", False))


@admin.register(CatalogModel)
class CatalogModelAdmin(ProxyAdminOnly):
    visible_selector = staticmethod(catalog_models_visible_to)
    list_display = (
        "name",
        "mode",
        "provider",
        "upstream_model",
        "input_cost_per_token",
        "output_cost_per_token",
        "max_output_tokens",
    )
    list_filter = ("mode", "provider")
    search_fields = ("name", "upstream_model")
    fields = (
        "name",
        "mode",
        "provider",
        "upstream_model",
        "api_base",
        "api_key_env",
        "input_cost_per_token",
        "output_cost_per_token",
        "max_output_tokens",
    )

    def create(self, request: HttpRequest, values: dict[str, Any]) -> CatalogModel:
        return catalog_model_create(actor=request.user, **values)

    def update(
        self, request: HttpRequest, obj: CatalogModel, values: dict[str, Any]
    ) -> CatalogModel:
        return catalog_model_update(actor=request.user, model=obj, **values)

    def delete(self, request: HttpRequest, objs: list[CatalogModel]) -> None:
        catalog_model_delete(actor=request.user, models=objs)


class AccessGroupForm(forms.ModelForm):
    models = ModelListField()
    mcp_servers = ModelListField(label="MCP servers", help_text="Comma-separated MCP server names.")
    agents = ModelListField(help_text="Comma-separated agent names.")

    class Meta:
        model = AccessGroup
        fields = ("name", "description", "models", "mcp_servers", "agents")


@admin.register(AccessGroup)
class AccessGroupAdmin(ProxyAdminOnly):
    visible_selector = staticmethod(access_groups_visible_to)
    form = AccessGroupForm
    list_display = ("name", "description")
    search_fields = ("name",)

    def create(self, request: HttpRequest, values: dict[str, Any]) -> AccessGroup:
        return access_group_create(actor=request.user, **values)

    def update(self, request: HttpRequest, obj: AccessGroup, values: dict[str, Any]) -> AccessGroup:
        return access_group_update(actor=request.user, group=obj, **values)

    def delete(self, request: HttpRequest, objs: list[AccessGroup]) -> None:
        access_group_delete(actor=request.user, groups=objs)


# --- the audit log (read-only) ------------------------------------------------------------------


class ObjectTypeFilter(admin.SimpleListFilter):
    """The object types as a fixed list (no DISTINCT over the whole log)."""

    title = "object type"
    parameter_name = "object_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = sorted(OBJECT_TYPES.values())
        return [(name, name.replace("_", " ")) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(object_type=value) if value else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyScopedModelAdmin):
    """Read by proxy admins and viewers (everything) and organization admins (their
    organizations' entries); nobody adds, changes or deletes an entry."""

    visible_selector = staticmethod(audit_entries_visible_to)
    list_display = ("at", "actor", "source", "action", "object_type", "object_id", "object_repr")
    list_filter = ("action", ObjectTypeFilter, "source")
    search_fields = ("=object_id", "=actor", "=actor_user_id", "=actor_key_id")
    date_hierarchy = "at"
    show_full_result_count = False
    fields = (
        "at",
        "actor",
        "actor_user_id",
        "actor_key_id",
        "source",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "organization_id",
        "team_id",
        "changes_table",
    )
    readonly_fields = fields

    def has_module_permission(self, request: HttpRequest) -> bool:
        # Asked several times per admin page (navigation, index): one query per request.
        if not hasattr(request, "_audit_log_readable"):
            request._audit_log_readable = super().has_module_permission(  # type: ignore[attr-defined]
                request
            ) and audit_log_readable_by(request.user)
        return bool(request._audit_log_readable)  # type: ignore[attr-defined]

    @admin.display(description="changes")
    def changes_table(self, obj: AuditEntry) -> str:
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            (
                (name, _shown(values[0]), _shown(values[1]))
                for name, values in sorted(obj.changes.items())
            ),
        )
        return format_html(
            "<table><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )


def _shown(value: Any) -> str:
    return "—" if value is None else json.dumps(value) if not isinstance(value, str) else value
