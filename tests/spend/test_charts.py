"""The SVG charts: pure functions of their values, read back the way a browser would."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest

from spend.charts import (
    Mark,
    axis_ticks,
    bar_chart,
    budget_bar,
    budget_caption,
    budget_state,
    column_chart,
    daily_points,
    exact,
    format_usd,
    shorten,
)


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each ``<title>``."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, Any]]] = []
        self.titles: list[str] = []
        self._in_title = False
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)

    def marks(self) -> list[dict[str, Any]]:
        return [attrs for _, attrs in self.tags if "mark" in attrs.get("class", "").split()]

    def rects(self, css_class: str) -> list[dict[str, Any]]:
        return [a for tag, a in self.tags if tag == "rect" and a.get("class") == css_class]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0"), "$0.00"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("12.345000000"), "$12.35"),
        (Decimal("0.01"), "$0.01"),
        (Decimal("0.000123456"), "$0.00012"),
        (Decimal("0.0001"), "$0.0001"),
        (Decimal("0.000000001"), "$0.000000001"),
        (Decimal("-3.5"), "-$3.50"),
    ],
)
def test_amounts_read_as_dollars_and_small_spend_never_reads_as_zero(value, text):
    assert format_usd(value) == text


def test_exact_values_are_plain_digits_never_exponents():
    assert exact(Decimal("1E-9")) == "0.000000001"
    assert exact(Decimal("12.345000000")) == "12.345000000"
    assert exact(Decimal("1E+3")) == "1000"


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (Decimal("7.3"), ["0", "2", "4", "6", "8"]),
        (Decimal("10"), ["0", "5", "10"]),
        (Decimal("12.345"), ["0", "5", "10", "15"]),
        (Decimal("0.000123"), ["0", "0.00005", "0.00010", "0.00015"]),
        (Decimal("0"), ["0", "1"]),
    ],
)
def test_axis_ticks_are_round_steps_that_cover_the_largest_value(maximum, ticks):
    got = axis_ticks(maximum)
    assert [Decimal(t) for t in ticks] == got
    assert got[-1] >= maximum
    assert len(got) <= 5


def test_daily_points_cover_every_day_of_the_range_both_ends_included():
    values = {date(2026, 11, 30): Decimal("2.5"), date(2026, 12, 2): Decimal("1")}
    marks = daily_points(date(2026, 11, 30), date(2026, 12, 2), values)
    assert [(m.label, m.value) for m in marks] == [
        ("2026-11-30", Decimal("2.5")),
        ("2026-12-01", Decimal(0)),
        ("2026-12-02", Decimal("1")),
    ]


def test_bar_chart_has_one_mark_per_value_with_its_exact_decimal_and_a_title():
    marks = [
        Mark(label="flights", value=Decimal("12.345000000"), id="p-1", href="?project_id=p-1"),
        Mark(label="hotels", value=Decimal("0.000000001"), id="p-2"),
    ]
    svg = Elements(bar_chart(marks, title="Spend by project"))
    assert [(m["data-id"], m["data-label"], m["data-value"]) for m in svg.marks()] == [
        ("p-1", "flights", "12.345000000"),
        ("p-2", "hotels", "0.000000001"),
    ]
    assert svg.titles == ["Spend by project", "flights: $12.35", "hotels: $0.000000001"]
    assert ("a", {"href": "?project_id=p-1"}) in svg.tags
    assert sum(1 for tag, _ in svg.tags if tag == "a") == 1


def test_bar_lengths_are_proportional_to_the_values():
    marks = [Mark(label=name, value=Decimal(v)) for name, v in (("a", "8"), ("b", "2"), ("c", "0"))]
    widths = [float(r["width"]) for r in Elements(bar_chart(marks, title="t")).rects("bar")]
    assert widths[0] > 0
    assert widths[1] == pytest.approx(widths[0] / 4)
    assert widths[2] == 0


def test_every_label_and_link_is_escaped():
    nasty = '<script>alert("x")</script>&'
    chart = bar_chart(
        [Mark(label=nasty, value=Decimal(1), id='"><svg onload=1>', href='?a="b"&c=<d>')],
        title=nasty,
    )
    assert "<script>" not in chart
    assert "onload=1>" not in chart
    svg = Elements(chart)
    assert svg.marks()[0]["data-label"] == nasty
    assert svg.marks()[0]["data-id"] == '"><svg onload=1>'
    assert ("a", {"href": '?a="b"&c=<d>'}) in svg.tags
    assert svg.titles[0] == nasty


def test_long_labels_are_shortened_on_screen_but_kept_whole_in_the_data():
    label = "a-very-long-project-name-that-does-not-fit-the-label-column"
    svg = Elements(bar_chart([Mark(label=label, value=Decimal(1))], title="t"))
    assert svg.marks()[0]["data-label"] == label
    assert shorten(label) in bar_chart([Mark(label=label, value=Decimal(1))], title="t")
    assert len(shorten(label)) == 32


def test_charts_without_marks_say_so_instead_of_drawing_nothing():
    assert "No spend in this range." in bar_chart([], title="t")
    assert "<svg" not in bar_chart([], title="t")
    assert "No days in this range." in column_chart([], title="t")


def test_column_chart_has_a_mark_per_day_and_columns_scale_to_the_axis():
    days = daily_points(date(2026, 11, 1), date(2026, 11, 30), {date(2026, 11, 2): Decimal("7.3")})
    chart = column_chart(days, title="Spend per day", height=240)
    svg = Elements(chart)
    assert len(svg.marks()) == 30
    assert svg.marks()[1]["data-value"] == "7.3"
    heights = [float(r["height"]) for r in svg.rects("bar")]
    # The axis runs to $8: 7.3 is 91.25% of the plot (240 - 28 axis - 12 gap = 200 px).
    assert heights[1] == pytest.approx(200 * 7.3 / 8, abs=0.01)
    assert heights[0] == 0
    assert "$8.00" in chart
    assert "Nov 1" in chart
    # Thirty days, at most ten labels under the columns.
    assert chart.count('text-anchor="middle"') <= 10


@pytest.mark.parametrize(
    ("spend", "max_budget", "soft_budget", "state"),
    [
        ("10", "100", "80", "ok"),
        ("80", "100", "80", "soft"),
        ("100", "100", "80", "over"),
        ("150", "100", None, "over"),
        ("5", None, "4", "soft"),
    ],
)
def test_budget_state(spend, max_budget, soft_budget, state):
    as_decimal = [Decimal(v) if v is not None else None for v in (max_budget, soft_budget)]
    assert budget_state(Decimal(spend), *as_decimal) == state


def test_budget_bar_fills_to_the_spend_and_marks_the_soft_budget():
    bar = budget_bar(
        spend=Decimal("25"), max_budget=Decimal("100"), soft_budget=Decimal("80"), width=400
    )
    svg = Elements(bar)
    root = svg.tags[1][1]  # the <svg> inside the wrapper <div>
    assert (root["data-spend"], root["data-max-budget"], root["data-soft-budget"]) == (
        "25",
        "100",
        "80",
    )
    assert root["data-state"] == "ok"
    assert float(svg.rects("track")[0]["width"]) == 400
    assert float(svg.rects("fill")[0]["width"]) == 100
    soft = [a for tag, a in svg.tags if tag == "line"][-1]
    assert float(soft["x1"]) == 320
    assert {m["data-label"]: m["data-value"] for m in svg.marks()} == {
        "Spend": "25",
        "Max budget": "100",
        "Soft budget": "80",
    }
    assert "Soft budget: $80.00" in svg.titles
    assert "$25.00 spent of $100.00 max budget (25%) · soft budget $80.00" in bar


def test_budget_bar_over_budget_runs_past_the_end_of_the_track():
    svg = Elements(
        budget_bar(spend=Decimal("150"), max_budget=Decimal("100"), soft_budget=None, width=300)
    )
    assert float(svg.rects("track")[0]["width"]) == 200
    assert float(svg.rects("fill")[0]["width"]) == 300
    assert svg.tags[1][1]["data-state"] == "over"
    assert "data-soft-budget" not in svg.tags[1][1]


def test_without_any_budget_there_is_no_bar_only_the_spend():
    text = budget_bar(spend=Decimal("3.2"), max_budget=None, soft_budget=None)
    assert "<svg" not in text
    assert "$3.20 spent; no budget set." in text


def test_budget_caption_with_a_zero_budget_has_no_share():
    assert budget_caption(Decimal(0), Decimal(0), None) == "$0.00 spent of $0.00 max budget"
