"""A per-target rate limiter shared by the threads of a process (Discord's buckets)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from dispatcher.core.errors import DeliveryError

#: A request waits in its thread this long at most; beyond, it is retried later.
MAX_WAIT = 5.0


@dataclasses.dataclass
class Bucket:
    """What we know of one webhook's rate limit, in the limiter's clock."""

    remaining: int | None = None  # requests left in the window; None: unknown, go ahead
    reset_at: float = 0.0  # when the window ends
    blocked_until: float = 0.0  # set by a 429

    def reopens_at(self, now: float) -> float | None:
        """When a request may go, or None if it may go now."""
        if self.blocked_until > now:
            return self.blocked_until
        if self.remaining is not None and self.remaining <= 0 and self.reset_at > now:
            return self.reset_at
        return None

    def expired(self, now: float) -> bool:
        return self.blocked_until <= now and self.reset_at <= now


class RateLimiter:
    """Per-webhook buckets shared by the threads of a process.

    Keys are hashes of webhook URLs. ``acquire`` before each request, ``update``
    with each response's X-RateLimit headers, ``block`` after a 429.
    """

    MAX_BUCKETS = 1024  # beyond, expired buckets are forgotten

    def __init__(
        self,
        *,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}

    def acquire(self, key: str) -> None:
        """Return when a request may go, waiting up to ``max_wait``; else raise a DeliveryError with retry_after."""
        while True:
            with self._lock:
                now = self._clock()
                bucket = self._buckets.get(key)
                until = bucket.reopens_at(now) if bucket else None
                if bucket is not None and until is None:
                    if bucket.reset_at <= now:
                        bucket.remaining = None  # a new window: the next response tells
                    elif bucket.remaining is not None:
                        bucket.remaining -= 1  # counts requests in flight from other threads
                if until is None:
                    return
            wait = until - now
            if wait > self.max_wait:
                raise DeliveryError(
                    f"Discord rate limit: the webhook may be called again in {wait:.1f} s", retry_after=wait
                )
            self._sleep(wait)

    def update(self, key: str, remaining: int, reset_after: float) -> None:
        """Record a response's X-RateLimit-Remaining and X-RateLimit-Reset-After."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key, now)
            if bucket.remaining is not None and bucket.reset_at > now:
                remaining = min(remaining, bucket.remaining)  # still the same window: keep our count
            bucket.remaining = remaining
            bucket.reset_at = now + reset_after

    def block(self, key: str, seconds: float) -> None:
        """Let no request through for ``seconds`` (after a 429)."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key, now)
            bucket.blocked_until = max(bucket.blocked_until, now + seconds)

    def _bucket(self, key: str, now: float) -> Bucket:
        if key not in self._buckets and len(self._buckets) >= self.MAX_BUCKETS:
            self._buckets = {k: b for k, b in self._buckets.items() if not b.expired(now)}
        return self._buckets.setdefault(key, Bucket())
