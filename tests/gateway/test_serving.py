"""The README's production command: several worker processes on one port, sharing Redis, and
a SIGTERM that stops them all without losing a spend row."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import httpx2 as httpx

from spend.models import SpendLog
from tests.gateway.conftest import MASTER_KEY, ROOT, database_url, free_port, wait_until
from tests.gateway.test_shared_counters import burst

REQUEST_ID_PREFIX = 20  # hex characters of a process's random request-id prefix


def readme_production_command(port: int, workers: int) -> list[str]:
    """The command of the README's Production section, on a test port."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Production", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    words = words[words.index(".venv/bin/uvicorn") + 1 :]  # after the environment settings
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--workers", workers)):
        words[words.index(flag) + 1] = str(value)
    return [sys.executable, "-m", "uvicorn", *words]


def test_the_production_command_serves_from_several_workers_on_one_port(
    world, redis_server, tmp_path
):
    port = free_port()
    command = readme_production_command(port, workers=2)
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_server.url,
        "GATEHOUSE_MASTER_KEY": MASTER_KEY,
    }
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def both_ready() -> bool:
            assert server.poll() is None, log.read_text()
            return log.read_text().count("Application startup complete.") == 2

        wait_until(both_ready, 60)
        statuses: list[int] = []
        workers: set[str] = set()

        def served_by_both() -> bool:
            for response in burst([url], world.plaintext, 20):
                statuses.append(response.status_code)
                workers.add(response.headers["x-request-id"][:REQUEST_ID_PREFIX])
            return len(workers) == 2

        wait_until(served_by_both, 60, interval=0)
        ready = httpx.get(f"{url}/health/readiness", timeout=10).json()
        assert ready == {"status": "healthy", "db": "connected", "cache": "redis connected"}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            stopped = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert stopped in (0, -signal.SIGTERM), log.read_text()
    assert log.read_text().count("Application shutdown complete.") == 2
    assert set(statuses) == {200}
    assert SpendLog.objects.count() == len(statuses)
