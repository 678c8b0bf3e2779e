"""The lean gateway ASGI app: gateway paths never go through Django's request handling.

Every call: key (from the in-memory snapshot) → blocked / expired → model allowed at every
level → one atomic admission over all budgets and rate limits → upstream → settle the
counters and queue a spend log row. Errors use OpenAI's shape (Decision 12).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

from gateway import tokens
from gateway.counters import (
    AMOUNT_MAX,
    BUDGET,
    REQUESTS,
    TOKENS,
    WINDOW_TTL,
    Admission,
    Check,
    CountersUnavailable,
    clamp,
)
from gateway.providers import Reply, Stream, UpstreamError
from gateway.runtime import Runtime, get_runtime
from gateway.snapshot import CatalogEntry, KeyEntry, Level
from keys.selectors import MSG_KEY_BLOCKED, key_refusal
from spend.services import CallRecord

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GATEWAY_PREFIXES = ("/v1/", "/health/", "/chat/completions", "/embeddings", "/models")
MANAGEMENT_UNDER_V1 = ("/v1/model/",)  # LiteLLM's /v1/model/info is a management endpoint
JSON = b"application/json"
CLIENT_CLOSED = 499  # the client went away mid-stream (nginx's convention)

MSG_MISSING_KEY = "Missing API key: send 'Authorization: Bearer sk-...'."
MSG_INVALID_KEY = "Invalid API key."
MSG_BLOCKED = "{level} '{label}' is blocked."
MSG_UNKNOWN_MODEL = "The model '{model}' does not exist."
MSG_MODEL_NOT_ALLOWED = "Model '{model}' is not allowed for {level} '{label}'."
MSG_WRONG_MODE = "Model '{model}' is a {mode} model and cannot serve {path}."
MSG_BUDGET = "Budget exceeded: {level} '{label}' has reached its max_budget of ${limit}."
MSG_MODEL_BUDGET = (
    "Budget exceeded: {level} '{label}' has reached its model_max_budget of ${limit} for '{model}'."
)
MSG_RPM = "Rate limit exceeded: {level} '{label}' allows {limit} requests per minute{suffix}."
MSG_TPM = "Rate limit exceeded: {level} '{label}' allows {limit} tokens per minute{suffix}."
MSG_UNAVAILABLE = "Rate-limit and budget counters are unavailable; try again shortly."
MSG_UPSTREAM = "The upstream provider for '{model}' could not be reached: {detail}"


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.headers = headers or []
        self.param = param


def openai_error(message: str, type_: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def is_gateway_path(path: str) -> bool:
    """Paths the gateway owns (Decision 14); everything else is Django's."""
    if path.startswith(MANAGEMENT_UNDER_V1):
        return False
    return path.startswith(GATEWAY_PREFIXES) or path in ("/v1", "/health")


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = JSON,
) -> None:
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        start += headers
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: GatewayError, started: float) -> None:
    body = orjson.dumps(openai_error(error.message, error.type, error.code, error.param))
    await respond(send, error.status, body, [*error.headers, _overhead(started, 0.0)])


def _overhead(started: float, upstream: float) -> tuple[bytes, bytes]:
    spent = (time.perf_counter() - started - upstream) * 1000
    return b"x-gatehouse-overhead-ms", f"{spent:.3f}".encode()


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", "invalid_request", param=param)


