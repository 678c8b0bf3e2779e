"""A small Redis client for the gateway's counters: one connection, commands pipelined in
order, replies parsed by hiredis. The counters send one script call per event-loop tick, so
a general client's per-command machinery would be most of the cost of that call.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis


class RedisUnavailable(Exception):
    """No answer: unreachable, timed out, or the connection broke. ``sent``: the command
    may have reached Redis (and run), so repeating it could apply it twice."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class RedisError(Exception):
    """Redis answered with an error."""


def encode(args: tuple[Any, ...]) -> bytes:
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RedisUnavailable("connection lost", sent=True))
                waiter.exception()

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.transport.write(encode(args))
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RespClient:
    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        self.db = int(parts.path.lstrip("/") or 0)
        self.tls = parts.scheme == "rediss"
        self.timeout = timeout
        self.connection: _Protocol | None = None
        self.connecting: asyncio.Future[_Protocol] | None = None
        self.scripts: dict[str, str] = {}

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, self.host, self.port, ssl=self.tls or None),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"cannot connect: {exc.__class__.__name__}", sent=False) from exc
        if self.password:
            auth = (self.username, self.password) if self.username else (self.password,)
            await self._reply(protocol, protocol.send(("AUTH", *auth)))
        if self.db:
            await self._reply(protocol, protocol.send(("SELECT", self.db)))
        return protocol

    async def _get_connection(self) -> _Protocol:
        connection = self.connection
        if connection is not None and not connection.closed:
            return connection
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._connect())
        try:
            self.connection = await asyncio.shield(self.connecting)
        finally:
            if self.connecting is not None and self.connecting.done():
                self.connecting = None
        return self.connection

    async def _reply(self, protocol: _Protocol, waiter: asyncio.Future[Any]) -> Any:
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if not waiter.done():
                protocol.close()  # replies would now be out of step: start over
                waiter.set_exception(RedisUnavailable("timed out", sent=True))
                waiter.exception()

        timer = loop.call_later(self.timeout, expire)
        try:
            reply = await waiter
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise RedisError(str(reply))
        return reply

    async def execute(self, *args: Any) -> Any:
        protocol = await self._get_connection()
        return await self._reply(protocol, protocol.send(args))

    async def evalsha(self, script: str, *args: Any) -> Any:
        """Run a Lua script by its digest, loading it first when Redis does not know it
        (a restarted Redis forgets its scripts)."""
        digest = self.scripts.get(script)
        if digest is None:
            digest = self.scripts[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", digest, 0, *args)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.execute("SCRIPT", "LOAD", script)
        return await self.execute("EVALSHA", digest, 0, *args)

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
