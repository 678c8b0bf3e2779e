# ruff: noqa: E501 (the expected tables keep one row per two lines)
"""The permission matrix of the management API (DESIGN Decisions 10, 11, 12, 13).

The expected statuses below are written from the rule, not from the code:

- order of checks: scope (404) → permission (403) → validation (400); an object outside
  the caller's view is a 404 even when the caller could not have changed it anyway;
- proxy admin (the master key and a user with role ``proxy_admin``): everything;
- ``proxy_admin_viewer``: reads everything, every write is a 403;
- org admin (``org_admin`` of org A): manages org A's teams (limits included), their
  projects and keys (and org A's members); cannot create or delete organizations nor
  change org A's own settings (403); sees only org A;
- team admin (``admin`` of T1): manages T1's projects, keys and members; cannot change
  T1's models, budgets or limits (403); sees T1, its projects and keys; other teams 404;
- team member (``member`` of T1): sees T1 and its projects, writes 403; T1's keys are not
  among what it sees (404);
- outsider (``internal_user`` without memberships): every object above is a 404 and the
  lists are empty (it still sees itself and its own personal key, nothing else);
- anonymous: 401 everywhere; a wrong HTTP method is a 405 (for anyone signed in).

World (fixed ids, built through the services as SYSTEM):
org A ⊃ T1 ⊃ P1 ⊃ K1 and T2 ⊃ P2; org B ⊃ T3 ⊃ P3 ⊃ K3; catalog M1..M4; access group G1.

Each cell of ``MATRIX`` (row x role) is its own test with its own transaction, so
destructive cells do not leak. ``PREP`` empties an object first where a delete would
otherwise be refused for having children.

The admin's autocomplete endpoint is not covered: no ModelAdmin uses
``autocomplete_fields`` (hierarchy/, projects/, keys/ admin modules).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from hierarchy.actors import SYSTEM
from hierarchy.models import AuditEntry, OrganizationRole, Role, TeamRole, User
from hierarchy.services import (
    access_group_create,
    catalog_model_create,
    organization_create,
    organization_member_set,
    team_create,
    team_delete,
    team_member_set,
    user_create,
)
from keys.models import VirtualKey
from keys.services import hash_key, key_delete, key_generate
from projects.models import Project, UISettings
from projects.services import project_create, project_delete
from spend.services import CallRecord, spend_record_batch
from tests.api_client import ApiClient, as_user, master

K1_PLAINTEXT = "sk-permission-matrix-k1-0123456789abcdefghij"
K3_PLAINTEXT = "sk-permission-matrix-k3-0123456789abcdefghij"

IDS = {
    "A": "org-a",
    "B": "org-b",
    "T1": "team-1",
    "T2": "team-2",
    "T3": "team-3",
    "P1": "project-1",
    "P2": "project-2",
    "P3": "project-3",
    "K1": "key-1",
    "K3": "key-3",
    "K1HASH": hash_key(K1_PLAINTEXT),
    "K3HASH": hash_key(K3_PLAINTEXT),
    "M1": "m-gpt-4o",
    "M2": "m-gpt-4o-mini",
    "M3": "m-claude-3-5-sonnet",
    "M4": "m-claude-3-5-haiku",
    "G1": "group-1",
    "ADMIN": "u-admin",
    "VIEWER": "u-viewer",
    "ORGADMIN": "u-org-admin",
    "TEAMADMIN": "u-team-admin",
    "MEMBER": "u-member",
    "OUTSIDER": "u-outsider",
    "ORGMEMBER": "u-org-member",
    "L1": "request-k1",
    "L3": "request-k3",
    "EA": "",  # audit entry ids: set by ``world``
    "EB": "",
}

# The columns of the tables; "master" (the master key) is checked against "admin".
ROLES = ("master", "admin", "viewer", "org_admin", "team_admin", "member", "outsider", "anon")
ROLE_USERS = {
    "admin": "ADMIN",
    "viewer": "VIEWER",
    "org_admin": "ORGADMIN",
    "team_admin": "TEAMADMIN",
    "member": "MEMBER",
    "outsider": "OUTSIDER",
}

# fmt: off
MATRIX: list[tuple[str, str, str, Any, dict[str, int]]] = [
    # --- REST users ------------------------------------------------------------------------
    ("REST users list", "GET", "/api/v1/users/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST users retrieve MEMBER", "GET", "/api/v1/users/{MEMBER}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 404, "anon": 401}),
    ("REST users retrieve ORGMEMBER", "GET", "/api/v1/users/{ORGMEMBER}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST users create", "POST", "/api/v1/users/", {"username": "newbie", "email": "newbie@example.com"},
     {"admin": 201, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST users update MEMBER", "PATCH", "/api/v1/users/{MEMBER}/", {"first_name": "Renamed"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("REST users delete ORGMEMBER", "DELETE", "/api/v1/users/{ORGMEMBER}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST users PUT MEMBER", "PUT", "/api/v1/users/{MEMBER}/", {"username": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST organizations ----------------------------------------------------------------
    ("REST organizations list", "GET", "/api/v1/organizations/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST organizations retrieve A", "GET", "/api/v1/organizations/{A}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations retrieve B", "GET", "/api/v1/organizations/{B}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations create", "POST", "/api/v1/organizations/", {"alias": "org-new"},
     {"admin": 201, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST organizations update A", "PATCH", "/api/v1/organizations/{A}/", {"max_budget": 1000},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations update B", "PATCH", "/api/v1/organizations/{B}/", {"max_budget": 1000},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations delete A (has teams)", "DELETE", "/api/v1/organizations/{A}/", None,
     {"admin": 400, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations delete B (emptied)", "DELETE", "/api/v1/organizations/{B}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations members add A", "POST", "/api/v1/organizations/{A}/members/", {"user": "{MEMBER}", "role": "member"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations members remove A", "DELETE", "/api/v1/organizations/{A}/members/", {"user": "{ORGMEMBER}"},
     {"admin": 204, "viewer": 403, "org_admin": 204, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations members add B", "POST", "/api/v1/organizations/{B}/members/", {"user": "{OUTSIDER}", "role": "member"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST organizations members GET A", "GET", "/api/v1/organizations/{A}/members/", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST organizations PUT A", "PUT", "/api/v1/organizations/{A}/", {"alias": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST teams ------------------------------------------------------------------------
    ("REST teams list", "GET", "/api/v1/teams/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST teams retrieve T1", "GET", "/api/v1/teams/{T1}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 404, "anon": 401}),
    ("REST teams retrieve T3", "GET", "/api/v1/teams/{T3}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST teams create in A", "POST", "/api/v1/teams/", {"alias": "team-new", "organization": "{A}"},
     {"admin": 201, "viewer": 403, "org_admin": 201, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST teams create in B", "POST", "/api/v1/teams/", {"alias": "team-new", "organization": "{B}"},
     {"admin": 201, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST teams create without organization", "POST", "/api/v1/teams/", {"alias": "team-new"},
     {"admin": 201, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST teams update T1 limits", "PATCH", "/api/v1/teams/{T1}/", {"max_budget": 50, "rpm_limit": 10},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("REST teams update T1 models", "PATCH", "/api/v1/teams/{T1}/", {"models": ["gpt-4o"]},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("REST teams update T3 limits", "PATCH", "/api/v1/teams/{T3}/", {"max_budget": 50, "rpm_limit": 10},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST teams delete T1 (has projects)", "DELETE", "/api/v1/teams/{T1}/", None,
     {"admin": 400, "viewer": 403, "org_admin": 400, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("REST teams delete T2 (emptied)", "DELETE", "/api/v1/teams/{T2}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 204, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST teams members add T1", "POST", "/api/v1/teams/{T1}/members/", {"user": "{MEMBER}", "role": "member"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("REST teams members remove T1", "DELETE", "/api/v1/teams/{T1}/members/", {"user": "{MEMBER}"},
     {"admin": 204, "viewer": 403, "org_admin": 204, "team_admin": 204, "member": 403, "outsider": 404, "anon": 401}),
    ("REST teams members add T3", "POST", "/api/v1/teams/{T3}/members/", {"user": "{OUTSIDER}", "role": "member"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST teams members GET T1", "GET", "/api/v1/teams/{T1}/members/", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST teams PUT T1", "PUT", "/api/v1/teams/{T1}/", {"alias": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST projects ---------------------------------------------------------------------
    ("REST projects list", "GET", "/api/v1/projects/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST projects retrieve P1", "GET", "/api/v1/projects/{P1}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 404, "anon": 401}),
    ("REST projects retrieve P3", "GET", "/api/v1/projects/{P3}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST projects create in T1", "POST", "/api/v1/projects/", {"alias": "project-new", "team": "{T1}"},
     {"admin": 201, "viewer": 403, "org_admin": 201, "team_admin": 201, "member": 403, "outsider": 404, "anon": 401}),
    ("REST projects create in T3", "POST", "/api/v1/projects/", {"alias": "project-new", "team": "{T3}"},
     {"admin": 201, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST projects update P1", "PATCH", "/api/v1/projects/{P1}/", {"description": "updated", "max_budget": 5},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("REST projects update P3", "PATCH", "/api/v1/projects/{P3}/", {"description": "updated", "max_budget": 5},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST projects delete P1 (has a key)", "DELETE", "/api/v1/projects/{P1}/", None,
     {"admin": 400, "viewer": 403, "org_admin": 400, "team_admin": 400, "member": 403, "outsider": 404, "anon": 401}),
    ("REST projects delete P1 (keyless)", "DELETE", "/api/v1/projects/{P1}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 204, "team_admin": 204, "member": 403, "outsider": 404, "anon": 401}),
    ("REST projects delete P2", "DELETE", "/api/v1/projects/{P2}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 204, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST projects PUT P1", "PUT", "/api/v1/projects/{P1}/", {"alias": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST projects PATCH list", "PATCH", "/api/v1/projects/", {"alias": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST keys -------------------------------------------------------------------------
    ("REST keys list", "GET", "/api/v1/keys/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST keys retrieve K1", "GET", "/api/v1/keys/{K1}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys retrieve K3", "GET", "/api/v1/keys/{K3}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys create in P1", "POST", "/api/v1/keys/", {"project": "{P1}", "key_alias": "key-new"},
     {"admin": 201, "viewer": 403, "org_admin": 201, "team_admin": 201, "member": 403, "outsider": 404, "anon": 401}),
    ("REST keys create in T3", "POST", "/api/v1/keys/", {"team": "{T3}", "key_alias": "key-new"},
     {"admin": 201, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys update K1", "PATCH", "/api/v1/keys/{K1}/", {"key_alias": "renamed", "max_budget": 1},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys update K3", "PATCH", "/api/v1/keys/{K3}/", {"key_alias": "renamed", "max_budget": 1},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys delete K1", "DELETE", "/api/v1/keys/{K1}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 204, "team_admin": 204, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys regenerate K1", "POST", "/api/v1/keys/{K1}/regenerate/", {},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys block K1", "POST", "/api/v1/keys/{K1}/block/", {},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys unblock K1", "POST", "/api/v1/keys/{K1}/unblock/", {},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys block K3", "POST", "/api/v1/keys/{K3}/block/", {},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST keys PUT K1", "PUT", "/api/v1/keys/{K1}/", {"key_alias": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST keys regenerate GET K1", "GET", "/api/v1/keys/{K1}/regenerate/", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST model catalog ----------------------------------------------------------------
    ("REST models list", "GET", "/api/v1/models/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST models retrieve M1", "GET", "/api/v1/models/{M1}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST models create", "POST", "/api/v1/models/", {"name": "new-model", "provider": "mock"},
     {"admin": 201, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST models update M1", "PATCH", "/api/v1/models/{M1}/", {"input_cost_per_token": "0.000001"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST models delete M4", "DELETE", "/api/v1/models/{M4}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST models PUT M1", "PUT", "/api/v1/models/{M1}/", {"name": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST access groups ----------------------------------------------------------------
    ("REST access-groups list", "GET", "/api/v1/access-groups/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST access-groups retrieve G1", "GET", "/api/v1/access-groups/{G1}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST access-groups create", "POST", "/api/v1/access-groups/", {"name": "group-new", "models": ["gpt-4o"]},
     {"admin": 201, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST access-groups update G1", "PATCH", "/api/v1/access-groups/{G1}/", {"description": "updated"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST access-groups delete G1", "DELETE", "/api/v1/access-groups/{G1}/", None,
     {"admin": 204, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST access-groups PUT G1", "PUT", "/api/v1/access-groups/{G1}/", {"name": "renamed"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST UI settings ------------------------------------------------------------------
    ("REST ui-settings get", "GET", "/api/v1/ui-settings/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST ui-settings patch", "PATCH", "/api/v1/ui-settings/", {"enable_projects_ui": True},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("REST ui-settings POST", "POST", "/api/v1/ui-settings/", {"enable_projects_ui": True},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST spend ------------------------------------------------------------------------
    ("REST spend logs list", "GET", "/api/v1/spend/logs/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST spend logs retrieve L1", "GET", "/api/v1/spend/logs/{L1}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("REST spend logs retrieve L3", "GET", "/api/v1/spend/logs/{L3}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST spend logs export", "GET", "/api/v1/spend/logs/export/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST spend logs POST", "POST", "/api/v1/spend/logs/", {"request_id": "forged"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST spend logs DELETE L1", "DELETE", "/api/v1/spend/logs/{L1}/", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST spend report", "GET", "/api/v1/spend/report/?group_by=project", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST spend report export", "GET", "/api/v1/spend/report/export/?group_by=project", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST spend report POST", "POST", "/api/v1/spend/report/", {},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- REST audit log (read-only; proxy admins and viewers: all, org admins: their
    # organizations' entries, everyone else an empty list: a list is never a 403) ----------
    ("REST audit list", "GET", "/api/v1/audit/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("REST audit retrieve EA (T1 created)", "GET", "/api/v1/audit/{EA}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST audit retrieve EB (T3 created)", "GET", "/api/v1/audit/{EB}/", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("REST audit POST", "POST", "/api/v1/audit/", {"action": "create"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST audit PATCH EA", "PATCH", "/api/v1/audit/{EA}/", {"changes": {}},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("REST audit DELETE EA", "DELETE", "/api/v1/audit/{EA}/", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /spend/logs ---------------------------------------------------------------
    ("LiteLLM spend/logs", "GET", "/spend/logs", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM spend/logs POST", "POST", "/spend/logs", {},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /user/* -------------------------------------------------------------------
    ("LiteLLM user/new", "POST", "/user/new", {"user_email": "newbie@example.com"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM user/info MEMBER", "GET", "/user/info?user_id={MEMBER}", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 404, "anon": 401}),
    ("LiteLLM user/info ORGMEMBER", "GET", "/user/info?user_id={ORGMEMBER}", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM user/list", "GET", "/user/list", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM user/update MEMBER", "POST", "/user/update", {"user_id": "{MEMBER}", "user_alias": "renamed"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM user/delete ORGMEMBER", "POST", "/user/delete", {"user_ids": ["{ORGMEMBER}"]},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM user/delete GET", "GET", "/user/delete", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /organization/* -----------------------------------------------------------
    ("LiteLLM organization/new", "POST", "/organization/new", {"organization_alias": "org-new"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM organization/update A", "POST", "/organization/update", {"organization_id": "{A}", "max_budget": 1000},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/update A (PATCH)", "PATCH", "/organization/update", {"organization_id": "{A}", "max_budget": 1000},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/update B", "POST", "/organization/update", {"organization_id": "{B}", "max_budget": 1000},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/info A", "GET", "/organization/info?organization_id={A}", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/info B", "GET", "/organization/info?organization_id={B}", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/list", "GET", "/organization/list", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM organization/delete A (has teams)", "DELETE", "/organization/delete", {"organization_ids": ["{A}"]},
     {"admin": 400, "viewer": 403, "org_admin": 403, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/delete B (emptied)", "POST", "/organization/delete", {"organization_ids": ["{B}"]},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/member_add A", "POST", "/organization/member_add",
     {"organization_id": "{A}", "member": {"user_id": "{MEMBER}", "role": "member"}},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/member_delete A", "POST", "/organization/member_delete",
     {"organization_id": "{A}", "user_id": "{ORGMEMBER}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/member_add B", "POST", "/organization/member_add",
     {"organization_id": "{B}", "member": {"user_id": "{OUTSIDER}", "role": "member"}},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM organization/new GET", "GET", "/organization/new", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /team/* -------------------------------------------------------------------
    ("LiteLLM team/new in A", "POST", "/team/new", {"team_alias": "team-new", "organization_id": "{A}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM team/new in B", "POST", "/team/new", {"team_alias": "team-new", "organization_id": "{B}"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM team/new without organization", "POST", "/team/new", {"team_alias": "team-new"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM team/update T1 limits", "POST", "/team/update", {"team_id": "{T1}", "max_budget": 50, "rpm_limit": 10},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM team/update T1 models", "POST", "/team/update", {"team_id": "{T1}", "models": ["gpt-4o"]},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM team/update T3 limits", "POST", "/team/update", {"team_id": "{T3}", "max_budget": 50, "rpm_limit": 10},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM team/info T1", "GET", "/team/info?team_id={T1}", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 404, "anon": 401}),
    ("LiteLLM team/info T3", "GET", "/team/info?team_id={T3}", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM team/list", "GET", "/team/list", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM team/delete T1 (has projects)", "DELETE", "/team/delete", {"team_ids": ["{T1}"]},
     {"admin": 400, "viewer": 403, "org_admin": 400, "team_admin": 403, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM team/delete T2 (emptied)", "POST", "/team/delete", {"team_ids": ["{T2}"]},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM team/member_add T1", "POST", "/team/member_add",
     {"team_id": "{T1}", "member": {"user_id": "{MEMBER}", "role": "user"}},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM team/member_delete T1", "POST", "/team/member_delete", {"team_id": "{T1}", "user_id": "{MEMBER}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM team/member_add T3", "POST", "/team/member_add",
     {"team_id": "{T3}", "member": {"user_id": "{OUTSIDER}", "role": "user"}},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM team/list POST", "POST", "/team/list", {},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /project/* ----------------------------------------------------------------
    ("LiteLLM project/new in T1", "POST", "/project/new", {"project_alias": "project-new", "team_id": "{T1}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM project/new in T3", "POST", "/project/new", {"project_alias": "project-new", "team_id": "{T3}"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM project/update P1", "POST", "/project/update", {"project_id": "{P1}", "description": "updated", "max_budget": 5},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM project/update P3", "POST", "/project/update", {"project_id": "{P3}", "description": "updated", "max_budget": 5},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM project/info P1", "GET", "/project/info?project_id={P1}", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 404, "anon": 401}),
    ("LiteLLM project/info P3", "GET", "/project/info?project_id={P3}", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM project/list", "GET", "/project/list", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM project/delete P1 (has a key)", "DELETE", "/project/delete", {"project_ids": ["{P1}"]},
     {"admin": 400, "viewer": 403, "org_admin": 400, "team_admin": 400, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM project/delete P1 (keyless)", "POST", "/project/delete", {"project_ids": ["{P1}"]},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM project/delete P2", "POST", "/project/delete", {"project_ids": ["{P2}"]},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM project/new GET", "GET", "/project/new", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("LiteLLM project/info POST", "POST", "/project/info", {"project_id": "{P1}"},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /key/* --------------------------------------------------------------------
    ("LiteLLM key/generate in P1", "POST", "/key/generate", {"project_id": "{P1}", "key_alias": "key-new"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 403, "outsider": 404, "anon": 401}),
    ("LiteLLM key/generate in T3", "POST", "/key/generate", {"team_id": "{T3}", "key_alias": "key-new"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/update K1", "POST", "/key/update", {"key": "{K1HASH}", "max_budget": 1},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/update K3", "POST", "/key/update", {"key": "{K3HASH}", "max_budget": 1},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/info K1", "GET", "/key/info?key={K1HASH}", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/info K3", "GET", "/key/info?key={K3HASH}", None,
     {"admin": 200, "viewer": 200, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/list", "GET", "/key/list", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM key/delete K1", "POST", "/key/delete", {"keys": ["{K1HASH}"]},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/delete K3", "DELETE", "/key/delete", {"keys": ["{K3HASH}"]},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/regenerate K1", "POST", "/key/regenerate", {"key": "{K1HASH}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/{key}/regenerate K1", "POST", "/key/{K1HASH}/regenerate", {},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/block K1", "POST", "/key/block", {"key": "{K1HASH}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/unblock K1", "POST", "/key/unblock", {"key": "{K1HASH}"},
     {"admin": 200, "viewer": 403, "org_admin": 200, "team_admin": 200, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/block K3", "POST", "/key/block", {"key": "{K3HASH}"},
     {"admin": 200, "viewer": 403, "org_admin": 404, "team_admin": 404, "member": 404, "outsider": 404, "anon": 401}),
    ("LiteLLM key/generate GET", "GET", "/key/generate", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    ("LiteLLM key/block GET", "GET", "/key/block", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM /model/* and /v1/model/info -----------------------------------------------
    ("LiteLLM model/new", "POST", "/model/new", {"model_name": "new-model", "litellm_params": {"model": "mock/new-model"}},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM model/update M1", "POST", "/model/update",
     {"model_info": {"id": "{M1}"}, "litellm_params": {"input_cost_per_token": "0.000001"}},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM model/delete M4", "POST", "/model/delete", {"id": "{M4}"},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM model/info", "GET", "/model/info", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM v1/model/info", "GET", "/v1/model/info", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM model/new GET", "GET", "/model/new", None,
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
    # --- LiteLLM UI settings ---------------------------------------------------------------
    ("LiteLLM get/ui_settings", "GET", "/get/ui_settings", None,
     {"admin": 200, "viewer": 200, "org_admin": 200, "team_admin": 200, "member": 200, "outsider": 200, "anon": 401}),
    ("LiteLLM update/ui_settings", "PATCH", "/update/ui_settings", {"enable_projects_ui": True},
     {"admin": 200, "viewer": 403, "org_admin": 403, "team_admin": 403, "member": 403, "outsider": 403, "anon": 401}),
    ("LiteLLM update/ui_settings POST", "POST", "/update/ui_settings", {"enable_projects_ui": True},
     {"admin": 405, "viewer": 405, "org_admin": 405, "team_admin": 405, "member": 405, "outsider": 405, "anon": 401}),
]

# Which ids each list answers with, per role. "SELF" is the caller's own personal key
# (the one its client authenticates with; the master key has none).
LIST_IDS: list[tuple[str, str, str, dict[str, set[str]]]] = [
    ("REST users", "/api/v1/users/", "rest",
     {"admin": {"ADMIN", "VIEWER", "ORGADMIN", "TEAMADMIN", "MEMBER", "OUTSIDER", "ORGMEMBER"},
      "viewer": {"ADMIN", "VIEWER", "ORGADMIN", "TEAMADMIN", "MEMBER", "OUTSIDER", "ORGMEMBER"},
      "org_admin": {"ORGADMIN", "TEAMADMIN", "MEMBER", "ORGMEMBER"},
      "team_admin": {"TEAMADMIN", "MEMBER"}, "member": {"MEMBER"}, "outsider": {"OUTSIDER"}}),
    ("REST users ?team=T1", "/api/v1/users/?team={T1}", "rest",
     {"admin": {"TEAMADMIN", "MEMBER"}, "viewer": {"TEAMADMIN", "MEMBER"},
      "org_admin": {"TEAMADMIN", "MEMBER"}, "team_admin": {"TEAMADMIN", "MEMBER"},
      "member": {"MEMBER"}, "outsider": set()}),
    ("REST organizations", "/api/v1/organizations/", "rest",
     {"admin": {"A", "B"}, "viewer": {"A", "B"}, "org_admin": {"A"},
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST teams", "/api/v1/teams/", "rest",
     {"admin": {"T1", "T2", "T3"}, "viewer": {"T1", "T2", "T3"}, "org_admin": {"T1", "T2"},
      "team_admin": {"T1"}, "member": {"T1"}, "outsider": set()}),
    ("REST teams ?organization=B", "/api/v1/teams/?organization={B}", "rest",
     {"admin": {"T3"}, "viewer": {"T3"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST projects", "/api/v1/projects/", "rest",
     {"admin": {"P1", "P2", "P3"}, "viewer": {"P1", "P2", "P3"}, "org_admin": {"P1", "P2"},
      "team_admin": {"P1"}, "member": {"P1"}, "outsider": set()}),
    ("REST projects ?team=T3", "/api/v1/projects/?team={T3}", "rest",
     {"admin": {"P3"}, "viewer": {"P3"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST projects ?organization=B", "/api/v1/projects/?organization={B}", "rest",
     {"admin": {"P3"}, "viewer": {"P3"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST keys", "/api/v1/keys/", "rest",
     {"admin": {"K1", "K3", "SELF"}, "viewer": {"K1", "K3", "SELF"}, "org_admin": {"K1", "SELF"},
      "team_admin": {"K1", "SELF"}, "member": {"SELF"}, "outsider": {"SELF"}}),
    ("REST keys ?team=T3", "/api/v1/keys/?team={T3}", "rest",
     {"admin": {"K3"}, "viewer": {"K3"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST keys ?project=P1", "/api/v1/keys/?project={P1}", "rest",
     {"admin": {"K1"}, "viewer": {"K1"}, "org_admin": {"K1"},
      "team_admin": {"K1"}, "member": set(), "outsider": set()}),
    ("REST models", "/api/v1/models/", "rest",
     {"admin": {"M1", "M2", "M3", "M4"}, "viewer": {"M1", "M2", "M3", "M4"},
      "org_admin": {"M1", "M2", "M3", "M4"}, "team_admin": {"M1", "M2", "M3", "M4"},
      "member": {"M1", "M2", "M3", "M4"}, "outsider": {"M1", "M2", "M3", "M4"}}),
    ("REST access-groups", "/api/v1/access-groups/", "rest",
     {"admin": {"G1"}, "viewer": {"G1"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST spend logs", "/api/v1/spend/logs/", "spendlogs",
     {"admin": {"L1", "L3"}, "viewer": {"L1", "L3"}, "org_admin": {"L1"}, "team_admin": {"L1"},
      "member": set(), "outsider": set()}),
    ("REST spend logs ?team_id=T3", "/api/v1/spend/logs/?team_id={T3}", "spendlogs",
     {"admin": {"L3"}, "viewer": {"L3"}, "org_admin": set(), "team_admin": set(),
      "member": set(), "outsider": set()}),
    ("REST spend report by project", "/api/v1/spend/report/?group_by=project", "report",
     {"admin": {"P1", "P3"}, "viewer": {"P1", "P3"}, "org_admin": {"P1"}, "team_admin": {"P1"},
      "member": set(), "outsider": set()}),
    ("REST audit: teams created", "/api/v1/audit/?object_type=team&action=create", "audit",
     {"admin": {"T1", "T2", "T3"}, "viewer": {"T1", "T2", "T3"}, "org_admin": {"T1", "T2"},
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("REST audit: keys created", "/api/v1/audit/?object_type=key&action=create&organization_id={A}", "audit",
     {"admin": {"K1"}, "viewer": {"K1"}, "org_admin": {"K1"},
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("LiteLLM spend/logs", "/spend/logs", "litellm_spend",
     {"admin": {"L1", "L3"}, "viewer": {"L1", "L3"}, "org_admin": {"L1"}, "team_admin": {"L1"},
      "member": set(), "outsider": set()}),
    ("LiteLLM user/list", "/user/list", "users",
     {"admin": {"ADMIN", "VIEWER", "ORGADMIN", "TEAMADMIN", "MEMBER", "OUTSIDER", "ORGMEMBER"},
      "viewer": {"ADMIN", "VIEWER", "ORGADMIN", "TEAMADMIN", "MEMBER", "OUTSIDER", "ORGMEMBER"},
      "org_admin": {"ORGADMIN", "TEAMADMIN", "MEMBER", "ORGMEMBER"},
      "team_admin": {"TEAMADMIN", "MEMBER"}, "member": {"MEMBER"}, "outsider": {"OUTSIDER"}}),
    ("LiteLLM organization/list", "/organization/list", "organizations",
     {"admin": {"A", "B"}, "viewer": {"A", "B"}, "org_admin": {"A"},
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("LiteLLM team/list", "/team/list", "teams",
     {"admin": {"T1", "T2", "T3"}, "viewer": {"T1", "T2", "T3"}, "org_admin": {"T1", "T2"},
      "team_admin": {"T1"}, "member": {"T1"}, "outsider": set()}),
    ("LiteLLM team/list ?organization_id=B", "/team/list?organization_id={B}", "teams",
     {"admin": {"T3"}, "viewer": {"T3"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("LiteLLM project/list", "/project/list", "projects",
     {"admin": {"P1", "P2", "P3"}, "viewer": {"P1", "P2", "P3"}, "org_admin": {"P1", "P2"},
      "team_admin": {"P1"}, "member": {"P1"}, "outsider": set()}),
    ("LiteLLM key/list", "/key/list?return_full_object=true", "keys",
     {"admin": {"K1", "K3", "SELF"}, "viewer": {"K1", "K3", "SELF"}, "org_admin": {"K1", "SELF"},
      "team_admin": {"K1", "SELF"}, "member": {"SELF"}, "outsider": {"SELF"}}),
    ("LiteLLM key/list ?team_id=T3", "/key/list?return_full_object=true&team_id={T3}", "keys",
     {"admin": {"K3"}, "viewer": {"K3"}, "org_admin": set(),
      "team_admin": set(), "member": set(), "outsider": set()}),
    ("LiteLLM key/list ?project_id=P1", "/key/list?return_full_object=true&project_id={P1}", "keys",
     {"admin": {"K1"}, "viewer": {"K1"}, "org_admin": {"K1"},
      "team_admin": {"K1"}, "member": set(), "outsider": set()}),
    ("LiteLLM model/info", "/model/info", "models",
     {"admin": {"M1", "M2", "M3", "M4"}, "viewer": {"M1", "M2", "M3", "M4"},
      "org_admin": {"M1", "M2", "M3", "M4"}, "team_admin": {"M1", "M2", "M3", "M4"},
      "member": {"M1", "M2", "M3", "M4"}, "outsider": {"M1", "M2", "M3", "M4"}}),
    ("LiteLLM v1/model/info", "/v1/model/info", "models",
     {"admin": {"M1", "M2", "M3", "M4"}, "viewer": {"M1", "M2", "M3", "M4"},
      "org_admin": {"M1", "M2", "M3", "M4"}, "team_admin": {"M1", "M2", "M3", "M4"},
      "member": {"M1", "M2", "M3", "M4"}, "outsider": {"M1", "M2", "M3", "M4"}}),
]

# The admin's JSON view of a team's models (Create Project), signed in with a session.
TEAM_MODELS = "/admin/projects/project/team-models/"
ADMIN_VIEWS: list[tuple[str, str, dict[str, int]]] = [
    ("team-models T1", TEAM_MODELS + "?team={T1}",
     {"admin": 200, "org_admin": 200, "team_admin": 200, "member": 302, "outsider": 302, "anon": 302}),
    ("team-models T3", TEAM_MODELS + "?team={T3}",
     {"admin": 200, "org_admin": 404, "team_admin": 404, "member": 302, "outsider": 302, "anon": 302}),
]
# fmt: on

# Rows whose target must first lose its children (otherwise the delete is a 400 by design).
PREP = {
    "REST organizations delete B (emptied)": "empty_B",
    "LiteLLM organization/delete B (emptied)": "empty_B",
    "REST teams delete T2 (emptied)": "empty_T2",
    "LiteLLM team/delete T2 (emptied)": "empty_T2",
    "REST projects delete P1 (keyless)": "drop_K1",
    "LiteLLM project/delete P1 (keyless)": "drop_K1",
}


# --- the world ---------------------------------------------------------------------------


def fill(value: Any) -> Any:
    """Placeholders like ``{P1}`` in paths and bodies become the world's ids."""
    if isinstance(value, str):
        return value.format(**IDS)
    if isinstance(value, dict):
        return {key: fill(item) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item) for item in value]
    return value


