"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, nothing fetched.

Each chart is built from plain values, so it is tested without a database or a browser. Every
mark is a ``<g class="mark">`` carrying ``data-id``, ``data-label`` and ``data-value`` (the exact
decimal, as stored) and a ``<title>`` that screen readers and tooltips use. Every piece of text
is escaped here, so the markup these functions return is safe to put in a page as it is.

Money is never computed in floats: values stay ``Decimal``; only pixel positions are floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from html import escape

from django.utils.safestring import SafeString, mark_safe

BAR_WIDTH = 720
LABEL_WIDTH = 220
VALUE_WIDTH = 110
ROW_HEIGHT = 26
BAR_HEIGHT = 18
LABEL_CHARS = 32

SERIES_WIDTH = 720
SERIES_HEIGHT = 240
AXIS_WIDTH = 80
AXIS_HEIGHT = 28
TOP_GAP = 12
MAX_TICK_LABELS = 10

BUDGET_WIDTH = 480
BUDGET_HEIGHT = 56
BUDGET_BAR_TOP = 18
BUDGET_BAR_HEIGHT = 16

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Mark:
    """One bar: what it is (``id``), what people read (``label``) and its exact ``value``.
    ``href``, when set, is a page that narrows the report to this mark."""

    label: str
    value: Decimal
    id: str = ""
    href: str = ""


# --- text --------------------------------------------------------------------------------------


def format_usd(value: Decimal) -> str:
    """Dollars for people: cents with thousands separators, or two significant digits below a
    cent (``$0.00012``) so that small spend does not read as nothing."""
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if amount == 0 or amount >= CENT:
        return f"{sign}${amount.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"
    decimals = min(9, 1 - amount.adjusted())
    rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{sign}${rounded:f}".rstrip("0")


