"""Generate many keys for one project; their plaintext goes only to a private CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.db.models import Q

from hierarchy.actors import SYSTEM
from hierarchy.audit import AuditedCommand, recording_in_bulk
from hierarchy.commands import ErrorReport, SecretCsv, validation_messages, with_progress
from keys.selectors import keys_visible_to
from keys.services import key_generate
from projects.models import Project
from projects.selectors import projects_visible_to

MAX_COUNT = 100_000
CSV_HEADER = ("key_id", "key_alias", "key")
# The key service's fields and the flags that set them (for errors).
FLAGS = {
    "models": "--models",
    "max_budget": "--max-budget",
    "soft_budget": "--soft-budget",
    "budget_duration": "--budget-duration",
    "rpm_limit": "--rpm-limit",
    "tpm_limit": "--tpm-limit",
    "duration": "--duration",
    "key_alias": "--prefix",
}

MSG_COUNT_RANGE = "--count must be between 1 and {max}."
MSG_PROJECT_UNKNOWN = (
    "--project: no project '{reference}' (give its id, team-alias/project-alias or "
    "organization-alias/team-alias/project-alias)."
)
MSG_PROJECT_AMBIGUOUS = (
    "--project: '{reference}' names {count} projects ({names}): give its id or "
    "organization-alias/team-alias/project-alias."
)
MSG_ALIASES_TAKEN = "--prefix: key aliases already in use: {aliases}."


def project_path(project: Project) -> str:
    team = project.team
    organization = f"{team.organization.alias}/" if team.organization else ""
    return f"{organization}{team.alias}/{project.alias}"


def project_by_reference(reference: str) -> Project:
    """A project by id, ``team/project`` or ``organization/team/project`` aliases (aliases
    may hold ``/`` themselves: every split is tried, and more than one match is an error)."""
    projects = projects_visible_to(SYSTEM).select_related("team", "team__organization")
    by_id = projects.filter(pk=reference).first()
    if by_id is not None:
        return by_id
    parts = reference.split("/")
    wanted = Q(pk__in=[])
    for cut in range(1, len(parts)):
        alias = "/".join(parts[cut:])
        wanted |= Q(team__alias="/".join(parts[:cut]), alias=alias)
        for org_cut in range(1, cut):
            wanted |= Q(
                team__organization__alias="/".join(parts[:org_cut]),
                team__alias="/".join(parts[org_cut:cut]),
                alias=alias,
            )
    matches = list(projects.filter(wanted).distinct()[:10])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CommandError(MSG_PROJECT_UNKNOWN.format(reference=reference))
    names = ", ".join(sorted(f"{project_path(p)} ({p.pk})" for p in matches))
    raise CommandError(
        MSG_PROJECT_AMBIGUOUS.format(reference=reference, count=len(matches), names=names)
    )


def alias_names(prefix: str, count: int) -> list[str]:
    """``prefix-001`` ... ``prefix-100``: numbered from 1, as wide as ``count``."""
    width = len(str(count))
    return [f"{prefix}-{number:0{width}d}" for number in range(1, count + 1)]


def taken_aliases(aliases: list[str]) -> list[str]:
    taken: list[str] = []
    for start in range(0, len(aliases), 1000):
        chunk = aliases[start : start + 1000]
        found = keys_visible_to(SYSTEM).filter(key_alias__in=chunk).values_list("key_alias")
        taken += [alias for (alias,) in found if alias]
    return sorted(taken)


class Command(AuditedCommand):
    help = (
        "Generate --count keys for one project (--project: its id, team-alias/project-alias "
        "or organization-alias/team-alias/project-alias) through the key service, with the "
        "same budgets, limits, models and lifetime each (flags below; every value is checked "
        "against the project, team and organization). Writes key_id, key_alias, key to "
        "--out, a new CSV file with mode 0600 (an existing file is refused unless --force); "
        "a key's plaintext appears nowhere else. All keys or none: any error leaves no key "
        "and no file. --prefix names them <prefix>-001, <prefix>-002, ... (aliases are "
        "unique). Progress on stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="id, team/project or org/team/project")
        parser.add_argument("--count", type=int, required=True, help=f"1 to {MAX_COUNT}")
        parser.add_argument("--out", type=Path, required=True, help="the CSV file to create")
        parser.add_argument("--force", action="store_true", help="replace --out if it exists")
        parser.add_argument("--prefix", help="alias prefix: <prefix>-001, <prefix>-002, ...")
        parser.add_argument("--models", nargs="+", help="model names (within the project's)")
        parser.add_argument("--max-budget", help="USD per budget period")
        parser.add_argument("--soft-budget", help="USD; alert threshold")
        parser.add_argument("--budget-duration", help="budget period: 30s, 30m, 24h, 7d, 1mo")
        parser.add_argument("--rpm-limit", help="requests per minute")
        parser.add_argument("--tpm-limit", help="tokens per minute")
        parser.add_argument("--duration", help="lifetime, e.g. 30d: sets each key's expiry")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        if not 1 <= count <= MAX_COUNT:
            raise CommandError(MSG_COUNT_RANGE.format(max=MAX_COUNT))
        project = project_by_reference(options["project"])
        aliases: list[str | None] = [None] * count
        if options["prefix"]:
            names = alias_names(options["prefix"], count)
            taken = taken_aliases(names)
            if taken:
                more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
                raise CommandError(MSG_ALIASES_TAKEN.format(aliases=", ".join(taken[:5]) + more))
            aliases = list(names)
        settings = {
            name: options[name]
            for name in FLAGS
            if name != "key_alias" and options.get(name) is not None
        }
        out: Path = options["out"]

        with (
            SecretCsv(out, CSV_HEADER, force=options["force"]) as secrets,
            transaction.atomic(),
            recording_in_bulk(),
        ):
            for _, alias in with_progress(aliases, self.stderr, "keys"):
                try:
                    key, plaintext = key_generate(
                        actor=SYSTEM, project=project, key_alias=alias, **settings
                    )
                except (ValidationError, PermissionDenied) as error:
                    report = ErrorReport("generate_keys")
                    for field, message in validation_messages(error):
                        report.add(f"{FLAGS.get(field, field or '--project')}: {message}")
                    report.raise_if_any()
                    raise
                secrets.writerow((key.pk, key.key_alias or "", plaintext))
            secrets.publish()

        expiry = f", expiring after {settings['duration']}" if "duration" in settings else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Generated {count} key{'s' if count != 1 else ''} for project "
                f"{project_path(project)}{expiry}; id, alias and key of each in {out} "
                "(mode 0600, the only copy of the keys)."
            )
        )