@pytest.fixture
def world(db):  # type: ignore[no-untyped-def]
    for key, name in (
        ("M1", "gpt-4o"),
        ("M2", "gpt-4o-mini"),
        ("M3", "claude-3-5-sonnet"),
        ("M4", "claude-3-5-haiku"),
    ):
        catalog_model_create(actor=SYSTEM, id=IDS[key], name=name, provider="mock")
    access_group_create(actor=SYSTEM, id=IDS["G1"], name="group-one", models=["gpt-4o"])

    org_a = organization_create(actor=SYSTEM, id=IDS["A"], alias="Org A")
    org_b = organization_create(actor=SYSTEM, id=IDS["B"], alias="Org B")
    t1 = team_create(
        actor=SYSTEM,
        id=IDS["T1"],
        alias="T1",
        organization=org_a,
        models=["gpt-4o", "gpt-4o-mini"],
        max_budget=Decimal("100"),
    )
    t2 = team_create(actor=SYSTEM, id=IDS["T2"], alias="T2", organization=org_a)
    t3 = team_create(actor=SYSTEM, id=IDS["T3"], alias="T3", organization=org_b)
    p1 = project_create(
        actor=SYSTEM,
        id=IDS["P1"],
        alias="P1",
        team=t1,
        models=["gpt-4o"],
        max_budget=Decimal("10"),
    )
    project_create(actor=SYSTEM, id=IDS["P2"], alias="P2", team=t2)
    p3 = project_create(actor=SYSTEM, id=IDS["P3"], alias="P3", team=t3)
    key_generate(actor=SYSTEM, project=p1, id=IDS["K1"], key=K1_PLAINTEXT, key_alias="k1")
    key_generate(actor=SYSTEM, project=p3, id=IDS["K3"], key=K3_PLAINTEXT, key_alias="k3")
    spend_record_batch(
        records=[spent(IDS["L1"], "K1", "P1", "T1", "A"), spent(IDS["L3"], "K3", "P3", "T3", "B")]
    )

    users: dict[str, User] = {}
    for name, role in (
        ("ADMIN", Role.PROXY_ADMIN),
        ("VIEWER", Role.PROXY_ADMIN_VIEWER),
        ("ORGADMIN", Role.INTERNAL_USER),
        ("TEAMADMIN", Role.INTERNAL_USER),
        ("MEMBER", Role.INTERNAL_USER),
        ("OUTSIDER", Role.INTERNAL_USER),
        ("ORGMEMBER", Role.INTERNAL_USER),
    ):
        username = name.lower()
        users[name] = user_create(
            actor=SYSTEM,
            id=IDS[name],
            username=username,
            email=f"{username}@example.com",
            role=role,
        )
    organization_member_set(
        actor=SYSTEM, organization=org_a, user=users["ORGADMIN"], role=OrganizationRole.ORG_ADMIN
    )
    organization_member_set(
        actor=SYSTEM, organization=org_a, user=users["ORGMEMBER"], role=OrganizationRole.MEMBER
    )
    team_member_set(actor=SYSTEM, team=t1, user=users["TEAMADMIN"], role=TeamRole.ADMIN)
    team_member_set(actor=SYSTEM, team=t1, user=users["MEMBER"], role=TeamRole.MEMBER)
    for user in users.values():
        user.refresh_from_db()
    # The audit entries of two creations, one in each organization (ids differ per test).
    for name, team in (("EA", "T1"), ("EB", "T3")):
        IDS[name] = str(
            AuditEntry.objects.get(object_type="team", object_id=IDS[team], action="create").pk
        )
    return users


