"""The governance rules, written once for every level (organization, team, project, key, user).

- ``parse_duration`` / ``next_budget_reset``: budget periods (Decision 8).
- ``ModelScope``: which model names a chain of levels allows (Decision 5).
- ``clean_governance``: validates and normalises the governance fields of one level against
  its parent chain; ``check_descendants_fit``: a level cannot shrink below its descendants.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError

from hierarchy.models import AccessGroup, CatalogModel, Governed

ALL_MODELS = frozenset({"*", "all-proxy-models"})
DURATION_RE = re.compile(r"^(\d+)(s|m|h|d|w|mo)$")

# Messages (tests assert them verbatim).
MSG_DURATION_INVALID = (
    "Invalid duration '{value}': use a number followed by s, m, h, d, w or mo (e.g. 30d, 1mo)."
)
MSG_MONEY_INVALID = "{field} must be a finite number greater than or equal to 0."
MSG_LIMIT_INVALID = "{field} must be a whole number greater than or equal to 0."
MSG_SOFT_BUDGET_NOT_BELOW_MAX = "soft_budget ({soft}) must be less than max_budget ({max})."
MSG_MODELS_NOT_A_LIST = "models must be a list of model names."
MSG_MODEL_NOT_IN_PARENT = "Model '{model}' not in {parent}'s allowed models."
MSG_MODEL_NOT_IN_CATALOG = "Model '{model}' is not in the model catalog."
MSG_UNKNOWN_FIELD = "Unknown field."
MSG_EXCEEDS_PARENT = "{level} {field} ({value}) exceeds {parent}'s {field} ({parent_value})."
MSG_PER_MODEL_INVALID = "{field} must map model names to {what}."
MSG_METADATA_NOT_OBJECT = "metadata must be a JSON object."
MSG_LEVEL_OUTSIDE_PARENT = "{level} '{label}' would hold models outside its parent's: {models}."
MSG_MODELS_USED_BY_CHILD = "Cannot remove models still used by {level} '{label}': {models}."
MSG_LIMIT_BELOW_CHILD = "Cannot set {field} ({value}) below {level} '{label}' ({child_value})."

MONEY_FIELDS = ("max_budget", "soft_budget")
MONEY_STEP = Decimal("0.000000001")  # the database keeps 9 decimal places
MONEY_CEILING = Decimal(10) ** 12
LIMIT_FIELDS = ("rpm_limit", "tpm_limit")
INHERITED_CEILINGS = ("max_budget", "rpm_limit", "tpm_limit")
GOVERNANCE_FIELDS = (
    "models",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "model_rpm_limit",
    "model_tpm_limit",
    "model_max_budget",
    "blocked",
    "metadata",
)


# --- durations -------------------------------------------------------------------------------


def parse_duration(value: str) -> tuple[int, str]:
    match = DURATION_RE.fullmatch(value or "")
    if not match or int(match.group(1)) == 0:
        raise ValidationError(MSG_DURATION_INVALID.format(value=value), code="invalid_duration")
    return int(match.group(1)), match.group(2)


def gatehouse_timezone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.GATEHOUSE_TIMEZONE)


def next_budget_reset(duration: str, after: datetime) -> datetime:
    """The end of the budget period that contains ``after`` (Decision 8).

    ``s``/``m``/``h`` count from ``after``; ``d`` ends at a local midnight, ``w`` at a Monday
    midnight, ``mo`` at midnight on the 1st, ``n`` units ahead.
    """
    amount, unit = parse_duration(duration)
    if unit in ("s", "m", "h"):
        seconds = {"s": 1, "m": 60, "h": 3600}[unit]
        return after + timedelta(seconds=amount * seconds)
    tz = gatehouse_timezone()
    local = after.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        day = midnight.date() + timedelta(days=amount)
    elif unit == "w":
        days_to_monday = 7 - midnight.weekday()
        day = midnight.date() + timedelta(days=days_to_monday + 7 * (amount - 1))
    else:
        month_index = midnight.year * 12 + (midnight.month - 1) + amount
        day = midnight.date().replace(year=month_index // 12, month=month_index % 12 + 1, day=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _advance(boundary: datetime, duration: str, periods: int) -> datetime:
    """``boundary`` moved by ``periods`` budget periods (negative: back)."""
    amount, unit = parse_duration(duration)
    if unit in ("s", "m", "h"):
        seconds = {"s": 1, "m": 60, "h": 3600}[unit]
        return boundary + timedelta(seconds=amount * seconds * periods)
    tz = gatehouse_timezone()
    local = boundary.astimezone(tz)
    if unit in ("d", "w"):
        day = local.date() + timedelta(days=amount * periods * (7 if unit == "w" else 1))
    else:
        month_index = local.year * 12 + (local.month - 1) + amount * periods
        day = local.date().replace(year=month_index // 12, month=month_index % 12 + 1, day=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def budget_period(
    duration: str, reset_at: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The budget period ``[start, end)`` that contains ``now``, on the grid through
    ``reset_at`` (Decision 8). Every process computes the same period: no job resets budgets."""
    if reset_at is None:
        end = next_budget_reset(duration, now)
        return _advance(end, duration, -1), end
    amount, unit = parse_duration(duration)
    if unit in ("s", "m", "h"):
        length = timedelta(seconds=amount * {"s": 1, "m": 60, "h": 3600}[unit])
        start = reset_at + length * ((now - reset_at) // length)
        return start, start + length
    end = reset_at
    while end <= now:
        end = _advance(end, duration, 1)
    start = _advance(end, duration, -1)
    while start > now:
        end, start = start, _advance(start, duration, -1)
    return start, end


GRID_ORIGIN = (2024, 1, 1)  # a Monday and the 1st of a month: every grid lines up with it


def fixed_grid_period(duration: str, now: datetime) -> tuple[datetime, datetime]:
    """A period ``[start, end)`` on a grid that does not depend on when anything was saved:
    for budgets with no stored reset time (per-model ``time_period``s). ``s``/``m``/``h``
    count from the Unix epoch; ``d``/``w``/``mo`` from local midnight on 2024-01-01, so
    ``30d`` is the same 30 days in every process."""
    _, unit = parse_duration(duration)
    if unit in ("s", "m", "h"):
        return budget_period(duration, datetime(1970, 1, 1, tzinfo=UTC), now)
    origin = datetime(*GRID_ORIGIN, tzinfo=gatehouse_timezone())
    return budget_period(duration, origin, now)


# --- model scopes ----------------------------------------------------------------------------


def _pattern_prefix(entry: str) -> str | None:
    return entry[:-1] if entry.endswith("/*") and len(entry) > 2 else None


@dataclass
class Catalog:
    """The catalog's public names and the access groups' bundles, loaded once per check."""

    names: list[str]
    groups: dict[str, list[str]]

    @classmethod
    def load(cls) -> Catalog:
        return cls(
            names=list(CatalogModel.objects.order_by("name").values_list("name", flat=True)),
            groups=dict(AccessGroup.objects.values_list("name", "models")),
        )

    def entry_matches(self, entry: str, name: str, seen: frozenset[str] = frozenset()) -> bool:
        """Does one list entry (name, wildcard, `*`, access group) allow ``name``?"""
        if entry in ALL_MODELS or entry == name:
            return True
        prefix = _pattern_prefix(entry)
        if prefix is not None and name.startswith(prefix) and len(name) > len(prefix):
            return True
        if entry in self.groups and entry not in seen:
            return any(self.entry_matches(e, name, seen | {entry}) for e in self.groups[entry])
        return False

    def knows(self, entry: str) -> bool:
        """A catalog name, an access group, a wildcard or ``*``."""
        return (
            entry in ALL_MODELS
            or _pattern_prefix(entry) is not None
            or entry in self.names
            or entry in self.groups
        )

    def expand(self, entry: str) -> list[str]:
        return [name for name in self.names if self.entry_matches(entry, name)]


@dataclass
class ModelScope:
    """What a chain of levels allows: each non-empty explicit list must allow a name."""

    catalog: Catalog
    lists: list[list[str]] = field(default_factory=list)

    @property
    def unrestricted(self) -> bool:
        return not self.lists

    def allows(self, name: str) -> bool:
        return all(any(self.catalog.entry_matches(e, name) for e in lst) for lst in self.lists)

    def covers(self, entry: str) -> bool:
        """Is a child's explicit entry within this scope? Patterns expand against the catalog;
        with no restriction above, the scope is the whole catalog (Decision 4)."""
        if self.unrestricted:
            return self.catalog.knows(entry)
        if self.allows(entry):
            return True
        if entry in ALL_MODELS or _pattern_prefix(entry) is not None:
            return all(self.allows(name) for name in self.catalog.expand(entry))
        if entry in self.catalog.groups:
            return all(self.covers(e) for e in self.catalog.groups[entry])
        return False

    def names(self) -> list[str]:
        """The catalog names this scope allows (the options a child may pick)."""
        return [name for name in self.catalog.names if self.allows(name)]


def explicit_models(level: Governed) -> list[str]:
    """A level's own list: its models plus the names of its attached access groups."""
    entries = list(level.models or [])
    if not level._state.adding:
        entries += [group.name for group in level.access_groups.all()]
    return entries


def ancestors(level: Governed | None) -> Iterator[Governed]:
    while level is not None:
        yield level
        level = level.governance_parent


def model_scope(level: Governed | None, catalog: Catalog | None = None) -> ModelScope:
    """The scope of ``level`` and everything above it (None: the whole catalog)."""
    catalog = catalog or Catalog.load()
    lists = [entries for entries in map(explicit_models, ancestors(level)) if entries]
    return ModelScope(catalog=catalog, lists=lists)


def effective_model_names(level: Governed | None) -> list[str]:
    return model_scope(level).names()


# --- validation ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def to_money(value: Any, field_name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    message = MSG_MONEY_INVALID.format(field=field_name)
    if isinstance(value, bool):
        raise ValidationError(message, code="invalid")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(message, code="invalid")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(message, code="invalid") from None
    if not amount.is_finite() or amount < 0 or amount >= MONEY_CEILING:
        raise ValidationError(message, code="invalid")
    amount = amount.quantize(MONEY_STEP)
    if amount >= MONEY_CEILING:
        raise ValidationError(message, code="invalid")
    return amount


def to_limit(value: Any, field_name: str) -> int | None:
    if value is None or value == "":
        return None
    message = MSG_LIMIT_INVALID.format(field=field_name)
    if isinstance(value, bool):
        raise ValidationError(message, code="invalid")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(message, code="invalid")
        value = int(value)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(message, code="invalid") from None
    if number < 0 or number > 2**62:
        raise ValidationError(message, code="invalid")
    return number


def _clean_per_model(value: Any, field_name: str, *, money: bool) -> dict[str, Any]:
    invalid = ValidationError(
        MSG_PER_MODEL_INVALID.format(
            field=field_name, what="amounts in USD" if money else "whole numbers"
        )
    )
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise invalid
    cleaned: dict[str, Any] = {}
    for model_name, raw in value.items():
        try:
            if not money:
                cleaned[model_name] = to_limit(raw, field_name)
                if cleaned[model_name] is None:
                    raise invalid
                continue
            # LiteLLM sends either an amount or {"budget_limit": x, "time_period": "30d"}.
            limit, period = (
                (raw.get("budget_limit"), raw.get("time_period") or "")
                if isinstance(raw, Mapping)
                else (raw, "")
            )
            amount = to_money(limit, field_name)
            if amount is None:
                raise invalid
            if period:
                parse_duration(period)
            cleaned[model_name] = {"budget_limit": _fmt(amount), "time_period": period}
        except ValidationError:
            raise invalid from None
    return cleaned


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, []).append(message)

    def collect(self, name: str, error: ValidationError) -> None:
        for message in error.messages:
            self.add(name, message)

    def raise_if_any(self) -> None:
        if self.by_field:
            raise ValidationError(self.by_field)


