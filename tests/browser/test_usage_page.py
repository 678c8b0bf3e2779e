"""Acceptance: the Usage page in headless Chromium draws one mark per seeded project, each
worth what ``/api/v1/spend/report/`` answers for that project over the same range; and a
project's page draws its spend against budget with the soft budget where it belongs.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from hierarchy.actors import SYSTEM
from hierarchy.models import Role, TeamRole
from hierarchy.services import team_member_set, user_create
from projects.models import Project, UISettings
from spend.models import DailySpend
from tests.browser.conftest import PASSWORD, log_in
from tests.factories import ProjectFactory, TeamFactory, VirtualKeyFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

START, END = date(2026, 11, 1), date(2026, 11, 30)
PROJECT_MARKS = "#usage-by-project svg g.mark"
READ_MARKS = "marks => marks.map(m => [m.dataset.id, m.dataset.label, m.dataset.value])"


def user(username: str, **fields: object):  # type: ignore[no-untyped-def]
    return user_create(
        actor=SYSTEM,
        username=username,
        email=f"{username}@example.com",
        password=PASSWORD,
        **fields,
    )


def rollup(project: Project, day: date, spend: str, model: str = "gpt-4o") -> None:
    key = VirtualKeyFactory(project=project)
    DailySpend.objects.create(
        day=day,
        organization_id=project.team.organization_id or "",
        team_id=project.team_id,
        project_id=project.pk,
        key_id=key.pk,
        model=model,
        requests_ok=3,
        prompt_tokens=30,
        completion_tokens=15,
        spend=Decimal(spend),
    )


@pytest.fixture
def seeded_projects(transactional_db, catalog):  # type: ignore[no-untyped-def]
    search, support = TeamFactory(alias="Search"), TeamFactory(alias="Support")
    projects = [
        ProjectFactory(alias="flights", team=search),
        ProjectFactory(alias="hotels", team=search),
        ProjectFactory(alias="tickets", team=support),
        ProjectFactory(alias="refunds", team=support),
    ]
    flights, hotels, tickets, refunds = projects
    rollup(flights, START, "1.250000000")
    rollup(flights, END, "2.000000001", model="gpt-4o-mini")
    rollup(hotels, date(2026, 11, 15), "0.000000007")
    rollup(tickets, date(2026, 11, 15), "40", model="claude-3-5-sonnet")
    rollup(tickets, date(2026, 11, 16), "0.5")
    rollup(refunds, date(2026, 11, 2), "17.123456789")
    # A day either side of the range: counted by neither the page nor the report.
    rollup(flights, date(2026, 10, 31), "100")
    rollup(refunds, date(2026, 12, 1), "100")
    return projects


def report_by_project(page: Page) -> dict[str, Decimal]:
    """``/api/v1/spend/report/`` grouped by project over the range, with the page's session."""
    response = page.request.get(
        "/api/v1/spend/report/",
        params={"start_date": str(START), "end_date": str(END), "group_by": "project"},
    )
    assert response.status == 200, response.text()
    body = json.loads(response.text(), parse_float=Decimal)
    assert body["has_more"] is False
    return {row["project_id"]: Decimal(str(row["spend"])) for row in body["results"]}


def test_usage_page_has_one_mark_per_project_worth_the_rest_report(
    browser_page: Page, seeded_projects
):  # type: ignore[no-untyped-def]
    page = browser_page
    log_in(page, user("usage-root", role=Role.PROXY_ADMIN).username)

    page.locator("#content-main").get_by_role("link", name="Usage").click()
    expect(page.locator("h1")).to_have_text("Usage")
    page.fill("#id_start_date", str(START))
    page.fill("#id_end_date", str(END))
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"start_date=2026-11-01&end_date=2026-11-30"))

    marks = page.eval_on_selector_all(PROJECT_MARKS, READ_MARKS)
    assert sorted(label for _, label, _ in marks) == ["flights", "hotels", "refunds", "tickets"]
    assert len({pk for pk, _, _ in marks}) == len(marks)
    drawn = {pk: Decimal(value) for pk, _, value in marks}
    assert drawn == report_by_project(page)
    assert drawn == {
        seeded_projects[0].pk: Decimal("3.250000001"),
        seeded_projects[1].pk: Decimal("0.000000007"),
        seeded_projects[2].pk: Decimal("40.5"),
        seeded_projects[3].pk: Decimal("17.123456789"),
    }

    # Every mark is drawn: the larger the spend, the longer its bar.
    widths = page.eval_on_selector_all(
        f"{PROJECT_MARKS} rect.bar", "bars => bars.map(b => b.getBoundingClientRect().width)"
    )
    assert widths == sorted(widths, reverse=True)
    assert widths[0] > 100
    tooltip = page.locator(PROJECT_MARKS).first.locator("title")
    expect(tooltip).to_have_text("tickets: $40.50")
    expect(page.locator("#usage-over-time svg g.mark")).to_have_count(30)


def test_team_admin_sees_marks_for_their_teams_projects_only(browser_page: Page, seeded_projects):  # type: ignore[no-untyped-def]
    admin = user("usage-search-admin")
    team_member_set(actor=SYSTEM, team=seeded_projects[0].team, user=admin, role=TeamRole.ADMIN)
    page = browser_page
    log_in(page, admin.username)
    page.goto(f"/admin/usage/?start_date={START}&end_date={END}")

    marks = page.eval_on_selector_all(PROJECT_MARKS, READ_MARKS)
    assert sorted(label for _, label, _ in marks) == ["flights", "hotels"]
    assert {pk: Decimal(value) for pk, _, value in marks} == report_by_project(page)
    project_options = page.eval_on_selector_all(
        "#id_project_id option", "options => options.map(o => o.textContent.trim())"
    )
    assert project_options == ["All", "Search / flights", "Search / hotels"]


def test_project_page_draws_spend_against_budget_with_the_soft_budget_marked(
    browser_page: Page, seeded_projects
):  # type: ignore[no-untyped-def]
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})
    project = seeded_projects[0]
    Project.objects.filter(pk=project.pk).update(
        spend=Decimal("30"), max_budget=Decimal("40"), soft_budget=Decimal("20")
    )
    page = browser_page
    log_in(page, user("budget-root", role=Role.PROXY_ADMIN).username)
    page.goto(f"/admin/projects/project/{project.pk}/change/")

    bar = page.locator("svg.gh-budget-bar")
    expect(bar).to_have_attribute("data-state", "soft")
    boxes = bar.evaluate(
        """svg => Object.fromEntries(
            [["track", "rect.track"], ["fill", "rect.fill"], ["soft", "g.soft-budget line"]]
            .map(([name, css]) => [name, svg.querySelector(css).getBoundingClientRect()]))"""
    )
    track, fill, soft = boxes["track"], boxes["fill"], boxes["soft"]
    # Spend 30 of 40 fills three quarters of the track; the soft budget (20) sits at half.
    assert fill["width"] == pytest.approx(track["width"] * 0.75, abs=1)
    soft_x = soft["x"] + soft["width"] / 2 - track["x"]
    assert soft_x == pytest.approx(track["width"] * 0.5, abs=1.5)
    expect(page.locator(".gh-budget-caption")).to_have_text(
        "$30.00 spent of $40.00 max budget (75%) · soft budget $20.00"
    )

    page.get_by_role("link", name="Usage of this project").click()
    expect(page.locator("h1")).to_have_text("Usage")
    expect(page.locator("#id_project_id")).to_have_value(project.pk)
