"""LiteLLM's management paths (no trailing slash), served by thin adapters."""

from __future__ import annotations

from django.urls import path

from hierarchy import litellm as hierarchy
from keys import litellm as keys
from projects import litellm as projects
from spend import litellm as spend

urlpatterns = [
    path("user/new", hierarchy.user_new),
    path("user/info", hierarchy.user_info),
    path("user/list", hierarchy.user_list),
    path("user/update", hierarchy.user_update_view),
    path("user/delete", hierarchy.user_delete_view),
    path("organization/new", hierarchy.organization_new),
    path("organization/update", hierarchy.organization_update_view),
    path("organization/info", hierarchy.organization_info),
    path("organization/list", hierarchy.organization_list),
    path("organization/delete", hierarchy.organization_delete_view),
    path("organization/member_add", hierarchy.organization_member_add),
    path("organization/member_delete", hierarchy.organization_member_delete),
    path("team/new", hierarchy.team_new),
    path("team/update", hierarchy.team_update_view),
    path("team/info", hierarchy.team_info),
    path("team/list", hierarchy.team_list),
    path("team/delete", hierarchy.team_delete_view),
    path("team/member_add", hierarchy.team_member_add),
    path("team/member_delete", hierarchy.team_member_delete),
    path("project/new", projects.project_new),
    path("project/update", projects.project_update_view),
    path("project/info", projects.project_info),
    path("project/list", projects.project_list_view),
    path("project/delete", projects.project_delete_view),
    path("key/generate", keys.key_generate_view),
    path("key/update", keys.key_update_view),
    path("key/info", keys.key_info),
    path("key/list", keys.key_list_view),
    path("key/delete", keys.key_delete_view),
    path("key/regenerate", keys.key_regenerate_view),
    path("key/<str:key>/regenerate", keys.key_regenerate_view),
    path("key/block", keys.key_block),
    path("key/unblock", keys.key_unblock),
    path("model/new", hierarchy.model_new),
    path("model/update", hierarchy.model_update),
    path("model/delete", hierarchy.model_delete),
    path("model/info", hierarchy.model_info),
    path("v1/model/info", hierarchy.model_info),
    path("get/ui_settings", projects.get_ui_settings),
    path("spend/logs", spend.spend_logs_view),
    path("update/ui_settings", projects.update_ui_settings),
]
