"""What a gateway process keeps between requests: the configuration snapshot, the counters,
the upstream connection pool and the spend writer. Started by the ASGI lifespan (or by the
first request), stopped on shutdown with a final flush so that SIGTERM loses nothing.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import hashlib
import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings

from gateway.counters import LocalCounters, RedisCounters
from gateway.providers import MockProvider, OpenAIProvider
from gateway.snapshot import Snapshot, load_snapshot
from gateway.upstream_http import UpstreamPool
from hierarchy import changes
from spend.services import CallRecord, spend_record_batch

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 0.25  # configuration changes reach every process well within 1 s
EMBEDDED_RELOAD_INTERVAL = 1.0  # no Redis to announce changes: re-read every second
SAFETY_RELOAD_INTERVAL = 30.0
BATCH_LIMIT = 5000  # spend rows per transaction
ISOLATE_AFTER_FAILURES = 3  # then write row by row to find the row the database refuses


def _database_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ORM work in one of the gateway's own threads. The thread keeps its connection
    between calls (opening one per batch costs the database a process); a failed call
    drops it, so the next call reconnects."""
    from django.db import connection

    try:
        return function(*args, **kwargs)
    except Exception:
        connection.close()
        raise


def _database_reachable() -> bool:
    from django.db import connection

    try:
        _database_call(lambda: connection.ensure_connection())
        return True
    except Exception:
        return False


class SpendWriter:
    """Writes finished calls in batches from a thread of its own, off the request path."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.queue: collections.deque[CallRecord] = collections.deque()
        self.wake = threading.Event()
        self.stopping = False
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name="gatehouse-spend", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def add(self, record: CallRecord) -> None:
        self.queue.append(record)  # deque.append is atomic: no lock on the request path

    def _take(self, limit: int = BATCH_LIMIT) -> list[CallRecord]:
        batch: list[CallRecord] = []
        try:
            while len(batch) < limit:
                batch.append(self.queue.popleft())
        except IndexError:
            pass
        return batch

    def _write(self, batch: list[CallRecord]) -> bool:
        """Write a batch; after repeated failures, row by row, so that one row the database
        refuses (logged with its request id, then dropped) cannot hold back the rest."""
        try:
            _database_call(spend_record_batch, records=batch)
            self.failures = 0
            return True
        except Exception:
            self.failures += 1
            logger.exception(
                "Could not write %d spend log rows (try %d).", len(batch), self.failures
            )
        if self.failures < ISOLATE_AFTER_FAILURES:
            return False
        for record in batch:
            try:
                _database_call(spend_record_batch, records=[record])
            except Exception:
                if not _database_reachable():
                    return False  # the database is down, not this row: keep everything
                logger.exception(
                    "Dropped spend log row %s: refused by the database.", record.request_id
                )
                self.dropped += 1
        self.failures = 0
        return True

    def _run(self) -> None:
        """One batch per interval (more only when a batch is full): rows arriving during a
        write wait for the next tick instead of turning the thread into a busy loop."""
        delay = self.interval
        while True:
            self.wake.wait(delay)
            self.wake.clear()
            stopping = self.stopping
            failed = False
            while self.queue:
                batch = self._take()
                if not self._write(batch):
                    self.queue.extendleft(reversed(batch))
                    failed = True
                    break
                self.written += len(batch)
                if len(batch) < BATCH_LIMIT and not stopping:
                    break
            delay = min(delay * 2, 5.0) if failed else self.interval
            if stopping and (not self.queue or (failed and delay >= 5.0)):
                return

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join()
        if self.queue:
            logger.error(
                "Lost %d spend log rows: the database stayed unreachable.", len(self.queue)
            )


class Runtime:
    def __init__(self) -> None:
        self.master_hash = (
            hashlib.sha256(settings.GATEHOUSE_MASTER_KEY.encode()).hexdigest()
            if settings.GATEHOUSE_MASTER_KEY
            else ""
        )
        self.fail_open: bool = settings.GATEHOUSE_FAIL_OPEN
        self.redis_url: str = settings.REDIS_URL
        self.counters: LocalCounters | RedisCounters = (
            RedisCounters(self.redis_url, timeout=settings.GATEHOUSE_REDIS_TIMEOUT)
            if self.redis_url
            else LocalCounters()
        )
        self.writer = SpendWriter(settings.GATEHOUSE_SPEND_FLUSH_INTERVAL)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatehouse-db")
        self.snapshot: Snapshot | None = None
        self.upstream: UpstreamPool | None = None
        self.providers: dict[str, Any] = {}
        self.watcher: asyncio.Task[None] | None = None
        self.refused: collections.Counter[str] = collections.Counter()
        # Request ids: random per process (made in the process, after any fork), then a
        # counter: unique without a system call per request.
        self.request_id_prefix = os.urandom(10).hex()
        self.request_numbers = itertools.count()
        self.served: collections.Counter[int] = collections.Counter()

    def next_request_id(self) -> str:
        return f"{self.request_id_prefix}{next(self.request_numbers):012x}"

    async def _version(self) -> tuple[int, Any]:
        remote = None
        if isinstance(self.counters, RedisCounters):
            remote = await self.counters.get(changes.VERSION_KEY)
        return changes.local_version(), remote

    async def reload(self, version: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self.snapshot = await loop.run_in_executor(
            self.executor, _database_call, load_snapshot, version
        )

    async def start(self) -> None:
        try:
            version = await self._version()
        except Exception:
            version = None
        await self.reload(version)
        # Everything loaded so far (Django, the apps, the snapshot) lives as long as the
        # process: keep it out of the cyclic collector's full passes.
        gc.collect()
        gc.freeze()
        self.upstream = UpstreamPool()
        self.providers = {"mock": MockProvider(), "openai": OpenAIProvider(self.upstream)}
        self.writer.start()
        self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            snapshot = self.snapshot
            assert snapshot is not None
            try:
                version = await self._version()
            except Exception:
                version = (changes.local_version(), snapshot.version and snapshot.version[1])
            age = time.time() - snapshot.loaded_at
            stale = version != snapshot.version or age > SAFETY_RELOAD_INTERVAL
            if not self.redis_url and age > EMBEDDED_RELOAD_INTERVAL:
                stale = True
            if stale:
                try:
                    await self.reload(version)
                except Exception:
                    logger.exception("Could not reload the gateway configuration.")

    async def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        try:
            await self.counters.flush()
        except Exception:
            logger.exception("Could not send the last counter settles.")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.writer.stop)
        if self.upstream is not None:
            await self.upstream.close()
        await self.counters.close()
        self.executor.shutdown(wait=False)

    async def database_ready(self) -> bool:
        from django.db import connection

        def check() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True

        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self.executor, _database_call, check), 2.0
            )
        except Exception:
            return False


_runtime: Runtime | None = None
_starting: asyncio.Lock | None = None


async def get_runtime() -> Runtime:
    """The process's runtime, started on first use if the server sent no lifespan event."""
    global _runtime, _starting
    if _runtime is not None and _runtime.snapshot is not None:
        return _runtime
    if _starting is None:
        _starting = asyncio.Lock()
    async with _starting:
        if _runtime is None or _runtime.snapshot is None:
            runtime = Runtime()
            await runtime.start()
            _runtime = runtime
    return _runtime


async def stop_runtime() -> None:
    global _runtime, _starting
    if _runtime is not None:
        runtime, _runtime, _starting = _runtime, None, None
        await runtime.stop()
