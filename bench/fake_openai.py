"""A small fake OpenAI server for tests and benchmarks (asyncio + httptools, no framework).

``POST /chat/completions`` and ``/embeddings`` answer like OpenAI. The upstream model name
picks a behaviour, so a catalog entry can point at it:
- ``*no-usage*``: streams carry no ``usage`` chunk (the gateway must count);
- ``*slow*``: streams send one chunk every 50 ms (40 chunks);
- ``*error*``: answers 500 with an OpenAI error body.
``GET /stats`` returns how many calls it served. Run: ``python -m bench.fake_openai PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any

import httptools

REPLY_TEXT = "Hello from the fake upstream, one two three four five."
CHAT_PROMPT_TOKENS = 12
CHAT_COMPLETION_TOKENS = 11


def _chat_body(model: str) -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY_TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": CHAT_PROMPT_TOKENS,
                "completion_tokens": CHAT_COMPLETION_TOKENS,
                "total_tokens": CHAT_PROMPT_TOKENS + CHAT_COMPLETION_TOKENS,
            },
        }
    ).encode()
    if "no-usage" in model:
        parsed = json.loads(body)
        del parsed["usage"]
        return json.dumps(parsed).encode()
    return body


def _event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class FakeOpenAI(asyncio.Protocol):
    served = 0

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.cache: dict[str, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, raw = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        if url.endswith(b"/stats"):
            self.send(200, json.dumps({"requests": FakeOpenAI.served}).encode())
            return
        FakeOpenAI.served += 1
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            self.send(400, b'{"error":{"message":"bad json","type":"invalid_request_error"}}')
            return
        model = str(payload.get("model", ""))
        if "error" in model:
            self.send(500, b'{"error":{"message":"upstream broke","type":"server_error"}}')
        elif url.endswith(b"/embeddings"):
            inputs = payload.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            embeddings = {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                    for i, _ in enumerate(items)
                ],
                "model": model,
                "usage": {"prompt_tokens": 5 * len(items), "total_tokens": 5 * len(items)},
            }
            self.send(200, json.dumps(embeddings).encode())
        elif payload.get("stream"):
            asyncio.get_running_loop().create_task(self.stream(model, payload))
        else:
            cached = self.cache.get(model)
            if cached is None:
                cached = self.cache[model] = _chat_body(model)
            self.send(200, cached)

    def send(self, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
        assert self.transport is not None
        reason = b"OK" if status == 200 else b"Error"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, content_type, len(body), body)
        )
        if not self.parser.should_keep_alive():
            self.transport.close()

    async def stream(self, model: str, payload: dict[str, Any]) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )

        def chunk(data: bytes) -> None:
            if not transport.is_closing():
                transport.write(b"%x\r\n%s\r\n" % (len(data), data))

        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
        words = REPLY_TEXT.split() * (4 if "slow" in model else 1)
        for i, word in enumerate(words):
            if transport.is_closing():
                return  # the gateway hung up
            delta = {"content": word if i == 0 else f" {word}"}
            chunk(
                _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            )
            if "slow" in model:
                await asyncio.sleep(0.05)
        chunk(_event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if "no-usage" not in model:
            usage = {
                "prompt_tokens": CHAT_PROMPT_TOKENS,
                "completion_tokens": len(words),
                "total_tokens": CHAT_PROMPT_TOKENS + len(words),
            }
            chunk(_event({**base, "choices": [], "usage": usage}))
        chunk(b"data: [DONE]\n\n")
        if not transport.is_closing():
            transport.write(b"0\r\n\r\n")


async def serve(host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(FakeOpenAI, host, port, backlog=1024)


class FakeOpenAIThread:
    """The fake server on a thread and event loop of its own (for tests): ``.url`` is its base
    URL. The loop is made inside the thread: the caller's thread may be running one already."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        holder: list[asyncio.Server] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            holder.append(self.loop.run_until_complete(serve(host, port)))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.server = holder[0]
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}/v1"

    @property
    def served(self) -> int:
        return FakeOpenAI.served

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9100
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def run() -> None:
        server = await serve("127.0.0.1", port)
        print(f"fake OpenAI on http://127.0.0.1:{port}/v1", flush=True)
        await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
