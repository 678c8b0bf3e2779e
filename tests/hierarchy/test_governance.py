"""The governance rules written once for every level: durations, model scopes, clean values."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from hierarchy.governance import (
    MSG_DURATION_INVALID,
    MSG_EXCEEDS_PARENT,
    MSG_LIMIT_INVALID,
    MSG_METADATA_NOT_OBJECT,
    MSG_MODEL_NOT_IN_PARENT,
    MSG_MODELS_NOT_A_LIST,
    MSG_MONEY_INVALID,
    MSG_PER_MODEL_INVALID,
    MSG_SOFT_BUDGET_NOT_BELOW_MAX,
    Catalog,
    ModelScope,
    clean_governance,
    effective_model_names,
    model_scope,
    next_budget_reset,
    parse_duration,
)
from tests.factories import AccessGroupFactory, OrganizationFactory, TeamFactory

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def errors_of(values: dict, **kwargs) -> dict[str, list[str]]:
    kwargs.setdefault("level_name", "team")
    kwargs.setdefault("parent", None)
    with pytest.raises(ValidationError) as caught:
        clean_governance(values, **kwargs)
    return caught.value.message_dict


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", (30, "s")),
        ("30m", (30, "m")),
        ("24h", (24, "h")),
        ("7d", (7, "d")),
        ("1w", (1, "w")),
        ("1mo", (1, "mo")),
        ("12mo", (12, "mo")),
    ],
)
def test_durations_are_a_number_and_a_unit(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "0d", "30", "d", "1y", "1M", "1 d", "-1d", "1.5h", "30dd", "mo", " 1d", "30d\n"],
)
def test_malformed_durations_are_rejected_with_the_message(value):
    with pytest.raises(ValidationError) as caught:
        parse_duration(value)
    assert caught.value.messages == [MSG_DURATION_INVALID.format(value=value)]


@pytest.mark.parametrize(
    ("duration", "elapsed"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("36h", timedelta(hours=36)),
    ],
)
def test_second_minute_and_hour_periods_run_from_the_start_time(duration, elapsed):
    start = utc(2024, 3, 13, 10, 17, 5, 123)
    assert next_budget_reset(duration, start) == start + elapsed


@pytest.mark.parametrize(
    ("duration", "start", "expected"),
    [
        ("1d", utc(2024, 3, 13, 10, 17), utc(2024, 3, 14)),
        ("1d", utc(2024, 3, 13, 0, 0), utc(2024, 3, 14)),
        ("1d", utc(2024, 3, 13, 23, 59, 59), utc(2024, 3, 14)),
        ("3d", utc(2024, 2, 28, 12), utc(2024, 3, 2)),
        ("30d", utc(2024, 3, 13, 10), utc(2024, 4, 12)),
    ],
)
def test_day_periods_end_at_midnight(duration, start, expected):
    assert next_budget_reset(duration, start) == expected


@pytest.mark.parametrize(
    ("duration", "start", "expected"),
    [
        # 2024-03-13 is a Wednesday.
        ("1w", utc(2024, 3, 13, 10), utc(2024, 3, 18)),
        ("1w", utc(2024, 3, 17, 23, 59), utc(2024, 3, 18)),
        # On a Monday the period ends on the next Monday, never the same instant.
        ("1w", utc(2024, 3, 18, 0, 0), utc(2024, 3, 25)),
        ("2w", utc(2024, 3, 13, 10), utc(2024, 3, 25)),
    ],
)
def test_week_periods_end_on_a_monday_at_midnight(duration, start, expected):
    result = next_budget_reset(duration, start)
    assert result == expected
    assert result.astimezone(UTC).weekday() == 0


@pytest.mark.parametrize(
    ("duration", "start", "expected"),
    [
        ("1mo", utc(2024, 1, 31, 15), utc(2024, 2, 1)),
        ("1mo", utc(2024, 2, 1, 0, 0), utc(2024, 3, 1)),
        ("1mo", utc(2024, 12, 15), utc(2025, 1, 1)),
        ("2mo", utc(2024, 11, 30), utc(2025, 1, 1)),
        ("12mo", utc(2024, 6, 10), utc(2025, 6, 1)),
    ],
)
def test_month_periods_end_on_the_first_at_midnight(duration, start, expected):
    assert next_budget_reset(duration, start) == expected


def test_day_periods_end_at_local_midnight_in_the_configured_timezone(settings):
    settings.GATEHOUSE_TIMEZONE = "Asia/Tokyo"
    # 2024-03-13 16:30 UTC is already 2024-03-14 01:30 in Tokyo.
    result = next_budget_reset("1d", utc(2024, 3, 13, 16, 30))
    assert result == datetime(2024, 3, 15, tzinfo=TOKYO)
    assert result == utc(2024, 3, 14, 15)


def test_day_periods_follow_daylight_saving_time(settings):
    settings.GATEHOUSE_TIMEZONE = "America/New_York"
    # 2024-03-10 is the day New York moves from EST (-5) to EDT (-4).
    assert next_budget_reset("1d", utc(2024, 3, 9, 12)) == utc(2024, 3, 10, 5)
    assert next_budget_reset("1d", utc(2024, 3, 10, 12)) == utc(2024, 3, 11, 4)
    # 03:30 UTC on the 10th is still the evening of the 9th in New York.
    assert next_budget_reset("1d", utc(2024, 3, 10, 3, 30)) == utc(2024, 3, 10, 5)


def test_week_periods_end_on_a_local_monday(settings):
    settings.GATEHOUSE_TIMEZONE = "America/New_York"
    # Monday 2024-03-18 02:00 UTC is still Sunday evening in New York.
    result = next_budget_reset("1w", utc(2024, 3, 18, 2))
    assert result == datetime(2024, 3, 18, tzinfo=NEW_YORK)
    assert result == utc(2024, 3, 18, 4)


def test_month_periods_end_on_the_local_first(settings):
    settings.GATEHOUSE_TIMEZONE = "Asia/Tokyo"
    # 2024-03-31 16:00 UTC is already April 1st in Tokyo: the period ends on May 1st there.
    assert next_budget_reset("1mo", utc(2024, 3, 31, 16)) == utc(2024, 4, 30, 15)
    assert next_budget_reset("1mo", utc(2024, 3, 31, 14)) == utc(2024, 3, 31, 15)


def test_hour_periods_ignore_the_configured_timezone(settings):
    settings.GATEHOUSE_TIMEZONE = "Asia/Tokyo"
    start = utc(2024, 3, 13, 16, 30)
    assert next_budget_reset("2h", start) == start + timedelta(hours=2)


# --- model scopes ----------------------------------------------------------------------------

CATALOG_NAMES = ["claude-3-5-haiku", "gpt-4o", "gpt-4o-mini", "openai/gpt-4.1", "openaix/gpt-5"]


def make_catalog(**groups: list[str]) -> Catalog:
    return Catalog(names=list(CATALOG_NAMES), groups=dict(groups))


@pytest.mark.parametrize(
    ("entry", "name", "allowed"),
    [
        ("openai/*", "openai/gpt-4.1", True),
        ("openai/*", "openaix/gpt-5", False),
        ("openai/*", "openai/", False),
        ("openai/*", "openai", False),
        ("openai/*", "gpt-4o", False),
        ("*", "openaix/gpt-5", True),
        ("all-proxy-models", "claude-3-5-haiku", True),
        ("gpt-4o", "gpt-4o", True),
        ("gpt-4o", "gpt-4o-mini", False),
        ("gpt-4o*", "gpt-4o-mini", False),
        ("/*", "/x", False),
    ],
)
def test_a_list_entry_allows_names_by_exact_match_wildcard_or_all(entry, name, allowed):
    assert make_catalog().entry_matches(entry, name) is allowed


def test_an_access_group_name_stands_for_its_models():
    catalog = make_catalog(fast=["gpt-4o-mini", "openai/*"])
    assert catalog.entry_matches("fast", "gpt-4o-mini")
    assert catalog.entry_matches("fast", "openai/gpt-4.1")
    assert not catalog.entry_matches("fast", "gpt-4o")
    assert catalog.expand("fast") == ["gpt-4o-mini", "openai/gpt-4.1"]


def test_access_groups_may_name_other_groups_and_cycles_end():
    catalog = make_catalog(a=["b", "gpt-4o"], b=["a", "claude-3-5-haiku"])
    assert catalog.entry_matches("a", "claude-3-5-haiku")
    assert catalog.entry_matches("b", "gpt-4o")
    assert not catalog.entry_matches("a", "gpt-4o-mini")


def test_a_wildcard_expands_against_the_catalog():
    catalog = make_catalog()
    assert catalog.expand("openai/*") == ["openai/gpt-4.1"]
    assert catalog.expand("*") == CATALOG_NAMES


def test_an_empty_chain_allows_the_whole_catalog():
    scope = ModelScope(catalog=make_catalog())
    assert scope.unrestricted
    assert scope.names() == CATALOG_NAMES
    assert scope.covers("*")


def test_every_level_in_the_chain_must_allow_a_name():
    scope = ModelScope(catalog=make_catalog(), lists=[["gpt-4o", "openai/*"], ["*"], ["gpt-4o"]])
    assert not scope.unrestricted
    assert scope.allows("gpt-4o")
    assert not scope.allows("openai/gpt-4.1")
    assert scope.names() == ["gpt-4o"]


def test_a_childs_wildcard_is_covered_only_if_all_its_catalog_matches_are():
    scope = ModelScope(catalog=make_catalog(), lists=[["openai/gpt-4.1", "gpt-4o"]])
    assert scope.covers("openai/*")
    assert not scope.covers("*")
    assert not scope.covers("all-proxy-models")

    wider = Catalog(names=[*CATALOG_NAMES, "openai/gpt-5"], groups={})
    assert not ModelScope(catalog=wider, lists=[["openai/gpt-4.1"]]).covers("openai/*")


def test_a_childs_access_group_is_covered_only_if_all_its_models_are():
    catalog = make_catalog(small=["gpt-4o-mini"], mixed=["gpt-4o-mini", "claude-3-5-haiku"])
    scope = ModelScope(catalog=catalog, lists=[["gpt-4o", "gpt-4o-mini"]])
    assert scope.covers("small")
    assert not scope.covers("mixed")
    assert not scope.covers("claude-3-5-haiku")


def test_a_prefix_wildcard_does_not_cover_a_similar_prefix():
    scope = ModelScope(catalog=make_catalog(), lists=[["openai/*"]])
    assert scope.covers("openai/gpt-4.1")
    assert not scope.covers("openaix/gpt-5")
    assert not scope.covers("openaix/*")


@pytest.mark.django_db
def test_an_empty_models_list_inherits_what_the_parent_allows(catalog):
    organization = OrganizationFactory(models=["gpt-4o", "openai/*"])
    team = TeamFactory(organization=organization, models=[])
    assert effective_model_names(team) == ["gpt-4o", "openai/gpt-4.1"]
    assert effective_model_names(None) == sorted(catalog)
    assert model_scope(TeamFactory(organization=None, models=[])).unrestricted


@pytest.mark.django_db
def test_attached_access_groups_count_as_a_levels_models(catalog):
    group = AccessGroupFactory(name="claude", models=["claude-3-5-haiku", "claude-3-5-sonnet"])
    organization = OrganizationFactory(models=["gpt-4o"])
    organization.access_groups.add(group)
    team = TeamFactory(organization=organization, models=["claude-3-5-haiku", "gpt-4o-mini"])
    assert effective_model_names(organization) == [
        "claude-3-5-haiku",
        "claude-3-5-sonnet",
        "gpt-4o",
    ]
    assert effective_model_names(team) == ["claude-3-5-haiku"]


# --- clean_governance: money -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        -1,
        Decimal("-0.01"),
        "-5",
        math.nan,
        "NaN",
        Decimal("NaN"),
        Decimal("sNaN"),
        math.inf,
        -math.inf,
        "Infinity",
        Decimal("Infinity"),
        True,
        False,
        10**12,
        "1e12",
        Decimal("1E+30"),
        "abc",
        "1,5",
        [1],
        {"amount": 1},
    ],
)
@pytest.mark.parametrize("field", ["max_budget", "soft_budget"])
def test_money_that_is_not_a_finite_non_negative_amount_is_rejected(field, value):
    assert errors_of({field: value}) == {field: [MSG_MONEY_INVALID.format(field=field)]}


def test_money_that_rounds_up_to_a_trillion_is_rejected():
    # 999999999999.9999999999 rounds to 10**12 at nine decimals: too big for the column.
    assert errors_of({"max_budget": "999999999999.9999999999"}) == {
        "max_budget": [MSG_MONEY_INVALID.format(field="max_budget")]
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, Decimal("0")),
        ("12.5", Decimal("12.5")),
        (12.5, Decimal("12.5")),
        (Decimal("0.000000001"), Decimal("0.000000001")),
        ("999999999999", Decimal("999999999999")),
        (None, None),
        ("", None),
    ],
)
def test_money_is_normalised_to_a_decimal_with_nine_places(value, expected):
    cleaned = clean_governance({"max_budget": value}, level_name="team", parent=None)
    assert cleaned == {"max_budget": expected}
    if expected is not None:
        assert cleaned["max_budget"].as_tuple().exponent == -9


def test_a_soft_budget_equal_to_the_max_budget_is_rejected():
    assert errors_of({"max_budget": "10", "soft_budget": 10}) == {
        "soft_budget": [MSG_SOFT_BUDGET_NOT_BELOW_MAX.format(soft="10", max="10")]
    }


def test_a_soft_budget_below_the_max_budget_is_accepted():
    cleaned = clean_governance(
        {"max_budget": "10", "soft_budget": "9.5"}, level_name="team", parent=None
    )
    assert cleaned == {"max_budget": Decimal("10"), "soft_budget": Decimal("9.5")}


@pytest.mark.django_db
def test_the_soft_budget_is_checked_against_the_current_max_budget_when_omitted():
    team = TeamFactory(max_budget=Decimal("5"))
    assert errors_of({"soft_budget": "7.25"}, current=team) == {
        "soft_budget": [MSG_SOFT_BUDGET_NOT_BELOW_MAX.format(soft="7.25", max="5")]
    }
    team.soft_budget = Decimal("4")
    assert errors_of({"max_budget": "4"}, current=team) == {
        "soft_budget": [MSG_SOFT_BUDGET_NOT_BELOW_MAX.format(soft="4", max="4")]
    }


def test_soft_below_max_is_not_checked_when_either_amount_is_invalid():
    assert errors_of({"max_budget": -1, "soft_budget": 5}) == {
        "max_budget": [MSG_MONEY_INVALID.format(field="max_budget")]
    }


# --- clean_governance: limits, durations, per-model dicts, models, metadata -----------------


@pytest.mark.parametrize("value", [-1, 1.5, "1.5", "abc", True, 2**63, math.nan, math.inf, [1]])
@pytest.mark.parametrize("field", ["rpm_limit", "tpm_limit"])
def test_limits_that_are_not_whole_non_negative_numbers_are_rejected(field, value):
    assert errors_of({field: value}) == {field: [MSG_LIMIT_INVALID.format(field=field)]}


@pytest.mark.parametrize(("value", "expected"), [(0, 0), ("10", 10), (60.0, 60), (None, None)])
def test_limits_are_normalised_to_integers(value, expected):
    cleaned = clean_governance({"rpm_limit": value}, level_name="team", parent=None)
    assert cleaned == {"rpm_limit": expected}
    assert type(cleaned["rpm_limit"]) is type(expected)


def test_an_invalid_budget_duration_is_rejected_and_an_empty_one_clears_it():
    assert errors_of({"budget_duration": "1y"}) == {
        "budget_duration": [MSG_DURATION_INVALID.format(value="1y")]
    }
    assert clean_governance({"budget_duration": None}, level_name="team", parent=None) == {
        "budget_duration": ""
    }


@pytest.mark.parametrize(
    "value",
    ["10", [10], {"gpt-4o": -1}, {"gpt-4o": None}, {"gpt-4o": 1.5}, {"gpt-4o": True}, {"": 5}],
)
@pytest.mark.parametrize("field", ["model_rpm_limit", "model_tpm_limit"])
def test_per_model_limits_must_map_names_to_whole_numbers(field, value):
    assert errors_of({field: value}) == {
        field: [MSG_PER_MODEL_INVALID.format(field=field, what="whole numbers")]
    }


@pytest.mark.parametrize(
    "value",
    [
        "5",
        {"gpt-4o": -1},
        {"gpt-4o": "NaN"},
        {"gpt-4o": None},
        {"gpt-4o": {"time_period": "1d"}},
        {"gpt-4o": {"budget_limit": 5, "time_period": "1y"}},
        {1: 5},
    ],
)
def test_per_model_budgets_must_map_names_to_amounts(value):
    assert errors_of({"model_max_budget": value}) == {
        "model_max_budget": [
            MSG_PER_MODEL_INVALID.format(field="model_max_budget", what="amounts in USD")
        ]
    }


def test_per_model_values_are_normalised():
    cleaned = clean_governance(
        {
            "model_rpm_limit": {"gpt-4o": "10"},
            "model_tpm_limit": None,
            "model_max_budget": {
                "gpt-4o": 5,
                "gpt-4o-mini": {"budget_limit": "2.50", "time_period": "30d"},
            },
        },
        level_name="team",
        parent=None,
    )
    assert cleaned == {
        "model_rpm_limit": {"gpt-4o": 10},
        "model_tpm_limit": {},
        "model_max_budget": {
            "gpt-4o": {"budget_limit": "5", "time_period": ""},
            "gpt-4o-mini": {"budget_limit": "2.5", "time_period": "30d"},
        },
    }


@pytest.mark.parametrize("value", ["gpt-4o", [""], ["  "], [1], [None], {"gpt-4o": 1}])
def test_models_must_be_a_list_of_names(value):
    assert errors_of({"models": value}) == {"models": [MSG_MODELS_NOT_A_LIST]}


def test_models_are_stripped_and_deduplicated_in_order(catalog):
    cleaned = clean_governance(
        {"models": [" gpt-4o ", "gpt-4o-mini", "gpt-4o"]}, level_name="team", parent=None
    )
    assert cleaned == {"models": ["gpt-4o", "gpt-4o-mini"]}


def test_metadata_must_be_an_object():
    assert errors_of({"metadata": ["a"]}) == {"metadata": [MSG_METADATA_NOT_OBJECT]}
    assert clean_governance({"metadata": None}, level_name="team", parent=None) == {"metadata": {}}


def test_every_bad_field_is_reported_at_once():
    errors = errors_of({"max_budget": "x", "rpm_limit": -1, "models": "gpt-4o", "metadata": 1})
    assert errors == {
        "max_budget": [MSG_MONEY_INVALID.format(field="max_budget")],
        "rpm_limit": [MSG_LIMIT_INVALID.format(field="rpm_limit")],
        "models": [MSG_MODELS_NOT_A_LIST],
        "metadata": [MSG_METADATA_NOT_OBJECT],
    }


def test_fields_not_given_are_left_out():
    assert clean_governance({}, level_name="team", parent=None) == {}


# --- clean_governance: within the parent ------------------------------------------------------


@pytest.mark.django_db
def test_models_outside_the_parents_are_rejected_naming_each(catalog):
    organization = OrganizationFactory(models=["gpt-4o", "openai/*"])
    errors = errors_of(
        {"models": ["gpt-4o", "claude-3-5-haiku", "openai/gpt-4.1", "openaix/gpt-5"]},
        parent=organization,
    )
    assert errors == {
        "models": [
            MSG_MODEL_NOT_IN_PARENT.format(model="claude-3-5-haiku", parent="organization"),
            MSG_MODEL_NOT_IN_PARENT.format(model="openaix/gpt-5", parent="organization"),
        ]
    }


@pytest.mark.django_db
def test_models_are_checked_against_every_ancestor(catalog):
    organization = OrganizationFactory(models=["gpt-4o"])
    team = TeamFactory(organization=organization, models=[])
    assert errors_of({"models": ["gpt-4o-mini"]}, level_name="project", parent=team) == {
        "models": [MSG_MODEL_NOT_IN_PARENT.format(model="gpt-4o-mini", parent="team")]
    }
    cleaned = clean_governance({"models": ["gpt-4o"]}, level_name="project", parent=team)
    assert cleaned == {"models": ["gpt-4o"]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("max_budget", "100.5", "100.5"),
        ("rpm_limit", 1001, "1001"),
        ("tpm_limit", 10**6, "1000000"),
    ],
)
def test_a_ceiling_above_the_parents_is_rejected(field, value, shown):
    team = TeamFactory(max_budget=Decimal("100"), rpm_limit=1000, tpm_limit=100000)
    assert errors_of({field: value}, level_name="project", parent=team) == {
        field: [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field=field,
                value=shown,
                parent="team",
                parent_value=str(getattr(team, field)),
            )
        ]
    }


@pytest.mark.django_db
def test_a_ceiling_equal_to_the_parents_is_accepted():
    team = TeamFactory(max_budget=Decimal("100"), rpm_limit=1000)
    cleaned = clean_governance(
        {"max_budget": 100, "rpm_limit": 1000}, level_name="project", parent=team
    )
    assert cleaned == {"max_budget": Decimal("100"), "rpm_limit": 1000}


@pytest.mark.django_db
def test_a_ceiling_is_checked_against_the_nearest_ancestor_that_sets_it():
    organization = OrganizationFactory(max_budget=Decimal("50"))
    team = TeamFactory(organization=organization, max_budget=None)
    assert errors_of({"max_budget": 60}, level_name="project", parent=team) == {
        "max_budget": [
            MSG_EXCEEDS_PARENT.format(
                level="Project",
                field="max_budget",
                value="60",
                parent="organization",
                parent_value="50",
            )
        ]
    }
