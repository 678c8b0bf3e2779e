"""Live gateway processes for tests: uvicorn subprocesses on the test database, a Redis
server of their own (so it can be killed), and the fake OpenAI upstream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from django.db import connection

from bench.fake_openai import FakeOpenAIThread
from hierarchy.actors import SYSTEM
from hierarchy.models import CatalogModel
from hierarchy.services import organization_create, team_create
from keys.services import key_generate
from projects.services import project_create
from tests.servers import RedisServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-test-master-key-0123456789abcdef"


def database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


class Gateway:
    """One gateway server process (the whole ASGI app, as in production)."""

    def __init__(self, redis_url: str = "", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,
            "GATEHOUSE_MASTER_KEY": MASTER_KEY,
            "GATEHOUSE_SPEND_FLUSH_INTERVAL": "0.1",
            **env,
        }
        (ROOT / "var").mkdir(exist_ok=True)
        self.log = open(ROOT / "var" / f"gateway-test-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--lifespan",
                "on",
                "--timeout-graceful-shutdown",
                "20",
            ],
            cwd=ROOT,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited: {self.output()}")
            try:
                return self.client.get("/health/liveliness").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 30)

    def output(self) -> str:
        self.log.flush()
        return (ROOT / "var" / f"gateway-test-{self.port}.log").read_text(errors="replace")

    def chat(self, key: str, model: str = "gpt-4o", **body: Any) -> httpx.Response:
        payload = {"model": model, "messages": [{"role": "user", "content": "Hello there"}]}
        return self.client.post(
            "/v1/chat/completions",
            json={**payload, **body},
            headers={"Authorization": f"Bearer {key}"},
        )

    def stream_chat(self, key: str, model: str) -> Any:
        """A streamed chat call, to read with ``iter_bytes`` / ``iter_lines`` in a ``with``."""
        return self.client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.terminate()
        self.log.close()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeOpenAIThread]:
    server = FakeOpenAIThread()
    yield server
    server.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


@pytest.fixture
def start_gateway(transactional_db: None) -> Iterator[Any]:
    started: list[Gateway] = []

    def start(redis_url: str = "", **env: str) -> Gateway:
        gateway = Gateway(redis_url, **env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@dataclass
class World:
    """A small company: organization > team > project > key, and the catalog."""

    organization: Any
    team: Any
    project: Any
    key: Any
    plaintext: str

    def new_key(self, **governance: Any) -> tuple[Any, str]:
        return key_generate(actor=SYSTEM, project=self.project, **governance)


def make_catalog(upstream_url: str) -> None:
    prices = {
        "input_cost_per_token": Decimal("0.0000025"),
        "output_cost_per_token": Decimal("0.00001"),
    }
    for name in ("gpt-4o", "gpt-4o-mini", "openaix/gpt-5"):
        CatalogModel.objects.create(name=name, provider="mock", **prices)
    CatalogModel.objects.create(
        name="text-embedding-3-small",
        provider="mock",
        mode="embedding",
        input_cost_per_token=Decimal("0.00000002"),
    )
    upstream = {"provider": "openai", "api_base": upstream_url, "api_key_env": "FAKE_OPENAI_KEY"}
    CatalogModel.objects.create(
        name="openai/gpt-4.1", upstream_model="gpt-4.1", **upstream, **prices
    )
    CatalogModel.objects.create(
        name="fake-no-usage", upstream_model="no-usage", **upstream, **prices
    )
    CatalogModel.objects.create(
        name="fake-slow", upstream_model="slow-no-usage", **upstream, **prices
    )
    CatalogModel.objects.create(name="fake-error", upstream_model="error", **upstream, **prices)
    CatalogModel.objects.create(
        name="fake-embedding",
        upstream_model="embed",
        mode="embedding",
        **upstream,
        input_cost_per_token=Decimal("0.0000001"),
    )


@pytest.fixture
def world(transactional_db: None, fake_upstream: FakeOpenAIThread) -> World:
    make_catalog(fake_upstream.url)
    organization = organization_create(actor=SYSTEM, alias="Acme")
    team = team_create(actor=SYSTEM, alias="Search", organization=organization)
    project = project_create(actor=SYSTEM, team=team, alias="assistant")
    key, plaintext = key_generate(actor=SYSTEM, project=project, key_alias="app-key")
    return World(organization, team, project, key, plaintext)
