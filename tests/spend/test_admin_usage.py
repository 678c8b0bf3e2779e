"""Admin > Reports > Usage, and the spend-against-budget bar on a project's page.

The page reads the daily rollups through the scoped selector and DailySpendFilter; these tests
seed rollups directly and read the chart marks back from the rendered SVG.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from hierarchy.actors import SYSTEM
from hierarchy.models import OrganizationRole, Role
from hierarchy.services import organization_member_set
from projects.models import UISettings
from spend import admin_views
from spend.admin_views import MSG_OUTSIDE_CALENDAR, MSG_RANGE_TOO_LONG, NO_KEY, NO_PROJECT
from spend.filters import MSG_END_BEFORE_START
from spend.models import DailySpend
from spend.selectors import local_today
from tests.factories import (
    ProjectFactory,
    TeamFactory,
    UserFactory,
    VirtualKeyFactory,
)

pytestmark = pytest.mark.django_db

USAGE = "/admin/usage/"
DAY = date(2026, 11, 10)
RANGE = {"start_date": "2026-11-01", "end_date": "2026-11-30"}


def rollup(
    project: Any = None,
    *,
    spend: str,
    day: date = DAY,
    model: str = "gpt-4o",
    key: Any = None,
    requests_ok: int = 1,
) -> DailySpend:
    team = project.team if project is not None else None
    return DailySpend.objects.create(
        day=day,
        organization_id=(team.organization_id or "") if team else "",
        team_id=team.pk if team else "",
        project_id=project.pk if project else "",
        key_id=key.pk if key else "",
        model=model,
        requests_ok=requests_ok,
        prompt_tokens=10 * requests_ok,
        completion_tokens=5 * requests_ok,
        spend=Decimal(spend),
    )


class Marks(HTMLParser):
    """The chart marks (``class="mark"``) of an SVG, as attribute dicts."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.found: list[dict[str, Any]] = []
        self.feed(str(markup))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "mark" in (attributes.get("class") or "").split():
            self.found.append(attributes)


def section(response: Any, section_id: str) -> list[dict[str, Any]]:
    """The marks of one chart of the page: ``over-time`` or a breakdown's section id."""
    if section_id == "over-time":
        return Marks(response.context["over_time"]).found
    for name, _, breakdown in response.context["breakdowns"]:
        if name == f"usage-{section_id}":
            return Marks(breakdown.chart).found
    raise AssertionError(section_id)


