"""Gateway benchmark: ``python -m bench.gateway`` (or ``make bench-gateway``).

Full enforcement on PostgreSQL + Redis, one gateway worker, the fake upstream. Beside it, in
the same run: the fake upstream called directly and a bare aiohttp proxy hop (the floor for
a Python proxy). ``wrk -t1 -c50`` and ``-c1``, median of 3 runs each (the targets taking
turns), with one hot key and with 1,000 keys. Fails on any non-2xx answer or if the spend
rows written after the final flush differ from the gateway's count of 2xx answers.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gatehouse_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
BODY = (
    '{"model":"bench-model","messages":[{"role":"user","content":"Hello there, how are you?"}],'
    '"max_tokens":16}'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not come up")


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"bench: nothing listens on port {port}")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def find_processes(*, named: str = "", parent: int = 0) -> list[int]:
    """Processes whose command line starts with ``named``, or whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if (named and command.startswith(named)) or (parent and ppid == parent):
            found.append(int(entry.name))
    return found


Groups = dict[str, Callable[[], list[int]]]  # a column of the CPU table → its processes now


def cpu_sample(groups: Groups) -> dict[str, float]:
    """CPU seconds used so far per group of processes, and by the children waited for (wrk)."""
    sample = {name: sum(cpu_seconds(pid) for pid in find()) for name, find in groups.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample["wrk"] = children.ru_utime + children.ru_stime
    return sample


def setup_django(database_url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def make_world(upstream_url: str, key_count: int) -> list[str]:
    """A fresh catalog, organization, team and project, and ``key_count`` keys (plaintexts)."""
    from django.core.management import call_command
    from django.db import connection

    from hierarchy.actors import SYSTEM
    from hierarchy.models import AccessGroup, CatalogModel, Organization, Team
    from hierarchy.services import organization_create, team_create
    from keys.models import VirtualKey
    from keys.services import key_generate
    from projects.models import Project
    from projects.services import project_create
    from spend.models import BudgetAlert, DailySpend, SpendLog

    call_command("migrate", verbosity=0)
    # Emptied, not deleted row by row: a table left bloated by earlier runs would make every
    # insert of this run slower (new rows scattered over the dead rows' pages).
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {SpendLog._meta.db_table}, {DailySpend._meta.db_table}, "
            f"{BudgetAlert._meta.db_table}"
        )
    VirtualKey.objects.all().delete()
    Project.objects.all().delete()
    Team.objects.all().delete()
    Organization.objects.all().delete()
    AccessGroup.objects.all().delete()
    CatalogModel.objects.filter(name="bench-model").delete()
    CatalogModel.objects.create(
        name="bench-model",
        provider="openai",
        upstream_model="gpt-4o",
        api_base=upstream_url,
        input_cost_per_token="0.0000025",
        output_cost_per_token="0.00001",
    )
    roomy: dict[str, Any] = {"max_budget": "1000000", "rpm_limit": 10**8, "tpm_limit": 10**11}
    organization = organization_create(actor=SYSTEM, alias="bench", **roomy)
    team = team_create(actor=SYSTEM, alias="bench", organization=organization, **roomy)
    project = project_create(actor=SYSTEM, team=team, alias="bench", max_budget="1000000")
    plaintexts = []
    for i in range(key_count):
        _, plaintext = key_generate(
            actor=SYSTEM,
            project=project,
            key_alias=f"bench-{i}",
            max_budget="100000",
            rpm_limit=10**7,
            tpm_limit=10**10,
        )
        plaintexts.append(plaintext)
        if (i + 1) % 250 == 0:
            print(f"  keys: {i + 1}/{key_count}", flush=True)
    return plaintexts


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Run:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            raise SystemExit(f"bench: cannot read wrk output:\n{output}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    if errors:
        print(f"  wrk: {errors.group(0)}")
    return Run(rps, latency("50"), latency("99"), requests, int(non.group(1)) if non else 0)


def wrk(url: str, script: Path, connections: int, seconds: int, groups: Groups) -> Run:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    before = cpu_sample(groups)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = cpu_sample(groups)
    run = parse_wrk(output)
    run.cpu = {name: after[name] - before[name] for name in after}
    return run


def wrk_script(keys: list[str], folder: Path, name: str) -> Path:
    keyfile = folder / f"{name}.keys"
    keyfile.write_text("\n".join(keys) + "\n")
    script = folder / f"{name}.lua"
    script.write_text(
        f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
local keys = {{}}
for line in io.lines("{keyfile}") do keys[#keys + 1] = "Bearer " .. line end
local i = 0
request = function()
  i = i + 1
  wrk.headers["Authorization"] = keys[(i % #keys) + 1]
  return wrk.format()
end
"""
    )
    return script


def median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.requests for r in runs),
        sum(r.non_2xx for r in runs),
        {name: sum(r.cpu[name] for r in runs) for name in runs[0].cpu},
    )


Target = tuple[str, str, Path, Groups]  # name, URL, wrk script, processes to account


def interleaved_runs(
    targets: list[Target], connections: int, seconds: int, repeat: int
) -> dict[str, Run]:
    """Median of ``repeat`` runs per target, the targets taking turns in each round, so that a
    machine that speeds up or slows down during the benchmark weighs on all of them alike."""
    for _, url, script, groups in targets:
        wrk(url, script, connections, 2, groups)  # warm-up, not counted
    runs: dict[str, list[Run]] = {name: [] for name, _, _, _ in targets}
    for round_ in range(1, repeat + 1):
        print(f"  wrk -c{connections}, round {round_}/{repeat} ...", flush=True)
        for name, url, script, groups in targets:
            runs[name].append(wrk(url, script, connections, seconds, groups))
    return {name: median(found) for name, found in runs.items()}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def served_2xx(metrics_url: str, timeout: float = 30) -> int:
    """The gateway's count of 2xx answers, once the calls wrk left behind have finished."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
        in_flight = re.search(r"^gatehouse_calls_in_flight (\d+)$", text, re.M)
        if (in_flight and in_flight.group(1) == "0") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return sum(
        int(n)
        for s, n in re.findall(r'gatehouse_calls_total\{status="(\d+)"\} (\d+)', text)
        if s.startswith("2")
    )


CPU_COLUMNS = ("server", "spend writer", "Redis", "PostgreSQL", "fake upstream", "wrk")


def print_cpu_table(runs: list[tuple[str, Run]]) -> None:
    """CPU time per call at 50 connections, per process: steadier than req/s on a machine
    whose speed drifts, and it shows where a call's cost goes (all share the same cores)."""
    print("\nCPU per call at 50 connections, microseconds (all runs of a target together)")
    header = f"| {'target':<24} |" + "".join(f" {c:>13} |" for c in (*CPU_COLUMNS, "total"))
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, run in runs:
        per_call = [run.cpu.get(column, 0.0) / run.requests * 1e6 for column in CPU_COLUMNS]
        cells = "".join(f" {value:>13.0f} |" for value in (*per_call, sum(per_call)))
        print(f"| {name:<24} |{cells}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    ensure_database(database_url)
    setup_django(database_url, redis_url)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    folder = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    python = sys.executable
    uvicorn = [
        python,
        "-m",
        "uvicorn",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    upstream_port, hop_port, gateway_port = free_port(), free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    processes = []
    try:
        processes.append(
            start([python, "-m", "bench.fake_openai", str(upstream_port)], env, folder / "up.log")
        )
        wait_for(f"{upstream_url}/stats")
        print(f"Setting up {args.keys} keys on {database_url} ...", flush=True)
        keys = make_world(upstream_url, args.keys)
        from spend.models import SpendLog

        hop_env = {**env, "UPSTREAM_URL": upstream_url}
        processes.append(
            start(
                [*uvicorn, "--port", str(hop_port), "bench.bare_hop:app"],
                hop_env,
                folder / "hop.log",
            )
        )
        gateway = start(
            [*uvicorn, "--port", str(gateway_port), "--workers", "1", "config.asgi:application"],
            env,
            folder / "gateway.log",
        )
        processes.append(gateway)
        wait_for_port(hop_port)
        wait_for(f"http://127.0.0.1:{gateway_port}/health/liveliness")
        hot = wrk_script(keys[:1], folder, "hot")
        spread = wrk_script(keys, folder, "many")
        upstream, hop = processes[0].pid, processes[1].pid
        shared: Groups = {
            "Redis": lambda: find_processes(named="redis-server"),
            "PostgreSQL": lambda: find_processes(named="postgres"),
            "fake upstream": lambda: [upstream],
        }
        gateway_groups: Groups = {
            "server": lambda: [gateway.pid],
            "spend writer": lambda: find_processes(parent=gateway.pid),
            **shared,
        }
        gateway_url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
        targets: list[Target] = [
            ("fake upstream, direct", f"{upstream_url}/chat/completions", hot, shared),
            (
                "bare aiohttp hop",
                f"http://127.0.0.1:{hop_port}/",
                hot,
                {"server": lambda: [hop], **shared},
            ),
            ("gateway, 1 hot key", gateway_url, hot, gateway_groups),
            (f"gateway, {args.keys} keys", gateway_url, spread, gateway_groups),
        ]
        results: dict[tuple[str, int], Run] = {}
        for connections in (50, 1):
            medians = interleaved_runs(targets, connections, args.seconds, args.repeat)
            results.update({(name, connections): run for name, run in medians.items()})
        expected = served_2xx(f"http://127.0.0.1:{gateway_port}/health/metrics")
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
        rows = SpendLog.objects.count()
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)

    direct1 = results[(targets[0][0], 1)]
    hop50, hop1 = results[(targets[1][0], 50)], results[(targets[1][0], 1)]
    print()
    print(f"Gateway benchmark: median of {args.repeat} x {args.seconds}s, wrk -t1, one worker")
    header = f"| {'target':<24} | {'req/s @50':>9} | {'p50 @50':>8} | {'p99 @50':>8} | "
    header += f"{'x bare hop':>10} | {'p50 @1':>7} | {'added p50 @1':>12} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    failures: list[str] = []
    for name, _, _, _ in targets:
        many, one = results[(name, 50)], results[(name, 1)]
        added = one.p50_ms - direct1.p50_ms
        print(
            f"| {name:<24} | {many.rps:>9.0f} | {many.p50_ms:>6.2f}ms | {many.p99_ms:>6.2f}ms | "
            f"{many.rps / hop50.rps:>10.2f} | {one.p50_ms:>5.2f}ms | {added:>10.3f}ms |"
        )
        if many.non_2xx or one.non_2xx:
            failures.append(f"{name}: {many.non_2xx + one.non_2xx} non-2xx answers")
    hop_added = hop1.p50_ms - direct1.p50_ms
    print_cpu_table([(name, results[(name, 50)]) for name, _, _, _ in targets])
    print(f"\nSpend rows after the final flush: {rows}; gateway 2xx answers: {expected}")
    if rows != expected:
        failures.append(f"spend rows {rows} != 2xx answers {expected}")
    print("\nTargets (gateway at 50 connections, the worse of the two key variants):")
    gateway_runs = [results[(t[0], 50)] for t in targets[2:]]
    gateway_ones = [results[(t[0], 1)] for t in targets[2:]]
    worst_rps = min(r.rps for r in gateway_runs)
    worst_added = max(r.p50_ms for r in gateway_ones) - direct1.p50_ms
    worst_tail = max(r.p99_ms / r.p50_ms for r in gateway_runs)
    checks = [
        (f"req/s >= 4000: {worst_rps:.0f}", worst_rps >= 4000),
        (f"req/s >= 0.7 x bare hop: {worst_rps / hop50.rps:.2f}", worst_rps >= 0.7 * hop50.rps),
        (f"added p50 @1 <= 0.6 ms: {worst_added:.3f} ms", worst_added <= 0.6),
        (
            f"added p50 @1 <= bare hop's + 0.2 ms: {worst_added:.3f} <= {hop_added + 0.2:.3f}",
            worst_added <= hop_added + 0.2,
        ),
        (f"p99 @50 <= 2.5 x p50: {worst_tail:.2f}x", worst_tail <= 2.5),
    ]
    for label, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
