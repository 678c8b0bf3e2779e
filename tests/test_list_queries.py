"""List endpoints run the same number of queries for 1 and for 25 rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hierarchy.actors import SYSTEM
from hierarchy.services import team_member_set
from tests.api_client import master
from tests.factories import (
    AccessGroupFactory,
    CatalogModelFactory,
    OrganizationFactory,
    TeamFactory,
    UserFactory,
    VirtualKeyFactory,
)

pytestmark = pytest.mark.django_db

LISTS = [
    "/api/v1/users/",
    "/api/v1/organizations/",
    "/api/v1/teams/",
    "/api/v1/projects/",
    "/api/v1/keys/",
    "/api/v1/models/",
    "/api/v1/access-groups/",
    "/project/list",
    "/team/list",
    "/organization/list",
    "/key/list?return_full_object=true&size=100",
    "/user/list?size=100",
    "/model/info",
]


def add_rows() -> None:
    """One more of everything, each with the relations the answers show."""
    group = AccessGroupFactory()
    key = VirtualKeyFactory(project__team__organization=OrganizationFactory())
    key.access_groups.add(group)
    key.project.access_groups.add(group)
    user = UserFactory()
    team_member_set(actor=SYSTEM, team=key.team, user=user, role="admin")
    key.team.organization.memberships.create(user=user, role="member")
    CatalogModelFactory()
    TeamFactory()


@pytest.mark.parametrize("path", LISTS)
def test_list_query_count_does_not_grow_with_rows(path: str) -> None:
    client = master()

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.client.get(path, **client.headers)
        assert response.status_code == 200, response.content
        return len(ctx.captured_queries)

    add_rows()
    one = queries()
    for _ in range(24):
        add_rows()
    assert queries() == one