def values(marks: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {mark["data-id"]: Decimal(mark["data-value"]) for mark in marks}


@pytest.fixture
def two_teams(catalog):  # type: ignore[no-untyped-def]
    search = TeamFactory(alias="Search")
    support = TeamFactory(alias="Support")
    return {
        "search": search,
        "support": support,
        "flights": ProjectFactory(alias="flights", team=search),
        "hotels": ProjectFactory(alias="hotels", team=search),
        "tickets": ProjectFactory(alias="tickets", team=support),
    }


@pytest.fixture
def seeded(two_teams):  # type: ignore[no-untyped-def]
    t = two_teams
    rollup(t["flights"], spend="1.250000000", day=date(2026, 11, 1))
    rollup(t["flights"], spend="2.000000001", day=date(2026, 11, 30), model="gpt-4o-mini")
    rollup(t["hotels"], spend="0.000000007", day=date(2026, 11, 15))
    rollup(t["tickets"], spend="40", day=date(2026, 11, 15), model="claude-3-5-sonnet")
    # Outside the range by one day at each end.
    rollup(t["flights"], spend="100", day=date(2026, 10, 31))
    rollup(t["tickets"], spend="100", day=date(2026, 12, 1))
    return t


def test_by_project_has_one_mark_per_project_with_its_spend_over_the_range(admin_client, seeded):  # type: ignore[no-untyped-def]
    response = admin_client.get(USAGE, RANGE)
    assert response.status_code == 200
    assert values(section(response, "by-project")) == {
        seeded["tickets"].pk: Decimal("40"),
        seeded["flights"].pk: Decimal("3.250000001"),
        seeded["hotels"].pk: Decimal("0.000000007"),
    }
    labels = [m["data-label"] for m in section(response, "by-project")]
    assert labels == ["tickets", "flights", "hotels"]
    assert values(section(response, "by-model")) == {
        "claude-3-5-sonnet": Decimal("40"),
        "gpt-4o-mini": Decimal("2.000000001"),
        "gpt-4o": Decimal("1.250000007"),
    }
    assert response.context["totals"]["spend"] == Decimal("43.250000008")
    assert response.context["totals"]["requests_ok"] == 4


def test_spend_over_time_has_a_mark_for_every_day_of_the_range(admin_client, seeded):  # type: ignore[no-untyped-def]
    marks = section(admin_client.get(USAGE, RANGE), "over-time")
    assert len(marks) == 30
    by_day = {m["data-label"]: Decimal(m["data-value"]) for m in marks}
    assert by_day["2026-11-01"] == Decimal("1.25")
    assert by_day["2026-11-15"] == Decimal("40.000000007")
    assert by_day["2026-11-30"] == Decimal("2.000000001")
    assert by_day["2026-11-02"] == 0


def test_a_project_bar_links_to_the_page_narrowed_to_that_project(admin_client, seeded):  # type: ignore[no-untyped-def]
    response = admin_client.get(USAGE, RANGE)
    flights = seeded["flights"].pk
    assert (
        f'<a href="?start_date=2026-11-01&amp;end_date=2026-11-30&amp;project_id={flights}">'
        in (str(response.context["breakdowns"][0][2].chart))
    )
    narrowed = admin_client.get(USAGE, {**RANGE, "project_id": flights})
    assert values(section(narrowed, "by-project")) == {flights: Decimal("3.250000001")}


def test_default_range_is_the_last_30_local_days(admin_client, two_teams):  # type: ignore[no-untyped-def]
    today = local_today()
    rollup(two_teams["flights"], spend="1", day=today)
    rollup(two_teams["flights"], spend="2", day=today - timedelta(days=29))
    rollup(two_teams["flights"], spend="4", day=today - timedelta(days=30))
    response = admin_client.get(USAGE)
    assert response.context["start_date"] == today - timedelta(days=29)
    assert response.context["end_date"] == today
    assert response.context["totals"]["spend"] == Decimal("3")
    assert len(section(response, "over-time")) == 30


def test_a_start_date_alone_runs_to_today(admin_client, two_teams):  # type: ignore[no-untyped-def]
    start = local_today() - timedelta(days=5)
    response = admin_client.get(USAGE, {"start_date": start.isoformat()})
    assert (response.context["start_date"], response.context["end_date"]) == (start, local_today())


def test_filters_narrow_by_organization_team_and_project(admin_client, seeded):  # type: ignore[no-untyped-def]
    search, support = seeded["search"], seeded["support"]
    by_org = admin_client.get(USAGE, {**RANGE, "organization_id": support.organization_id})
    assert set(values(section(by_org, "by-project"))) == {seeded["tickets"].pk}

    by_team = admin_client.get(USAGE, {**RANGE, "team_id": search.pk})
    assert set(values(section(by_team, "by-project"))) == {
        seeded["flights"].pk,
        seeded["hotels"].pk,
    }
    by_project = admin_client.get(USAGE, {**RANGE, "project_id": seeded["hotels"].pk})
    assert by_project.context["totals"]["spend"] == Decimal("0.000000007")


def test_team_admin_sees_only_their_teams_projects_and_choices(client, seeded, make_team_admin):  # type: ignore[no-untyped-def]
    client.force_login(make_team_admin(seeded["search"]))
    response = client.get(USAGE, RANGE)
    assert response.status_code == 200
    assert set(values(section(response, "by-project"))) == {
        seeded["flights"].pk,
        seeded["hotels"].pk,
    }
    assert response.context["totals"]["spend"] == Decimal("3.250000008")
    page = response.content.decode()
    assert "tickets" not in page
    assert "claude-3-5-sonnet" not in page
    choices = {f.name: f.choices for f in response.context["filters"]}
    assert choices["organization_id"] == []
    assert [pk for pk, _ in choices["team_id"]] == [seeded["search"].pk]
    assert {pk for pk, _ in choices["project_id"]} == {seeded["flights"].pk, seeded["hotels"].pk}

    # Naming the other team's project shows nothing of it, as for a project without spend.
    outside = client.get(USAGE, {**RANGE, "project_id": seeded["tickets"].pk})
    assert outside.status_code == 200
    assert section(outside, "by-project") == []
    assert outside.context["totals"]["spend"] == 0


def test_org_admin_sees_their_organizations_teams(client, seeded):  # type: ignore[no-untyped-def]
    user = UserFactory()
    organization_member_set(
        actor=SYSTEM,
        organization=seeded["support"].organization,
        user=user,
        role=OrganizationRole.ORG_ADMIN,
    )
    user.refresh_from_db()
    client.force_login(user)
    response = client.get(USAGE, RANGE)
    assert set(values(section(response, "by-project"))) == {seeded["tickets"].pk}
    choices = {f.name: f.choices for f in response.context["filters"]}
    assert [pk for pk, _ in choices["organization_id"]] == [seeded["support"].organization_id]


def test_a_viewer_reads_everything(client, seeded):  # type: ignore[no-untyped-def]
    viewer = UserFactory(role=Role.PROXY_ADMIN_VIEWER, is_staff=True)
    client.force_login(viewer)
    response = client.get(USAGE, RANGE)
    assert len(section(response, "by-project")) == 3


def test_staff_without_an_admin_role_is_refused_and_anonymous_goes_to_login(client, seeded):  # type: ignore[no-untyped-def]
    client.force_login(UserFactory(is_staff=True))
    assert client.get(USAGE).status_code == 403
    client.logout()
    response = client.get(USAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start_date": "yesterday"}, "From: Enter a valid date."),
        ({"end_date": "2026-13-40"}, "To: Enter a valid date."),
        ({"start_date": "2026-11-30", "end_date": "2026-11-01"}, f"To: {MSG_END_BEFORE_START}"),
        (
            {"start_date": "2020-01-01", "end_date": "2026-11-01"},
            MSG_RANGE_TOO_LONG.format(days=admin_views.MAX_RANGE_DAYS),
        ),
        ({"start_date": "9999-12-31"}, MSG_OUTSIDE_CALENDAR),
        ({"end_date": "0001-01-02"}, MSG_OUTSIDE_CALENDAR),
    ],
)
def test_bad_dates_show_an_error_not_a_server_error(admin_client, seeded, params, message):  # type: ignore[no-untyped-def]
    response = admin_client.get(USAGE, params)
    assert response.status_code == 200
    assert response.context["errors"] == [message]
    page = response.content.decode()
    assert escape(message) in page
    assert 'class="errorlist"' in page
    assert 'class="gh-chart' not in page


