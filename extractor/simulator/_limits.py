"""The hidden throttle of a tenant: a token bucket and an in-flight cap per account.

UKG does not publish its limits ("enforced per tenant and per service account"),
so a client has to discover them from 429s. Each service account gets its own
bucket of ``burst`` tokens refilled at ``rate_limit`` per second, charged for
every request including token requests, and at most ``max_in_flight`` requests
being served at once. A refused request costs nothing: it takes no token.

The clock is a parameter so that the bucket's arithmetic is tested without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["AccountLimits", "TokenBucket", "retry_after_header"]


class TokenBucket:
    """``burst`` tokens, refilled continuously at ``rate`` per second."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be free."""
        self._refill()
        if self._tokens >= 1.0 - 1e-9:  # float refills land a hair short of a whole token
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def configure(self, rate: float, burst: float) -> None:
        self._refill()
        self.rate = rate
        self.burst = burst
        self._tokens = min(self._tokens, burst)


def retry_after_header(wait: float) -> str:
    """``Retry-After`` in whole seconds: the wait rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))


class AccountLimits:
    """Per-account admission: the in-flight cap first, then the token bucket."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rate: float | None = None
        self._burst = 1.0
        self._max_in_flight: int | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}

    def configure(self, *, rate: float | None, burst: float, max_in_flight: int | None) -> None:
        """Apply new limits now; existing buckets keep their level (capped at the new burst)."""
        self._rate, self._burst, self._max_in_flight = rate, burst, max_in_flight
        if rate is None:
            self._buckets.clear()
        else:
            for bucket in self._buckets.values():
                bucket.configure(rate, burst)

    def admit(self, account: str) -> float | None:
        """None when admitted (the caller must ``release``), else the seconds to wait."""
        in_flight = self._in_flight.get(account, 0)
        if self._max_in_flight is not None and in_flight >= self._max_in_flight:
            return 1.0
        if self._rate is not None:
            bucket = self._buckets.get(account)
            if bucket is None:
                bucket = self._buckets[account] = TokenBucket(self._rate, self._burst, self._clock)
            wait = bucket.take()
            if wait > 0.0:
                return wait
        self._in_flight[account] = in_flight + 1
        return None

    def release(self, account: str) -> None:
        self._in_flight[account] -= 1

    def in_flight(self, account: str) -> int:
        return self._in_flight.get(account, 0)
