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
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings

from gateway.counters import LocalCounters, RedisCounters
from gateway.providers import MockProvider, OpenAIProvider
from gateway.snapshot import MissingParent, Snapshot, Version, load_keys, load_snapshot
from gateway.spend_writer import SpendWriter, database_call
from gateway.upstream_http import UpstreamPool
from hierarchy import changes

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 0.25  # configuration changes reach every process well within 1 s
EMBEDDED_RELOAD_INTERVAL = 1.0  # no Redis to announce changes: re-read every second
SAFETY_RELOAD_INTERVAL = 30.0
JOURNAL_READ = 50  # journal entries read at once; a process further behind reloads all
KEYS_READ = 1000  # more keys changed since the last look: everything is read again


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
        self.in_flight = 0  # admitted calls not finished yet

    def next_request_id(self) -> str:
        return f"{self.request_id_prefix}{next(self.request_numbers):012x}"

    async def _version(self) -> Version:
        newest = None
        if isinstance(self.counters, RedisCounters):
            found = await self.counters.execute(
                "XREVRANGE", changes.JOURNAL_KEY, "+", "-", "COUNT", 1
            )
            newest = found[0][0] if found else None
        return Version(changes.local_version(), newest)

    async def reload(self, version: Version) -> None:
        loop = asyncio.get_running_loop()
        self.snapshot = await loop.run_in_executor(
            self.executor, database_call, load_snapshot, version
        )

    async def _changed_keys(self, seen: bytes, newest: bytes) -> frozenset[str] | None:
        """The keys the journal names in the entries after ``seen``, up to ``newest``.
        ``None`` when anything else may have changed, or when the journal no longer holds
        ``seen`` (trimmed, or Redis started afresh), or when there are too many."""
        assert isinstance(self.counters, RedisCounters)
        entries = await self.counters.execute(
            "XRANGE", changes.JOURNAL_KEY, seen, newest, "COUNT", JOURNAL_READ + 2
        )
        if not entries or entries[0][0] != seen or len(entries) > JOURNAL_READ + 1:
            return None
        key_ids: set[str] = set()
        for _, fields in entries[1:]:
            named = changes.journal_entry(fields)
            if named is None:
                return None
            key_ids |= named
        return frozenset(key_ids) if len(key_ids) <= KEYS_READ else None

    async def refresh(self) -> None:
        """Catch up with the configuration: swap in the keys the journal says changed, or
        read everything again when something other than keys changed, the journal cannot
        tell, this process could not publish a change of its own, or the snapshot is older
        than ``SAFETY_RELOAD_INTERVAL`` (``EMBEDDED_RELOAD_INTERVAL`` without Redis, and while
        Redis is away if the gateway fails open)."""
        snapshot = self.snapshot
        assert snapshot is not None
        previous = snapshot.version
        journal = bool(self.redis_url)
        try:
            version = await self._version()
        except Exception:  # Redis away: only this process's own changes are known
            version = Version(changes.local_version(), previous and previous.journal)
            # ... and calls go on only when failing open: re-read as without Redis then.
            journal = not self.fail_open
        age = time.time() - snapshot.loaded_at
        if age > SAFETY_RELOAD_INTERVAL or (not journal and age > EMBEDDED_RELOAD_INTERVAL):
            await self.reload(version)
            return
        if version == previous:
            return
        key_ids = None
        if previous and version.local == previous.local and previous.journal and version.journal:
            try:
                key_ids = await self._changed_keys(previous.journal, version.journal)
            except Exception:  # Redis away: read everything
                key_ids = None
        if key_ids is None:
            await self.reload(version)
            return
        loop = asyncio.get_running_loop()
        try:
            entries = await loop.run_in_executor(
                self.executor, database_call, load_keys, snapshot, key_ids
            )
        except MissingParent:
            await self.reload(version)
            return
        if self.snapshot is snapshot:
            snapshot.update(entries, version)

    async def load(self) -> None:
        """Read the whole configuration (at start)."""
        try:
            version = await self._version()
        except Exception:  # Redis away: the first look at the journal reads everything again
            version = Version(changes.local_version(), None)
        await self.reload(version)

    async def start(self) -> None:
        await self.load()
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
            try:
                await self.refresh()
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
                loop.run_in_executor(self.executor, database_call, check), 2.0
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
