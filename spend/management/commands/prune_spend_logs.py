"""Delete old spend log rows (daily rollups are kept); safe to run from cron."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hierarchy.governance import parse_duration
from spend.selectors import spend_logs_started_before
from spend.services import spend_logs_prune, spend_logs_prune_cutoff

SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _age(value: str) -> timedelta:
    try:
        amount, unit = parse_duration(value)
    except ValidationError as exc:
        raise CommandError(f"--older-than: {exc.messages[0]}") from None
    if unit not in SECONDS:
        raise CommandError("--older-than: use days or weeks (e.g. 90d, 13w), not months.")
    return timedelta(seconds=amount * SECONDS[unit])


class Command(BaseCommand):
    help = (
        "Delete spend log rows of calls older than --older-than (e.g. 90d), whole local days "
        "(GATEHOUSE_TIMEZONE). Daily rollups, and so reports, are kept. Deletes in batches; "
        "safe to run from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="an age such as 90d or 13w")
        parser.add_argument("--batch-size", type=int, default=10_000)
        parser.add_argument("--dry-run", action="store_true", help="count the rows, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        before = spend_logs_prune_cutoff(_age(options["older_than"]))
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        cutoff = f"{before:%Y-%m-%d %H:%M %Z}"
        if options["dry_run"]:
            count = spend_logs_started_before(before).count()
            self.stdout.write(f"Would delete {count} spend log rows started before {cutoff}.")
            return
        total = 0
        for deleted in spend_logs_prune(before=before, batch_size=options["batch_size"]):
            total += deleted
            self.stdout.write(f"  deleted {total} rows so far")
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {total} spend log rows started before {cutoff}; daily rollups kept."
            )
        )
