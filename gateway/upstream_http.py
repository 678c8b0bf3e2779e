"""A lean HTTP/1.1 client for OpenAI-compatible upstreams: keep-alive connections per host,
responses parsed by httptools (the parser uvicorn uses), nothing else.

The gateway's hot path is one POST per call; a general-purpose client spends more time in
its own machinery than in the exchange. This one builds the request as one bytes write and
hands back the status, the headers it needs and the body (whole, or chunk by chunk for
server-sent events). A pooled connection that the server had closed is retried once on a
new connection, only when no byte of an answer was received.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class UpstreamConnectionError(Exception):
    """The upstream could not be reached, or the connection broke off."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    tls: bool
    path: str  # the base URL's path, e.g. /v1
    host_header: bytes


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.received = False
        self.streaming = False
        self.status = 0
        self.content_type = b""
        self.body: list[bytes] = []
        self.chunks: asyncio.Queue[bytes | None] | None = None
        self.headers_done: asyncio.Future[None] | None = None
        self.message_done: asyncio.Future[None] | None = None
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamConnectionError(f"bad answer from upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamConnectionError("upstream closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.headers_done is not None and not self.headers_done.done():
            self.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.chunks is not None:
            self.chunks.put_nowait(body)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.chunks is not None:
            self.chunks.put_nowait(None)
        if self.message_done is not None and not self.message_done.done():
            self.message_done.set_result(None)

    # use
    def start(self, request: bytes, streaming: bool) -> None:
        assert self.transport is not None
        self.received = False
        self.status = 0
        self.content_type = b""
        self.body = []
        self.keep_alive = False
        self.chunks = asyncio.Queue() if streaming else None
        self.headers_done = self.loop.create_future() if streaming else None
        self.message_done = self.loop.create_future()
        self.transport.write(request)

    def _fail(self, error: Exception) -> None:
        for future in (self.headers_done, self.message_done):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # whoever awaits it still gets the error; nobody must
        if self.chunks is not None:
            self.chunks.put_nowait(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes


class StreamResponse:
    """An answer whose body arrives chunk by chunk; ``close()`` when done or abandoned."""

    def __init__(self, pool: UpstreamPool, key: Target, connection: _Connection) -> None:
        self.pool, self.key, self.connection = pool, key, connection
        self.status = connection.status
        self.content_type = connection.content_type
        self.finished = False

    async def read(self) -> bytes:
        chunks = [chunk async for chunk in self.iter_chunks()]
        return b"".join(chunks)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        queue = self.connection.chunks
        assert queue is not None
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), self.pool.read_timeout)
            except TimeoutError:
                self.connection.close()
                raise UpstreamConnectionError("upstream read timed out") from None
            if chunk is None:
                break
            yield chunk
        message_done = self.connection.message_done
        assert message_done is not None
        if not message_done.done() or message_done.exception() is not None:
            raise UpstreamConnectionError("upstream closed the connection mid-answer")
        self.finished = True

    def close(self) -> None:
        if self.finished:
            self.pool._release(self.key, self.connection)
        else:
            self.connection.close()  # abandoned mid-body: the connection cannot be reused


class UpstreamPool:
    def __init__(self, *, connect_timeout: float = 10.0, read_timeout: float = 600.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle: dict[Target, list[_Connection]] = {}
        self.targets: dict[str, Target] = {}
        self.tls = ssl.create_default_context()

    def target(self, base_url: str) -> Target:
        found = self.targets.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            host = parts.hostname or ""
            default = port == (443 if tls else 80)
            host_header = (host if default else f"{host}:{port}").encode()
            found = Target(host, port, tls, parts.path.rstrip("/"), host_header)
            self.targets[base_url] = found
        return found

    async def _connect(self, key: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    key.host,
                    key.port,
                    ssl=self.tls if key.tls else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectionError(
                f"cannot connect to {key.host}:{key.port}: {exc.__class__.__name__}"
            ) from exc
        return connection

    def _release(self, key: Target, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive:
            connection.close()
            return
        self.idle.setdefault(key, []).append(connection)

    def _request(self, key: Target, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            b"POST %s%s HTTP/1.1" % (key.path.encode(), path.encode()),
            b"Host: " + key.host_header,
            b"Content-Length: %d" % len(body),
        ]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def _exchange(self, key: Target, request: bytes, streaming: bool) -> _Connection:
        """Send on a pooled connection (retrying once on a fresh one if a stale pooled one
        broke before answering) and wait for the answer's headers (streaming) or the whole
        answer: one wait, one timer."""
        idle = self.idle.get(key)
        while True:
            reused = bool(idle)
            connection = idle.pop() if idle else await self._connect(key)
            if connection.closed:
                continue
            connection.start(request, streaming)
            waited = connection.headers_done if streaming else connection.message_done
            assert waited is not None
            try:
                await self._within(waited, connection)
            except UpstreamConnectionError:
                if reused and not connection.received:
                    idle = None
                    continue
                raise
            return connection

    async def _within(self, future: asyncio.Future[None], connection: _Connection) -> None:
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if not future.done():
                future.set_exception(UpstreamConnectionError("upstream read timed out"))
                future.exception()
                connection.close()

        timer = loop.call_later(self.read_timeout, expire)
        try:
            await future
        finally:
            timer.cancel()

    async def post(
        self, base_url: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Response:
        key = self.target(base_url)
        connection = await self._exchange(
            key, self._request(key, path, body, headers), streaming=False
        )
        response = Response(connection.status, b"".join(connection.body), connection.content_type)
        self._release(key, connection)
        return response

    async def post_stream(
        self, base_url: str, path: str, body: bytes, headers: dict[str, str]
    ) -> StreamResponse:
        key = self.target(base_url)
        connection = await self._exchange(
            key, self._request(key, path, body, headers), streaming=True
        )
        return StreamResponse(self, key, connection)

    async def close(self) -> None:
        for connections in self.idle.values():
            for connection in connections:
                connection.close()
        self.idle.clear()
