"""Reports benchmark: ``python -m bench.reports`` (or ``make bench-reports``).

A dataset of 10M spend log rows on PostgreSQL (90 days; 10 organizations, 100 teams, 1,000
projects, 2,000 keys, 5 models), generated once into its own database and reused by later
runs, with its daily rollups. One Gatehouse server process (uvicorn, the production ASGI
entry) answers over HTTP. Each figure is the median of 20 requests, next to a baseline in
the same run: the same question asked of the raw log (SQL on ``spend_spendlog`` for the
report, offset pages with a COUNT for the log, the rows read whole into memory for the CSV).

Targets: month report for one project <= 50 ms; log page for one project over 30 days
<= 30 ms at page 1 and at a deep cursor; CSV export peak memory grows < 50 MB from 100k to
1M rows.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.gateway import ROOT, ensure_database, free_port, start, wait_for

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gatehouse_bench_reports"
ROWS = 10_000_000
DAYS = 90
ORGS, TEAMS, PROJECTS, KEYS = 10, 100, 1_000, 2_000
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-5-haiku", "o3-mini")
CHUNK = 1_000_000
MASTER_KEY = "sk-bench-reports-master-key-0123456789abcdef"
REPEAT = 20
DEEP_PAGES = 1_000
PAGE_SIZE = 50


def psql(database_url: str) -> Any:
    import psycopg

    return psycopg.connect(database_url, autocommit=True)


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SECRET_KEY": "bench-only"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def generate(database_url: str) -> date:
    """The dataset (unless a complete one is there already); returns its last day."""
    with psql(database_url) as conn:
        done = (
            conn.execute("SELECT to_regclass('bench_dataset') IS NOT NULL").fetchone()[0]
            and conn.execute("SELECT rows, last_day FROM bench_dataset").fetchone()
        )
        if done and done[0] == ROWS:
            print(f"Reusing the dataset: {done[0]:,} rows up to {done[1]}.", flush=True)
            return done[1]
        last_day = date.today() - timedelta(days=1)
        print(f"Generating {ROWS:,} spend log rows (once; reused by later runs) ...", flush=True)
        conn.execute("DROP TABLE IF EXISTS bench_dataset")
        conn.execute("TRUNCATE spend_spendlog, spend_dailyspend")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.monotonic()
        for first in range(0, ROWS, CHUNK):
            # Key k has project k / 2 (2 keys each), team k / 20, organization k / 200.
            conn.execute(
                """
                INSERT INTO spend_spendlog (
                    request_id, key_hash, key_id, project_id, team_id, organization_id,
                    user_id, model, call_type, prompt_tokens, completion_tokens, total_tokens,
                    cost, status, http_status, stream, latency_ms, started_at, ended_at)
                SELECT 'bench-' || i, '', 'key-' || k, 'project-' || (k / 2),
                    'team-' || (k / 20), 'org-' || (k / 200), '', (%(models)s::text[])[1 + i %% 5],
                    'chat.completions', 100 + i %% 900, 10 + i %% 300,
                    110 + i %% 900 + i %% 300, (i %% 9000) * 0.000001,
                    CASE WHEN i %% 50 = 0 THEN 'failure' ELSE 'success' END,
                    CASE WHEN i %% 50 = 0 THEN 502 ELSE 200 END, false, 100,
                    at, at + interval '200 milliseconds'
                FROM (
                    SELECT i,
                        -- a fifth of the calls come from project-0's two keys (the hot one)
                        CASE WHEN i %% 10 < 2 THEN i %% 2 ELSE i %% %(keys)s END AS k,
                        %(end)s::timestamptz
                        - (interval '1 second' * ((i::bigint * 7919) %% (%(days)s * 86400)))
                        - interval '1 second' AS at
                    FROM generate_series(%(first)s, %(last)s) AS i
                ) AS rows
                """,
                {
                    "keys": KEYS,
                    "models": list(MODELS),
                    "end": f"{last_day + timedelta(days=1)}T00:00:00+00:00",
                    "days": DAYS,
                    "first": first,
                    "last": min(first + CHUNK, ROWS) - 1,
                },
            )
            print(f"  {first + CHUNK:>10,} rows  ({time.monotonic() - started:.0f} s)", flush=True)
        print("  rollups ...", flush=True)
        conn.execute(
            """
            INSERT INTO spend_dailyspend (day, organization_id, team_id, project_id, key_id,
                model, requests_ok, requests_failed, prompt_tokens, completion_tokens, spend)
            SELECT (started_at AT TIME ZONE 'UTC')::date, organization_id, team_id, project_id,
                key_id, model, count(*) FILTER (WHERE status = 'success'),
                count(*) FILTER (WHERE status = 'failure'), sum(prompt_tokens),
                sum(completion_tokens), sum(cost)
            FROM spend_spendlog GROUP BY 1, 2, 3, 4, 5, 6
            """
        )
        conn.execute("VACUUM ANALYZE spend_spendlog")
        conn.execute("VACUUM ANALYZE spend_dailyspend")
        conn.execute("CREATE TABLE bench_dataset (rows bigint, last_day date)")
        conn.execute("INSERT INTO bench_dataset VALUES (%s, %s)", [ROWS, last_day])
        print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
        return last_day


class Server:
    """One uvicorn process serving Gatehouse on the bench database."""

    def __init__(self, database_url: str, folder: Path, name: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            "DJANGO_SECRET_KEY": "bench-only",
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "GATEHOUSE_MASTER_KEY": MASTER_KEY,
            "GATEHOUSE_TIMEZONE": "UTC",
        }
        command = [sys.executable, "-m", "uvicorn", "--no-access-log", "--port", str(self.port)]
        self.process = start([*command, "config.asgi:application"], env, folder / f"{name}.log")
        wait_for(f"http://127.0.0.1:{self.port}/health/liveliness")
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def get(self, path: str, *, key: str = MASTER_KEY, **params: Any) -> bytes:
        response = self.open(path, key=key, **params)
        return response.read()

    def open(self, path: str, *, key: str = MASTER_KEY, **params: Any) -> http.client.HTTPResponse:
        query = urllib.parse.urlencode(params)
        url = f"{path}?{query}" if query else path
        try:
            self.connection.request("GET", url, headers={"Authorization": f"Bearer {key}"})
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # The server closed an idle keep-alive connection (uvicorn: after 5 s): reconnect.
            self.connection.close()
            self.connection.request("GET", url, headers={"Authorization": f"Bearer {key}"})
            response = self.connection.getresponse()
        if response.status != 200:
            body = response.read()
            raise SystemExit(f"bench: GET {url} answered {response.status}: {body[:300]!r}")
        return response

    def count_lines(self, path: str, **params: Any) -> int:
        """Reads a streamed answer in blocks, counting its lines."""
        response, lines = self.open(path, **params), 0
        while block := response.read(1 << 16):
            lines += block.count(b"\n")
        return lines

    def peak_rss_mb(self) -> float:
        """The process's resident memory high-water mark (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("bench: no VmHWM")

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.wait(timeout=30)


