"""Send the budget alerts that are due to the webhook; safe to run from cron."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from spend.services import budget_alerts_deliver


class Command(BaseCommand):
    help = (
        "POST every budget alert that is due (new, or whose retry time has come) to "
        "GATEHOUSE_ALERT_WEBHOOK_URL, one JSON body each with its id as Idempotency-Key; a 2xx "
        "answer marks it delivered, anything else schedules a retry with backoff. Each alert is "
        "claimed in the database first, so this is safe to run from cron beside running "
        "gateways (whose spend writers send alerts too)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=100, help="alerts sent between progress lines"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if not settings.GATEHOUSE_ALERT_WEBHOOK_URL:
            self.stdout.write("GATEHOUSE_ALERT_WEBHOOK_URL is not set: no alert sent.")
            return
        delivered = retrying = given_up = 0
        while True:
            sent = budget_alerts_deliver(limit=options["batch_size"])
            delivered += sent.delivered
            retrying += sent.retrying
            given_up += sent.given_up
            if sent.attempted < options["batch_size"]:
                break
            self.stdout.write(f"  {delivered + retrying + given_up} alerts tried so far")
        self.stdout.write(
            self.style.SUCCESS(
                f"Delivered {delivered} budget alerts; {retrying} to retry later, "
                f"{given_up} given up."
            )
        )