async def read_json(receive: Receive) -> dict[str, Any]:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(400, "Client disconnected.", "invalid_request_error", "disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > settings.GATEHOUSE_MAX_BODY_BYTES:
            raise GatewayError(413, "Request body too large.", "invalid_request_error", "too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    try:
        payload = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(payload, dict):
        raise bad_request("The body must be a JSON object.")
    return payload


# --- authentication and model checks -----------------------------------------------------


def bearer_token(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name in (b"api-key", b"x-api-key") and value:
            return value.decode("latin-1").strip()
    raise GatewayError(401, MSG_MISSING_KEY, "authentication_error", "invalid_api_key")


def authenticate(runtime: Runtime, scope: Scope) -> KeyEntry:
    token = bearer_token(scope)
    digest = hashlib.sha256(token.encode()).hexdigest()
    snapshot = runtime.snapshot
    assert snapshot is not None
    entry = snapshot.keys.get(digest)
    if entry is None:
        if runtime.master_hash and hmac.compare_digest(digest, runtime.master_hash):
            return snapshot.master_entry()
        raise GatewayError(401, MSG_INVALID_KEY, "authentication_error", "invalid_api_key")
    key_level, *above = entry.levels
    refusal = key_refusal(
        blocked=key_level.blocked,
        expires=entry.expires,
        user_active=entry.user_active,
        now=datetime.now(UTC),
    )
    if refusal == MSG_KEY_BLOCKED:
        raise GatewayError(403, refusal, "permission_error", "permission_denied")
    if refusal is not None:
        raise GatewayError(401, refusal, "authentication_error", "invalid_api_key")
    for level in above:
        if level.blocked:
            message = MSG_BLOCKED.format(level=level.kind.capitalize(), label=level.label)
            raise GatewayError(403, message, "permission_error", "permission_denied")
    return entry


def catalog_model(
    runtime: Runtime, entry: KeyEntry, payload: dict[str, Any], mode: str, path: str
) -> CatalogEntry:
    name = payload.get("model")
    if not isinstance(name, str) or not name:
        raise bad_request("'model' is required.", param="model")
    assert runtime.snapshot is not None
    model = runtime.snapshot.catalog.get(name)
    if model is None:
        raise GatewayError(
            404,
            MSG_UNKNOWN_MODEL.format(model=name),
            "invalid_request_error",
            "model_not_found",
            param="model",
        )
    if not entry.allows(name):
        level = next(
            (
                lv
                for lv in entry.levels
                if lv.models
                and not any(entry.scope.catalog.entry_matches(e, name) for e in lv.models)
            ),
            entry.levels[0],
        )
        message = MSG_MODEL_NOT_ALLOWED.format(model=name, level=level.kind, label=level.label)
        raise GatewayError(403, message, "permission_error", "model_not_allowed", param="model")
    if model.mode != mode:
        message = MSG_WRONG_MODE.format(model=name, mode=model.mode, path=path)
        raise bad_request(message, param="model")
    return model


# --- admission -------------------------------------------------------------------------------


def _ttl(period_end: float, now: float) -> int:
    """Budget counters live a day past their period (0: no period, no expiry)."""
    return 0 if period_end == math.inf else int(period_end - now) + 86_400


def build_checks(
    entry: KeyEntry, model: str, reserve_nano: int, reserve_tokens: int, now: float
) -> tuple[list[Check], list[Level]]:
    """Every budget and limit that applies to this call, and the level each belongs to."""
    checks: list[Check] = []
    owners: list[Level] = []
    minute = int(now // 60)
    reserve_nano, reserve_tokens = (
        clamp(reserve_nano, AMOUNT_MAX),
        clamp(reserve_tokens, AMOUNT_MAX),
    )
    for level in entry.levels:
        if level.max_budget is not None:
            tag, end = level.period(now)
            key = f"gh:b:{level.kind}:{level.id}:{tag}"
            checks.append(
                Check(
                    BUDGET,
                    key,
                    level.max_budget,
                    reserve_nano,
                    level.seed(),
                    _ttl(end, now),
                )
            )
        if model in level.model_max_budget:
            limit, duration = level.model_max_budget[model]
            if duration:
                tag, end = level.own_period(duration, now)
                seed = 0
            else:
                tag, end = level.period(now)
                seed = level.seed(model)
            key = f"gh:mb:{level.kind}:{level.id}:{model}:{tag}"
            checks.append(Check(BUDGET, key, limit, reserve_nano, seed, _ttl(end, now)))
        if level.rpm_limit is not None:
            key = f"gh:q:{level.kind}:{level.id}:{minute}"
            checks.append(Check(REQUESTS, key, level.rpm_limit, 1, 0, WINDOW_TTL))
        if level.tpm_limit is not None:
            key = f"gh:t:{level.kind}:{level.id}:{minute}"
            checks.append(Check(TOKENS, key, level.tpm_limit, reserve_tokens, 0, WINDOW_TTL))
        if model in level.model_rpm_limit:
            key = f"gh:mq:{level.kind}:{level.id}:{model}:{minute}"
            limit = level.model_rpm_limit[model]
            checks.append(Check(REQUESTS, key, limit, 1, 0, WINDOW_TTL))
        if model in level.model_tpm_limit:
            key = f"gh:mt:{level.kind}:{level.id}:{model}:{minute}"
            limit = level.model_tpm_limit[model]
            checks.append(Check(TOKENS, key, limit, reserve_tokens, 0, WINDOW_TTL))
        owners += [level] * (len(checks) - len(owners))
    return checks, owners


def refusal(owners: list[Level], admission: Admission, model: str, now: float) -> GatewayError:
    check = admission.checks[admission.failed]
    level = owners[admission.failed]
    names = {"level": level.kind, "label": level.label}
    if check.kind == BUDGET:
        limit = f"{check.limit / 1e9:.9f}".rstrip("0").rstrip(".")
        template = MSG_MODEL_BUDGET if check.key.startswith("gh:mb:") else MSG_BUDGET
        message = template.format(limit=limit, model=model, **names)
        return GatewayError(429, message, "budget_exceeded", "budget_exceeded")
    per_model = check.key.startswith(("gh:mq:", "gh:mt:"))
    suffix = f" for '{model}'" if per_model else ""
    template = MSG_RPM if check.kind == REQUESTS else MSG_TPM
    message = template.format(limit=check.limit, suffix=suffix, **names)
    retry_after = str(max(1, math.ceil(60 - now % 60))).encode()
    return GatewayError(
        429, message, "rate_limit_error", "rate_limit_exceeded", [(b"retry-after", retry_after)]
    )


ADMIT_ALL = Admission(ok=True)


async def admit(
    runtime: Runtime,
    entry: KeyEntry,
    model: CatalogEntry,
    *,
    prompt_tokens: int,
    output_tokens: int,
    call_type: str,
    stream: bool,
    started: float,
) -> UpstreamCall:
    """Reserve the call's estimate (``prompt_tokens`` in, ``output_tokens`` out) against
    every budget and limit at once; refused calls raise and count only in the metrics."""
    now = time.time()
    reserve = model.cost_nano(prompt_tokens, output_tokens)
    checks, owners = build_checks(entry, model.name, reserve, prompt_tokens + output_tokens, now)
    admission = ADMIT_ALL
    if checks:
        try:
            admission = await runtime.counters.admit(checks)
        except CountersUnavailable:
            runtime.refused["service_unavailable"] += 1
            if not runtime.fail_open:
                raise GatewayError(
                    503, MSG_UNAVAILABLE, "service_unavailable_error", "service_unavailable"
                ) from None
            admission = ADMIT_ALL
        if not admission.ok:
            error = refusal(owners, admission, model.name, now)
            runtime.refused[error.code] += 1
            raise error
    return UpstreamCall(runtime, entry, admission, model, call_type, stream, started, now)


def limit_headers(admission: Admission) -> list[tuple[bytes, bytes]]:
    headers = []
    if admission.remaining_requests is not None:
        headers.append(
            (b"x-ratelimit-remaining-requests", str(admission.remaining_requests).encode())
        )
    if admission.remaining_tokens is not None:
        headers.append((b"x-ratelimit-remaining-tokens", str(admission.remaining_tokens).encode()))
    return headers


def allowance(payload: dict[str, Any], model: CatalogEntry) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad_request(f"'{name}' must be a positive integer.", param=name)
            return value
    return model.max_output_tokens


@dataclass(slots=True)
class UpstreamCall:
    """An admitted call on its way upstream: answered, settled and logged exactly once."""

    runtime: Runtime
    entry: KeyEntry
    admission: Admission
    model: CatalogEntry
    call_type: str
    stream: bool
    started: float  # perf_counter when the request arrived
    now: float  # wall clock at admission
    request_id: str = field(init=False)
    upstream_started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.request_id = self.runtime.next_request_id()
        self.runtime.in_flight += 1

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [*limit_headers(self.admission), (b"x-request-id", self.request_id.encode())]

    def finish(self, status: int, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Settle the counters (release the reservation, add the real cost and tokens) and
        queue the spend log row."""
        upstream = time.perf_counter() - self.upstream_started
        # Delivered tokens are charged, also when the client left or the stream broke off.
        billable = status < 400 or status == CLIENT_CLOSED or completion_tokens > 0
        cost = self.model.cost_nano(prompt_tokens, completion_tokens) if billable else 0
        if self.admission.checks:
            used = prompt_tokens + completion_tokens if billable else 0
            self.runtime.counters.settle_call(self.admission, cost, used)
        self.runtime.served[status] += 1
        self.runtime.in_flight -= 1
        entry = self.entry
        self.runtime.writer.add(
            CallRecord(
                request_id=self.request_id,
                key_hash=entry.key_hash,
                key_id=entry.id,
                project_id=entry.project_id,
                team_id=entry.team_id,
                organization_id=entry.organization_id,
                user_id=entry.user_id,
                model=self.model.name,
                call_type=self.call_type,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_nano=cost,
                http_status=status,
                stream=self.stream,
                latency_ms=upstream * 1000,
                started_at=self.now,
                ended_at=time.time(),
            )
        )

    def failed(self, error: UpstreamError) -> GatewayError:
        self.finish(502)
        message = MSG_UPSTREAM.format(model=self.model.name, detail=error)
        return GatewayError(502, message, "upstream_error", "upstream_error", self.headers)

    async def reply(self, send: Send, reply: Reply) -> None:
        self.finish(reply.status, reply.prompt_tokens, reply.completion_tokens)
        upstream = time.perf_counter() - self.upstream_started
        await respond(
            send, reply.status, reply.body, [*self.headers, _overhead(self.started, upstream)]
        )


# --- endpoints -------------------------------------------------------------------------------


async def chat_completions(scope: Scope, receive: Receive, send: Send, started: float) -> None:
    runtime = await get_runtime()
    entry = authenticate(runtime, scope)
    payload = await read_json(receive)
    model = catalog_model(runtime, entry, payload, "chat", "/v1/chat/completions")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list.", param="messages")
    output_allowance = allowance(payload, model)
    streamed = bool(payload.get("stream"))
    call = await admit(
        runtime,
        entry,
        model,
        prompt_tokens=tokens.count_messages(messages),
        output_tokens=output_allowance,
        call_type="chat.completions",
        stream=streamed,
        started=started,
    )
    provider = runtime.providers[model.provider]
    try:
        if streamed:
            stream: Stream = await provider.stream(model, payload, output_allowance)
        else:
            reply: Reply = await provider.complete(model, payload, output_allowance)
    except UpstreamError as exc:
        raise call.failed(exc) from None
    except BaseException:
        call.finish(500)  # whatever broke, the reservation is released and the call logged
        raise
    if streamed:
        await relay_stream(call, stream, receive, send)
    else:
        await call.reply(send, reply)


async def relay_stream(call: UpstreamCall, stream: Stream, receive: Receive, send: Send) -> None:
    """Relay server-sent events chunk by chunk; a client that leaves stops the relay, and
    what was produced until then is what is charged."""
    if stream.status >= 400:
        await call.reply(send, Reply(stream.status, stream.error_body))
        return
    disconnected = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    watcher = asyncio.get_running_loop().create_task(watch())
    status = 200
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                *call.headers,
                _overhead(call.started, time.perf_counter() - call.upstream_started),
            ],
        }
    )
    try:
        async for chunk in stream.chunks:
            if disconnected.is_set():
                status = CLIENT_CLOSED
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            await send({"type": "http.response.body", "body": b""})
    except UpstreamError:
        status = 502
        await send({"type": "http.response.body", "body": b""})
    except OSError:
        status = CLIENT_CLOSED
    finally:
        watcher.cancel()
        await stream.close()
        if disconnected.is_set() and status == 200:
            status = CLIENT_CLOSED
        call.finish(status, stream.prompt_tokens, stream.completion_tokens)


async def embeddings(scope: Scope, receive: Receive, send: Send, started: float) -> None:
    runtime = await get_runtime()
    entry = authenticate(runtime, scope)
    payload = await read_json(receive)
    model = catalog_model(runtime, entry, payload, "embedding", "/v1/embeddings")
    value = payload.get("input")
    if not value or not isinstance(value, (str, list)):
        raise bad_request("'input' must be a string or a non-empty list.", param="input")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= 8192
    ):
        raise bad_request("'dimensions' must be a whole number from 1 to 8192.", param="dimensions")
    call = await admit(
        runtime,
        entry,
        model,
        prompt_tokens=tokens.count_embedding_input(value),
        output_tokens=0,
        call_type="embeddings",
        stream=False,
        started=started,
    )
    try:
        reply = await runtime.providers[model.provider].embed(model, payload)
    except UpstreamError as exc:
        raise call.failed(exc) from None
    except BaseException:
        call.finish(500)
        raise
    await call.reply(send, reply)


async def list_models(scope: Scope, receive: Receive, send: Send, started: float) -> None:
    runtime = await get_runtime()
    entry = authenticate(runtime, scope)
    assert runtime.snapshot is not None
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "gatehouse"}
        for name in runtime.snapshot.catalog_scope.names
        if entry.allows(name)
    ]
    body = orjson.dumps({"object": "list", "data": data})
    await respond(send, 200, body, [_overhead(started, 0.0)])


async def liveliness(scope: Scope, receive: Receive, send: Send, started: float) -> None:
    await respond(send, 200, b'{"status":"healthy"}', [_overhead(started, 0.0)])


async def readiness(scope: Scope, receive: Receive, send: Send, started: float) -> None:
    runtime = await get_runtime()
    database, cache = await asyncio.gather(runtime.database_ready(), runtime.counters.ping())
    body = {
        "status": "healthy" if database and cache else "unhealthy",
        "db": "connected" if database else "unreachable",
        "cache": ("redis" if runtime.redis_url else "in-process")
        + (" connected" if cache else " unreachable"),
    }
    await respond(
        send, 200 if database and cache else 503, orjson.dumps(body), [_overhead(started, 0.0)]
    )


async def metrics(scope: Scope, receive: Receive, send: Send, started: float) -> None:
    """Prometheus text: answered and refused calls of this process since it started."""
    runtime = await get_runtime()
    lines = ["# TYPE gatehouse_calls_total counter"]
    lines += [
        f'gatehouse_calls_total{{status="{s}"}} {n}' for s, n in sorted(runtime.served.items())
    ]
    lines.append("# TYPE gatehouse_refused_total counter")
    lines += [
        f'gatehouse_refused_total{{code="{c}"}} {n}' for c, n in sorted(runtime.refused.items())
    ]
    lines.append("# TYPE gatehouse_calls_in_flight gauge")
    lines.append(f"gatehouse_calls_in_flight {runtime.in_flight}")
    lines.append("# TYPE gatehouse_spend_rows_written_total counter")
    lines.append(f"gatehouse_spend_rows_written_total {runtime.writer.written}")
    lines.append("# TYPE gatehouse_spend_rows_waiting gauge")
    lines.append(f"gatehouse_spend_rows_waiting {runtime.writer.waiting}")
    await respond(
        send, 200, ("\n".join(lines) + "\n").encode(), content_type=b"text/plain; version=0.0.4"
    )


Handler = Callable[[Scope, Receive, Send, float], Awaitable[None]]
ROUTES: dict[str, tuple[str, Handler]] = {}
for _prefix in ("/v1", ""):
    ROUTES[f"{_prefix}/chat/completions"] = ("POST", chat_completions)
    ROUTES[f"{_prefix}/embeddings"] = ("POST", embeddings)
    ROUTES[f"{_prefix}/models"] = ("GET", list_models)
ROUTES["/health/liveliness"] = ("GET", liveliness)
ROUTES["/health/readiness"] = ("GET", readiness)
ROUTES["/health/metrics"] = ("GET", metrics)


async def gateway_app(scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    path = scope["path"].rstrip("/") or "/"
    route = ROUTES.get(path)
    try:
        if route is None:
            raise GatewayError(
                404, f"Unknown path {scope['path']}.", "invalid_request_error", "not_found"
            )
        method, handler = route
        if scope["method"] != method and not (method == "GET" and scope["method"] == "HEAD"):
            raise GatewayError(
                405,
                f"Method {scope['method']} not allowed; use {method}.",
                "invalid_request_error",
                "method_not_allowed",
                [(b"allow", method.encode())],
            )
        await handler(scope, receive, send, started)
    except GatewayError as error:
        await send_error(send, error, started)
    except Exception:
        logger.exception("Gateway error on %s", path)
        await send_error(
            send,
            GatewayError(500, "Internal gateway error.", "server_error", "internal_error"),
            started,
        )
