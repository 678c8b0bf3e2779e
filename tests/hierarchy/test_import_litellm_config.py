"""manage.py import_litellm_config: a LiteLLM model_list becomes catalog entries."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from hierarchy.actors import SYSTEM
from hierarchy.litellm import MSG_API_KEY_LITERAL
from hierarchy.management.commands.import_litellm_config import (
    MSG_API_BASE_REQUIRED,
    MSG_DUPLICATE_NAME,
    MSG_ID_OF_OTHER_MODEL,
)
from hierarchy.models import CatalogModel
from hierarchy.services import catalog_model_create

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: https://api.openai.com/v1
      api_key: os.environ/OPENAI_API_KEY
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: llama-3
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3-8B
      api_base: http://vllm.internal:8000/v1
    model_info:
      mode: chat
      max_output_tokens: 2048
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000002
  - model_name: embed-small
    litellm_params:
      model: mock/embed-small
    model_info:
      id: embed-small-id
      mode: embedding
      input_cost_per_token: 0.00000002
general_settings:
  master_key: sk-do-not-import-this-master-key-0123456789
litellm_settings:
  drop_params: true
"""
LITERAL_KEY = "sk-literal-upstream-secret-0123456789abcdefXYZ"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_litellm_config", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def catalog() -> dict[str, CatalogModel]:
    return {model.name: model for model in CatalogModel.objects.all()}


@pytest.mark.django_db
def test_a_three_model_config_becomes_three_catalog_entries(tmp_path):
    output = run(write(tmp_path, CONFIG))

    models = catalog()
    assert sorted(models) == ["embed-small", "gpt-4o", "llama-3"]
    gpt = models["gpt-4o"]
    assert (gpt.provider, gpt.upstream_model) == ("openai", "gpt-4o")
    assert gpt.api_base == "https://api.openai.com/v1"
    assert gpt.api_key_env == "OPENAI_API_KEY"
    assert gpt.input_cost_per_token == Decimal("0.0000025")
    assert gpt.output_cost_per_token == Decimal("0.00001")
    llama = models["llama-3"]
    assert (llama.provider, llama.upstream_model) == ("openai", "hosted_vllm/meta-llama/Llama-3-8B")
    assert llama.max_output_tokens == 2048
    assert llama.input_cost_per_token == Decimal("0.0000001")
    embed = models["embed-small"]
    assert (embed.pk, embed.provider, embed.mode) == ("embed-small-id", "mock", "embedding")
    assert gpt.created_by == "system"
    assert "Imported 3 models in" in output
    assert "3 created, 0 updated, 0 unchanged." in output
    assert "Not imported (only model_list is): general_settings, litellm_settings." in output


@pytest.mark.django_db
def test_importing_the_same_file_again_changes_nothing(tmp_path):
    path = write(tmp_path, CONFIG)
    run(path)
    before = {name: model.updated_at for name, model in catalog().items()}

    output = run(path)

    assert "0 created, 0 updated, 3 unchanged." in output
    assert {name: model.updated_at for name, model in catalog().items()} == before


@pytest.mark.django_db
def test_an_existing_model_is_updated_by_name_and_keeps_what_the_entry_leaves_out(tmp_path):
    existing = catalog_model_create(
        actor=SYSTEM, name="gpt-4o", provider="mock", max_output_tokens=1000
    )

    output = run(write(tmp_path, CONFIG))

    gpt = CatalogModel.objects.get(name="gpt-4o")
    assert gpt.pk == existing.pk
    assert gpt.provider == "openai"
    assert gpt.max_output_tokens == 1000
    assert "gpt-4o: updated (api_base, api_key_env, input_cost_per_token" in output
    assert "2 created, 1 updated, 0 unchanged." in output


@pytest.mark.django_db
def test_a_dry_run_shows_the_plan_and_writes_nothing(tmp_path):
    output = run(write(tmp_path, CONFIG), "--dry-run")

    assert CatalogModel.objects.count() == 0
    assert "gpt-4o: would be created" in output
    assert "Dry run, nothing was written. 3 models in" in output


@pytest.mark.django_db
def test_a_literal_api_key_is_refused_naming_its_place_and_never_shown(tmp_path, caplog):
    text = CONFIG.replace("os.environ/OPENAI_API_KEY", LITERAL_KEY)
    path = write(tmp_path, text)
    out, err = io.StringIO(), io.StringIO()

    with caplog.at_level(logging.DEBUG), pytest.raises(CommandError) as raised:
        call_command("import_litellm_config", str(path), stdout=out, stderr=err)

    message = str(raised.value)
    assert f"model_list[0].litellm_params.api_key: {MSG_API_KEY_LITERAL}" in message
    assert "nothing was changed" in message
    for shown in (message, out.getvalue(), err.getvalue(), caplog.text):
        assert LITERAL_KEY not in shown
    assert CatalogModel.objects.count() == 0


