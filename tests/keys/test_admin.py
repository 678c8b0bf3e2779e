from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from keys.models import VirtualKey
from keys.services import hash_key
from tests.factories import ProjectFactory, TeamFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db

KEYS_LIST = "/admin/keys/virtualkey/"
KEYS_ADD = "/admin/keys/virtualkey/add/"
SECRET = re.compile(r'<code class="new-key-secret">(sk-[A-Za-z0-9_-]+)</code>')


@pytest.fixture
def admin_client(client, proxy_admin):  # type: ignore[no-untyped-def]
    client.force_login(proxy_admin)
    return client


def test_generating_a_key_shows_the_plaintext_once_and_stores_only_its_hash(admin_client, team):  # type: ignore[no-untyped-def]
    project = ProjectFactory(team=team, models=["gpt-4o"])
    response = admin_client.post(
        KEYS_ADD, {"key_alias": "ci", "project": project.pk, "models": "gpt-4o"}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = SECRET.search(response.content.decode()).group(1)
    key = VirtualKey.objects.get()
    assert (key.project, key.team, key.token_hash) == (project, team, hash_key(plaintext))
    assert key.key_name == f"sk-...{plaintext[-4:]}"
    assert not any(plaintext in str(m) for m in get_messages(response.wsgi_request))
    assert not LogEntry.objects.filter(object_repr__contains=plaintext).exists()
    assert not LogEntry.objects.filter(change_message__contains=plaintext).exists()
    assert (
        plaintext
        not in admin_client.get(
            reverse("admin:keys_virtualkey_change", args=[key.pk])
        ).content.decode()
    )
    assert plaintext not in admin_client.get(KEYS_LIST).content.decode()


def test_key_models_outside_the_project_are_a_field_error(admin_client, team):  # type: ignore[no-untyped-def]
    project = ProjectFactory(team=team, models=["gpt-4o"])
    response = admin_client.post(KEYS_ADD, {"project": project.pk, "models": "gpt-4o-mini"})
    assert response.context["adminform"].form.errors["models"] == [
        "Model 'gpt-4o-mini' not in project's allowed models."
    ]
    assert not VirtualKey.objects.exists()


def test_regenerate_action_shows_new_secrets_and_the_old_ones_stop_matching(admin_client):  # type: ignore[no-untyped-def]
    key = VirtualKeyFactory()
    old_hash = key.token_hash
    response = admin_client.post(
        KEYS_LIST, {"action": "regenerate_keys", "_selected_action": [key.pk]}
    )
    assert "no-store" in response["Cache-Control"]
    plaintext = SECRET.search(response.content.decode()).group(1)
    key.refresh_from_db()
    assert key.token_hash == hash_key(plaintext) != old_hash


def test_block_and_delete_actions(admin_client):  # type: ignore[no-untyped-def]
    first, second = VirtualKeyFactory(), VirtualKeyFactory()
    admin_client.post(KEYS_LIST, {"action": "block_keys", "_selected_action": [first.pk]})
    first.refresh_from_db()
    assert first.blocked is True
    admin_client.post(
        KEYS_LIST, {"action": "delete_keys", "_selected_action": [first.pk, second.pk]}
    )
    assert not VirtualKey.objects.exists()


def test_a_projects_keys_table_lists_only_that_project(admin_client):  # type: ignore[no-untyped-def]
    mine = VirtualKeyFactory(key_alias="mine")
    VirtualKeyFactory(key_alias="other")
    page = admin_client.get(KEYS_LIST, {"project__id__exact": mine.project_id}).content.decode()
    assert "mine" in page and ">other<" not in page
    assert f"?project={mine.project_id}" in page  # Generate key keeps the project


def test_a_team_admin_sees_only_their_teams_keys(client, team, make_team_admin):  # type: ignore[no-untyped-def]
    mine = VirtualKeyFactory(project=ProjectFactory(team=team), key_alias="mine")
    theirs = VirtualKeyFactory(project=ProjectFactory(team=TeamFactory()), key_alias="theirs")
    client.force_login(make_team_admin(team))
    page = client.get(KEYS_LIST).content.decode()
    assert "mine" in page and "theirs" not in page
    assert client.get(reverse("admin:keys_virtualkey_change", args=[theirs.pk])).status_code == 404
    response = client.post(KEYS_ADD, {"project": theirs.project_id})
    assert "project" in response.context["adminform"].form.errors
    assert VirtualKey.objects.count() == 2
    response = client.post(KEYS_LIST, {"action": "block_keys", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.blocked is False
    assert client.get(reverse("admin:keys_virtualkey_change", args=[mine.pk])).status_code == 200