def clean_governance(
    values: Mapping[str, Any],
    *,
    level_name: str,
    parent: Governed | None,
    current: Governed | None = None,
    catalog: Catalog | None = None,
    access_groups: list[str] | None = None,
) -> dict[str, Any]:
    """Validate the governance fields given in ``values`` and return them normalised.

    Fields absent from ``values`` keep ``current``'s value for the cross-field checks
    (soft < max, within the parent); ``access_groups`` are the names of groups being
    attached, checked against the parent like models. Raises one ValidationError naming
    every bad field.
    """
    errors = _Errors()
    for name in sorted(set(values) - set(GOVERNANCE_FIELDS)):
        errors.add(name, MSG_UNKNOWN_FIELD)
    cleaned: dict[str, Any] = {}

    for name in MONEY_FIELDS:
        if name in values:
            try:
                cleaned[name] = to_money(values[name], name)
            except ValidationError as error:
                errors.collect(name, error)
    for name in LIMIT_FIELDS:
        if name in values:
            try:
                cleaned[name] = to_limit(values[name], name)
            except ValidationError as error:
                errors.collect(name, error)
    if "budget_duration" in values:
        duration = values["budget_duration"] or ""
        try:
            if duration:
                parse_duration(duration)
            cleaned["budget_duration"] = duration
        except ValidationError as error:
            errors.collect("budget_duration", error)
    for name, money in (
        ("model_rpm_limit", False),
        ("model_tpm_limit", False),
        ("model_max_budget", True),
    ):
        if name in values:
            try:
                cleaned[name] = _clean_per_model(values[name], name, money=money)
            except ValidationError as error:
                errors.collect(name, error)
    if "models" in values:
        models = values["models"] if values["models"] is not None else []
        if not isinstance(models, list) or not all(
            isinstance(m, str) and m.strip() for m in models
        ):
            errors.add("models", MSG_MODELS_NOT_A_LIST)
        else:
            cleaned["models"] = list(dict.fromkeys(m.strip() for m in models))
    if "metadata" in values:
        metadata = values["metadata"] if values["metadata"] is not None else {}
        if not isinstance(metadata, Mapping):
            errors.add("metadata", MSG_METADATA_NOT_OBJECT)
        else:
            cleaned["metadata"] = dict(metadata)
    if "blocked" in values:
        cleaned["blocked"] = bool(values["blocked"])

    def final(name: str) -> Any:
        if name in cleaned:
            return cleaned[name]
        return getattr(current, name, None) if current is not None else None

    soft, ceiling = final("soft_budget"), final("max_budget")
    money_ok = "soft_budget" not in errors.by_field and "max_budget" not in errors.by_field
    if money_ok and soft is not None and ceiling is not None and soft >= ceiling:
        errors.add(
            "soft_budget",
            MSG_SOFT_BUDGET_NOT_BELOW_MAX.format(soft=_fmt(soft), max=_fmt(ceiling)),
        )

    if parent is not None:
        for name in INHERITED_CEILINGS:
            value = final(name)
            if value is None or name in errors.by_field or name not in values:
                continue
            holder = next((a for a in ancestors(parent) if getattr(a, name) is not None), None)
            if holder is not None and value > getattr(holder, name):
                errors.add(
                    name,
                    MSG_EXCEEDS_PARENT.format(
                        level=level_name.capitalize(),
                        field=name,
                        value=_fmt(value),
                        parent=holder.level_name,
                        parent_value=_fmt(getattr(holder, name)),
                    ),
                )

    if "models" in cleaned or access_groups:
        scope = model_scope(parent, catalog)
        checked = (("models", cleaned.get("models", [])), ("access_groups", access_groups or []))
        for name, entries in checked:
            for entry in entries:
                if scope.covers(entry):
                    continue
                if parent is None:
                    errors.add(name, MSG_MODEL_NOT_IN_CATALOG.format(model=entry))
                else:
                    errors.add(
                        name, MSG_MODEL_NOT_IN_PARENT.format(model=entry, parent=parent.level_name)
                    )

    errors.raise_if_any()
    return cleaned


