"""Budget alerts with several processes: two gateways whose spend writers raise and send
alerts, and two ``send_budget_alerts`` commands at once. A real local receiver counts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.spend_writer import SpendWriter
from hierarchy.actors import SYSTEM
from hierarchy.services import organization_update, team_update
from projects.services import project_update
from spend.models import BudgetAlert, SpendLog
from spend.services import spend_record_batch
from tests.factories import VirtualKeyFactory
from tests.gateway.conftest import ROOT, database_url, wait_until
from tests.gateway.test_shared_counters import CALL_COST_NANO, burst
from tests.spend.test_services import record
from tests.webhooks import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def calls(count: float) -> Decimal:
    """The cost of ``count`` mock gpt-4o calls (``burst``'s), in USD."""
    return Decimal(CALL_COST_NANO) * Decimal(str(count)) / Decimal(10**9)


def test_a_spend_writer_sends_the_alert_its_batch_raised_right_away(
    transactional_db, settings, receiver
):
    settings.GATEHOUSE_ALERT_WEBHOOK_URL = receiver.url  # reaches the writer in its setup
    key = VirtualKeyFactory(soft_budget=Decimal("0.00001"))
    writer = SpendWriter(0.01)
    writer.start()
    try:
        writer.add(record(key, 1, datetime.now(UTC)))  # below the budget: the writer is up
        wait_until(lambda: SpendLog.objects.exists(), 30)
        writer.add(record(key, 12_000, datetime.now(UTC)))
        [body] = wait_until(receiver.bodies, 4)  # sooner than the writer's retry timer
    finally:
        writer.stop()
    assert len(receiver.received) == 1  # none more once the writer drained and stopped
    assert (body["level"], body["object_id"], body["threshold"]) == ("key", key.pk, "soft")
    assert BudgetAlert.objects.get().delivered_at is not None


def test_two_gateways_send_exactly_one_alert_per_level_and_threshold(
    world, redis_server, start_gateway, receiver
):
    organization_update(actor=SYSTEM, organization=world.organization, soft_budget=calls(1.5))
    team_update(actor=SYSTEM, team=world.team, soft_budget=calls(4.5), max_budget=calls(6))
    project_update(
        actor=SYSTEM,
        project=world.project,
        soft_budget=calls(2.5),
        max_budget=calls(6),
        budget_duration="1mo",
    )
    env = {"GATEHOUSE_ALERT_WEBHOOK_URL": receiver.url}
    gateways = [start_gateway(redis_server.url, **env) for _ in range(2)]
    responses = burst([g.url for g in gateways], world.plaintext, 40, max_tokens=5)
    assert sorted(r.status_code for r in responses) == [200] * 6 + [429] * 34
    wait_until(lambda: SpendLog.objects.filter(project_id=world.project.pk).count() == 6, 10)
    wait_until(lambda: len(receiver.received) >= 5, 15)
    for gateway in gateways:  # the writers drain and their senders finish
        assert gateway.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal

    bodies = receiver.bodies()
    assert sorted((body["level"], body["threshold"]) for body in bodies) == [
        ("organization", "soft"),
        ("project", "max"),
        ("project", "soft"),
        ("team", "max"),
        ("team", "soft"),
    ]
    alerts = {alert.pk: alert for alert in BudgetAlert.objects.all()}
    assert sorted(r.headers["idempotency-key"] for r in receiver.received) == sorted(alerts)
    assert all(a.delivered_at is not None and a.attempts == 1 for a in alerts.values())
    by_level = {(body["level"], body["threshold"]): body for body in bodies}
    project_max = by_level[("project", "max")]
    assert (project_max["object_id"], project_max["object_name"]) == (
        world.project.pk,
        world.project.alias,
    )
    assert project_max["budget"] == float(calls(6)) == project_max["spend"]
    month_end = datetime.fromisoformat(project_max["period_end"])
    assert month_end.day == 1 and month_end > datetime.now(UTC)
    assert by_level[("team", "max")]["period"] == "lifetime"


def test_two_send_commands_at_once_post_every_alert_exactly_once(transactional_db):
    slow = WebhookReceiver(delay=0.02)  # the two commands overlap while alerts are sent
    try:
        for _ in range(25):
            key = VirtualKeyFactory(soft_budget=Decimal("0.00001"), max_budget=Decimal("0.00002"))
            spend_record_batch(records=[record(key, 30_000, datetime.now(UTC))])
        assert BudgetAlert.objects.count() == 50
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "GATEHOUSE_ALERT_WEBHOOK_URL": slow.url,
        }
        command = [sys.executable, "manage.py", "send_budget_alerts", "--batch-size", "10"]
        senders = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [sender.communicate(timeout=60)[0] for sender in senders]
        assert [sender.returncode for sender in senders] == [0, 0]
        ids = Counter(r.headers["idempotency-key"] for r in slow.received)
        assert len(ids) == 50 and set(ids.values()) == {1}
        delivered = [int(out.split("Delivered ")[1].split()[0]) for out in outputs]
        assert sum(delivered) == 50
        assert not BudgetAlert.objects.filter(delivered_at__isnull=True).exists()
    finally:
        slow.close()
