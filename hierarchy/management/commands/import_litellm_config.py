"""Turn a LiteLLM proxy ``config.yaml``'s ``model_list`` into model catalog entries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser
from django.db import transaction

from hierarchy.actors import SYSTEM
from hierarchy.audit import AuditedCommand
from hierarchy.commands import ErrorReport, join_path, load_yaml, validation_messages
from hierarchy.governance import ALL_MODELS
from hierarchy.litellm import ENV_PREFIX, ModelNewRequest, _catalog_values
from hierarchy.models import CatalogModel, Provider
from hierarchy.services import catalog_model_create, catalog_model_update

MSG_NOT_A_CONFIG = "expected a mapping with a model_list (a LiteLLM proxy config.yaml)."
MSG_NO_MODEL_LIST = "missing: the file declares no models."
MSG_MODEL_LIST_NOT_A_LIST = "must be a list of models."
MSG_ENTRY_NOT_A_MAPPING = "must be a mapping with model_name and litellm_params."
MSG_MODEL_REQUIRED = "This field is required: the upstream model, e.g. openai/gpt-4o."
MSG_API_BASE_REQUIRED = (
    "This field is required: Gatehouse calls OpenAI-compatible APIs at their base URL "
    "(OpenAI itself: https://api.openai.com/v1)."
)
MSG_API_BASE_ENV_MISSING = "The environment variable {name} is not set."
MSG_WILDCARD_NAME = (
    "'{name}' is a wildcard: the catalog holds one entry per public model name; list each model."
)
MSG_DUPLICATE_NAME = (
    "'{name}' is already declared at {first}: the catalog serves one deployment per model name."
)
MSG_ID_OF_OTHER_MODEL = "'{id}' is not the id of the existing catalog entry '{name}' ({pk})."

# Where a catalog field comes from in a model_list entry (for errors raised by the services).
ENTRY_PATHS = {
    "name": "model_name",
    "provider": "litellm_params.model",
    "upstream_model": "litellm_params.model",
    "api_base": "litellm_params.api_base",
    "api_key_env": "litellm_params.api_key",
    "input_cost_per_token": "litellm_params.input_cost_per_token",
    "output_cost_per_token": "litellm_params.output_cost_per_token",
    "mode": "model_info.mode",
    "max_output_tokens": "model_info.max_output_tokens",
    "id": "model_info.id",
}


@dataclass
class Entry:
    index: int
    path: str
    values: dict[str, Any]
    model_id: str | None


def _resolve_api_base(raw: dict[str, Any], path: str) -> list[str]:
    """LiteLLM reads ``api_base: os.environ/NAME`` from the environment: so does the import
    (a base URL is not a secret, so its value is what the catalog stores)."""
    params = raw.get("litellm_params")
    api_base = params.get("api_base") if isinstance(params, dict) else None
    if not isinstance(params, dict) or not isinstance(api_base, str):
        return []
    if not api_base.startswith(ENV_PREFIX):
        return []
    name = api_base.removeprefix(ENV_PREFIX)
    value = os.environ.get(name)
    if value is None:
        params.pop("api_base")
        return [f"{path}.litellm_params.api_base: {MSG_API_BASE_ENV_MISSING.format(name=name)}"]
    params["api_base"] = value
    return []


def _entry(raw: Any, index: int) -> tuple[Entry | None, list[str]]:
    """Entry ``index`` of model_list as catalog fields, through the same mapping as
    /model/new, or the problems found in it."""
    path = join_path("model_list", index)
    if not isinstance(raw, dict):
        return None, [f"{path}: {MSG_ENTRY_NOT_A_MAPPING}"]
    problems = _resolve_api_base(raw, path)
    serializer = ModelNewRequest(data=raw)
    if not serializer.is_valid():
        messages = validation_messages(serializer.errors, path)
        return None, [*problems, *(f"{place}: {message}" for place, message in messages)]
    parsed = dict(serializer.validated_data)
    try:
        values = _catalog_values(parsed)
    except ValidationError as error:
        messages = validation_messages(error, path)
        return None, [*problems, *(f"{place}: {message}" for place, message in messages)]
    name = values["name"]
    if name in ALL_MODELS or "*" in name:
        problems.append(f"{path}.model_name: {MSG_WILDCARD_NAME.format(name=name)}")
    if not parsed["litellm_params"].get("model"):
        problems.append(f"{path}.litellm_params.model: {MSG_MODEL_REQUIRED}")
    elif values["provider"] == Provider.OPENAI and not values.get("api_base"):
        problems.append(f"{path}.litellm_params.api_base: {MSG_API_BASE_REQUIRED}")
    if problems:
        return None, problems
    model_id = (parsed.get("model_info") or {}).get("id")
    return Entry(index=index, path=path, values=values, model_id=model_id), []


def _changes(model: CatalogModel, values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if getattr(model, name) != value}


class Command(AuditedCommand):
    help = (
        "Import the model_list of a LiteLLM proxy config.yaml into the model catalog. Each "
        "entry's model_name is the catalog name; litellm_params.model 'openai/<name>' (or any "
        "other '<prefix>/<name>', sent as is) is an OpenAI-compatible upstream at "
        "litellm_params.api_base, 'mock/<name>' the offline mock; api_key must be "
        "'os.environ/NAME' (only the variable's name is stored: a literal key is refused); "
        "input/output_cost_per_token (in litellm_params or model_info) are USD per token; "
        "model_info may set id, mode (chat, embedding) and max_output_tokens. An entry whose "
        "model_name is already in the catalog updates that entry (fields it leaves out stay "
        "as they are). Any bad entry or unsupported field stops the import and changes "
        "nothing; errors name the place in the file. Other sections of the file are not read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("config", type=Path, help="path of the LiteLLM config.yaml")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check everything and show the plan; write nothing",
        )

    def handle(self, *args: Any, config: Path, dry_run: bool, **options: Any) -> None:
        document = load_yaml(config)
        report = ErrorReport(config)
        entries = self._entries(document, report)

        counts = {"created": 0, "updated": 0, "unchanged": 0}
        plan: list[str] = []
        with transaction.atomic():
            existing = {
                model.name: model
                for model in CatalogModel.objects.filter(
                    name__in=[entry.values["name"] for entry in entries]
                )
            }
            for entry in entries:
                name = entry.values["name"]
                model = existing.get(name)
                try:
                    with transaction.atomic():
                        outcome, detail = self._import(entry, model)
                except ValidationError as error:
                    for field, message in validation_messages(error):
                        place = join_path(entry.path, ENTRY_PATHS.get(field, field))
                        report.add(f"{place}: {message}", entry.index)
                    continue
                counts[outcome] += 1
                verb = f"would be {outcome}" if dry_run and outcome != "unchanged" else outcome
                plan.append(f"  {name}: {verb}{detail}")
            report.raise_if_any()
            if dry_run:
                transaction.set_rollback(True)

        for line in plan:
            self.stdout.write(line)
        summary = (
            f"{len(entries)} model{'s' if len(entries) != 1 else ''} in {config}: "
            f"{counts['created']} created, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged."
        )
        if dry_run:
            self.stdout.write(f"Dry run, nothing was written. {summary}")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {summary}"))
        ignored = (
            sorted(k for k in document if k != "model_list") if isinstance(document, dict) else []
        )
        if ignored:
            self.stdout.write(f"Not imported (only model_list is): {', '.join(map(str, ignored))}.")

    def _entries(self, document: Any, report: ErrorReport) -> list[Entry]:
        if not isinstance(document, dict):
            report.add(f"(top level): {MSG_NOT_A_CONFIG}")
            return []
        if "model_list" not in document or not document["model_list"]:
            report.add(f"model_list: {MSG_NO_MODEL_LIST}")
            return []
        model_list = document["model_list"]
        if not isinstance(model_list, list):
            report.add(f"model_list: {MSG_MODEL_LIST_NOT_A_LIST}")
            return []
        entries: list[Entry] = []
        first_path: dict[str, str] = {}
        for index, raw in enumerate(model_list):
            entry, problems = _entry(raw, index)
            for problem in problems:
                report.add(problem, index)
            if entry is None:
                continue
            name = entry.values["name"]
            if name in first_path:
                message = MSG_DUPLICATE_NAME.format(name=name, first=first_path[name])
                report.add(f"{entry.path}.model_name: {message}", index)
                continue
            first_path[name] = entry.path
            entries.append(entry)
        return entries

    def _import(self, entry: Entry, model: CatalogModel | None) -> tuple[str, str]:
        if model is None:
            catalog_model_create(actor=SYSTEM, id=entry.model_id, **entry.values)
            return "created", ""
        if entry.model_id is not None and entry.model_id != model.pk:
            raise ValidationError(
                {
                    "id": [
                        MSG_ID_OF_OTHER_MODEL.format(
                            id=entry.model_id, name=model.name, pk=model.pk
                        )
                    ]
                }
            )
        changes = _changes(model, entry.values)
        if not changes:
            return "unchanged", ""
        catalog_model_update(actor=SYSTEM, model=model, **changes)
        return "updated", f" ({', '.join(sorted(changes))})"