def governed_models() -> list[type[Governed]]:
    return [
        apps.get_model("hierarchy", "Organization"),
        apps.get_model("hierarchy", "Team"),
        apps.get_model("projects", "Project"),
        apps.get_model("keys", "VirtualKey"),
        apps.get_model("hierarchy", "User"),
    ]


def levels_naming_access_group(name: str) -> list[Governed]:
    """Levels whose ``models`` list the group's name."""
    return [
        level
        for model in governed_models()
        for level in model._default_manager.filter(models__icontains=name)
        if name in (level.models or [])
    ]


def levels_using_access_group(group: AccessGroup) -> list[Governed]:
    """Levels that attach ``group`` or name it in their models."""
    attached = [
        level
        for model in governed_models()
        for level in model._default_manager.filter(access_groups=group)
    ]
    found = {
        (type(level), level.pk): level
        for level in [*attached, *levels_naming_access_group(group.name)]
    }
    return list(found.values())


def check_levels_fit(levels: Iterable[Governed]) -> None:
    """After a change below them (an access group's models), each level must still sit
    within its parent and hold its descendants."""
    errors = _Errors()
    catalog = Catalog.load()
    for level in levels:
        scope = model_scope(level.governance_parent, catalog)
        outside = [e for e in explicit_models(level) if not scope.covers(e)]
        if outside:
            errors.add(
                "models",
                MSG_LEVEL_OUTSIDE_PARENT.format(
                    level=level.level_name,
                    label=level.label,
                    models=", ".join(f"'{m}'" for m in outside),
                ),
            )
        own = model_scope(level, catalog)
        for child in descendants(level):
            held = [e for e in explicit_models(child) if not own.covers(e)]
            if held:
                errors.add(
                    "models",
                    MSG_MODELS_USED_BY_CHILD.format(
                        level=child.level_name,
                        label=child.label,
                        models=", ".join(f"'{m}'" for m in held),
                    ),
                )
    errors.raise_if_any()


