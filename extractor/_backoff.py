"""Retry with exponential backoff and full jitter.

Pure policy plus one small async loop; time and randomness are injected so tests
run without sleeping. Retry-After, when the server sends it, replaces the
computed pause.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import random
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from ._config import RetryPolicy
from ._errors import ThrottledError, TransientError

__all__ = ["backoff_delay", "parse_retry_after", "retrying"]

T = TypeVar("T")


def backoff_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Pause before retry number ``attempt`` (1 = the first retry).

    Full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``. A server's
    ``Retry-After`` wins, capped at ``policy.cap`` so a bogus value cannot stall a run.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.cap)
    ceiling = min(policy.cap, policy.base * (2.0 ** (attempt - 1)))
    return rand() * ceiling


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, TransientError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``call`` until it succeeds, a permanent error escapes, or attempts run out.

    Only :class:`TransientError` is retried; the last one is re-raised when
    ``policy.max_attempts`` is reached.
    """
    attempt = 1
    while True:
        try:
            return await call()
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                raise
            retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
            delay = backoff_delay(policy, attempt, retry_after=retry_after, rand=rand)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            attempt += 1
            await sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = _dt.datetime.now(when.tzinfo or _dt.UTC)
    return max(0.0, (when - now).total_seconds())