TEAM_ADMIN_TEAM = "team-42"  # a typical team: about 0.8% of the calls


def team_admin_key(database_url: str) -> str:
    """A user who administers ``TEAM_ADMIN_TEAM`` (and holds a personal key): the scoped
    path of every read, as a team's own tooling would call it. Made through the services."""
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SECRET_KEY="bench-only",
        DJANGO_SETTINGS_MODULE="config.settings.base",
    )
    import django

    django.setup()
    from hierarchy.actors import SYSTEM
    from hierarchy.models import Organization, Team, TeamRole, User
    from hierarchy.services import organization_create, team_create, team_member_set, user_create
    from keys.services import key_generate

    org_id = f"org-{int(TEAM_ADMIN_TEAM.split('-')[1]) // 10}"
    organization = Organization.objects.filter(pk=org_id).first() or organization_create(
        actor=SYSTEM, id=org_id, alias=org_id
    )
    team = Team.objects.filter(pk=TEAM_ADMIN_TEAM).first() or team_create(
        actor=SYSTEM, id=TEAM_ADMIN_TEAM, alias=TEAM_ADMIN_TEAM, organization=organization
    )
    user = User.objects.filter(username="bench-team-admin").first() or user_create(
        actor=SYSTEM, username="bench-team-admin", email="bench-team-admin@example.com"
    )
    team_member_set(actor=SYSTEM, team=team, user=user, role=TeamRole.ADMIN)
    _, plaintext = key_generate(actor=SYSTEM, user=user)
    return plaintext


