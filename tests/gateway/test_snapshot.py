"""The configuration snapshot each gateway process enforces from."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.counters import COUNTER_MAX
from gateway.snapshot import KeyEntry, Snapshot, load_snapshot
from hierarchy.governance import Catalog, ModelScope
from tests.factories import VirtualKeyFactory


@pytest.mark.django_db
def test_limits_beyond_what_the_counters_compare_are_held_clamped():
    """Clamped once when the snapshot loads, not on every call (see gateway.counters)."""
    key = VirtualKeyFactory(
        max_budget=Decimal("999999999999"),  # 10^21 nano-USD
        rpm_limit=2**63 - 1,
        tpm_limit=1000,
        model_rpm_limit={"gpt-4o": 2**63 - 1},
        model_max_budget={"gpt-4o": {"budget_limit": "999999999999", "time_period": "1d"}},
    )
    level = load_snapshot().keys[str(key.token_hash)].levels[0]
    assert (level.max_budget, level.rpm_limit, level.tpm_limit) == (COUNTER_MAX, COUNTER_MAX, 1000)
    assert level.model_rpm_limit == {"gpt-4o": COUNTER_MAX}
    assert level.model_max_budget == {"gpt-4o": (COUNTER_MAX, "1d")}


def test_an_update_removes_old_entries_before_adding_so_a_reused_hash_serves_the_new_key():
    snapshot = Snapshot(keys={}, catalog={}, catalog_scope=Catalog(names=[], groups={}))

    def entry(key_id: str, key_hash: str) -> KeyEntry:
        scope = ModelScope(catalog=snapshot.catalog_scope)
        return KeyEntry(key_id, key_hash, expires=None, user_active=True, levels=(), scope=scope)

    snapshot.update({"old": entry("old", "H")}, None)
    snapshot.update({"new": entry("new", "H"), "old": None}, None)  # the new key first
    assert snapshot.keys["H"].id == "new"
    assert snapshot.key_hashes == {"new": "H"}
