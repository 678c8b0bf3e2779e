"""Start the current budget period on every level whose period has ended (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from spend.services import budgets_roll_over


class Command(BaseCommand):
    help = (
        "Set spend to 0 on every key, project, team, organization and user whose budget period "
        "(budget_duration) ended since its spend was last written, and move budget_reset_at to "
        "the new period's end. The gateway rolls periods over by itself at the boundary; this "
        "makes the database show it for levels without traffic. Safe to repeat."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rolled = budgets_roll_over()
        for level, count in rolled.items():
            self.stdout.write(f"  {level}: {count} rolled over")
        self.stdout.write(
            self.style.SUCCESS(f"Started a new budget period on {sum(rolled.values())} rows.")
        )
