"""Everything the gateway checks, read from the database into memory in one go.

A ``Snapshot`` maps key hashes to ``KeyEntry`` chains (key, project, team, organization,
user) and holds the catalog. It is rebuilt off the request path when the configuration
changes (``hierarchy.changes``); when only keys changed, just those keys are read again and
swapped in (``load_keys``, ``Snapshot.update``). Requests only read it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gateway.counters import clamp
from hierarchy.governance import Catalog, ModelScope, budget_period, fixed_grid_period
from hierarchy.models import AccessGroup, CatalogModel, Organization, Team, User
from keys.models import VirtualKey
from projects.models import Project
from spend.services import usd_to_nano

FEMTO = 10**15  # prices have 15 decimal places: integer femto-USD per token is exact
NANO = 10**9
NO_PERIOD = "0"


# Limits and spend as the counters take them: clamped once here (see gateway.counters.clamp),
# not on every call.


def _nano_map(values: Any) -> dict[str, int]:
    return {str(name): clamp(usd_to_nano(v)) for name, v in (values or {}).items() if v is not None}


def _model_budgets(values: Any) -> dict[str, tuple[int, str]]:
    """``model_max_budget`` as stored: {model: {"budget_limit": "1.5", "time_period": "1d"}}."""
    out = {}
    for name, value in (values or {}).items():
        if isinstance(value, dict):
            limit = clamp(usd_to_nano(value["budget_limit"]))
            out[str(name)] = (limit, value.get("time_period") or "")
        elif value is not None:
            out[str(name)] = (clamp(usd_to_nano(value)), "")
    return out


def _clamped(value: int | None) -> int | None:
    return None if value is None else clamp(value)


def _int_map(values: Any) -> dict[str, int]:
    return {str(name): clamp(int(v)) for name, v in (values or {}).items() if v is not None}


@dataclass(slots=True)
class CatalogEntry:
    name: str
    mode: str
    provider: str
    upstream_model: str
    api_base: str
    api_key_env: str
    input_femto: int
    output_femto: int
    max_output_tokens: int

    def cost_nano(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Exact cost in nano-USD, rounded up: a call is never free by rounding."""
        femto = prompt_tokens * self.input_femto + completion_tokens * self.output_femto
        return -(-femto // (FEMTO // NANO))


@dataclass(slots=True)
class Level:
    """One governed level as the gateway enforces it. Money in nano-USD."""

    kind: str
    id: str
    label: str
    blocked: bool
    models: list[str]
    max_budget: int | None
    budget_duration: str
    budget_reset_at: datetime | None
    spend: int
    model_spend: dict[str, int]
    rpm_limit: int | None
    tpm_limit: int | None
    model_rpm_limit: dict[str, int]
    model_tpm_limit: dict[str, int]
    model_max_budget: dict[str, tuple[int, str]]  # limit and its own period ("" = the level's)
    _period: tuple[float, float, str] = (math.inf, -math.inf, NO_PERIOD)
    _db_period_current: bool = False
    _own_periods: dict[str, tuple[float, float, str]] = field(default_factory=dict)

    def period(self, now: float) -> tuple[str, float]:
        """The current budget period's tag (its start, epoch seconds) and end.

        Computed at most once per period (Decision 8); no duration means one endless period.
        """
        start, end, tag = self._period
        if start <= now < end:
            return tag, end
        if not self.budget_duration:
            self._period = (-math.inf, math.inf, NO_PERIOD)
            self._db_period_current = True
            return NO_PERIOD, math.inf
        moment = datetime.fromtimestamp(now, UTC)
        period_start, period_end = budget_period(self.budget_duration, self.budget_reset_at, moment)
        self._db_period_current = self.budget_reset_at == period_end
        tag = str(int(period_start.timestamp()))
        self._period = (period_start.timestamp(), period_end.timestamp(), tag)
        return tag, period_end.timestamp()

    def own_period(self, duration: str, now: float) -> tuple[str, float]:
        """A per-model budget's own ``time_period``, on the fixed grid every process shares."""
        start, end, tag = self._own_periods.get(duration, (math.inf, -math.inf, ""))
        if start <= now < end:
            return tag, end
        moment = datetime.fromtimestamp(now, UTC)
        period_start, period_end = fixed_grid_period(duration, moment)
        tag = f"{duration}-{int(period_start.timestamp())}"
        self._own_periods[duration] = (period_start.timestamp(), period_end.timestamp(), tag)
        return tag, period_end.timestamp()

    def seed(self, model: str | None = None) -> int:
        """The spend the database holds for the current period (call ``period`` first)."""
        if not self._db_period_current:
            return 0
        return self.spend if model is None else self.model_spend.get(model, 0)


@dataclass(slots=True)
class KeyEntry:
    id: str
    key_hash: str
    expires: datetime | None
    user_active: bool
    levels: tuple[Level, ...]
    scope: ModelScope
    project_id: str = ""
    team_id: str = ""
    organization_id: str = ""
    user_id: str = ""
    is_master: bool = False
    _allowed: dict[str, bool] = field(default_factory=dict)

    def allows(self, model: str) -> bool:
        allowed = self._allowed.get(model)
        if allowed is None:
            allowed = self._allowed[model] = self.scope.allows(model)
        return allowed


Rows = dict[str, tuple[Level, dict[str, Any]]]  # level id → the level and its row


class Version(NamedTuple):
    """What a snapshot was read at: its process's own version (``hierarchy.changes``) and
    the newest journal entry in Redis (``None``: none, or no Redis)."""

    local: int
    journal: bytes | None


@dataclass
class Snapshot:
    keys: dict[str, KeyEntry]  # by token hash
    catalog: dict[str, CatalogEntry]
    catalog_scope: Catalog
    parents: dict[str, Rows] = field(default_factory=dict)  # project, team, organization, user
    key_hashes: dict[str, str] = field(default_factory=dict)  # key id → token hash
    version: Version | None = None
    loaded_at: float = 0.0

    def update(self, entries: Mapping[str, KeyEntry | None], version: Version | None) -> None:
        """Swap in keys read again (``None``: deleted); a new token hash replaces the old.
        All old entries go first: a deleted key's secret may be a new key's now."""
        for key_id in entries:
            old = self.key_hashes.pop(key_id, None)
            if old is not None:
                del self.keys[old]
        for key_id, entry in entries.items():
            if entry is not None:
                self.keys[entry.key_hash] = entry
                self.key_hashes[key_id] = entry.key_hash
        self.version = version

    def master_entry(self) -> KeyEntry:
        """The master key: any catalog model, no levels; its hash is never logged (it may be a
        low-entropy secret, Decision 6)."""
        return KeyEntry(
            id="",
            key_hash="",
            expires=None,
            user_active=True,
            levels=(),
            scope=ModelScope(catalog=self.catalog_scope),
            is_master=True,
        )


class MissingParent(Exception):
    """A key names a level the snapshot does not hold (created since it was loaded)."""


LEVEL_FIELDS = (
    "pk",
    "blocked",
    "models",
    "max_budget",
    "budget_duration",
    "budget_reset_at",
    "spend",
    "model_spend",
    "rpm_limit",
    "tpm_limit",
    "model_rpm_limit",
    "model_tpm_limit",
    "model_max_budget",
)


def _levels(
    model: Any,
    kind: str,
    label_field: str,
    extra: tuple[str, ...] = (),
    only: Collection[str] | None = None,
) -> Rows:
    """Every row of a level's table as a ``Level`` (or ``only`` the rows with these ids)."""
    groups: dict[str, list[str]] = defaultdict(list)
    through = model.access_groups.through
    owner = f"{model._meta.model_name}_id"
    links = through.objects.all()
    rows = model._default_manager.all()
    if only is not None:
        links = links.filter(**{f"{owner}__in": list(only)})
        rows = rows.filter(pk__in=list(only))
    for owner_id, group_name in links.values_list(owner, "accessgroup__name"):
        groups[owner_id].append(group_name)
    out: Rows = {}
    for row in rows.values(*LEVEL_FIELDS, label_field, *extra):
        pk = row["pk"]
        out[pk] = (
            Level(
                kind=kind,
                id=pk,
                label=str(row[label_field] or pk),
                blocked=row["blocked"],
                models=[*(row["models"] or []), *groups.get(pk, [])],
                max_budget=(
                    None if row["max_budget"] is None else clamp(usd_to_nano(row["max_budget"]))
                ),
                budget_duration=row["budget_duration"] or "",
                budget_reset_at=row["budget_reset_at"],
                spend=clamp(usd_to_nano(row["spend"])),
                model_spend=_nano_map(row["model_spend"]),
                rpm_limit=_clamped(row["rpm_limit"]),
                tpm_limit=_clamped(row["tpm_limit"]),
                model_rpm_limit=_int_map(row["model_rpm_limit"]),
                model_tpm_limit=_int_map(row["model_tpm_limit"]),
                model_max_budget=_model_budgets(row["model_max_budget"]),
            ),
            row,
        )
    return out


KEY_FIELDS = ("token_hash", "key_name", "project_id", "team_id", "user_id", "expires")


def load_snapshot(version: Version | None = None) -> Snapshot:
    """Read keys, levels, catalog and access groups (a handful of queries, no per-key query)."""
    catalog = {
        row.name: CatalogEntry(
            name=row.name,
            mode=row.mode,
            provider=row.provider,
            upstream_model=row.upstream_model,
            api_base=row.api_base,
            api_key_env=row.api_key_env,
            input_femto=int(row.input_cost_per_token * FEMTO),
            output_femto=int(row.output_cost_per_token * FEMTO),
            max_output_tokens=row.max_output_tokens,
        )
        for row in CatalogModel.objects.all()
    }
    snapshot = Snapshot(
        keys={},
        catalog=catalog,
        catalog_scope=Catalog(
            names=sorted(catalog), groups=dict(AccessGroup.objects.values_list("name", "models"))
        ),
        parents={
            "organization": _levels(Organization, "organization", "alias"),
            "team": _levels(Team, "team", "alias", ("organization_id",)),
            "project": _levels(Project, "project", "alias"),
            "user": _users(),
        },
        version=version,
        loaded_at=time.time(),
    )
    snapshot.update(_key_entries(snapshot, None, strict=False), version)
    return snapshot


def _users() -> Rows:
    users = _levels(User, "user", "email", ("is_active", "username"))
    for level, row in users.values():
        if level.label == level.id:  # no email
            level.label = row["username"]
    return users


def load_keys(snapshot: Snapshot, key_ids: Collection[str]) -> dict[str, KeyEntry | None]:
    """These keys as the database holds them now (``None``: deleted), on the levels above
    them that ``snapshot`` holds. Raises ``MissingParent`` when a key names a level the
    snapshot lacks: only a full reload can tell its limits then."""
    found = _key_entries(snapshot, key_ids, strict=True)
    return {key_id: found.get(key_id) for key_id in key_ids}


def _key_entries(
    snapshot: Snapshot, only: Collection[str] | None, *, strict: bool
) -> dict[str, KeyEntry]:
    parents = snapshot.parents

    def parent(kind: str, level_id: str | None) -> tuple[Level, dict[str, Any]] | None:
        found = parents[kind].get(level_id) if level_id else None
        if found is None and level_id and strict:
            raise MissingParent(f"{kind} {level_id}")
        return found

    entries: dict[str, KeyEntry] = {}
    for key_level, row in _levels(VirtualKey, "key", "key_alias", KEY_FIELDS, only).values():
        if key_level.label == key_level.id:
            key_level.label = row["key_name"]
        chain: list[Level] = [key_level]
        project = parent("project", row["project_id"])
        team = parent("team", row["team_id"])
        organization = parent("organization", team[1]["organization_id"]) if team else None
        user = parent("user", row["user_id"])
        for found in (project, team, organization, user):
            if found is not None:
                chain.append(found[0])
        lists = [level.models for level in chain if level.models]
        entries[key_level.id] = KeyEntry(
            id=key_level.id,
            key_hash=row["token_hash"],
            expires=row["expires"],
            user_active=user[1]["is_active"] if user else True,
            levels=tuple(chain),
            scope=ModelScope(catalog=snapshot.catalog_scope, lists=lists),
            project_id=row["project_id"] or "",
            team_id=row["team_id"] or "",
            organization_id=organization[0].id if organization else "",
            user_id=row["user_id"] or "",
        )
    return entries
