"""The LiteLLM docs' project walkthrough, replayed over HTTP unchanged (reference/)."""

from __future__ import annotations

import pytest

from keys.models import VirtualKey
from keys.services import hash_key
from projects.models import Project
from tests.api_client import master

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    client = master()
    for name in ("gpt-4", "gpt-4o", "claude-3-sonnet"):  # the proxy's model list
        response = client.post(
            "/model/new", {"model_name": name, "litellm_params": {"model": f"mock/{name}"}}
        )
        assert response.status_code == 200, response.content
    response = client.post("/team/new", {"team_alias": "travel", "team_id": "team-123"})
    assert response.status_code == 200, response.content
    return client


def test_the_docs_walkthrough_works_unchanged(api):  # type: ignore[no-untyped-def]
    # 1. a project
    response = api.post(
        "/project/new",
        {
            "project_alias": "flight-search-assistant",
            "team_id": "team-123",
            "models": ["gpt-4", "gpt-4o"],
            "max_budget": 100,
            "metadata": {"use_case_id": "SNOW-12345", "responsible_ai_id": "RAI-67890"},
        },
    )
    assert response.status_code == 200, response.content
    flight = response.json()
    assert flight["project_alias"] == "flight-search-assistant"
    assert (flight["team_id"], flight["models"], flight["max_budget"]) == (
        "team-123",
        ["gpt-4", "gpt-4o"],
        100,
    )
    assert flight["metadata"] == {"use_case_id": "SNOW-12345", "responsible_ai_id": "RAI-67890"}

    # 2. a key in the project
    response = api.post(
        "/key/generate",
        {
            "models": ["gpt-4o", "gpt-4"],
            "metadata": {"user": "ishaan@berri.ai"},
            "project_id": flight["project_id"],
        },
    )
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    key = response.json()
    assert key["key"].startswith("sk-") and key["key_name"] == f"sk-...{key['key'][-4:]}"
    assert (key["project_id"], key["team_id"]) == (flight["project_id"], "team-123")
    assert VirtualKey.objects.get().token_hash == hash_key(key["key"])

    # 5. a second project, in the team the docs name by id
    response = api.post(
        "/project/new",
        {
            "project_alias": "hotel-recommendations",
            "team_id": "team-123",
            "models": ["claude-3-sonnet"],
            "max_budget": 200,
            "tpm_limit": 100000,
            "metadata": {"use_case_id": "SNOW-12346", "cost_center": "travel-products"},
        },
    )
    hotel = response.json()
    assert (
        hotel["spend"] == 0.0 and hotel["budget_id"] and hotel["created_at"] and hotel["updated_at"]
    )

    # 6. update, by a caller-chosen id
    assert (
        api.post(
            "/project/new",
            {"project_id": "project-abc", "project_alias": "abc", "team_id": "team-123"},
        ).status_code
        == 200
    )
    response = api.post(
        "/project/update",
        {
            "project_id": "project-abc",
            "max_budget": 200,
            "tpm_limit": 200000,
            "metadata": {"status": "production"},
        },
    )
    assert response.status_code == 200, response.content
    assert (response.json()["max_budget"], response.json()["tpm_limit"]) == (200, 200000)

    # 7. info
    info = api.get("/project/info", project_id="project-abc").json()
    assert info["spend"] == 0.0 and info["model_spend"] == {}
    assert info["metadata"] == {"status": "production"}
    table = info["litellm_budget_table"]
    assert (table["budget_id"], table["max_budget"], table["tpm_limit"], table["rpm_limit"]) == (
        "project-abc",
        200,
        200000,
        None,
    )

    # 8. list: an array
    listed = api.get("/project/list").json()
    assert isinstance(listed, list)
    assert {p["project_id"] for p in listed} == {
        flight["project_id"],
        hotel["project_id"],
        "project-abc",
    }
    assert all({"project_id", "project_alias", "team_id", "spend"} <= set(p) for p in listed)

    # 9. delete: a project with keys cannot be deleted, and then nothing is deleted
    response = api.delete("/project/delete", {"project_ids": ["project-abc", flight["project_id"]]})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"Cannot delete project {flight['project_id']}. 1 key(s) are associated with it. "
        "Please delete or reassign the keys first."
    )
    assert Project.objects.filter(pk="project-abc").exists()
    response = api.delete("/project/delete", {"project_ids": ["project-abc", hotel["project_id"]]})
    assert response.status_code == 200
    assert set(Project.objects.values_list("pk", flat=True)) == {flight["project_id"]}

    # 10. per-model quotas inside metadata
    response = api.post(
        "/project/new",
        {
            "project_alias": "quota",
            "team_id": "team-123",
            "metadata": {
                "model_tpm_limit": {"gpt-4": 50000, "gpt-4o": 200000, "claude-3-sonnet": 100000},
                "model_rpm_limit": {"gpt-4": 50, "gpt-4o": 500, "claude-3-sonnet": 100},
            },
        },
    )
    quota = response.json()
    assert quota["model_tpm_limit"]["gpt-4o"] == 200000 and quota["model_rpm_limit"]["gpt-4"] == 50
    assert quota["metadata"] == {}


def test_the_docs_error_cases_answer_with_litellms_status_codes(api):  # type: ignore[no-untyped-def]
    assert (
        api.post(
            "/team/update", {"team_id": "team-123", "models": ["gpt-4o"], "max_budget": 100}
        ).status_code
        == 200
    )

    response = api.post(
        "/project/new", {"project_alias": "p", "team_id": "team-123", "models": ["gpt-4"]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["models"] == [
        "Model 'gpt-4' not in team's allowed models."
    ]

    response = api.post(
        "/project/new", {"project_alias": "p", "team_id": "team-123", "max_budget": 150}
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["max_budget"] == [
        "Project max_budget (150) exceeds team's max_budget (100)."
    ]

    response = api.post("/project/new", {"project_alias": "p", "team_id": "no-such-team"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "Team not found, team_id=no-such-team",
        "type": "not_found",
        "param": None,
        "code": "404",
        "fields": {},
    }

    response = api.post(
        "/project/new", {"project_id": "project-abc", "project_alias": "p", "team_id": "team-123"}
    )
    assert response.status_code == 200
    response = api.post(
        "/project/new", {"project_id": "project-abc", "project_alias": "q", "team_id": "team-123"}
    )
    assert response.status_code == 400 and "id" in response.json()["error"]["fields"]

    response = api.post(
        "/project/new", {"project_alias": "p2", "team_id": "team-123", "max_parallel_requests": 5}
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"max_parallel_requests": ["Unsupported field."]}
