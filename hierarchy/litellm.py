"""LiteLLM-compatible /user/*, /organization/*, /team/* and /model/* endpoints."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import StrictSerializer
from config.api_fields import GovernanceInput, id_field
from config.litellm import (
    budget_fields,
    litellm_view,
    money,
    page_bounds,
    parse,
    query_id,
    required,
)
from hierarchy.access import NotFound, get_visible
from hierarchy.actors import Actor, as_actor
from hierarchy.models import (
    CatalogModel,
    ModelMode,
    Organization,
    OrganizationRole,
    Role,
    Team,
    TeamMembership,
    TeamRole,
    User,
)
from hierarchy.selectors import (
    catalog_models_visible_to,
    organizations_visible_to,
    teams_visible_to,
    users_visible_to,
)
from hierarchy.services import (
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
from keys.litellm import key_to_litellm
from keys.services import key_generate

ENV_PREFIX = "os.environ/"
MSG_API_KEY_LITERAL = (
    "Gatehouse never stores upstream secrets: put the key in an environment variable and "
    "send api_key as 'os.environ/NAME'."
)
MSG_PRICE_CONFLICT = "{field} differs from litellm_params.{field}: give the price once."
MSG_MEMBER_NEEDS_USER = "Each member needs a user_id or a user_email of an existing user."


# --- users -----------------------------------------------------------------------------------


class UserUpdateRequest(GovernanceInput):
    user_id = serializers.CharField(max_length=128)
    user_email = serializers.EmailField(required=False, allow_blank=True, allow_null=True)
    user_alias = serializers.CharField(required=False, allow_null=True, max_length=150)
    user_role = serializers.ChoiceField(choices=Role.choices, required=False)
    password = serializers.CharField(required=False, write_only=True, max_length=128)


class UserNewRequest(UserUpdateRequest):
    user_id = id_field()
    teams = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, max_length=1000
    )
    auto_create_key = serializers.BooleanField(required=False, default=True)


def _ids_request(field: str) -> type[StrictSerializer]:
    """A body of one list of ids, e.g. ``{"team_ids": [...]}``."""
    ids = serializers.ListField(
        child=serializers.CharField(max_length=128), min_length=1, max_length=1000
    )
    return type(f"{field.title().replace('_', '')}Request", (StrictSerializer,), {field: ids})


UserIdsRequest = _ids_request("user_ids")
OrganizationIdsRequest = _ids_request("organization_ids")
TeamIdsRequest = _ids_request("team_ids")


def user_to_litellm(user: User) -> dict[str, Any]:
    return {
        "user_id": user.pk,
        "user_email": user.email or None,
        "user_alias": user.username,
        "user_role": user.role,
        "teams": [m.team_id for m in user.team_memberships.all()],
        **budget_fields(user),
    }


def _user_values(values: dict[str, Any]) -> dict[str, Any]:
    renamed = {
        "user_email": "email",
        "user_alias": "username",
        "user_role": "role",
        "user_id": "id",
    }
    return {renamed.get(k, k): v for k, v in values.items()}


def _users(actor: Actor) -> QuerySet[User]:
    return users_visible_to(actor).prefetch_related("team_memberships")


@litellm_view(["POST"])
def user_new(request: Request) -> Response:
    """Creates the user and, as LiteLLM does, a key for them (``auto_create_key``)."""
    actor = as_actor(request.user)
    values = _user_values(parse(UserNewRequest, request.data))
    teams = [get_visible(teams_visible_to(actor), pk, "team") for pk in values.pop("teams", [])]
    auto_create_key = values.pop("auto_create_key", True)
    with transaction.atomic():
        username = values.pop("username", None) or values.get("email") or values.get("id")
        user = user_create(actor=actor, username=username or "", **values)
        for team in teams:
            team_member_set(actor=actor, team=team, user=user, role=TeamRole.MEMBER)
        body = user_to_litellm(_users(actor).get(pk=user.pk))
        if not auto_create_key:
            return Response(body)
        key, plaintext = key_generate(actor=actor, user=user)
    return Response(
        {**body, "key": plaintext, "token": key.token_hash, "key_name": key.key_name},
        headers={"Cache-Control": "no-store"},
    )


@litellm_view(["POST"])
def user_update_view(request: Request) -> Response:
    actor = as_actor(request.user)
    user = get_visible(users_visible_to(actor), required(request.data, "user_id"), "user")
    values = _user_values(parse(UserUpdateRequest, request.data))
    values.pop("id")
    user_update(actor=actor, user=user, **values)
    return Response(user_to_litellm(_users(actor).get(pk=user.pk)))


@litellm_view(["GET"])
def user_info(request: Request) -> Response:
    actor = as_actor(request.user)
    user_id = request.query_params.get("user_id") or (actor.user.pk if actor.user else None)
    user = get_visible(_users(actor), user_id, "user")
    keys = user.keys.filter(pk__in=_visible_key_ids(actor)).prefetch_related("access_groups")
    return Response(
        {
            "user_id": user.pk,
            "user_info": user_to_litellm(user),
            "keys": [key_to_litellm(k) for k in keys],
            "teams": [m.team_id for m in user.team_memberships.all()],
        }
    )


def _visible_key_ids(actor: Actor) -> Any:
    from keys.selectors import keys_visible_to

    return keys_visible_to(actor).values("pk")


@litellm_view(["GET"])
def user_list(request: Request) -> Response:
    actor = as_actor(request.user)
    page, size = page_bounds(request, default_size=25)
    users = _users(actor).order_by("username")
    role = request.query_params.get("role")
    if role:
        users = users.filter(role=role)
    total = users.count()
    rows = users[(page - 1) * size : page * size]
    return Response(
        {
            "users": [user_to_litellm(u) for u in rows],
            "total": total,
            "page": page,
            "page_size": size,
            "total_pages": max(1, math.ceil(total / size)),
        }
    )


@litellm_view(["POST", "DELETE"])
def user_delete_view(request: Request) -> Response:
    actor = as_actor(request.user)
    ids = parse(UserIdsRequest, request.data)["user_ids"]
    users = [get_visible(users_visible_to(actor), pk, "user") for pk in dict.fromkeys(ids)]
    user_delete(actor=actor, users=users)
    return Response({"deleted_users": [u.pk for u in users]})


# --- organizations ---------------------------------------------------------------------------


class OrganizationUpdateRequest(GovernanceInput):
    organization_id = serializers.CharField(max_length=128)
    organization_alias = serializers.CharField(required=False, max_length=200)


class OrganizationNewRequest(OrganizationUpdateRequest):
    organization_id = id_field()
    organization_alias = serializers.CharField(max_length=200)


class MemberSpec(StrictSerializer):
    user_id = serializers.CharField(required=False, max_length=128)
    user_email = serializers.EmailField(required=False)
    role = serializers.CharField(required=False, max_length=32)


class MembersField(serializers.Field):
    """LiteLLM sends one member object or a list of them."""

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        items = data if isinstance(data, list) else [data]
        if not items or len(items) > 1000:
            raise serializers.ValidationError("Send one member or a list of 1 to 1000 members.")
        serializer = MemberSpec(data=items, many=True)
        serializer.is_valid(raise_exception=True)
        return [dict(item) for item in serializer.validated_data]

    def to_representation(self, value: Any) -> Any:
        return value


class OrganizationMemberAddRequest(StrictSerializer):
    organization_id = serializers.CharField(max_length=128)
    member = MembersField()


class OrganizationMemberDeleteRequest(StrictSerializer):
    organization_id = serializers.CharField(max_length=128)
    user_id = serializers.CharField(required=False, max_length=128)
    user_email = serializers.EmailField(required=False)


def organization_to_litellm(organization: Organization) -> dict[str, Any]:
    return {
        "organization_id": organization.pk,
        "organization_alias": organization.alias,
        "members": [
            {"user_id": m.user_id, "user_role": m.role, "organization_id": organization.pk}
            for m in organization.memberships.all()
        ],
        "teams": [{"team_id": t.pk, "team_alias": t.alias} for t in organization.teams.all()],
        **budget_fields(organization),
    }


def _organizations(actor: Actor) -> QuerySet[Organization]:
    return organizations_visible_to(actor).prefetch_related("memberships", "teams")


def _organization_values(values: dict[str, Any]) -> dict[str, Any]:
    renamed = {"organization_alias": "alias", "organization_id": "id"}
    return {renamed.get(k, k): v for k, v in values.items()}


@litellm_view(["POST"])
def organization_new(request: Request) -> Response:
    actor = as_actor(request.user)
    organization = organization_create(
        actor=actor, **_organization_values(parse(OrganizationNewRequest, request.data))
    )
    return Response(organization_to_litellm(_organizations(actor).get(pk=organization.pk)))


@litellm_view(["PATCH", "POST"])
def organization_update_view(request: Request) -> Response:
    actor = as_actor(request.user)
    organization = get_visible(
        organizations_visible_to(actor), required(request.data, "organization_id"), "organization"
    )
    values = _organization_values(parse(OrganizationUpdateRequest, request.data))
    values.pop("id")
    organization_update(actor=actor, organization=organization, **values)
    return Response(organization_to_litellm(_organizations(actor).get(pk=organization.pk)))


@litellm_view(["GET", "POST"])
def organization_info(request: Request) -> Response:
    actor = as_actor(request.user)
    pk = request.query_params.get("organization_id") or required(request.data, "organization_id")
    return Response(organization_to_litellm(get_visible(_organizations(actor), pk, "organization")))


@litellm_view(["GET"])
def organization_list(request: Request) -> Response:
    actor = as_actor(request.user)
    return Response(
        [organization_to_litellm(o) for o in _organizations(actor).order_by("created_at")]
    )


@litellm_view(["DELETE", "POST"])
def organization_delete_view(request: Request) -> Response:
    actor = as_actor(request.user)
    ids = parse(OrganizationIdsRequest, request.data)["organization_ids"]
    organizations = [
        get_visible(organizations_visible_to(actor), pk, "organization")
        for pk in dict.fromkeys(ids)
    ]
    organization_delete(actor=actor, organizations=organizations)
    return Response({"deleted_organizations": [o.pk for o in organizations]})


def _member_user(actor: Actor, spec: dict[str, Any]) -> User:
    visible = users_visible_to(actor)
    if spec.get("user_id"):
        return get_visible(visible, spec["user_id"], "user")
    if spec.get("user_email"):
        user = visible.filter(email=spec["user_email"]).first()
        if user is not None:
            return user
        raise NotFound(f"User not found, user_email={spec['user_email']}")
    raise ValidationError({"member": [MSG_MEMBER_NEEDS_USER]})


ORG_ROLES = {
    "org_admin": OrganizationRole.ORG_ADMIN,
    "member": OrganizationRole.MEMBER,
    "internal_user": OrganizationRole.MEMBER,
}


@litellm_view(["POST"])
def organization_member_add(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(OrganizationMemberAddRequest, request.data)
    organization = get_visible(
        organizations_visible_to(actor), values["organization_id"], "organization"
    )
    with transaction.atomic():
        memberships = [
            organization_member_set(
                actor=actor,
                organization=organization,
                user=_member_user(actor, spec),
                role=ORG_ROLES.get(spec.get("role") or "member", spec.get("role") or "member"),
            )
            for spec in values["member"]
        ]
    return Response(
        {
            "organization_id": organization.pk,
            "updated_organization_memberships": [
                {"user_id": m.user_id, "organization_id": organization.pk, "user_role": m.role}
                for m in memberships
            ],
        }
    )


@litellm_view(["DELETE", "POST"])
def organization_member_delete(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(OrganizationMemberDeleteRequest, request.data)
    organization = get_visible(
        organizations_visible_to(actor), values["organization_id"], "organization"
    )
    user = _member_user(actor, values)
    organization_member_remove(actor=actor, organization=organization, user=user)
    return Response({"organization_id": organization.pk, "user_id": user.pk})


# --- teams -----------------------------------------------------------------------------------


class TeamUpdateRequest(GovernanceInput):
    team_id = serializers.CharField(max_length=128)
    team_alias = serializers.CharField(required=False, max_length=200)
    organization_id = serializers.CharField(required=False, allow_null=True, max_length=128)


class TeamNewRequest(TeamUpdateRequest):
    team_id = id_field()
    team_alias = serializers.CharField(max_length=200)
    members_with_roles = serializers.ListField(child=MemberSpec(), required=False, max_length=1000)


class TeamMemberAddRequest(StrictSerializer):
    team_id = serializers.CharField(max_length=128)
    member = MembersField()


class TeamMemberDeleteRequest(StrictSerializer):
    team_id = serializers.CharField(max_length=128)
    user_id = serializers.CharField(required=False, max_length=128)
    user_email = serializers.EmailField(required=False)


def team_role_name(role: str) -> str:
    """LiteLLM calls a team member ``user`` (Decision 11)."""
    return "user" if role == TeamRole.MEMBER else role


def team_to_litellm(team: Team) -> dict[str, Any]:
    return {
        "team_id": team.pk,
        "team_alias": team.alias,
        "organization_id": team.organization_id,
        "members_with_roles": [
            {
                "user_id": m.user_id,
                "user_email": m.user.email or None,
                "role": team_role_name(m.role),
            }
            for m in team.memberships.all()
        ],
        **budget_fields(team),
    }


def _teams(actor: Actor) -> QuerySet[Team]:
    return teams_visible_to(actor).prefetch_related(
        Prefetch("memberships", queryset=TeamMembership.objects.select_related("user"))
    )


def _team_values(actor: Actor, values: dict[str, Any]) -> dict[str, Any]:
    renamed = {"team_alias": "alias", "team_id": "id", "organization_id": "organization"}
    out = {renamed.get(k, k): v for k, v in values.items()}
    if out.get("organization") is not None:
        out["organization"] = get_visible(
            organizations_visible_to(actor), out["organization"], "organization"
        )
    return out


@litellm_view(["POST"])
def team_new(request: Request) -> Response:
    actor = as_actor(request.user)
    values = _team_values(actor, parse(TeamNewRequest, request.data))
    specs = values.pop("members_with_roles", [])
    with transaction.atomic():
        members = [(_member_user(actor, spec), spec.get("role") or "user") for spec in specs]
        team = team_create(actor=actor, members=members, **values)
    return Response(team_to_litellm(_teams(actor).get(pk=team.pk)))


@litellm_view(["POST"])
def team_update_view(request: Request) -> Response:
    actor = as_actor(request.user)
    team = get_visible(teams_visible_to(actor), required(request.data, "team_id"), "team")
    values = _team_values(actor, parse(TeamUpdateRequest, request.data))
    values.pop("id")
    team_update(actor=actor, team=team, **values)
    return Response(team_to_litellm(_teams(actor).get(pk=team.pk)))


@litellm_view(["GET"])
def team_info(request: Request) -> Response:
    actor = as_actor(request.user)
    team = get_visible(_teams(actor), query_id(request, "team_id"), "team")
    return Response({"team_id": team.pk, "team_info": team_to_litellm(team)})


@litellm_view(["GET"])
def team_list(request: Request) -> Response:
    actor = as_actor(request.user)
    teams = _teams(actor).order_by("created_at")
    organization_id = request.query_params.get("organization_id")
    if organization_id:
        teams = teams.filter(organization_id=organization_id)
    return Response([team_to_litellm(t) for t in teams])


@litellm_view(["POST", "DELETE"])
def team_delete_view(request: Request) -> Response:
    actor = as_actor(request.user)
    ids = parse(TeamIdsRequest, request.data)["team_ids"]
    teams = [get_visible(teams_visible_to(actor), pk, "team") for pk in dict.fromkeys(ids)]
    team_delete(actor=actor, teams=teams)
    return Response({"deleted_teams": [t.pk for t in teams]})


@litellm_view(["POST"])
def team_member_add(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(TeamMemberAddRequest, request.data)
    team = get_visible(teams_visible_to(actor), values["team_id"], "team")
    with transaction.atomic():
        for spec in values["member"]:
            team_member_set(
                actor=actor,
                team=team,
                user=_member_user(actor, spec),
                role=spec.get("role") or "user",
            )
    return Response(team_to_litellm(_teams(actor).get(pk=team.pk)))


@litellm_view(["POST"])
def team_member_delete(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(TeamMemberDeleteRequest, request.data)
    team = get_visible(teams_visible_to(actor), values["team_id"], "team")
    team_member_remove(actor=actor, team=team, user=_member_user(actor, values))
    return Response(team_to_litellm(_teams(actor).get(pk=team.pk)))


# --- model catalog ---------------------------------------------------------------------------


class LiteLLMParams(StrictSerializer):
    model = serializers.CharField(required=False, max_length=200)
    api_base = serializers.URLField(required=False, allow_blank=True, max_length=200)
    api_key = serializers.CharField(required=False, allow_blank=True, max_length=300)
    input_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, min_value=0, required=False
    )
    output_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, min_value=0, required=False
    )


class ModelInfo(StrictSerializer):
    id = serializers.CharField(required=False, max_length=128)
    mode = serializers.ChoiceField(choices=ModelMode.choices, required=False)
    max_output_tokens = serializers.IntegerField(required=False, min_value=1, max_value=10_000_000)
    # LiteLLM takes custom prices here too (and /model/info answers with them here).
    input_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, min_value=0, required=False
    )
    output_cost_per_token = serializers.DecimalField(
        max_digits=21, decimal_places=15, min_value=0, required=False
    )


class ModelNewRequest(StrictSerializer):
    model_name = serializers.CharField(max_length=200)
    litellm_params = LiteLLMParams()
    model_info = ModelInfo(required=False)


class ModelUpdateRequest(ModelNewRequest):
    model_name = serializers.CharField(required=False, max_length=200)
    litellm_params = LiteLLMParams(required=False)
    model_info = ModelInfo()


class ModelDeleteRequest(StrictSerializer):
    id = serializers.CharField(max_length=128)


def _catalog_values(values: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's model_list entry as catalog fields; ``openai/x`` means provider openai."""
    params = dict(values.get("litellm_params") or {})
    info = dict(values.get("model_info") or {})
    out: dict[str, Any] = {}
    if "model_name" in values:
        out["name"] = values["model_name"]
    upstream = params.get("model")
    if upstream:
        provider, _, rest = upstream.partition("/")
        out["provider"] = "mock" if provider == "mock" else "openai"
        out["upstream_model"] = rest if rest and provider in ("openai", "mock") else upstream
    if "api_base" in params:
        out["api_base"] = params["api_base"]
    if "api_key" in params:
        api_key = params["api_key"]
        if api_key and not api_key.startswith(ENV_PREFIX):
            raise ValidationError({"litellm_params.api_key": [MSG_API_KEY_LITERAL]})
        out["api_key_env"] = api_key.removeprefix(ENV_PREFIX)
    for name in ("input_cost_per_token", "output_cost_per_token"):
        if name in params and name in info and params[name] != info[name]:
            raise ValidationError({f"model_info.{name}": [MSG_PRICE_CONFLICT.format(field=name)]})
        if name in params or name in info:
            out[name] = params[name] if name in params else info[name]
    for name in ("mode", "max_output_tokens"):
        if name in info:
            out[name] = info[name]
    return out


