"""Upstream providers: the offline ``mock`` and any OpenAI-compatible API.

A provider returns a ``Reply`` (whole answer) or a ``Stream`` (server-sent events relayed
chunk by chunk). Both report the tokens used: the upstream's ``usage`` when it sends one,
else the gateway's own count of what went through.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway import tokens
from gateway.upstream_http import UpstreamConnectionError, UpstreamPool

MOCK_WORDS = [
    "Gatehouse",
    "answers",
    "offline",
    "with",
    "this",
    "deterministic",
    "mock",
    "reply",
    "so",
    "that",
    "every",
    "check,",
    "budget",
    "and",
    "rate",
    "limit",
    "can",
    "be",
    "tried",
    "without",
    "a",
    "network",
    "or",
    "a",
    "provider",
    "account",
]
MOCK_EMBEDDING_DIMENSIONS = 8


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Stream:
    """An answer in server-sent events. ``usage`` is final once ``chunks`` is exhausted."""

    status: int
    chunks: AsyncIterator[bytes]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_body: bytes = b""
    _closers: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        for closer in self._closers:
            closer()


class UpstreamError(Exception):
    """The upstream could not be reached or broke off."""


# --- mock --------------------------------------------------------------------------------


def _mock_words(model: str, prompt: str, allowance: int) -> list[str]:
    start = int.from_bytes(hashlib.sha256(f"{model}\0{prompt}".encode()).digest()[:2], "big")
    count = max(1, min(allowance, 12))
    return [MOCK_WORDS[(start + i) % len(MOCK_WORDS)] for i in range(count)]


def _prompt_text(payload: dict[str, Any]) -> str:
    messages = payload.get("messages") or []
    return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


def _chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: Any
) -> bytes:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class MockProvider:
    async def complete(self, model: Any, payload: dict[str, Any], allowance: int) -> Reply:
        prompt_tokens = tokens.count_messages(payload.get("messages"))
        words = _mock_words(model.name, _prompt_text(payload), allowance)
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "stop" if len(words) < allowance else "length",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }
        return Reply(200, orjson.dumps(body), prompt_tokens, len(words))

    async def stream(self, model: Any, payload: dict[str, Any], allowance: int) -> Stream:
        prompt_tokens = tokens.count_messages(payload.get("messages"))
        words = _mock_words(model.name, _prompt_text(payload), allowance)
        options = payload.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        stream = Stream(200, _empty(), prompt_tokens=prompt_tokens)

        async def chunks() -> AsyncIterator[bytes]:
            completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
            yield _chunk(completion_id, created, model.name, {"role": "assistant"}, None)
            for i, word in enumerate(words):
                stream.completion_tokens += 1
                text = word if i == 0 else f" {word}"
                yield _chunk(completion_id, created, model.name, {"content": text}, None)
            yield _chunk(completion_id, created, model.name, {}, "stop")
            if include_usage:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(words),
                    "total_tokens": prompt_tokens + len(words),
                }
                final = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model.name,
                    "choices": [],
                    "usage": usage,
                }
                yield b"data: " + orjson.dumps(final) + b"\n\n"
            yield b"data: [DONE]\n\n"

        stream.chunks = chunks()
        return stream

    async def embed(self, model: Any, payload: dict[str, Any]) -> Reply:
        value = payload.get("input")
        inputs = value if isinstance(value, list) and not _is_token_list(value) else [value]
        dimensions = payload.get("dimensions") or MOCK_EMBEDDING_DIMENSIONS
        data = [
            {"object": "embedding", "index": i, "embedding": _mock_vector(str(item), dimensions)}
            for i, item in enumerate(inputs)
        ]
        prompt_tokens = tokens.count_embedding_input(value)
        body = {
            "object": "list",
            "data": data,
            "model": model.name,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return Reply(200, orjson.dumps(body), prompt_tokens, 0)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def _is_token_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(item, int) for item in value)


def _mock_vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


# --- OpenAI-compatible, over the keep-alive pool -------------------------------------------


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usage(body: Any) -> tuple[int, int] | None:
    """The upstream's ``usage``; anything but non-negative whole numbers counts as absent."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    counted = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    return counted if any(counted) else None


def _reply_text(body: Any) -> str:
    choices = body.get("choices") if isinstance(body, dict) else None
    texts = []
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
    return "".join(texts)


class OpenAIProvider:
    """Any API that speaks OpenAI's wire format, over the process's keep-alive pool."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def _request(self, model: Any, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = dict(payload)
        body["model"] = model.upstream_model or model.name
        headers = {"Content-Type": "application/json"}
        secret = os.environ.get(model.api_key_env, "") if model.api_key_env else ""
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        return orjson.dumps(body), headers

    async def _post(self, model: Any, payload: dict[str, Any], path: str) -> tuple[Reply, Any]:
        data, headers = self._request(model, payload)
        try:
            response = await self.pool.post(model.api_base, path, data, headers)
        except UpstreamConnectionError as exc:
            raise UpstreamError(str(exc)) from exc
        reply = Reply(response.status, response.body)
        parsed = None
        if response.status < 400:
            try:
                parsed = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                parsed = None
            counted = _usage(parsed)
            if counted is not None:
                reply.prompt_tokens, reply.completion_tokens = counted
        return reply, parsed

    async def complete(self, model: Any, payload: dict[str, Any], allowance: int) -> Reply:
        reply, parsed = await self._post(model, payload, "/chat/completions")
        if reply.status < 400 and not (reply.prompt_tokens or reply.completion_tokens):
            # No usage from the upstream: count both sides ourselves.
            reply.prompt_tokens = tokens.count_messages(payload.get("messages"))
            reply.completion_tokens = tokens.count_text(_reply_text(parsed))
        return reply

    async def embed(self, model: Any, payload: dict[str, Any]) -> Reply:
        reply, _ = await self._post(model, payload, "/embeddings")
        if reply.status < 400 and not reply.prompt_tokens:
            reply.prompt_tokens = tokens.count_embedding_input(payload.get("input"))
        return reply

    async def stream(self, model: Any, payload: dict[str, Any], allowance: int) -> Stream:
        data, headers = self._request(model, payload)
        try:
            response = await self.pool.post_stream(
                model.api_base, "/chat/completions", data, headers
            )
            if response.status >= 400:
                error_body = await response.read()
                response.close()
                return Stream(response.status, _empty(), error_body=error_body)
        except UpstreamConnectionError as exc:
            raise UpstreamError(str(exc)) from exc
        prompt_estimate = tokens.count_messages(payload.get("messages"))
        stream = Stream(200, _empty(), prompt_tokens=prompt_estimate)
        stream._closers.append(response.close)
        counter = _SSECounter()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.iter_chunks():
                    counter.feed(chunk)
                    stream.completion_tokens = counter.completion_tokens()
                    if counter.usage is not None:
                        stream.prompt_tokens, stream.completion_tokens = counter.usage
                    yield chunk
            except UpstreamConnectionError as exc:
                raise UpstreamError(str(exc)) from exc

        stream.chunks = chunks()
        return stream


class _SSECounter:
    """Reads server-sent events as they pass: the upstream's usage, else the text produced."""

    def __init__(self) -> None:
        self.buffer = b""
        self.chars = 0
        self.usage: tuple[int, int] | None = None

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            counted = _usage(event)
            if counted is not None:
                self.usage = counted
            for choice in event.get("choices") or () if isinstance(event, dict) else ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    self.chars += len(delta["content"])

    def completion_tokens(self) -> int:
        return -(-self.chars // tokens.CHARS_PER_TOKEN) if self.chars else 0
