"""Create or update projects from a CSV file, by team and project alias (Decision 2)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from hierarchy.actors import SYSTEM
from hierarchy.audit import AuditedCommand, recording_in_bulk
from hierarchy.commands import ErrorReport, team_by_reference, with_progress
from hierarchy.governance import Catalog, clean_governance
from hierarchy.models import Team
from projects.models import Project
from projects.selectors import projects_visible_to
from projects.services import project_create, project_update

REQUIRED_COLUMNS = ("team", "alias")
GOVERNANCE_COLUMNS = (
    "models",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
)
COLUMNS = (*REQUIRED_COLUMNS, "organization", "description", *GOVERNANCE_COLUMNS)
MODEL_SEPARATORS = re.compile(r"[\s;,]+")
MAX_ROWS = 100_000

MSG_NO_HEADER = "the file is empty: the first row must name the columns ({columns})."
MSG_MISSING_COLUMNS = "missing column(s): {columns}."
MSG_UNKNOWN_COLUMNS = "unknown column(s): {columns} (known: {known})."
MSG_DUPLICATE_COLUMNS = "column(s) named twice: {columns}."
MSG_TOO_MANY_ROWS = "more than {max} rows: split the file."
MSG_REQUIRED = "required."
MSG_EXTRA_CELLS = "more cells than columns."
MSG_DUPLICATE_ROW = "team '{team}' and alias '{alias}' are already on row {first}."


@dataclass
class Row:
    number: int
    team: Team
    alias: str
    description: str | None
    governance: dict[str, Any]


def _read(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and data rows, numbered as a spreadsheet shows them (the header is row 1)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            rows = list(reader)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"{path}: cannot be read as CSV ({exc}).") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CommandError(f"{path}: {MSG_NO_HEADER.format(columns=', '.join(COLUMNS))}")
    header = [cell.strip().lower() for cell in rows[0]]
    while header and not header[-1]:  # spreadsheets often end rows with empty cells
        header.pop()
    data = [
        (number, row)
        for number, row in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in row)  # blank lines are skipped
    ]
    return header, data


def _check_header(path: Path, header: list[str]) -> None:
    problems = []
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        problems.append(MSG_MISSING_COLUMNS.format(columns=", ".join(missing)))
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        known = ", ".join(COLUMNS)
        problems.append(MSG_UNKNOWN_COLUMNS.format(columns=", ".join(unknown), known=known))
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        problems.append(MSG_DUPLICATE_COLUMNS.format(columns=", ".join(twice)))
    if problems:
        raise CommandError(f"{path}, row 1: " + " ".join(problems))


def _governance(header: list[str], cells: dict[str, str]) -> dict[str, Any]:
    """The columns present set their field on every row; an empty cell clears it (no limit,
    every model the team allows)."""
    values: dict[str, Any] = {}
    for name in GOVERNANCE_COLUMNS:
        if name not in header:
            continue
        cell = cells[name]
        if name == "models":
            values[name] = [m for m in MODEL_SEPARATORS.split(cell) if m]
        elif name == "budget_duration":
            values[name] = cell
        else:
            values[name] = cell or None
    return values


def _place(number: int, column: str) -> str:
    return f"row {number}, {column}" if column else f"row {number}"


class Command(AuditedCommand):
    help = (
        "Create or update projects from a CSV file whose first row names the columns: team "
        "(id or alias) and alias are required; organization (alias or id) picks the team when "
        "teams of several organizations share its alias; description, models (separated by "
        "spaces or ';'), max_budget, soft_budget (USD), budget_duration (30d, 1mo, ...), "
        "rpm_limit and tpm_limit are optional. A project is the one with that alias in that "
        "team: it is created if missing, else updated. A column in the file sets its field on "
        "every row (an empty cell means none: no limit, all the team's models); a column left "
        "out leaves the field as it is. Every row is checked by the project services against "
        "its team; one bad row changes nothing, and errors name the row (as a spreadsheet "
        "numbers them, the header is row 1) and the column. Progress on stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the CSV file")
        parser.add_argument(
            "--dry-run", action="store_true", help="check every row and count; write nothing"
        )

    def handle(self, *args: Any, file: Path, dry_run: bool, **options: Any) -> None:
        header, raw_rows = _read(file)
        _check_header(file, header)
        if len(raw_rows) > MAX_ROWS:
            raise CommandError(f"{file}: {MSG_TOO_MANY_ROWS.format(max=MAX_ROWS)}")
        report = ErrorReport(file)
        rows = self._rows(header, raw_rows, report)

        with transaction.atomic():
            with recording_in_bulk():  # the audit entries, in one insert when all rows are in
                counts = self._apply(rows, report)
                report.raise_if_any()
            if dry_run:
                transaction.set_rollback(True)

        summary = (
            f"{len(rows)} row{'s' if len(rows) != 1 else ''} in {file}: "
            f"{counts['created']} created, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged."
        )
        if dry_run:
            self.stdout.write(f"Dry run, nothing was written. {summary}")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {summary}"))

    def _rows(
        self, header: list[str], raw_rows: list[tuple[int, list[str]]], report: ErrorReport
    ) -> list[Row]:
        rows: list[Row] = []
        teams: dict[tuple[str, str], Team | ValidationError] = {}
        first_row: dict[tuple[str, str], int] = {}
        for number, raw in raw_rows:
            if any(cell.strip() for cell in raw[len(header) :]):
                report.add(f"{_place(number, '')}: {MSG_EXTRA_CELLS}", number)
                continue
            cells = {
                name: (raw[i] if i < len(raw) else "").strip() for i, name in enumerate(header)
            }
            for name in REQUIRED_COLUMNS:
                if not cells[name]:
                    report.add(f"{_place(number, name)}: {MSG_REQUIRED}", number)
            if not (cells["team"] and cells["alias"]):
                continue
            team_ref = (cells["team"], cells.get("organization", ""))
            if team_ref not in teams:
                try:
                    teams[team_ref] = team_by_reference(
                        team_ref[0], actor=SYSTEM, organization=team_ref[1]
                    )
                except ValidationError as error:
                    teams[team_ref] = error
            team = teams[team_ref]
            if isinstance(team, ValidationError):
                report.add(f"{_place(number, 'team')}: {team.messages[0]}", number)
                continue
            key = (team.pk, cells["alias"])
            if key in first_row:
                duplicate = MSG_DUPLICATE_ROW.format(
                    team=team.alias, alias=cells["alias"], first=first_row[key]
                )
                report.add(f"{_place(number, 'alias')}: {duplicate}", number)
                continue
            first_row[key] = number
            rows.append(
                Row(
                    number=number,
                    team=team,
                    alias=cells["alias"],
                    description=cells["description"] if "description" in header else None,
                    governance=_governance(header, cells),
                )
            )
        return rows

    def _apply(self, rows: list[Row], report: ErrorReport) -> dict[str, int]:
        """Create or update each row's project; a failing row's error goes to ``report``."""
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        existing = {
            (project.team_id, project.alias): project
            for project in projects_visible_to(SYSTEM)
            .filter(team__in={row.team.pk for row in rows})
            .prefetch_related("access_groups")
        }
        catalog = Catalog.load()  # the import changes no model: read it once
        for _, row in with_progress(rows, self.stderr, "projects"):
            try:
                with transaction.atomic():
                    project = existing.get((row.team.pk, row.alias))
                    counts[self._import(row, project, catalog)] += 1
            except (ValidationError, PermissionDenied) as error:
                report.add_error(error, partial(_place, row.number), row.number)
        return counts

    def _import(self, row: Row, project: Project | None, catalog: Catalog) -> str:
        if project is None:
            project_create(
                actor=SYSTEM,
                team=row.team,
                alias=row.alias,
                description=row.description or "",
                **row.governance,
            )
            return "created"
        # Only what differs goes to the service, so an unchanged row writes nothing.
        cleaned = clean_governance(
            row.governance, level_name="project", parent=row.team, current=project, catalog=catalog
        )
        changes: dict[str, Any] = {
            name: row.governance[name]
            for name, value in cleaned.items()
            if getattr(project, name) != value
        }
        if row.description is not None and row.description != project.description:
            changes["description"] = row.description
        if not changes:
            return "unchanged"
        project_update(actor=SYSTEM, project=project, **changes)
        return "updated"
