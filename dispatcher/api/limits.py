"""What one request may cost: a body size cap and a rate limit per token (or client address).

Both are plain ASGI middleware, so they answer before any route, dependency or body parsing runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import PROBLEM_JSON, problem

#: Buckets kept at most (least recently used are dropped): bounds the limiter's memory.
MAX_BUCKETS = 100_000


async def _send_problem(send: Send, status: int, title: str, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps(problem(status, title, detail)).encode()
    raw = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a request whose body is over ``max_bytes``: by its Content-Length, or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the body is larger than {self.max_bytes} bytes (TIDINGS_HTTP_MAX_BODY_BYTES)"
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await _send_problem(send, 413, "Content Too Large", detail, {"Connection": "close"})
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _send_problem(send, 413, "Content Too Large", detail, {"Connection": "close"})


class TokenBuckets:
    """One token bucket per key: ``per_minute`` requests a minute, in bursts of up to as many."""

    def __init__(self, per_minute: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.monotonic = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a request for ``key`` may go now; else the seconds until it may."""
        now = self.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return wait


class RateLimitMiddleware:
    """429 with Retry-After once a caller is over TIDINGS_HTTP_RATE_LIMIT. The caller is its bearer token
    (or ``?token=``), hashed, or else its client address. /healthz and /readyz are not limited."""

    UNLIMITED = frozenset({"/healthz", "/readyz"})

    def __init__(self, app: ASGIApp, buckets: TokenBuckets) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.UNLIMITED:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self._caller(scope))
        if wait > 0:
            retry_after = str(max(1, math.ceil(wait)))
            detail = "too many requests for this token (TIDINGS_HTTP_RATE_LIMIT per minute)"
            await _send_problem(send, 429, "Too Many Requests", detail, {"Retry-After": retry_after})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _caller(scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return "t:" + hashlib.sha256(value).hexdigest()
        query = scope.get("query_string", b"")
        for pair in query.split(b"&"):
            if pair.startswith(b"token="):
                return "t:" + hashlib.sha256(b"Bearer " + pair[6:]).hexdigest()
        client = scope.get("client")
        return f"a:{client[0] if client else '-'}"