@pytest.mark.django_db
def test_one_bad_entry_changes_nothing_and_every_error_names_its_path(tmp_path):
    catalog_model_create(actor=SYSTEM, name="gpt-4o", provider="mock")
    text = CONFIG.split("general_settings")[0]
    text = text.replace("      mode: chat\n", "      mode: chat\n      base_model: llama\n")
    text = text.replace("      api_base: https://api.openai.com/v1\n", "")
    text += "  - model_name: cheap\n    litellm_params:\n      model: mock/cheap\n"
    text += "      input_cost_per_token: -1\n"

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text))

    message = str(raised.value)
    assert f"model_list[0].litellm_params.api_base: {MSG_API_BASE_REQUIRED}" in message
    assert "model_list[1].model_info.base_model: Unsupported field." in message
    negative = "Ensure this value is greater than or equal to 0."
    assert f"model_list[3].litellm_params.input_cost_per_token: {negative}" in message
    assert "3 errors" in message
    models = catalog()
    assert list(models) == ["gpt-4o"]
    assert models["gpt-4o"].provider == "mock"


@pytest.mark.django_db
def test_a_model_info_id_that_is_not_the_existing_entrys_is_refused(tmp_path):
    existing = catalog_model_create(actor=SYSTEM, id="old-id", name="embed-small")

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, CONFIG))

    refused = MSG_ID_OF_OTHER_MODEL.format(id="embed-small-id", name="embed-small", pk="old-id")
    assert f"model_list[2].model_info.id: {refused}" in str(raised.value)
    assert list(catalog()) == ["embed-small"]
    assert CatalogModel.objects.get().pk == existing.pk


@pytest.mark.django_db
def test_a_model_name_declared_twice_is_refused_naming_both_places(tmp_path):
    text = CONFIG.split("general_settings")[0]
    text += "  - model_name: gpt-4o\n    litellm_params:\n      model: mock/gpt-4o\n"

    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text))

    duplicate = MSG_DUPLICATE_NAME.format(name="gpt-4o", first="model_list[0]")
    assert f"model_list[3].model_name: {duplicate}" in str(raised.value)
    assert CatalogModel.objects.count() == 0


@pytest.mark.django_db
def test_prices_in_exponent_notation_are_read_as_numbers(tmp_path):
    text = """\
model_list:
  - model_name: tiny
    litellm_params:
      model: mock/tiny
      input_cost_per_token: 1e-7
      output_cost_per_token: 2.5E-6
"""
    run(write(tmp_path, text))

    model = CatalogModel.objects.get()
    assert model.input_cost_per_token == Decimal("0.0000001")
    assert model.output_cost_per_token == Decimal("0.0000025")


@pytest.mark.django_db
def test_an_api_base_from_the_environment_is_read_at_import(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_BASE", "http://vllm.internal:9000/v1")
    text = CONFIG.replace("http://vllm.internal:8000/v1", "os.environ/VLLM_BASE")
    run(write(tmp_path, text))
    assert CatalogModel.objects.get(name="llama-3").api_base == "http://vllm.internal:9000/v1"

    monkeypatch.delenv("VLLM_BASE")
    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text.replace("llama-3", "llama-4")))
    message = (
        "model_list[1].litellm_params.api_base: The environment variable VLLM_BASE is not set."
    )
    assert message in str(raised.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model_list: [\n  {model_name: x\n", "line 3, column 1"),
        ("model_list:\n  - model_name: a\n    model_name: b\n", "found the key 'model_name' twice"),
        ("- just a list\n", "(top level): expected a mapping with a model_list"),
        ("general_settings: {}\n", "model_list: missing"),
        ("model_list:\n  - just-a-name\n", "model_list[0]: must be a mapping"),
        ("model_list:\n  - model_name: '*'\n    litellm_params: {model: mock/x}\n", "wildcard"),
        (
            "model_list:\n  - model_name: a\n"
            "    litellm_params: {model: mock/a, input_cost_per_token: 0.1}\n"
            "    model_info: {input_cost_per_token: 0.2}\n",
            "model_list[0].model_info.input_cost_per_token: input_cost_per_token differs",
        ),
    ],
)
def test_a_file_that_is_not_a_model_list_is_refused_with_its_place(tmp_path, text, expected):
    with pytest.raises(CommandError) as raised:
        run(write(tmp_path, text))
    assert expected in str(raised.value)
    assert CatalogModel.objects.count() == 0


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run(tmp_path / "absent.yaml")
