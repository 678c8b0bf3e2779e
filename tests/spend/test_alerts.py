"""Budget alerts: raised once per level, threshold and period by the spend pipeline, and
posted to a real local webhook receiver with retries."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from hierarchy.models import Organization, Role, Team, User
from keys.models import VirtualKey
from projects.models import Project
from spend.models import BudgetAlert
from spend.services import (
    ALERT_LEASE,
    ALERT_MAX_ATTEMPTS,
    _budget_alert_claim,
    alert_retry_delay,
    budget_alerts_deliver,
    spend_record_batch,
)
from tests.factories import UserFactory, VirtualKeyFactory
from tests.spend.test_services import BOUNDARY, record
from tests.webhooks import WebhookReceiver

AT = BOUNDARY + timedelta(hours=1)
SOFT, MAX = Decimal("0.00001"), Decimal("0.00002")  # 10,000 and 20,000 nano-USD
MODELS = {
    "key": VirtualKey,
    "project": Project,
    "team": Team,
    "organization": Organization,
    "user": User,
}


@pytest.fixture
def key(db):
    return VirtualKeyFactory(user=UserFactory())


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def level_id(key: VirtualKey, level: str) -> str | None:
    return {
        "key": key.pk,
        "project": key.project_id,
        "team": key.team_id,
        "organization": key.team.organization_id,
        "user": key.user_id,
    }[level]


def set_budgets(key: VirtualKey, level: str = "team", **fields) -> None:
    values = {"soft_budget": SOFT, "max_budget": MAX, **fields}
    MODELS[level].objects.filter(pk=level_id(key, level)).update(**values)


def raised() -> list[tuple[str, str]]:
    return sorted(BudgetAlert.objects.values_list("level", "threshold"))


def test_crossing_the_soft_budget_raises_one_alert(key):
    set_budgets(key)
    assert spend_record_batch(records=[record(key, 4_000, AT)], now=AT) == 0
    assert spend_record_batch(records=[record(key, 8_000, AT)], now=AT) == 1
    alert = BudgetAlert.objects.get()
    assert (alert.level, alert.object_id, alert.threshold) == ("team", key.team_id, "soft")
    assert (alert.budget, alert.spend) == (SOFT, Decimal("0.000012"))
    assert (alert.period, alert.period_end) == ("lifetime", None)
    assert alert.next_attempt_at == alert.created_at == AT
    assert (alert.attempts, alert.delivered_at) == (0, None)


def test_reaching_the_max_budget_exactly_raises_a_max_alert(key):
    set_budgets(key)
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    spend_record_batch(records=[record(key, 7_999, AT)], now=AT)
    assert raised() == [("team", "soft")]  # 19,999: not reached yet
    spend_record_batch(records=[record(key, 1, AT)], now=AT)
    assert raised() == [("team", "max"), ("team", "soft")]
    assert BudgetAlert.objects.get(threshold="max").spend == MAX


def test_one_batch_crossing_both_thresholds_raises_both(key):
    set_budgets(key)
    calls = [record(key, 6_000, AT), record(key, 15_000, AT)]
    assert spend_record_batch(records=calls, now=AT) == 2
    assert raised() == [("team", "max"), ("team", "soft")]
    assert set(BudgetAlert.objects.values_list("spend", flat=True)) == {Decimal("0.000021")}


def test_spend_below_the_soft_budget_raises_nothing(key):
    set_budgets(key)
    assert spend_record_batch(records=[record(key, 9_999, AT)], now=AT) == 0
    assert not BudgetAlert.objects.exists()


def test_a_threshold_already_crossed_in_the_period_raises_no_second_alert(key):
    set_budgets(key)
    spend_record_batch(records=[record(key, 25_000, AT)], now=AT)
    assert spend_record_batch(records=[record(key, 25_000, AT)], now=AT) == 0
    assert raised() == [("team", "max"), ("team", "soft")]


def test_a_changed_budget_crossed_again_stays_one_alert_per_period(key):
    set_budgets(key)
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    set_budgets(key, soft_budget=Decimal("0.000015"))
    # The new soft budget is crossed, but the period has its soft alert: the constraint holds.
    assert spend_record_batch(records=[record(key, 4_000, AT)], now=AT) == 1
    assert raised() == [("team", "soft")]
    assert BudgetAlert.objects.get().budget == SOFT


def test_a_new_budget_period_raises_new_alerts(key, receiver):
    set_budgets(key, budget_duration="1d", budget_reset_at=BOUNDARY + timedelta(days=1))
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    next_day = BOUNDARY + timedelta(days=1, hours=1)
    late = record(key, 12_000, AT)  # ended in the first period, written in the second
    assert spend_record_batch(records=[late], now=next_day) == 0
    assert spend_record_batch(records=[record(key, 12_000, next_day)], now=next_day) == 1
    periods = BudgetAlert.objects.order_by("period", "-threshold")
    assert [(a.threshold, a.period, a.period_end) for a in periods] == [
        ("soft", "2026-11-28T00:00:00+00:00", BOUNDARY + timedelta(days=1)),
        ("max", "2026-11-28T00:00:00+00:00", BOUNDARY + timedelta(days=1)),
        ("soft", "2026-11-29T00:00:00+00:00", BOUNDARY + timedelta(days=2)),
    ]
    # The receiver hears each of them once: one per threshold per period.
    assert budget_alerts_deliver(url=receiver.url, now=next_day).delivered == 3
    assert budget_alerts_deliver(url=receiver.url, now=next_day).attempted == 0
    assert sorted((b["threshold"], b["period"]) for b in receiver.bodies()) == [
        ("max", "2026-11-28T00:00:00+00:00"),
        ("soft", "2026-11-28T00:00:00+00:00"),
        ("soft", "2026-11-29T00:00:00+00:00"),
    ]


def test_levels_without_budgets_raise_no_alerts(key):
    assert spend_record_batch(records=[record(key, 10**9, AT)], now=AT) == 0
    assert not BudgetAlert.objects.exists()


def test_a_budget_set_below_the_spend_alerts_only_once_spend_crosses_it(key):
    spend_record_batch(records=[record(key, 30_000, AT)], now=AT)
    set_budgets(key, soft_budget=None)  # a max budget only, spent beyond already
    assert spend_record_batch(records=[record(key, 1_000, AT)], now=AT) == 0
    set_budgets(key, soft_budget=None, max_budget=Decimal("0.00004"))
    assert spend_record_batch(records=[record(key, 9_000, AT)], now=AT) == 1
    assert raised() == [("team", "max")]


@pytest.mark.parametrize("level", list(MODELS))
def test_every_level_raises_its_own_alerts(key, level):
    set_budgets(key, level)
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    spend_record_batch(records=[record(key, 8_000, AT)], now=AT)
    alerts = BudgetAlert.objects.order_by("threshold")
    assert [(a.level, a.object_id, a.threshold) for a in alerts] == [
        (level, level_id(key, level), "max"),
        (level, level_id(key, level), "soft"),
    ]


# --- delivery ------------------------------------------------------------------------------


def crossed(key: VirtualKey) -> BudgetAlert:
    set_budgets(key)
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    return BudgetAlert.objects.get()


def test_an_alert_is_posted_once_as_json_with_its_id_as_idempotency_key(key, receiver):
    alert = crossed(key)
    sent = budget_alerts_deliver(url=receiver.url, now=AT)
    assert (sent.delivered, sent.retrying, sent.given_up) == (1, 0, 0)
    [request] = receiver.received
    assert request.path == "/hooks/budget"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == alert.pk
    assert request.json() == {
        "id": alert.pk,
        "type": "budget_alert",
        "level": "team",
        "object_id": key.team_id,
        "object_name": key.team.alias,
        "threshold": "soft",
        "budget": 0.00001,
        "spend": 0.000012,
        "period": "lifetime",
        "period_end": None,
        "created_at": AT.isoformat(),
        "message": f"Team '{key.team.alias}' crossed its soft budget of 0.00001 USD: "
        "0.000012 USD spent so far.",
    }
    alert.refresh_from_db()
    assert (alert.delivered_at, alert.next_attempt_at, alert.attempts) == (AT, None, 1)
    assert budget_alerts_deliver(url=receiver.url, now=AT + timedelta(days=1)).attempted == 0
    assert len(receiver.received) == 1


def test_a_key_alert_names_the_key_without_its_secret(key, receiver):
    set_budgets(key, "key")
    spend_record_batch(records=[record(key, 12_000, AT)], now=AT)
    budget_alerts_deliver(url=receiver.url, now=AT)
    [body] = receiver.bodies()
    assert body["object_name"] == key.key_name  # sk-...abcd
    assert key.token_hash not in receiver.received[0].body.decode()


def test_a_failed_delivery_is_retried_with_backoff_and_delivered_once(key, receiver):
    receiver.statuses.append(500)
    alert = crossed(key)
    assert budget_alerts_deliver(url=receiver.url, now=AT).retrying == 1
    alert.refresh_from_db()
    assert (alert.attempts, alert.last_error, alert.delivered_at) == (1, "HTTP 500", None)
    assert alert.next_attempt_at == AT + timedelta(seconds=10)
    assert budget_alerts_deliver(url=receiver.url, now=AT + timedelta(seconds=9)).attempted == 0
    assert budget_alerts_deliver(url=receiver.url, now=AT + timedelta(seconds=10)).delivered == 1
    alert.refresh_from_db()
    assert (alert.attempts, alert.last_error) == (2, "")
    assert alert.delivered_at == AT + timedelta(seconds=10)
    keys = [request.headers["idempotency-key"] for request in receiver.received]
    assert keys == [alert.pk, alert.pk]
    assert receiver.bodies()[0] == receiver.bodies()[1]


def test_backoff_doubles_up_to_the_last_attempt_and_then_gives_up(key):
    failing = WebhookReceiver(statuses=[503] * ALERT_MAX_ATTEMPTS)
    try:
        alert = crossed(key)
        now, delays = AT, []
        for _ in range(ALERT_MAX_ATTEMPTS - 1):
            assert budget_alerts_deliver(url=failing.url, now=now).retrying == 1
            alert.refresh_from_db()
            assert alert.next_attempt_at is not None
            delays.append((alert.next_attempt_at - now).total_seconds())
            now = alert.next_attempt_at
        assert delays == [10, 20, 40, 80, 160, 320, 640, 1280, 2560]
        assert budget_alerts_deliver(url=failing.url, now=now).given_up == 1
        alert.refresh_from_db()
        assert (alert.attempts, alert.next_attempt_at, alert.delivered_at) == (10, None, None)
        assert alert.last_error == "HTTP 503"
        assert budget_alerts_deliver(url=failing.url, now=now + timedelta(days=1)).attempted == 0
        assert len(failing.received) == ALERT_MAX_ATTEMPTS
    finally:
        failing.close()
    assert alert_retry_delay(20) == timedelta(hours=1)  # the longest wait


def test_a_redirect_or_an_unreachable_receiver_is_a_failed_attempt(key, receiver):
    receiver.statuses.append(302)
    alert = crossed(key)
    budget_alerts_deliver(url=receiver.url, now=AT)
    alert.refresh_from_db()
    assert alert.last_error == "HTTP 302"
    assert [r.path for r in receiver.received] == ["/hooks/budget"]  # not followed
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/secret-token-in-path"
    assert budget_alerts_deliver(url=closed, now=alert.next_attempt_at).retrying == 1
    alert.refresh_from_db()
    assert alert.last_error.startswith("ConnectionRefusedError")
    assert "secret-token" not in alert.last_error


@pytest.mark.parametrize(
    "url", ["hooks.example.com/services/secret-token", "file:///etc/secret-token", "http://[x"]
)
def test_a_webhook_url_that_is_not_http_fails_the_attempt_without_quoting_it(key, url):
    alert = crossed(key)
    assert budget_alerts_deliver(url=url, now=AT).retrying == 1
    alert.refresh_from_db()
    assert alert.last_error == "GATEHOUSE_ALERT_WEBHOOK_URL is not a valid http(s) URL."
    assert alert.attempts == 1


def test_without_a_webhook_url_alerts_are_recorded_and_not_sent(key, receiver, settings):
    settings.GATEHOUSE_ALERT_WEBHOOK_URL = ""
    alert = crossed(key)
    assert budget_alerts_deliver(now=AT).attempted == 0
    alert.refresh_from_db()
    assert (alert.attempts, alert.next_attempt_at) == (0, AT)
    out = StringIO()
    call_command("send_budget_alerts", stdout=out)
    assert "GATEHOUSE_ALERT_WEBHOOK_URL is not set" in out.getvalue()
    assert receiver.received == []


def test_an_alert_is_claimed_by_one_sender_until_its_lease_ends(key):
    alert = crossed(key)
    claimed = _budget_alert_claim(AT)
    assert claimed is not None and claimed.pk == alert.pk
    assert _budget_alert_claim(AT) is None  # another sender finds nothing due
    # The first sender died holding it: due again once the lease is over.
    again = _budget_alert_claim(AT + ALERT_LEASE)
    assert again is not None and (again.attempts, again.claim != claimed.claim) == (2, True)


def test_the_command_sends_what_is_due_and_repeats_safely(key, receiver, settings):
    settings.GATEHOUSE_ALERT_WEBHOOK_URL = receiver.url
    set_budgets(key)
    set_budgets(key, "project")
    spend_record_batch(records=[record(key, 20_000, AT)])
    out = StringIO()
    call_command("send_budget_alerts", "--batch-size", "3", stdout=out)
    assert "3 alerts tried so far" in out.getvalue()
    assert "Delivered 4 budget alerts; 0 to retry later, 0 given up." in out.getvalue()
    out = StringIO()
    call_command("send_budget_alerts", stdout=out)
    assert "Delivered 0 budget alerts" in out.getvalue()
    assert sorted((b["level"], b["threshold"]) for b in receiver.bodies()) == [
        ("project", "max"),
        ("project", "soft"),
        ("team", "max"),
        ("team", "soft"),
    ]


# --- admin ---------------------------------------------------------------------------------

ALERTS_LIST = "/admin/spend/budgetalert/"


def test_proxy_admins_and_viewers_list_alerts_read_only(key, client, proxy_admin):
    alert = crossed(key)
    viewer = UserFactory(role=Role.PROXY_ADMIN_VIEWER, is_staff=True)
    for user in (proxy_admin, viewer):
        client.force_login(user)
        page = client.get(
            ALERTS_LIST, {"level": "team", "threshold": "soft", "delivery": "pending"}
        )
        assert page.status_code == 200
        assert key.team_id in page.content.decode()
        assert client.get(ALERTS_LIST, {"delivery": "delivered"}).context["cl"].result_count == 0
        assert client.get(ALERTS_LIST, {"q": key.team_id[:8]}).context["cl"].result_count == 1
        detail = client.get(f"{ALERTS_LIST}{alert.pk}/change/")
        assert detail.status_code == 200
        assert detail.context["has_change_permission"] is False
        assert client.get(f"{ALERTS_LIST}add/").status_code == 403
        assert client.post(f"{ALERTS_LIST}{alert.pk}/delete/", {"post": "yes"}).status_code == 403
    assert BudgetAlert.objects.filter(pk=alert.pk).exists()


def test_other_staff_do_not_see_alerts(key, client, make_team_admin):
    alert = crossed(key)
    client.force_login(make_team_admin(key.team))
    assert client.get(ALERTS_LIST).status_code == 403
    assert client.get(f"{ALERTS_LIST}{alert.pk}/change/").status_code in (403, 404)
    assert "budgetalert" not in client.get("/admin/").content.decode()