def spent(request_id: str, key: str, project: str, team: str, org: str) -> CallRecord:
    """A finished call of a key, as the gateway records it."""
    now = time.time()
    return CallRecord(
        request_id=request_id,
        key_hash=IDS[f"{key}HASH"],
        key_id=IDS[key],
        project_id=IDS[project],
        team_id=IDS[team],
        organization_id=IDS[org],
        user_id="",
        model="gpt-4o",
        call_type="chat.completions",
        prompt_tokens=10,
        completion_tokens=5,
        cost_nano=75_000,
        http_status=200,
        stream=False,
        latency_ms=1.0,
        started_at=now - 1,
        ended_at=now,
    )


def prepare(step: str | None) -> None:
    if step == "drop_K1":
        key_delete(actor=SYSTEM, keys=[VirtualKey.objects.get(pk=IDS["K1"])])
    elif step == "empty_T2":
        project_delete(actor=SYSTEM, projects=[Project.objects.get(pk=IDS["P2"])])
    elif step == "empty_B":
        key_delete(actor=SYSTEM, keys=[VirtualKey.objects.get(pk=IDS["K3"])])
        project = Project.objects.get(pk=IDS["P3"])
        project_delete(actor=SYSTEM, projects=[project])
        team_delete(actor=SYSTEM, teams=[project.team])


