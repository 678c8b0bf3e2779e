"""The gateway's HTTP/1.1 client against real servers: the fake OpenAI and a closing one."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.upstream_http import UpstreamConnectionError, UpstreamPool
from tests.gateway.conftest import free_port
from tests.gateway.test_counters import run

BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
JSON = {"Content-Type": "application/json"}


def test_answers_reuse_one_keep_alive_connection(fake_upstream):
    async def scenario():
        pool = UpstreamPool()
        answers = [
            await pool.post(fake_upstream.url, "/chat/completions", BODY, JSON) for _ in range(3)
        ]
        assert [a.status for a in answers] == [200, 200, 200]
        assert json.loads(answers[0].body)["usage"]["total_tokens"] == 23
        assert answers[0].content_type == b"application/json"
        assert sum(len(c) for c in pool.idle.values()) == 1  # the same connection each time
        await pool.close()

    run(scenario())


def test_a_stream_arrives_in_chunks_and_its_connection_is_reused(fake_upstream):
    async def scenario():
        pool = UpstreamPool()
        body = json.dumps({"model": "gpt-4o", "stream": True, "messages": []}).encode()
        response = await pool.post_stream(fake_upstream.url, "/chat/completions", body, JSON)
        chunks = [chunk async for chunk in response.iter_chunks()]
        response.close()
        assert response.status == 200 and len(chunks) > 3
        assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
        again = await pool.post(fake_upstream.url, "/chat/completions", BODY, JSON)
        assert again.status == 200
        assert sum(len(c) for c in pool.idle.values()) == 1
        await pool.close()

    run(scenario())


def test_an_unreachable_upstream_raises_a_connection_error():
    async def scenario():
        pool = UpstreamPool(connect_timeout=1)
        with pytest.raises(UpstreamConnectionError):
            await pool.post(f"http://127.0.0.1:{free_port()}/v1", "/chat/completions", BODY, JSON)

    run(scenario())


def test_a_call_after_the_server_closed_its_connection_still_succeeds():
    async def scenario():
        served = []

        async def answer_once(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            served.append(1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()  # keep-alive promised by HTTP/1.1, then closed anyway

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        pool = UpstreamPool()
        first = await pool.post(url, "/x", b"{}", JSON)
        second = await pool.post(url, "/x", b"{}", JSON)
        assert (first.status, second.status, len(served)) == (200, 200, 2)
        server.close()
        await pool.close()

    run(scenario())
