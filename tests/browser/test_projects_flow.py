"""Acceptance: switch Projects on in UI Settings and create a project through the admin.

Drives headless Chromium against the live server, so the Models list is refreshed by the
change form's JavaScript from the team-models JSON view, as a person would see it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from hierarchy.actors import SYSTEM
from hierarchy.models import Role, TeamRole
from hierarchy.services import team_member_set, user_create
from projects.models import Project, UISettings
from tests.browser.conftest import PASSWORD, log_in
from tests.factories import TeamFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SEARCH_MODELS = ["gpt-4o", "gpt-4o-mini"]
SUPPORT_MODELS = ["claude-3-5-sonnet", "claude-3-5-haiku"]
PROJECTS_LIST = "/admin/projects/project/"
# The model's name in the index table (its row also has a View/Change link to the same page).
INDEX_PROJECTS_LINK = f'#content-main th a[href="{PROJECTS_LIST}"]'


@pytest.fixture
def teams(transactional_db, catalog):  # type: ignore[no-untyped-def]
    return {
        "Search": TeamFactory(alias="Search", models=SEARCH_MODELS),
        "Support": TeamFactory(alias="Support", models=SUPPORT_MODELS),
    }


@pytest.fixture
def superuser(transactional_db):  # type: ignore[no-untyped-def]
    return user_create(
        actor=SYSTEM,
        username="root-browser",
        email="root-browser@example.com",
        password=PASSWORD,
        role=Role.PROXY_ADMIN,
    )


@pytest.fixture
def search_admin(teams):  # type: ignore[no-untyped-def]
    user = user_create(
        actor=SYSTEM,
        username="search-admin",
        email="search-admin@example.com",
        password=PASSWORD,
    )
    team_member_set(actor=SYSTEM, team=teams["Search"], user=user, role=TeamRole.ADMIN)
    return user


def choose_team(page: Page, team) -> list[str]:  # type: ignore[no-untyped-def]
    """Pick ``team`` and wait for the JS to put its models in; return the option values."""
    page.select_option("#id_team", label=team.alias)
    page.wait_for_function(
        "id => document.getElementById('id_models').dataset.loaded === id", arg=team.pk
    )
    return page.eval_on_selector_all("#id_models option", "options => options.map(o => o.value)")


def test_superuser_turns_projects_on_and_creates_a_project(browser_page: Page, superuser, teams):  # type: ignore[no-untyped-def]
    page = browser_page
    log_in(page, superuser.username)

    content = page.locator("#content-main")
    expect(content).to_contain_text("Admin Settings")
    expect(content.locator(f'a[href="{PROJECTS_LIST}"]')).to_have_count(0)
    content.get_by_role("link", name="UI Settings").click()

    switch = page.locator("#id_enable_projects_ui")
    expect(switch).not_to_be_checked()
    switch.check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("ul.messagelist")).to_contain_text("The Projects pages are now on.")
    expect(page.locator("#id_enable_projects_ui")).to_be_checked()

    nav = page.locator("#nav-sidebar")
    expect(nav.locator(f'a[href="{PROJECTS_LIST}"]')).to_have_text("Projects")
    page.get_by_role("link", name="Home").first.click()
    projects_link = page.locator(INDEX_PROJECTS_LINK)
    expect(projects_link).to_have_text("Projects")
    projects_link.click()
    expect(page).to_have_url(re.compile(f"{PROJECTS_LIST}$"))

    page.get_by_role("link", name="Create Project").click()
    expect(page.locator("h1")).to_have_text("Create Project")
    page.fill("#id_alias", "browser-flights")

    assert choose_team(page, teams["Search"]) == sorted(SEARCH_MODELS)
    assert choose_team(page, teams["Support"]) == sorted(SUPPORT_MODELS)

    page.select_option("#id_models", "claude-3-5-sonnet")
    page.get_by_role("button", name="Create Project").click()

    expect(page).to_have_url(re.compile(f"{PROJECTS_LIST}$"))
    expect(page.locator("#result_list")).to_contain_text("browser-flights")

    project = Project.objects.get(alias="browser-flights")
    assert project.team_id == teams["Support"].pk
    assert project.models == ["claude-3-5-sonnet"]


def test_team_admin_can_only_create_projects_in_their_team(browser_page: Page, search_admin, teams):  # type: ignore[no-untyped-def]
    UISettings.objects.update_or_create(pk=1, defaults={"enable_projects_ui": True})
    page = browser_page
    log_in(page, search_admin.username)

    page.locator(INDEX_PROJECTS_LINK).click()
    page.get_by_role("link", name="Create Project").click()
    expect(page.locator("h1")).to_have_text("Create Project")

    team_options = page.locator("#id_team option")
    expect(team_options.first).to_have_text("Select a team")
    labels = [
        option.text_content().strip()
        for option in team_options.all()
        if option.get_attribute("value")
    ]
    assert labels == ["Search"]