def test_a_range_of_366_days_is_allowed(admin_client, seeded):  # type: ignore[no-untyped-def]
    response = admin_client.get(USAGE, {"start_date": "2026-01-01", "end_date": "2027-01-01"})
    assert response.context["errors"] == []
    assert len(section(response, "over-time")) == 366


def test_top_keys_show_the_alias_or_the_preview_never_the_secret(admin_client, two_teams):  # type: ignore[no-untyped-def]
    flights = two_teams["flights"]
    named = VirtualKeyFactory(project=flights, key_alias="ci-bot", plaintext="sk-" + "a" * 40)
    unnamed = VirtualKeyFactory(project=flights, plaintext="sk-" + "b" * 36 + "wxyz")
    rollup(flights, key=named, spend="5")
    rollup(flights, key=unnamed, spend="3")
    rollup(None, spend="1")  # the master key: no key, no project
    response = admin_client.get(USAGE, RANGE)
    labels = {m["data-id"]: m["data-label"] for m in section(response, "top-keys")}
    assert labels == {named.pk: "ci-bot", unnamed.pk: "sk-...wxyz", "": NO_KEY}
    projects = {m["data-id"]: m["data-label"] for m in section(response, "by-project")}
    assert projects[""] == NO_PROJECT
    page = response.content.decode()
    assert "a" * 40 not in page
    assert "b" * 36 not in page


def test_a_project_that_is_gone_keeps_its_id_as_label(admin_client, two_teams):  # type: ignore[no-untyped-def]
    DailySpend.objects.create(day=DAY, project_id="deleted-project", model="gpt-4o", spend=1)
    response = admin_client.get(USAGE, RANGE)
    assert [m["data-label"] for m in section(response, "by-project")] == ["deleted-project"]


def test_projects_sharing_an_alias_are_told_apart_by_team(admin_client, two_teams):  # type: ignore[no-untyped-def]
    other = ProjectFactory(alias="flights", team=two_teams["support"])
    rollup(two_teams["flights"], spend="2")
    rollup(other, spend="1")
    response = admin_client.get(USAGE, RANGE)
    assert [m["data-label"] for m in section(response, "by-project")] == [
        "flights (Search)",
        "flights (Support)",
    ]


