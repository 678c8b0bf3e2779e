"""The official ``openai`` SDK, unchanged, against a live gateway."""

from __future__ import annotations

import openai
import pytest

from hierarchy.actors import SYSTEM
from projects.services import project_update
from spend.models import SpendLog
from tests.gateway.conftest import wait_until


@pytest.fixture
def sdk_gateway(world, start_gateway):
    return start_gateway()


def client(gateway, key):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_chat_completion_through_the_sdk(world, sdk_gateway):
    reply = client(sdk_gateway, world.plaintext).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Say hi"}], max_tokens=5
    )
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens == 5
    assert reply.usage.prompt_tokens > 0


def test_streamed_chat_through_the_sdk_with_usage(world, sdk_gateway):
    stream = client(sdk_gateway, world.plaintext).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Say hi"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 4
    assert chunks[-1].usage.completion_tokens == 4


def test_chat_through_an_openai_compatible_upstream(world, sdk_gateway):
    reply = client(sdk_gateway, world.plaintext).chat.completions.create(
        model="openai/gpt-4.1", messages=[{"role": "user", "content": "Say hi"}]
    )
    assert reply.choices[0].message.content.startswith("Hello from the fake upstream")
    assert reply.usage.total_tokens == 23


def test_embeddings_through_the_sdk(world, sdk_gateway):
    result = client(sdk_gateway, world.plaintext).embeddings.create(
        model="text-embedding-3-small", input=["one", "two"]
    )
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    upstream = client(sdk_gateway, world.plaintext).embeddings.create(
        model="fake-embedding", input="hello"
    )
    assert upstream.usage.prompt_tokens == 5


def test_models_list_shows_what_the_key_may_use(world, sdk_gateway, start_gateway):
    names = sorted(m.id for m in client(sdk_gateway, world.plaintext).models.list())
    assert "gpt-4o" in names and "fake-embedding" in names
    project_update(actor=SYSTEM, project=world.project, models=["gpt-4o", "gpt-4o-mini"])
    fresh = start_gateway()
    names = sorted(m.id for m in client(fresh, world.plaintext).models.list())
    assert names == ["gpt-4o", "gpt-4o-mini"]


def test_sdk_raises_its_own_error_classes(world, sdk_gateway):
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(sdk_gateway, "sk-not-a-key").models.list()
    assert bad_key.value.code == "invalid_api_key"

    project_update(actor=SYSTEM, project=world.project, models=["gpt-4o"], max_budget="0.00001")
    key, plaintext = world.new_key()
    gateway = sdk_gateway.__class__()  # a process that loads the new limits
    try:
        sdk = client(gateway, plaintext)
        with pytest.raises(openai.PermissionDeniedError) as denied:
            sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        assert denied.value.code == "model_not_allowed"
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        wait_until(lambda: SpendLog.objects.filter(key_id=key.id).exists(), 5)
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert limited.value.code == "budget_exceeded"
    finally:
        gateway.stop()
