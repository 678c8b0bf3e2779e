"""Recompute the daily spend rollups of a date range from the spend log, a day at a time."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spend.services import daily_spend_rebuild

MAX_DAYS = 3660


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"'{value}' is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = (
        "Recompute the daily spend rollups for the days from --start to --end (inclusive, "
        "days in GATEHOUSE_TIMEZONE) from the spend log. Safe beside a running gateway."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--end", required=True, help="last day, YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _day(options["start"]), _day(options["end"])
        if end < start:
            raise CommandError("--end is before --start.")
        days = (end - start).days + 1
        if days > MAX_DAYS:
            raise CommandError(f"At most {MAX_DAYS} days at once.")
        total_rows = total_calls = 0
        for number in range(days):
            day = start + timedelta(days=number)
            rebuilt = daily_spend_rebuild(day=day)
            if rebuilt is None:
                self.stdout.write(f"[{number + 1}/{days}] {day}: log pruned, rollups kept")
                continue
            rows, calls = rebuilt
            total_rows += rows
            total_calls += calls
            self.stdout.write(f"[{number + 1}/{days}] {day}: {rows} rollup rows, {calls} calls")
        self.stdout.write(
            self.style.SUCCESS(
                f"Rebuilt {days} day(s): {total_rows} rollup rows from {total_calls} calls."
            )
        )
