"""Config-as-code benchmark: ``python -m bench.apply`` (or ``make bench-apply``).

On PostgreSQL (its own database, ``gatehouse_bench_apply``, emptied at the start), one file
declares 5 catalog models, 10 organizations, 1,000 teams, 10,000 projects and 10,000 keys, each
with models and budgets. Measured, each once:

- ``manage.py apply`` of that file on an empty hierarchy (everything created, keys written
  to a 0600 CSV);
- the same file applied again (a no-op: nothing is written);
- the baseline: the same objects created through the same services one at a time, one
  transaction each (``team_create``, ``project_create``, ``key_generate``), as a script
  without batches would.

Targets: apply <= 60 s, no-op re-apply <= 10 s. Exits non-zero when a target is missed or
the database does not hold what the file declares.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gatehouse_bench_apply"
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-5-haiku", "o3-mini")
ORGANIZATIONS, TEAMS, PROJECTS_PER_TEAM = 10, 1_000, 10
APPLY_TARGET, NOOP_TARGET = 60.0, 10.0


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    import django

    django.setup()


def team_models(index: int) -> list[str]:
    return list(MODELS[: 2 + index % 3])


def config_text() -> str:
    """The benchmark's file, written as a person would (block style, one field a line)."""
    lines = ["catalog:"]
    lines += [f"  - name: {name}\n    input_cost_per_token: 0.0000025" for name in MODELS]
    lines.append("organizations:")
    lines += [
        f"  - alias: org-{o:02d}\n    models: [{', '.join(MODELS)}]\n    max_budget: 100000"
        for o in range(ORGANIZATIONS)
    ]
    lines.append("teams:")
    for t in range(TEAMS):
        models = team_models(t)
        lines.append(
            f"  - alias: team-{t:04d}\n    organization: org-{t % ORGANIZATIONS:02d}\n"
            f"    models: [{', '.join(models)}]\n    max_budget: 5000\n    rpm_limit: 6000\n"
            "    projects:"
        )
        for p in range(PROJECTS_PER_TEAM):
            lines.append(
                f"      - alias: project-{p:02d}\n        models: [{models[p % len(models)]}]\n"
                f"        max_budget: 100\n        budget_duration: 1mo\n        keys:\n"
                f"          - alias: key-{t:04d}-{p:02d}\n            max_budget: 10"
            )
    return "\n".join(lines) + "\n"


def empty_hierarchy() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE keys_virtualkey, projects_project, hierarchy_team, hierarchy_organization,"
            " hierarchy_catalogmodel, hierarchy_accessgroup, hierarchy_auditentry,"
            " spend_spendlog CASCADE"
        )


def counts() -> tuple[int, int, int]:
    from hierarchy.models import Team
    from keys.models import VirtualKey
    from projects.models import Project

    return Team.objects.count(), Project.objects.count(), VirtualKey.objects.count()


def timed_apply(path: Path, keys_out: Path | None) -> tuple[float, str]:
    from django.core.management import call_command

    out = io.StringIO()
    args = [str(path)] + (["--keys-out", str(keys_out)] if keys_out else [])
    started = time.perf_counter()
    call_command("apply", *args, stdout=out, stderr=io.StringIO())
    return time.perf_counter() - started, out.getvalue().strip()


def baseline() -> float:
    """The same objects through the services, one transaction per object."""
    from decimal import Decimal

    from hierarchy.actors import SYSTEM
    from hierarchy.services import catalog_model_create, organization_create, team_create
    from keys.services import key_generate
    from projects.services import project_create

    started = time.perf_counter()
    for name in MODELS:
        catalog_model_create(actor=SYSTEM, name=name, input_cost_per_token=Decimal("0.0000025"))
    organizations = [
        organization_create(
            actor=SYSTEM, alias=f"org-{o:02d}", models=list(MODELS), max_budget=100000
        )
        for o in range(ORGANIZATIONS)
    ]
    for t in range(TEAMS):
        models = team_models(t)
        team = team_create(
            actor=SYSTEM,
            alias=f"team-{t:04d}",
            organization=organizations[t % ORGANIZATIONS],
            models=models,
            max_budget=5000,
            rpm_limit=6000,
        )
        for p in range(PROJECTS_PER_TEAM):
            project = project_create(
                actor=SYSTEM,
                team=team,
                alias=f"project-{p:02d}",
                models=[models[p % len(models)]],
                max_budget=100,
                budget_duration="1mo",
            )
            key_generate(
                actor=SYSTEM, project=project, key_alias=f"key-{t:04d}-{p:02d}", max_budget=10
            )
        if (t + 1) % 100 == 0:
            elapsed = time.perf_counter() - started
            print(f"  baseline: {t + 1:,}/{TEAMS:,} teams ({elapsed:.0f} s)", flush=True)
    return time.perf_counter() - started


def rows_written() -> int:
    """Rows inserted, updated or deleted in this database so far (PostgreSQL's statistics,
    read after forcing this backend's pending counts out)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        )
        return int(cursor.fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-baseline", action="store_true", help="measure apply only")
    arguments = parser.parse_args()
    database_url = os.environ.get("BENCH_APPLY_DATABASE_URL", DEFAULT_DB)

    from bench.gateway import ensure_database

    ensure_database(database_url)
    setup_django(database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    empty_hierarchy()
    expected = (TEAMS, TEAMS * PROJECTS_PER_TEAM, TEAMS * PROJECTS_PER_TEAM)
    failures: list[str] = []

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gatehouse.yaml"
        path.write_text(config_text())
        keys_out = Path(folder) / "keys.csv"
        print(
            f"Applying {path.stat().st_size / 1e6:.1f} MB: {TEAMS:,} teams, "
            f"{expected[1]:,} projects, {expected[2]:,} keys ...",
            flush=True,
        )
        first, first_summary = timed_apply(path, keys_out)
        print(f"  {first_summary}", flush=True)
        if counts() != expected:
            failures.append(f"after apply: teams, projects, keys = {counts()}, not {expected}")
        if sum(1 for _ in keys_out.open()) != expected[2] + 1:
            failures.append("the keys file does not hold one line per new key")
        if keys_out.stat().st_mode & 0o077:
            failures.append("the keys file is readable by others")
        written_before = rows_written()
        again, again_summary = timed_apply(path, None)
        print(f"  {again_summary}", flush=True)
        if "0 created, 0 updated, 0 deleted" not in again_summary:
            failures.append("the re-apply was not a no-op")
        if rows_written() != written_before:
            failures.append("the re-apply wrote rows (PostgreSQL's counters moved)")

    base: float | None = None
    if not arguments.skip_baseline:
        empty_hierarchy()
        print("Baseline: the same objects through the services, one transaction each ...")
        base = baseline()
        if counts() != expected:
            failures.append(f"after the baseline: {counts()}, not {expected}")

    def ratio(value: float) -> str:
        return f"{base / value:.1f}x faster" if base else "-"

    base_text = f"{base:.1f} s" if base else "skipped"
    print()
    print("| measure | apply | target | baseline (services, one transaction each) | ratio |")
    print("|---|---|---|---|---|")
    rows = (
        ("21,015 objects created", first, APPLY_TARGET),
        ("same file again", again, NOOP_TARGET),
    )
    for name, seconds, target in rows:
        print(f"| {name} | {seconds:.1f} s | <= {target:.0f} s | {base_text} | {ratio(seconds)} |")
    print()
    checks = [
        (f"apply within {APPLY_TARGET:.0f} s", first <= APPLY_TARGET),
        (f"no-op re-apply within {NOOP_TARGET:.0f} s", again <= NOOP_TARGET),
        *((failure, False) for failure in failures),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
