"""Write what ``manage.py apply`` manages as a configuration file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hierarchy.commands import check_output_path
from hierarchy.config_file import dump, export_document


def _write(path: Path, text: str, *, force: bool) -> None:
    """``text`` at ``path``, whole or not at all; an existing file only with ``force``."""
    check_output_path(path, force=force)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _counts(document: dict[str, Any]) -> dict[str, int]:
    teams = document.get("teams", [])
    projects = [project for team in teams for project in team.get("projects", [])]
    counts = {name: len(items) for name, items in document.items()}
    if projects:
        counts["projects"] = len(projects)
    keys = sum(len(level.get("keys", [])) for level in [*teams, *projects])
    if keys:
        counts["keys"] = keys
    return counts


class Command(BaseCommand):
    help = (
        "Write what apply manages as a YAML file that apply reads back as a no-op: every "
        "catalog model, access group, user, organization, team, project and key apply created "
        "(fields that differ from their defaults, members and roles), plus the teams and "
        "projects that hold them, by natural key only. Keys appear by alias, never a secret. "
        "To standard output, or to --output FILE (a new file unless --force)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", type=Path, help="the file to write")
        parser.add_argument("--force", action="store_true", help="replace --output if it exists")

    def handle(self, *args: Any, output: Path | None, force: bool, **options: Any) -> None:
        document = export_document()
        text = dump(document) if document else "{}\n"
        counts = ", ".join(f"{count:,} {name}" for name, count in _counts(document).items())
        summary = f"Exported {counts or 'nothing: apply manages no objects'}"
        if output is None:
            self.stdout.write(text, ending="")
            self.stderr.write(f"{summary}.")
            return
        _write(output, text, force=force)
        self.stdout.write(self.style.SUCCESS(f"{summary} to {output}."))
