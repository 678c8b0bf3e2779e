"""Acceptance: a LiteLLM config.yaml with three models imports into a catalog the gateway can
use. The models point at the fake OpenAI upstream; a live gateway answers a key for each one
and prices the calls with the imported prices."""

from __future__ import annotations

import io
from decimal import Decimal

from django.core.management import call_command

from bench.fake_openai import CHAT_COMPLETION_TOKENS, CHAT_PROMPT_TOKENS
from hierarchy.actors import SYSTEM
from hierarchy.services import organization_create, team_create
from keys.services import key_generate
from projects.services import project_create
from spend.models import SpendLog
from tests.gateway.conftest import wait_until

CONFIG = """\
model_list:
  - model_name: team-gpt
    litellm_params:
      model: openai/gpt-4.1
      api_base: {base}
      api_key: os.environ/FAKE_UPSTREAM_KEY
      input_cost_per_token: 0.000002
      output_cost_per_token: 0.000008
  - model_name: team-gpt-mini
    litellm_params:
      model: openai/gpt-4.1-mini
      api_base: {base}
      api_key: os.environ/FAKE_UPSTREAM_KEY
    model_info:
      input_cost_per_token: 0.0000004
      output_cost_per_token: 0.0000016
  - model_name: team-embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {base}
      api_key: os.environ/FAKE_UPSTREAM_KEY
      input_cost_per_token: 0.00000002
    model_info:
      mode: embedding
"""


def test_an_imported_litellm_config_serves_calls_priced_at_the_imported_prices(
    fake_upstream, start_gateway, tmp_path
):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(base=fake_upstream.url))
    out = io.StringIO()
    call_command("import_litellm_config", str(config), stdout=out)
    assert "3 created, 0 updated, 0 unchanged." in out.getvalue()

    organization = organization_create(actor=SYSTEM, alias="Acme")
    team = team_create(
        actor=SYSTEM,
        alias="Search",
        organization=organization,
        models=["team-gpt", "team-gpt-mini", "team-embed"],
    )
    project = project_create(actor=SYSTEM, team=team, alias="assistant")
    keys = {
        name: key_generate(actor=SYSTEM, project=project, models=[name])[1]
        for name in ("team-gpt", "team-gpt-mini", "team-embed")
    }
    gateway = start_gateway(FAKE_UPSTREAM_KEY="sk-upstream-for-tests-only")
    served_before = fake_upstream.served

    for name in ("team-gpt", "team-gpt-mini"):
        reply = gateway.chat(keys[name], name)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].startswith("Hello from the fake")
    embedding = gateway.client.post(
        "/v1/embeddings",
        json={"model": "team-embed", "input": ["one", "two"]},
        headers={"Authorization": f"Bearer {keys['team-embed']}"},
    )
    assert embedding.status_code == 200, embedding.text
    assert len(embedding.json()["data"]) == 2
    # Each key is limited to its own model.
    assert gateway.chat(keys["team-embed"], "team-gpt").status_code == 403

    rows = wait_until(lambda: SpendLog.objects.count() == 3 and SpendLog.objects.all(), 5)
    costs = {row.model: row.cost for row in rows}
    chat = (CHAT_PROMPT_TOKENS, CHAT_COMPLETION_TOKENS)
    assert costs["team-gpt"] == chat[0] * Decimal("0.000002") + chat[1] * Decimal("0.000008")
    assert costs["team-gpt-mini"] == (
        chat[0] * Decimal("0.0000004") + chat[1] * Decimal("0.0000016")
    )
    assert costs["team-embed"] == 10 * Decimal("0.00000002")  # the fake counts 5 per input
    assert fake_upstream.served - served_before == 3  # the refused call never went upstream