def test_names_are_escaped_in_charts_and_choices(admin_client, two_teams):  # type: ignore[no-untyped-def]
    project = ProjectFactory(alias='<img src=x onerror="alert(1)">', team=two_teams["search"])
    rollup(project, spend="1")
    page = admin_client.get(USAGE, RANGE).content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_only_the_largest_groups_are_drawn_and_the_rest_is_summed(
    admin_client, two_teams, monkeypatch
):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(admin_views, "TOP_PROJECTS", 2)
    for spend in ("5", "4", "3", "2"):
        rollup(ProjectFactory(team=two_teams["search"]), spend=spend)
    response = admin_client.get(USAGE, RANGE)
    breakdown = response.context["breakdowns"][0][2]
    assert [Decimal(m["data-value"]) for m in section(response, "by-project")] == [5, 4]
    assert (breakdown.more, breakdown.rest) == (True, Decimal(5))
    assert "Showing the 2 largest; the others together: $5.00." in response.content.decode()


def test_a_big_scope_gets_an_id_box_instead_of_a_select(admin_client, two_teams, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(admin_views, "MAX_CHOICES", 2)
    hotels = two_teams["hotels"]
    response = admin_client.get(USAGE, {**RANGE, "project_id": hotels.pk})
    fields = {f.name: f for f in response.context["filters"]}
    assert fields["project_id"].choices is None
    assert fields["project_id"].value_label == "Search / hotels"
    assert fields["team_id"].choices is not None  # two teams: still a select
    page = response.content.decode()
    assert f'<input type="text" name="project_id" id="id_project_id" value="{hotels.pk}"' in page
    # Choosing a team narrows the projects offered, back under the bound.
    narrowed = admin_client.get(USAGE, {"team_id": two_teams["support"].pk})
    projects = {f.name: f for f in narrowed.context["filters"]}["project_id"]
    assert projects.choices == [(two_teams["tickets"].pk, "Support / tickets")]


def test_page_queries_do_not_grow_with_projects_keys_or_days(admin_client, two_teams):  # type: ignore[no-untyped-def]
    def count(url: str, params: dict[str, str] | None = None) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url, params).status_code == 200
        return len(queries)

    flights = two_teams["flights"]
    rollup(flights, key=VirtualKeyFactory(project=flights), spend="1")
    few = count(USAGE, RANGE)
    for n in range(30):
        project = ProjectFactory(team=two_teams["support"])
        key = VirtualKeyFactory(project=project)
        rollup(project, key=key, spend=str(n + 1), day=DAY + timedelta(days=n % 20))
    assert count(USAGE, RANGE) == few
    # Beyond what every admin page costs (session, user, navigation): three filter choices,
    # totals, four reports and two name look-ups.
    assert few - count("/admin/") <= 10


def test_usage_is_in_the_admin_navigation_for_every_admin(
    client, admin_client, two_teams, make_team_admin
):  # type: ignore[no-untyped-def]
    assert f'<a href="{USAGE}">Usage</a>' in admin_client.get("/admin/").content.decode()
    client.force_login(make_team_admin(two_teams["search"]))
    page = client.get("/admin/").content.decode()
    assert f'<a href="{USAGE}">Usage</a>' in page
    assert "Admin Settings" not in page


# --- the project page --------------------------------------------------------------------


@pytest.fixture
def projects_on(db):  # type: ignore[no-untyped-def]
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})


def test_project_page_shows_spend_against_budget_with_the_soft_budget_marked(
    admin_client, two_teams, projects_on
):  # type: ignore[no-untyped-def]
    project = two_teams["flights"]
    type(project).objects.filter(pk=project.pk).update(
        spend=Decimal("30"), max_budget=Decimal("40"), soft_budget=Decimal("20")
    )
    page = admin_client.get(reverse("admin:projects_project_change", args=[project.pk]))
    text = page.content.decode()
    assert 'class="gh-chart gh-budget-bar"' in text
    assert 'data-spend="30.000000000"' in text
    assert 'data-soft-budget="20.000000000"' in text
    assert 'data-state="soft"' in text
    assert "$30.00 spent of $40.00 max budget (75%) · soft budget $20.00" in text
    assert f'href="{USAGE}?project_id={project.pk}"' in text


def test_create_project_page_has_no_budget_bar(admin_client, two_teams, projects_on):  # type: ignore[no-untyped-def]
    page = admin_client.get(reverse("admin:projects_project_add")).content.decode()
    assert "gh-budget" not in page


@pytest.fixture
def admin_client(client, proxy_admin):  # type: ignore[no-untyped-def]
    client.force_login(proxy_admin)
    return client
