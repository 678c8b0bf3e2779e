"""Make the database match a configuration file (config as code)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from hierarchy.actors import SYSTEM
from hierarchy.audit import AuditedCommand
from hierarchy.commands import ErrorReport, ProgressBar, SecretCsv, load_yaml
from hierarchy.config_file import Declared, Plan, describe, execute, plan_document
from keys.models import VirtualKey

KEYS_OUT_HEADER = ("key_alias", "key", "organization", "team", "project")
MSG_KEYS_OUT_REQUIRED = (
    "{file} declares {count} new key(s): pass --keys-out FILE to receive their secrets "
    "(they are shown nowhere else). Nothing was changed."
)


def _counts(plan: Plan) -> str:
    return (
        f"{plan.count('create'):,} to create, {plan.count('update'):,} to update, "
        f"{plan.count('delete'):,} to delete, {plan.unchanged:,} unchanged"
    )


class Command(AuditedCommand):
    help = (
        "Make the database match FILE (YAML): the catalog models, access groups, users, "
        "organizations and teams (with members and roles), projects and keys it declares, "
        "matched by natural key (name, email, alias). Objects this command creates are "
        "managed by the file: a field left out returns to its default, and --prune deletes "
        "those the file no longer declares; objects made elsewhere change only in the fields "
        "the file states and are never deleted. Everything is checked by the same rules as "
        "the admin and the API, in one transaction: all of it or nothing. --dry-run prints the "
        "plan field by field and writes nothing. New keys' secrets go only to --keys-out (a "
        "new file, mode 0600), required when the file declares new keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the YAML file to apply")
        parser.add_argument(
            "--dry-run", action="store_true", help="print the plan, check it, write nothing"
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete objects apply created that the file no longer declares",
        )
        parser.add_argument(
            "--keys-out", type=Path, help="CSV file (mode 0600) for the new keys' secrets"
        )
        parser.add_argument("--force", action="store_true", help="replace --keys-out if it exists")

    def handle(
        self,
        *args: Any,
        file: Path,
        dry_run: bool,
        prune: bool,
        keys_out: Path | None,
        force: bool,
        verbosity: int = 1,
        **options: Any,
    ) -> None:
        started = time.monotonic()
        errors = ErrorReport(file)
        plan = plan_document(load_yaml(file), prune=prune, errors=errors)
        errors.raise_if_any()
        if dry_run or verbosity >= 2:
            for line in describe(plan):
                self.stdout.write(line)
        new_keys = plan.new_keys if not dry_run else 0
        secrets = None
        if new_keys:
            if keys_out is None:
                raise CommandError(MSG_KEYS_OUT_REQUIRED.format(file=file, count=new_keys))
            secrets = SecretCsv(keys_out, KEYS_OUT_HEADER, force=force)

        def write_key(declared: Declared, key: VirtualKey, plaintext: str) -> None:
            assert secrets is not None
            team = key.team
            secrets.writerow(
                (
                    key.key_alias,
                    plaintext,
                    team.organization.alias if team and team.organization else "",
                    team.alias if team else "",
                    key.project.alias if key.project else "",
                )
            )

        progress = (
            ProgressBar(self.stderr, len(plan.changes), "Applying")
            if plan.changes and verbosity >= 1
            else None
        )
        with secrets if secrets is not None else nullcontext(), transaction.atomic():
            execute(
                plan,
                actor=SYSTEM,
                errors=errors,
                new_key=write_key if secrets is not None else None,
                progress=progress,
            )
            errors.raise_if_any()
            if dry_run:
                transaction.set_rollback(True)
            elif secrets is not None:
                secrets.publish()

        seconds = time.monotonic() - started
        if dry_run:
            self.stdout.write(f"Dry run of {file}: {_counts(plan)}; nothing was written.")
        else:
            keys = f"; {new_keys:,} new key secret(s) in {keys_out} (mode 0600)" if new_keys else ""
            if keys_out is not None and not new_keys:
                keys = f"; no new keys, so {keys_out} was not written"
            self.stdout.write(
                self.style.SUCCESS(
                    f"Applied {file}: {plan.count('create'):,} created, "
                    f"{plan.count('update'):,} updated, {plan.count('delete'):,} deleted, "
                    f"{plan.unchanged:,} unchanged{keys} ({seconds:.1f} s)."
                )
            )
        if plan.kept:
            self.stdout.write(
                f"{plan.kept:,} object(s) apply created are no longer in the file and were kept "
                "(--prune deletes them)."
            )