def timed(function: Callable[[], Any], repeat: int = REPEAT) -> float:
    """Median wall time of ``function`` in milliseconds (after one warm-up call)."""
    function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def sql_timer(conn: Any, sql: str, params: Any) -> Callable[[], Any]:
    return lambda: conn.execute(sql, params).fetchall()


def full_page(body: bytes) -> None:
    """A page the timings counted holds ``PAGE_SIZE`` rows (not an empty, fast answer)."""
    if len(json.loads(body)["results"]) != PAGE_SIZE:
        raise SystemExit("bench: a log page is not full")


def deep_cursor(server: Server, params: dict[str, Any]) -> str:
    """The cursor of page ``DEEP_PAGES``, reached by following ``next`` like a client."""
    body = server.get("/api/v1/spend/logs/", **params)
    for _ in range(DEEP_PAGES - 1):
        following = json.loads(body)["next"]
        if not following:
            raise SystemExit("bench: the project has fewer pages than DEEP_PAGES")
        cursor = urllib.parse.parse_qs(urllib.parse.urlparse(following).query)["cursor"][0]
        body = server.get("/api/v1/spend/logs/", **params, cursor=cursor)
    following = json.loads(body)["next"]
    return urllib.parse.parse_qs(urllib.parse.urlparse(following).query)["cursor"][0]


def export_growth(database_url: str, folder: Path, params_small: dict, params_big: dict) -> Any:
    """Peak server memory growth (MB) from the small to the big export, each on a fresh
    server after one small warm-up request; and the rows of each."""
    results = []
    for name, params in (("small", params_small), ("big", params_big)):
        server = Server(database_url, folder, f"export-{name}")
        try:
            server.get("/api/v1/spend/logs/", page_size=1)
            before = server.peak_rss_mb()
            started = time.perf_counter()
            rows = server.count_lines("/api/v1/spend/logs/export/", **params) - 1
            seconds = time.perf_counter() - started
            results.append((rows, server.peak_rss_mb() - before, seconds))
        finally:
            server.stop()
    return results


BASELINE_EXPORT = """
import os, sys, csv, io, django
django.setup()
from spend.api import LOG_FIELDS
from spend.models import SpendLog
def hwm():
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
before = hwm()
rows = list(SpendLog.objects.filter(started_at__gte=sys.argv[1], started_at__lt=sys.argv[2])
    .order_by("-started_at", "-id").values_list(*LOG_FIELDS))
out = io.StringIO()
csv.writer(out).writerows(rows)
print(len(rows), hwm() - before)
"""