def client_for(role: str, users: dict[str, User]) -> tuple[ApiClient, str | None]:
    """The role's client and the id of its own personal key (None for master and anon)."""
    if role == "master":
        return master(), None
    if role == "anon":
        return ApiClient(None), None
    user = users[ROLE_USERS[role]]
    client = as_user(user)
    own = VirtualKey.objects.filter(user=user, team__isnull=True).values_list("pk", flat=True)
    assert len(own) == 1
    return client, own[0]


def column(role: str) -> str:
    return "admin" if role == "master" else role


def _test_id(*parts: str) -> str:
    return "|".join(parts).replace(" ", "_")


# --- the status matrix -------------------------------------------------------------------

STATUS_CELLS = [
    pytest.param(
        description,
        method,
        path,
        body,
        role,
        expected[column(role)],
        id=_test_id(description, role),
    )
    for description, method, path, body, expected in MATRIX
    for role in ROLES
]


def test_tables_are_complete() -> None:
    columns = {"admin", "viewer", "org_admin", "team_admin", "member", "outsider", "anon"}
    descriptions = [row[0] for row in MATRIX]
    assert len(descriptions) == len(set(descriptions)), "duplicate row descriptions"
    assert set(PREP) <= set(descriptions)
    for row in MATRIX:
        assert set(row[4]) == columns, row[0]
    for description, _path, _shape, expected_ids in LIST_IDS:
        assert set(expected_ids) == columns - {"anon"}, description