def model_to_litellm(model: CatalogModel) -> dict[str, Any]:
    prefix = "mock" if model.provider == "mock" else "openai"
    return {
        "model_name": model.name,
        "litellm_params": {
            "model": f"{prefix}/{model.upstream_model or model.name}",
            "api_base": model.api_base or None,
            "api_key": f"{ENV_PREFIX}{model.api_key_env}" if model.api_key_env else None,
            "input_cost_per_token": money(Decimal(model.input_cost_per_token)),
            "output_cost_per_token": money(Decimal(model.output_cost_per_token)),
        },
        "model_info": {
            "id": model.pk,
            "mode": model.mode,
            "max_output_tokens": model.max_output_tokens,
            "input_cost_per_token": money(Decimal(model.input_cost_per_token)),
            "output_cost_per_token": money(Decimal(model.output_cost_per_token)),
        },
    }


@litellm_view(["POST"])
def model_new(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(ModelNewRequest, request.data)
    model_id = (values.get("model_info") or {}).get("id")
    model = catalog_model_create(actor=actor, id=model_id, **_catalog_values(values))
    return Response(model_to_litellm(model))


@litellm_view(["POST", "PATCH"])
def model_update(request: Request) -> Response:
    actor = as_actor(request.user)
    values = parse(ModelUpdateRequest, request.data)
    model_id = (values.get("model_info") or {}).get("id")
    model = get_visible(catalog_models_visible_to(actor), model_id, "model")
    return Response(
        model_to_litellm(catalog_model_update(actor=actor, model=model, **_catalog_values(values)))
    )


@litellm_view(["POST", "DELETE"])
def model_delete(request: Request) -> Response:
    actor = as_actor(request.user)
    model = get_visible(
        catalog_models_visible_to(actor), parse(ModelDeleteRequest, request.data)["id"], "model"
    )
    catalog_model_delete(actor=actor, models=[model])
    return Response({"message": f"Model {model.pk} deleted."})


@litellm_view(["GET"])
def model_info(request: Request) -> Response:
    models = catalog_models_visible_to(as_actor(request.user))
    model_id = request.query_params.get("litellm_model_id")
    if model_id:
        models = models.filter(pk=model_id)
    return Response({"data": [model_to_litellm(m) for m in models]})