def baseline_export(database_url: str, start: date, end: date) -> tuple[int, float]:
    """Rows and peak memory growth (MB) of reading the rows whole, then writing the CSV."""
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SECRET_KEY": "bench-only"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    out = subprocess.run(
        [sys.executable, "-c", BASELINE_EXPORT, f"{start}T00:00:00Z", f"{end}T00:00:00Z"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), float(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    database_url = os.environ.get("BENCH_REPORTS_DATABASE_URL", DEFAULT_DB)
    ensure_database(database_url)
    migrate(database_url)
    last_day = generate(database_url)
    month_start = last_day - timedelta(days=29)
    project = "project-0"  # the hot project: about 670k calls in the month
    folder = Path(tempfile.mkdtemp(prefix="gatehouse-bench-reports-"))
    table: list[tuple[str, float, str, float, str]] = []
    team_key = team_admin_key(database_url)
    server = Server(database_url, folder, "server")
    try:
        with psql(database_url) as conn:
            logs: dict[str, Any] = {
                "project_id": project,
                "start_date": month_start,
                "end_date": last_day,
            }

            def report() -> bytes:
                return server.get(
                    "/api/v1/spend/report/",
                    group_by="day",
                    project_id=project,
                    start_date=month_start,
                    end_date=last_day,
                )

            report_ms = timed(report)
            bounds = (f"{month_start}T00:00:00Z", f"{last_day + timedelta(days=1)}T00:00:00Z")
            raw_report = sql_timer(
                conn,
                "SELECT (started_at AT TIME ZONE 'UTC')::date, count(*) FILTER (WHERE "
                "status = 'success'), count(*) FILTER (WHERE status = 'failure'), "
                "sum(prompt_tokens), sum(completion_tokens), sum(cost) FROM spend_spendlog "
                "WHERE project_id = %s AND started_at >= %s AND started_at < %s "
                "GROUP BY 1 ORDER BY 1",
                [project, *bounds],
            )
            report_raw_ms = timed(raw_report)
            # The fast answer is the right one: the report's days equal the raw log's.
            answered = json.loads(report(), parse_float=Decimal)["results"]
            expected = [
                (str(day), ok, failed, prompt, completion, cost)
                for day, ok, failed, prompt, completion, cost in raw_report()
            ]
            got = [
                (
                    r["day"],
                    r["requests_ok"],
                    r["requests_failed"],
                    r["prompt_tokens"],
                    r["completion_tokens"],
                    r["spend"],
                )
                for r in answered
            ]
            if got != expected:
                raise SystemExit("bench: the report differs from the raw log")
            table.append(
                (
                    "month report, 1 project",
                    report_ms,
                    "HTTP, rollups",
                    report_raw_ms,
                    "SQL GROUP BY on the raw log",
                )
            )

            page_sql = (
                "SELECT * FROM spend_spendlog WHERE project_id = %s AND started_at >= %s "
                "AND started_at < %s ORDER BY started_at DESC, id DESC LIMIT %s OFFSET %s"
            )
            count_sql = (
                "SELECT count(*) FROM spend_spendlog WHERE project_id = %s "
                "AND started_at >= %s AND started_at < %s"
            )

            def offset_page(offset: int) -> Callable[[], Any]:
                def run() -> None:
                    conn.execute(count_sql, [project, *bounds]).fetchall()
                    conn.execute(page_sql, [project, *bounds, PAGE_SIZE, offset]).fetchall()

                return run

            page1_ms = timed(lambda: server.get("/api/v1/spend/logs/", **logs))
            full_page(server.get("/api/v1/spend/logs/", **logs))
            table.append(
                (
                    "log page 1, 1 project, 30 days",
                    page1_ms,
                    "HTTP, cursor",
                    timed(offset_page(0)),
                    "SQL COUNT + OFFSET 0",
                )
            )
            cursor = deep_cursor(server, logs)
            deep_ms = timed(lambda: server.get("/api/v1/spend/logs/", **logs, cursor=cursor))
            full_page(server.get("/api/v1/spend/logs/", **logs, cursor=cursor))
            deep_offset = DEEP_PAGES * PAGE_SIZE
            table.append(
                (
                    f"log page {DEEP_PAGES + 1} (row {deep_offset:,})",
                    deep_ms,
                    "HTTP, cursor",
                    timed(offset_page(deep_offset)),
                    f"SQL COUNT + OFFSET {deep_offset:,}",
                )
            )
            # The scoped path: a team admin's own tooling, no filter but the dates.
            month = {"start_date": month_start, "end_date": last_day}
            team_page_ms = timed(lambda: server.get("/api/v1/spend/logs/", key=team_key, **month))
            team_where = "WHERE team_id = %s AND started_at >= %s AND started_at < %s"
            team_params = [TEAM_ADMIN_TEAM, *bounds]

            def team_page_sql() -> None:
                conn.execute(f"SELECT count(*) FROM spend_spendlog {team_where}", team_params)
                conn.execute(
                    f"SELECT * FROM spend_spendlog {team_where} "
                    "ORDER BY started_at DESC, id DESC LIMIT 50",
                    team_params,
                ).fetchall()

            table.append(
                (
                    f"team admin: log page 1 of {TEAM_ADMIN_TEAM}, 30 days",
                    team_page_ms,
                    "HTTP, scoped cursor",
                    timed(team_page_sql),
                    "SQL COUNT + page",
                )
            )
            team_report_ms = timed(
                lambda: server.get(
                    "/api/v1/spend/report/", key=team_key, group_by="project", **month
                )
            )
            team_report_sql = (
                f"SELECT project_id, sum(cost) FROM spend_spendlog {team_where} GROUP BY 1"
            )
            table.append(
                (
                    f"team admin: month report by project of {TEAM_ADMIN_TEAM}",
                    team_report_ms,
                    "HTTP, scoped rollups",
                    timed(sql_timer(conn, team_report_sql, team_params)),
                    "SQL GROUP BY on the raw log",
                )
            )
    finally:
        server.stop()

    # All calls of 1 day (about 111k rows) and of 9 days (about 1M rows).
    end = last_day + timedelta(days=1)
    small_start, big_start = last_day, last_day - timedelta(days=8)
    small = {"start_date": small_start, "end_date": last_day}
    big = {"start_date": big_start, "end_date": last_day}
    (small_rows, small_mb, small_s), (big_rows, big_mb, big_s) = export_growth(
        database_url, folder, small, big
    )
    base_small_rows, base_small_mb = baseline_export(database_url, small_start, end)
    base_big_rows, base_big_mb = baseline_export(database_url, big_start, end)
    assert (base_small_rows, base_big_rows) == (small_rows, big_rows), "exports differ"
    assert 90_000 < small_rows < 150_000 and 900_000 < big_rows < 1_200_000, "export sizes"

    print()
    print(
        f"Dataset: {ROWS:,} spend log rows over {DAYS} days up to {last_day}; medians of {REPEAT}."
    )
    print()
    print("| measure | Gatehouse | how | baseline | how | ratio |")
    print("|---|---|---|---|---|---|")
    for name, ours, how, base, base_how in table:
        print(
            f"| {name} | {ours:.1f} ms | {how} | {base:.1f} ms | {base_how} | "
            f"{base / ours:.1f}x faster |"
        )
    growth, base_growth = big_mb - small_mb, base_big_mb - base_small_mb
    print(
        f"| CSV export peak memory, {small_rows:,} rows | +{small_mb:.1f} MB | streamed "
        f"({small_rows / small_s:,.0f} rows/s) | +{base_small_mb:.1f} MB | read whole | |"
    )
    print(
        f"| CSV export peak memory, {big_rows:,} rows | +{big_mb:.1f} MB | streamed "
        f"({big_rows / big_s:,.0f} rows/s) | +{base_big_mb:.1f} MB | read whole | |"
    )
    print(f"| growth 100k -> 1M rows | {growth:+.1f} MB | | {base_growth:+.1f} MB | | |")
    print()
    checks = [
        ("month report <= 50 ms", table[0][1] <= 50),
        ("log page 1 <= 30 ms", table[1][1] <= 30),
        ("deep log page <= 30 ms", table[2][1] <= 30),
        ("export memory growth < 50 MB", growth < 50),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