def exact(value: Decimal) -> str:
    """The value as plain decimal digits (never an exponent), for ``data-value``."""
    return format(value, "f")


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _px(number: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros."""
    text = f"{number:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _mark_attrs(mark: Mark) -> str:
    return (
        f'class="mark" data-id="{_esc(mark.id)}" data-label="{_esc(mark.label)}" '
        f'data-value="{_esc(exact(mark.value))}"'
    )


def _linked(mark: Mark, inner: str) -> str:
    return f'<a href="{_esc(mark.href)}">{inner}</a>' if mark.href else inner


def _empty(message: str) -> SafeString:
    return mark_safe(f'<p class="gh-chart-empty">{_esc(message)}</p>')


# --- scales --------------------------------------------------------------------------------


def axis_ticks(maximum: Decimal, intervals: int = 4) -> list[Decimal]:
    """Ticks from 0 up to at least ``maximum``, a round step apart (1, 2 or 5 times a power of
    ten), at most ``intervals`` steps. Nothing to show (``maximum`` <= 0) gives 0 and 1."""
    if maximum <= 0:
        return [Decimal(0), Decimal(1)]
    raw = maximum / intervals
    base = Decimal(1).scaleb(raw.adjusted())
    step = next(base * m for m in (1, 2, 5, 10) if base * m >= raw)
    count = math.ceil(maximum / step)
    return [step * i for i in range(count + 1)]


def daily_points(start: date, end: date, values: Mapping[date, Decimal]) -> list[Mark]:
    """One mark per day from ``start`` to ``end`` (both included); days without spend are 0."""
    days = (end - start).days + 1
    marks = []
    for offset in range(max(days, 0)):
        day = start + timedelta(days=offset)
        marks.append(Mark(label=day.isoformat(), value=values.get(day, Decimal(0)), id=str(day)))
    return marks


# --- charts --------------------------------------------------------------------------------


def bar_chart(
    marks: Sequence[Mark],
    *,
    title: str,
    empty: str = "No spend in this range.",
    width: int = BAR_WIDTH,
) -> SafeString:
    """Horizontal bars, one row per mark in the given order, each with its label on the left
    and its amount on the right. Bar lengths are relative to the largest value."""
    if not marks:
        return _empty(empty)
    largest = max(mark.value for mark in marks)
    room = width - LABEL_WIDTH - VALUE_WIDTH
    height = ROW_HEIGHT * len(marks)
    parts = [
        f'<svg class="gh-chart gh-bars" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
    ]
    for row, mark in enumerate(marks):
        top = row * ROW_HEIGHT
        length = room * float(mark.value / largest) if largest > 0 else 0.0
        amount = format_usd(mark.value)
        middle = top + ROW_HEIGHT / 2
        inner = (
            f"<g {_mark_attrs(mark)}>"
            f"<title>{_esc(mark.label)}: {_esc(amount)}</title>"
            f'<text class="label" x="{LABEL_WIDTH - 8}" y="{_px(middle)}" text-anchor="end" '
            f'dominant-baseline="central">{_esc(shorten(mark.label))}</text>'
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{_px(top + (ROW_HEIGHT - BAR_HEIGHT) / 2)}" '
            f'width="{_px(length)}" height="{BAR_HEIGHT}" fill="#417690"></rect>'
            f'<text class="value" x="{_px(LABEL_WIDTH + length + 6)}" y="{_px(middle)}" '
            f'dominant-baseline="central">{_esc(amount)}</text>'
            "</g>"
        )
        parts.append(_linked(mark, inner))
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _tick_label(day_label: str) -> str:
    """``2026-11-26`` → ``Nov 26``; anything that is not an ISO date stays as it is."""
    try:
        day = date.fromisoformat(day_label)
    except ValueError:
        return day_label
    return f"{day:%b} {day.day}"


def column_chart(
    marks: Sequence[Mark],
    *,
    title: str,
    empty: str = "No days in this range.",
    width: int = SERIES_WIDTH,
    height: int = SERIES_HEIGHT,
) -> SafeString:
    """A time series as columns, one per mark (left to right), over a y axis of round amounts.
    At most ``MAX_TICK_LABELS`` labels are written under the columns; every column keeps its
    own ``<title>``."""
    if not marks:
        return _empty(empty)
    ticks = axis_ticks(max(mark.value for mark in marks))
    top = ticks[-1]
    plot_width = width - AXIS_WIDTH
    plot_height = height - AXIS_HEIGHT - TOP_GAP
    baseline = TOP_GAP + plot_height
    slot = plot_width / len(marks)
    column = max(slot * 0.8, 1.0)
    every = math.ceil(len(marks) / MAX_TICK_LABELS)
    parts = [
        f'<svg class="gh-chart gh-columns" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
        '<g class="axis">',
    ]
    for tick in ticks:
        y = baseline - plot_height * float(tick / top)
        parts.append(
            f'<line class="grid" x1="{AXIS_WIDTH}" x2="{width}" y1="{_px(y)}" y2="{_px(y)}" '
            f'stroke="#ddd"></line>'
            f'<text class="tick" x="{AXIS_WIDTH - 6}" y="{_px(y)}" text-anchor="end" '
            f'dominant-baseline="central">{_esc(format_usd(tick))}</text>'
        )
    for index in range(0, len(marks), every):
        x = AXIS_WIDTH + slot * (index + 0.5)
        parts.append(
            f'<text class="tick" x="{_px(x)}" y="{_px(baseline + 16)}" text-anchor="middle">'
            f"{_esc(_tick_label(marks[index].label))}</text>"
        )
    parts.append("</g>")
    for index, mark in enumerate(marks):
        bar = plot_height * float(mark.value / top)
        x = AXIS_WIDTH + slot * index + (slot - column) / 2
        inner = (
            f"<g {_mark_attrs(mark)}>"
            f"<title>{_esc(mark.label)}: {_esc(format_usd(mark.value))}</title>"
            f'<rect class="bar" x="{_px(x)}" y="{_px(baseline - bar)}" width="{_px(column)}" '
            f'height="{_px(bar)}" fill="#417690"></rect>'
            "</g>"
        )
        parts.append(_linked(mark, inner))
    parts.append("</svg>")
    return mark_safe("".join(parts))


# --- budget --------------------------------------------------------------------------------


def budget_state(spend: Decimal, max_budget: Decimal | None, soft_budget: Decimal | None) -> str:
    """``over`` at or past the max budget, ``soft`` at or past the soft budget, else ``ok``."""
    if max_budget is not None and spend >= max_budget:
        return "over"
    if soft_budget is not None and spend >= soft_budget:
        return "soft"
    return "ok"


def budget_caption(spend: Decimal, max_budget: Decimal | None, soft_budget: Decimal | None) -> str:
    parts = [f"{format_usd(spend)} spent"]
    if max_budget is not None:
        share = f" ({spend / max_budget:.0%})" if max_budget > 0 else ""
        parts[0] += f" of {format_usd(max_budget)} max budget{share}"
    if soft_budget is not None:
        parts.append(f"soft budget {format_usd(soft_budget)}")
    return " · ".join(parts)


def budget_bar(
    *,
    spend: Decimal,
    max_budget: Decimal | None,
    soft_budget: Decimal | None,
    width: int = BUDGET_WIDTH,
) -> SafeString:
    """Spend against budget as one horizontal bar: the track runs to the max budget, the fill to
    the spend (past the track when over), and a marker stands at the soft budget."""
    caption = budget_caption(spend, max_budget, soft_budget)
    if max_budget is None and soft_budget is None:
        return mark_safe(f'<p class="gh-budget gh-budget-none">{_esc(caption)}; no budget set.</p>')
    scale = max(spend, max_budget or Decimal(0), soft_budget or Decimal(0))

    def x(amount: Decimal) -> float:
        return width * float(amount / scale) if scale > 0 else 0.0

    state = budget_state(spend, max_budget, soft_budget)
    bar_bottom = BUDGET_BAR_TOP + BUDGET_BAR_HEIGHT
    colour = {"ok": "#417690", "soft": "#c9861a", "over": "#ba2121"}[state]
    attrs = [
        f'data-spend="{_esc(exact(spend))}"',
        f'data-state="{state}"',
        f'data-max-budget="{_esc(exact(max_budget))}"' if max_budget is not None else "",
        f'data-soft-budget="{_esc(exact(soft_budget))}"' if soft_budget is not None else "",
    ]
    parts = [
        f'<svg class="gh-chart gh-budget-bar" role="img" width="{width}" '
        f'height="{BUDGET_HEIGHT}" viewBox="0 0 {width} {BUDGET_HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{_esc(caption)}" '
        f"{' '.join(a for a in attrs if a)}>",
        f"<title>{_esc(caption)}</title>",
    ]
    track_end = x(max_budget) if max_budget is not None else float(width)
    parts.append(
        f'<rect class="track" x="0" y="{BUDGET_BAR_TOP}" width="{_px(track_end)}" '
        f'height="{BUDGET_BAR_HEIGHT}" fill="#e8e8e8"></rect>'
    )
    parts.append(
        f'<g class="mark spend budget-{state}" data-label="Spend" '
        f'data-value="{_esc(exact(spend))}"><title>Spend: {_esc(format_usd(spend))}</title>'
        f'<rect class="fill" x="0" y="{BUDGET_BAR_TOP}" width="{_px(x(spend))}" '
        f'height="{BUDGET_BAR_HEIGHT}" fill="{colour}"></rect></g>'
    )
    if max_budget is not None:
        at = x(max_budget)
        anchor = "end" if at > width / 2 else "start"
        parts.append(
            f'<g class="mark max-budget" data-label="Max budget" '
            f'data-value="{_esc(exact(max_budget))}">'
            f"<title>Max budget: {_esc(format_usd(max_budget))}</title>"
            f'<line x1="{_px(at)}" x2="{_px(at)}" y1="{BUDGET_BAR_TOP - 2}" '
            f'y2="{bar_bottom + 4}" stroke="#333" stroke-width="2"></line>'
            f'<text x="{_px(at)}" y="{bar_bottom + 16}" text-anchor="{anchor}">'
            f"max {_esc(format_usd(max_budget))}</text></g>"
        )
    if soft_budget is not None:
        at = x(soft_budget)
        anchor = "end" if at > width * 0.75 else ("start" if at < width * 0.25 else "middle")
        parts.append(
            f'<g class="mark soft-budget" data-label="Soft budget" '
            f'data-value="{_esc(exact(soft_budget))}">'
            f"<title>Soft budget: {_esc(format_usd(soft_budget))}</title>"
            f'<line x1="{_px(at)}" x2="{_px(at)}" y1="{BUDGET_BAR_TOP - 4}" '
            f'y2="{bar_bottom + 4}" stroke="#333" stroke-width="2" stroke-dasharray="3 2"></line>'
            f'<text x="{_px(at)}" y="{BUDGET_BAR_TOP - 6}" text-anchor="{anchor}">'
            f"soft {_esc(format_usd(soft_budget))}</text></g>"
        )
    parts.append("</svg>")
    return mark_safe(
        f'<div class="gh-budget">{"".join(parts)}'
        f'<p class="gh-budget-caption">{_esc(caption)}</p></div>'
    )


def total_of(marks: Iterable[Mark]) -> Decimal:
    return sum((mark.value for mark in marks), Decimal(0))
