"""Adaptive rate and concurrency control: one controller per service account.

(docstring written after tuning)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio

from ._errors import ConfigError

__all__ = [
    "DEFAULT_RATE_SETTINGS",
    "Outcome",
    "Permit",
    "RateController",
    "RateSettings",
]

# Measurement of the send rate (see "Measuring" in the module docstring).
_MEASURE_MIN_SECONDS = 0.05
_MEASURE_MIN_SENDS = 5
_MEASURE_MAX_SECONDS = 1.0
_MEASURE_WEIGHT = 0.5
# Latency samples (from permits sent in the round) that close a concurrency round.
_ROUND_SAMPLES = 4
# A latency cut never takes more than half of the concurrency limit in one round.
_MAX_LATENCY_CUT = 0.5
# Weight of one sample in the smoothed latency that snapshot() reports.
_LATENCY_WEIGHT = 0.05


class Outcome(enum.Enum):
    """How a call ended, as far as rate control cares."""

    SUCCESS = "success"
    """The server answered (any status that is not throttling); the latency is a sample."""
    THROTTLED = "throttled"
    """429, or 503 used as throttling: a congestion signal."""
    ERROR = "error"
    """Another transient failure (5xx, reset, timeout): frees the slot, no rate signal."""


@dataclass(frozen=True, kw_only=True)
class RateSettings:
    """Limits and tuning of a :class:`RateController`; the module docstring explains each."""

    initial_rate: float = 10.0
    initial_concurrency: int = 4
    min_rate: float = 1.0
    min_concurrency: int = 1
    max_rate: float | None = None
    max_concurrency: int = 256
    backoff: float = 0.8
    recovery_seconds: float = 2.0
    slow_start_factor: float = 2.0
    rate_headroom: float = 2.0
    burst_seconds: float = 0.05
    latency_tolerance: float = 2.0
    latency_window: float = 30.0
    max_hold: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.initial_rate:
            raise ConfigError("rate settings need 0 < min_rate <= initial_rate")
        if self.max_rate is not None and self.max_rate < self.min_rate:
            raise ConfigError("rate settings need max_rate >= min_rate")
        if not 1 <= self.min_concurrency <= self.initial_concurrency <= self.max_concurrency:
            raise ConfigError(
                "rate settings need 1 <= min_concurrency <= initial_concurrency <= max_concurrency"
            )
        if not 0 < self.backoff < 1:
            raise ConfigError("rate settings need 0 < backoff < 1")
        if self.slow_start_factor <= 1 or self.rate_headroom <= 1:
            raise ConfigError("rate settings need slow_start_factor > 1 and rate_headroom > 1")
        if self.latency_tolerance <= 1:
            raise ConfigError("rate settings need latency_tolerance > 1")
        if min(self.recovery_seconds, self.burst_seconds, self.latency_window) <= 0:
            raise ConfigError(
                "rate settings need positive recovery_seconds, burst_seconds and latency_window"
            )
        if self.max_hold < 0:
            raise ConfigError("rate settings need max_hold >= 0")


DEFAULT_RATE_SETTINGS = RateSettings()


class Permit:
    """The right to send one request; hand it back to :meth:`RateController.release`."""

    __slots__ = ("_released", "outcome", "retry_after", "seq", "started")

    def __init__(self, seq: int, started: float) -> None:
        self.seq = seq
        self.started = started
        # Only read by RateController.slot(); acquire/release callers pass their own.
        self.outcome = Outcome.ERROR
        self.retry_after: float | None = None
        self._released = False

    def __repr__(self) -> str:
        return f"<Permit seq={self.seq} started={self.started:.6f}>"


class RateController:
    """Decides when the next request may go: a concurrency window and a token bucket.

    One per service account, shared by every call. Not thread-safe: use it from one
    event loop (asyncio, or anyio on asyncio).
    """

    def __init__(
        self,
        settings: RateSettings = DEFAULT_RATE_SETTINGS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        s = settings
        self._settings = s
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._max_rate = math.inf if s.max_rate is None else s.max_rate
        self._floor_cap = max(s.min_rate, min(s.initial_rate, self._max_rate))
        self._cubic_c = (1.0 - s.backoff) / s.recovery_seconds**3

        # Gate state.
        self._rate = min(s.initial_rate, self._max_rate)
        self._capacity = max(1.0, self._rate * s.burst_seconds)
        self._tokens = 1.0
        self._refilled = now
        self._limit = float(s.initial_concurrency)
        self._slots = s.initial_concurrency
        self._in_flight = 0
        self._hold_until = -math.inf
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._slot_waiter: asyncio.Future[None] | None = None
        self._seq = 0

        # Congestion state.
        self._slow_start = True
        self._limit_slow_start = True
        self._w_max = self._rate
        self._epoch = now
        self._recovery_seq = 0

        # Send-rate measurement.
        self._m_start = now
        self._m_last = now
        self._m_sends = 0
        self._m_paused = 0.0
        self._send_rate = 0.0

        # Latency.
        self._min_cur = math.inf
        self._min_prev = math.inf
        self._min_latency = math.inf
        self._min_epoch = now
        self._smoothed = 0.0

        # Concurrency round.
        self._round_seq = 0
        self._round_n = 0
        self._round_sum = 0.0
        self._round_peak = 0

        # Counters for snapshot().
        self._throttles = 0
        self._decreases = 0
        self._latency_decreases = 0
        self._holds = 0

    # ------------------------------------------------------------------ public

    @property
    def current_rate(self) -> float | None:
        """Requests per second the token bucket allows now."""
        return self._rate

    @property
    def current_concurrency(self) -> int:
        """Requests allowed in flight at once now."""
        return self._slots

    @property
    def in_flight(self) -> int:
        """Permits handed out and not yet released."""
        return self._in_flight

    async def acquire(self) -> Permit:
        """Wait for a concurrency slot, a rate token and the end of any hold; FIFO.

        Cancelling a waiting call takes nothing: no slot or token is held until it returns.
        """
        if not self._waiters:
            now = self._clock()
            if self._delay(now) == 0.0:
                return self._grant(now)
        return await self._wait_in_line()

    def release(
        self, permit: Permit, outcome: Outcome, *, retry_after: float | None = None
    ) -> None:
        """Hand a permit back with how its request ended; a second release is ignored.

        ``retry_after`` (seconds, from the response) pauses every new send that long.
        """
        if permit._released:
            return
        permit._released = True
        now = self._clock()
        in_flight = self._in_flight
        self._in_flight = in_flight - 1
        if outcome is Outcome.SUCCESS:
            self._on_success(permit, now, now - permit.started)
        elif outcome is Outcome.THROTTLED:
            self._throttles += 1
            if permit.seq >= self._recovery_seq:
                self._decrease(now, in_flight)
        if retry_after is not None:
            self.hold(retry_after)
        waiter = self._slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def hold(self, seconds: float) -> None:
        """Send nothing new for ``seconds`` (a Retry-After); overlapping holds merge."""
        if not seconds > 0:  # also rejects NaN
            return
        now = self._clock()
        until = now + min(seconds, self._settings.max_hold)
        if until > self._hold_until:
            # Paused time is not counted when measuring the send rate.
            self._m_paused += until - max(self._hold_until, now)
            self._hold_until = until
            self._holds += 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Permit]:
        """``async with controller.slot() as permit:`` then set ``permit.outcome``.

        The permit is released on exit with ``permit.outcome`` (ERROR unless set) and
        ``permit.retry_after``.
        """
        permit = await self.acquire()
        try:
            yield permit
        finally:
            self.release(permit, permit.outcome, retry_after=permit.retry_after)

    def snapshot(self) -> dict[str, float | int | None]:
        """The controller's state for progress lines and the manifest."""
        return {
            "rate": round(self._rate, 3),
            "concurrency": self._slots,
            "in_flight": self._in_flight,
            "waiting": len(self._waiters),
            "throttles": self._throttles,
            "decreases": self._decreases,
            "latency_decreases": self._latency_decreases,
            "holds": self._holds,
            "measured_rate": round(self._send_rate, 3),
            "min_latency": None if math.isinf(self._min_latency) else self._min_latency,
            "smoothed_latency": self._smoothed or None,
        }

    # ------------------------------------------------------------------ gate

    def _delay(self, now: float) -> float:
        """0 if a request may go now, inf if it needs a free slot, else seconds to wait."""
        if self._in_flight >= self._slots:
            return math.inf
        if now < self._hold_until:
            return self._hold_until - now
        elapsed = now - self._refilled
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._refilled = now
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def _grant(self, now: float) -> Permit:
        self._tokens -= 1.0
        in_flight = self._in_flight + 1
        self._in_flight = in_flight
        if in_flight > self._round_peak:
            self._round_peak = in_flight
        permit = Permit(self._seq, now)
        self._seq += 1
        # Send-rate measurement: an idle gap (no demand) starts a fresh interval.
        if now - self._m_last > max(_MEASURE_MAX_SECONDS, 2.0 / self._rate):
            self._m_start = now
            self._m_sends = 0
            self._m_paused = 0.0
        self._m_last = now
        self._m_sends += 1
        elapsed = now - self._m_start
        if (
            elapsed >= _MEASURE_MIN_SECONDS and self._m_sends >= _MEASURE_MIN_SENDS
        ) or elapsed >= _MEASURE_MAX_SECONDS:
            self._close_interval(now, elapsed)
        return permit

    async def _wait_in_line(self) -> Permit:
        waiters = self._waiters
        me = asyncio.get_running_loop().create_future()
        waiters.append(me)
        try:
            if waiters[0] is not me:
                await me  # set when the waiter ahead of us leaves the line
            while True:
                now = self._clock()
                delay = self._delay(now)
                if delay == 0.0:
                    break
                if delay == math.inf:
                    slot = asyncio.get_running_loop().create_future()
                    self._slot_waiter = slot
                    try:
                        await slot
                    finally:
                        self._slot_waiter = None
                else:
                    await self._sleep(delay)
        except BaseException:
            self._leave_line(me)
            raise
        self._leave_line(me)
        return self._grant(now)

    def _leave_line(self, me: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters[0] is me:
            waiters.popleft()
            if waiters:
                head = waiters[0]
                if not head.done():
                    head.set_result(None)
        else:
            waiters.remove(me)

    # ------------------------------------------------------------------ control

    def _set_rate(self, now: float, rate: float) -> None:
        # Tokens earned so far accrue at the old rate before the new one applies.
        elapsed = now - self._refilled
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._refilled = now
        rate = max(self._settings.min_rate, min(rate, self._max_rate))
        self._rate = rate
        self._capacity = max(1.0, rate * self._settings.burst_seconds)
        if self._tokens > self._capacity:
            self._tokens = self._capacity

    def _set_limit(self, limit: float) -> None:
        s = self._settings
        limit = max(float(s.min_concurrency), min(limit, float(s.max_concurrency)))
        self._limit = limit
        self._slots = int(limit)

    def _close_interval(self, now: float, elapsed: float) -> None:
        busy = elapsed - self._m_paused
        if busy > 0:
            measured = self._m_sends / busy
            if self._send_rate == 0.0:
                self._send_rate = measured
            else:
                self._send_rate += _MEASURE_WEIGHT * (measured - self._send_rate)
        self._m_start = now
        self._m_sends = 0
        self._m_paused = 0.0
        s = self._settings
        if self._slow_start:
            target = self._rate * s.slow_start_factor
        else:
            t = now - self._epoch - s.recovery_seconds
            target = self._w_max * (1.0 + self._cubic_c * t * t * t)
        cap = max(self._floor_cap, s.rate_headroom * self._send_rate)
        self._set_rate(now, min(target, cap))

    def _decrease(self, now: float, in_flight: int) -> None:
        """One congestion event: multiplicative decrease of both gates."""
        s = self._settings
        self._decreases += 1
        self._recovery_seq = self._seq
        base = self._rate
        if 0.0 < self._send_rate < base:
            base = self._send_rate
        self._w_max = base
        self._epoch = now
        self._slow_start = False
        self._set_rate(now, base * s.backoff)
        self._limit_slow_start = False
        self._set_limit(min(self._limit, float(in_flight)) * s.backoff)
        self._new_round()

    def _on_success(self, permit: Permit, now: float, latency: float) -> None:
        s = self._settings
        if now - self._min_epoch >= s.latency_window:
            self._min_prev = self._min_cur
            self._min_cur = math.inf
            self._min_epoch = now
        if latency < self._min_cur:
            self._min_cur = latency
        self._min_latency = min(self._min_cur, self._min_prev)
        if self._smoothed == 0.0:
            self._smoothed = latency
        else:
            self._smoothed += _LATENCY_WEIGHT * (latency - self._smoothed)
        if permit.seq < self._round_seq:
            return
        self._round_n += 1
        self._round_sum += latency
        if self._round_n < _ROUND_SAMPLES:
            return
        average = self._round_sum / self._round_n
        limit = self._limit
        if average > s.latency_tolerance * self._min_latency:
            # Queueing: cut to where latency would be back within the tolerance.
            cut = max(_MAX_LATENCY_CUT, s.latency_tolerance * self._min_latency / average)
            self._latency_decreases += 1
            self._limit_slow_start = False
            self._set_limit(limit * cut)
        elif self._round_peak * 2 >= limit:
            if self._limit_slow_start:
                self._set_limit(limit * s.slow_start_factor)
            else:
                self._set_limit(limit + 1.0)
        self._new_round()

    def _new_round(self) -> None:
        self._round_seq = self._seq
        self._round_n = 0
        self._round_sum = 0.0
        self._round_peak = self._in_flight