@pytest.mark.parametrize(
    ("description", "method", "path", "body", "role", "expected"), STATUS_CELLS
)
def test_status(world, description, method, path, body, role, expected):  # type: ignore[no-untyped-def]
    prepare(PREP.get(description))
    client, _ = client_for(role, world)
    response = client.request(method, fill(path), fill(body))
    assert response.status_code == expected, (
        f"{description}: {method} {fill(path)} as {role}: expected {expected}, "
        f"got {response.status_code}: {response.content[:400]!r}"
    )
    if expected >= 400:
        error = response.json()["error"]
        assert error["code"] == str(expected), error


# --- the ids each list answers with ------------------------------------------------------


def listed_ids(shape: str, body: Any) -> set[str]:
    if shape == "rest":
        return {row["id"] for row in body["results"]}
    if shape == "spendlogs":
        return {row["request_id"] for row in body["results"]}
    if shape == "audit":
        return {row["object_id"] for row in body["results"]}
    if shape == "report":
        return {row["project_id"] for row in body["results"]}
    if shape == "litellm_spend":
        return {row["request_id"] for row in body}
    if shape == "users":
        return {row["user_id"] for row in body["users"]}
    if shape == "organizations":
        return {row["organization_id"] for row in body}
    if shape == "teams":
        return {row["team_id"] for row in body}
    if shape == "projects":
        return {row["project_id"] for row in body}
    if shape == "keys":
        return {row["key_id"] for row in body["keys"]}
    if shape == "models":
        return {row["model_info"]["id"] for row in body["data"]}
    raise AssertionError(shape)