# --- descendants -----------------------------------------------------------------------------


def descendants(level: Governed) -> Iterable[Governed]:
    """Every level below ``level`` whose explicit settings must stay within it."""
    if level._state.adding:
        return []
    Team = apps.get_model("hierarchy", "Team")
    Project = apps.get_model("projects", "Project")
    VirtualKey = apps.get_model("keys", "VirtualKey")
    related = ("access_groups",)
    if level.level_name == "organization":
        return [
            *Team.objects.filter(organization=level).prefetch_related(*related),
            *Project.objects.filter(team__organization=level).prefetch_related(*related),
            *VirtualKey.objects.filter(team__organization=level).prefetch_related(*related),
        ]
    if level.level_name == "team":
        return [
            *Project.objects.filter(team=level).prefetch_related(*related),
            *VirtualKey.objects.filter(team=level).prefetch_related(*related),
        ]
    if level.level_name == "project":
        return list(VirtualKey.objects.filter(project=level).prefetch_related(*related))
    return []


_UNCHANGED: Any = object()


def check_descendants_fit(
    level: Governed,
    cleaned: Mapping[str, Any],
    *,
    access_groups: list[str] | None = None,
    parent: Any = _UNCHANGED,
) -> None:
    """Refuse to narrow ``level`` below what its descendants explicitly hold, naming them.

    ``cleaned`` holds the level's new governance values, ``access_groups`` its new group
    names and ``parent`` its new parent (a move); whatever is not given stays as it is.
    """
    moved = parent is not _UNCHANGED and parent != level.governance_parent
    new_parent = level.governance_parent if parent is _UNCHANGED else parent
    current_groups = [g.name for g in level.access_groups.all()] if not level._state.adding else []
    new_models = cleaned.get("models", list(level.models or []))
    new_groups = current_groups if access_groups is None else list(access_groups)
    models_changed = moved or new_models != list(level.models or []) or new_groups != current_groups
    ceilings = {
        name: cleaned[name] if name in cleaned else getattr(level, name)
        for name in INHERITED_CEILINGS
    }
    for name, value in ceilings.items():
        if value is None and new_parent is not None:
            holder = next((a for a in ancestors(new_parent) if getattr(a, name) is not None), None)
            ceilings[name] = getattr(holder, name) if holder is not None else None
    ceilings_changed = moved or any(
        name in cleaned and cleaned[name] != getattr(level, name) for name in INHERITED_CEILINGS
    )
    if not (models_changed or ceilings_changed):
        return
    errors = _Errors()
    children = list(descendants(level))
    if models_changed and children:
        own = new_models + new_groups
        scope = model_scope(new_parent)
        if own:
            scope.lists.insert(0, own)
        for child in children:
            outside = [e for e in explicit_models(child) if not scope.covers(e)]
            if outside:
                errors.add(
                    "models",
                    MSG_MODELS_USED_BY_CHILD.format(
                        level=child.level_name,
                        label=child.label,
                        models=", ".join(f"'{m}'" for m in outside),
                    ),
                )
    for name, ceiling in ceilings.items():
        if ceiling is None:
            continue
        for child in children:
            child_value = getattr(child, name)
            if child_value is not None and child_value > ceiling:
                errors.add(
                    name,
                    MSG_LIMIT_BELOW_CHILD.format(
                        field=name,
                        value=_fmt(ceiling),
                        level=child.level_name,
                        label=child.label,
                        child_value=_fmt(child_value),
                    ),
                )
    errors.raise_if_any()
