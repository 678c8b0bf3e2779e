"""Every check the gateway makes, against a live process (embedded mode: no Redis)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from config.settings import base as base_settings
from hierarchy.actors import SYSTEM
from hierarchy.services import team_update
from keys.models import VirtualKey
from projects.services import project_update
from spend.models import SpendLog
from tests.gateway.conftest import MASTER_KEY, wait_until


def avoid_minute_edge(margin: float = 5.0) -> None:
    """Rate windows are calendar minutes: start a burst with time left in the window."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)  # wait for the clock, not for another process


def error(response):
    return response.json()["error"]


def test_missing_and_unknown_keys_are_401(world, start_gateway):
    gateway = start_gateway()
    missing = gateway.client.post("/v1/chat/completions", json={"model": "gpt-4o"})
    assert missing.status_code == 401
    assert error(missing)["code"] == "invalid_api_key"
    assert gateway.chat("sk-unknown-key").status_code == 401


def test_expired_key_is_401(world, start_gateway):
    expired = timezone.now() - timedelta(seconds=1)
    VirtualKey.objects.filter(pk=world.key.pk).update(expires=expired)
    response = start_gateway().chat(world.plaintext)
    assert response.status_code == 401
    assert error(response) == {
        "message": f"This key expired at {expired.isoformat()}.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


def test_blocked_key_is_403(world, start_gateway):
    VirtualKey.objects.filter(pk=world.key.pk).update(blocked=True)
    response = start_gateway().chat(world.plaintext)
    assert response.status_code == 403
    assert error(response)["message"] == "This key is blocked."


def test_blocked_team_refuses_its_keys(world, start_gateway):
    team_update(actor=SYSTEM, team=world.team, blocked=True)
    response = start_gateway().chat(world.plaintext)
    assert response.status_code == 403
    assert error(response)["code"] == "permission_denied"
    assert error(response)["message"] == "Team 'Search' is blocked."


def test_wildcard_allows_its_prefix_only(world, start_gateway):
    _, plaintext = world.new_key(models=["openai/*"])
    gateway = start_gateway()
    assert gateway.chat(plaintext, "openai/gpt-4.1").status_code == 200
    refused = gateway.chat(plaintext, "openaix/gpt-5")
    assert refused.status_code == 403
    assert error(refused)["code"] == "model_not_allowed"
    assert "key" in error(refused)["message"]
    assert gateway.chat(plaintext, "gpt-4o").status_code == 403


def test_unknown_model_is_404(world, start_gateway):
    response = start_gateway().chat(world.plaintext, "no-such-model")
    assert response.status_code == 404
    assert error(response)["code"] == "model_not_found"


def test_budget_exhausted_at_project_level_only(world, start_gateway):
    project_update(actor=SYSTEM, project=world.project, max_budget="0.00005")
    gateway = start_gateway()
    assert gateway.chat(world.plaintext, max_tokens=5).status_code == 200
    wait_until(lambda: SpendLog.objects.count() == 1, 5)
    refused = gateway.chat(world.plaintext, max_tokens=5)
    assert refused.status_code == 429
    assert error(refused)["code"] == "budget_exceeded"
    assert error(refused)["message"] == (
        "Budget exceeded: project 'assistant' has reached its max_budget of $0.00005."
    )
    assert SpendLog.objects.count() == 1  # refused calls are not logged, only counted
    metrics = gateway.client.get("/health/metrics").text
    assert 'gatehouse_refused_total{code="budget_exceeded"} 1' in metrics
    assert 'gatehouse_calls_total{status="200"} 1' in metrics
    world.team.refresh_from_db()
    assert world.team.max_budget is None and world.team.spend > 0


def test_model_max_budget_refuses_that_model_only(world, start_gateway):
    _, plaintext = world.new_key(model_max_budget={"gpt-4o": "0.00001"})
    gateway = start_gateway()
    assert gateway.chat(plaintext, max_tokens=5).status_code == 200
    refused = gateway.chat(plaintext, max_tokens=5)
    assert refused.status_code == 429
    assert "model_max_budget" in error(refused)["message"]
    assert gateway.chat(plaintext, "gpt-4o-mini", max_tokens=5).status_code == 200


def test_per_model_rpm_limit_with_retry_after(world, start_gateway):
    _, plaintext = world.new_key(model_rpm_limit={"gpt-4o": 2})
    gateway = start_gateway()
    avoid_minute_edge()
    assert [gateway.chat(plaintext).status_code for _ in range(2)] == [200, 200]
    refused = gateway.chat(plaintext)
    left = 60 - time.time() % 60
    assert refused.status_code == 429
    assert error(refused)["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= int(left) + 1
    assert gateway.chat(plaintext, "gpt-4o-mini").status_code == 200


def test_tpm_limit_counts_reserved_tokens(world, start_gateway):
    _, plaintext = world.new_key(tpm_limit=30)
    gateway = start_gateway()
    avoid_minute_edge()
    long_prompt = [{"role": "user", "content": "word " * 40}]  # about 56 tokens
    first = gateway.chat(plaintext, max_tokens=40, messages=long_prompt)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"
    refused = gateway.chat(plaintext, max_tokens=1)
    assert refused.status_code == 429
    assert "tokens per minute" in error(refused)["message"]


def test_remaining_headers_come_from_the_tightest_level(world, start_gateway):
    team_update(actor=SYSTEM, team=world.team, rpm_limit=100, tpm_limit=100_000)
    _, plaintext = world.new_key(rpm_limit=5, tpm_limit=10_000)
    gateway = start_gateway()
    avoid_minute_edge()
    response = gateway.chat(plaintext, max_tokens=10)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert response.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 9 - 10)
    assert float(response.headers["x-gatehouse-overhead-ms"]) >= 0


def test_master_key_may_call_any_catalog_model_and_has_no_project(world, start_gateway):
    project_update(actor=SYSTEM, project=world.project, models=["gpt-4o"])
    response = start_gateway().chat(MASTER_KEY, "openaix/gpt-5")
    assert response.status_code == 200
    row = wait_until(lambda: SpendLog.objects.first(), 5)
    assert (row.key_id, row.project_id, row.team_id, row.key_hash) == ("", "", "", "")
    assert row.cost > 0


def test_stream_without_upstream_usage_is_still_priced(world, start_gateway):
    gateway = start_gateway()
    with gateway.stream_chat(world.plaintext, "fake-no-usage") as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200
    assert b'"usage"' not in body and body.endswith(b"data: [DONE]\n\n")
    row = wait_until(lambda: SpendLog.objects.first(), 5)
    assert row.stream and row.completion_tokens > 0 and row.prompt_tokens > 0
    assert row.cost > 0


def test_upstream_failure_is_relayed_and_logged_at_no_cost(world, start_gateway):
    response = start_gateway().chat(world.plaintext, "fake-error")
    assert response.status_code == 500
    row = wait_until(lambda: SpendLog.objects.first(), 5)
    assert (row.status, row.http_status, row.cost) == ("failure", 500, 0)


def test_spend_shows_in_project_info_within_a_second(world, start_gateway):
    # With the production flush interval, not the tests' shorter one.
    interval = str(base_settings.SPEND_FLUSH_INTERVAL_DEFAULT)
    gateway = start_gateway(GATEHOUSE_SPEND_FLUSH_INTERVAL=interval)

    def spend() -> tuple[float, float]:
        info = gateway.client.get(
            "/project/info",
            params={"project_id": world.project.pk},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        ).json()
        return info["spend"], info["model_spend"].get("gpt-4o", 0)

    def spend_above(floor: float) -> tuple[float, float] | None:
        found = spend()
        return found if found[0] > floor else None

    # A first call while the process warms up (its spend-writer process starts beside it and
    # may still be loading Django): the promise is about a running gateway.
    assert spend() == (0, 0)
    assert gateway.chat(world.plaintext).status_code == 200
    first = wait_until(lambda: spend_above(0), 10)
    assert gateway.chat(world.plaintext).status_code == 200
    answered = time.monotonic()
    _, by_model = wait_until(lambda: spend_above(first[0]), 5)
    assert time.monotonic() - answered <= 1.0
    assert by_model > first[1] > 0
    key = VirtualKey.objects.get(pk=world.key.pk)
    assert key.last_used_at is not None and key.spend > 0


def test_unsupported_path_method_and_body_answer_in_openai_shape(world, start_gateway):
    gateway = start_gateway()
    wrong_method = gateway.client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert error(wrong_method)["code"] == "method_not_allowed"
    unknown = gateway.client.get("/v1/nothing")
    assert unknown.status_code == 404
    assert error(unknown) == {
        "message": "Unknown path /v1/nothing.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    auth = {"Authorization": f"Bearer {world.plaintext}"}
    bad = gateway.client.post("/v1/chat/completions", content=b"{not json", headers=auth)
    assert bad.status_code == 400
    assert error(bad)["type"] == "invalid_request_error"
    assert error(bad)["message"].startswith("The body is not valid JSON")
    no_messages = gateway.client.post("/chat/completions", json={"model": "gpt-4o"}, headers=auth)
    assert no_messages.status_code == 400
    assert error(no_messages)["param"] == "messages"
    for answer in (wrong_method, unknown, bad, no_messages):
        assert float(answer.headers["x-gatehouse-overhead-ms"]) >= 0


@pytest.mark.parametrize("value", [0, -1, "5", True])
def test_max_tokens_must_be_a_positive_integer(world, start_gateway, value):
    response = start_gateway().chat(world.plaintext, max_tokens=value)
    assert response.status_code == 400
    assert error(response)["param"] == "max_tokens"


def test_unreachable_upstream_is_502_and_logged_at_no_cost(world, start_gateway):
    from hierarchy.models import CatalogModel
    from tests.gateway.conftest import free_port

    CatalogModel.objects.filter(name="openai/gpt-4.1").update(
        api_base=f"http://127.0.0.1:{free_port()}/v1"
    )
    response = start_gateway().chat(world.plaintext, "openai/gpt-4.1")
    assert response.status_code == 502
    assert error(response)["code"] == "upstream_error"
    row = wait_until(lambda: SpendLog.objects.first(), 5)
    assert (row.status, row.http_status, row.cost) == ("failure", 502, 0)


def test_answer_without_upstream_usage_is_counted_by_the_gateway(world, start_gateway):
    from bench.fake_openai import REPLY_TEXT
    from gateway.tokens import count_text

    response = start_gateway().chat(world.plaintext, "fake-no-usage")
    assert response.status_code == 200 and "usage" not in response.json()
    row = wait_until(lambda: SpendLog.objects.first(), 5)
    assert row.completion_tokens == count_text(REPLY_TEXT) and row.prompt_tokens > 0
    assert row.cost > 0


def test_bad_content_parts_and_dimensions_are_400_not_500(world, start_gateway):
    gateway = start_gateway()
    parts = [{"role": "user", "content": [{"type": "text", "text": None}, {"type": "image"}]}]
    assert gateway.chat(world.plaintext, messages=parts).status_code == 200
    response = gateway.client.post(
        "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "hi", "dimensions": "8"},
        headers={"Authorization": f"Bearer {world.plaintext}"},
    )
    assert response.status_code == 400
    assert error(response)["param"] == "dimensions"