LIST_CELLS = [
    pytest.param(path, shape, role, expected[column(role)], id=_test_id(description, role))
    for description, path, shape, expected in LIST_IDS
    for role in ROLES
    if role != "anon"
]


@pytest.mark.parametrize(("path", "shape", "role", "expected"), LIST_CELLS)
def test_list_ids(world, path, shape, role, expected):  # type: ignore[no-untyped-def]
    client, own_key = client_for(role, world)
    response = client.get(fill(path))
    assert response.status_code == 200, response.content
    names = {name for name in expected if name != "SELF"}
    wanted = {IDS[name] for name in names}
    if "SELF" in expected and own_key is not None:
        wanted.add(own_key)
    assert listed_ids(shape, response.json()) == wanted


# --- the admin's JSON view ---------------------------------------------------------------

ADMIN_CELLS = [
    pytest.param(path, role, status, id=_test_id(description, role))
    for description, path, expected in ADMIN_VIEWS
    for role, status in expected.items()
]


@pytest.mark.parametrize(("path", "role", "expected"), ADMIN_CELLS)
def test_admin_json_view(world, path, role, expected):  # type: ignore[no-untyped-def]
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})
    client = Client()
    if role != "anon":
        client.force_login(world[ROLE_USERS[role]])
    response = client.get(fill(path))
    assert response.status_code == expected, response.content[:400]
    if expected == 302:
        assert response["Location"].startswith("/admin/login/")
    if expected == 200:
        assert response.json()["team"] == fill(path).rsplit("=", 1)[1]
