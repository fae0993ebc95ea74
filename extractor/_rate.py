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
_MEASURE_MIN_SECONDS = 0.025
_MEASURE_MIN_SENDS = 3
_MEASURE_MAX_SECONDS = 1.0
_MEASURE_TAU = 0.5
# Latency samples (from permits sent in the round) that close a concurrency round.
_ROUND_SAMPLES = 4
# A latency cut never takes more than half of the concurrency limit in one round.
_MAX_LATENCY_CUT = 0.5
# A token short by less than float noise counts as whole: a wait below the event loop's
# clock resolution would otherwise return at once with the bucket still short, forever.
_ONE_TOKEN = 1.0 - 1e-9
# Successes averaged together before they can become the latency baseline.
_GROUP_SAMPLES = 4
# Length of each of the two buckets over which the in-flight peak of successes is kept.
_PEAK_SECONDS = 1.0
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
    concurrency_backoff: float = 0.9
    recovery_seconds: float = 2.0
    recovery_requests: float = 50.0
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
        if not (0 < self.backoff < 1 and 0 < self.concurrency_backoff < 1):
            raise ConfigError("rate settings need backoff and concurrency_backoff in (0, 1)")
        if self.slow_start_factor <= 1 or self.rate_headroom <= 1:
            raise ConfigError("rate settings need slow_start_factor > 1 and rate_headroom > 1")
        if self.latency_tolerance <= 1:
            raise ConfigError("rate settings need latency_tolerance > 1")
        if min(self.recovery_seconds, self.burst_seconds, self.latency_window) <= 0 or (
            self.recovery_requests < 0
        ):
            raise ConfigError(
                "rate settings need positive recovery_seconds, burst_seconds and latency_window,"
                " and recovery_requests >= 0"
            )
        if self.max_hold < 0:
            raise ConfigError("rate settings need max_hold >= 0")


DEFAULT_RATE_SETTINGS = RateSettings()


class Permit:
    """The right to send one request; hand it back to :meth:`RateController.release`."""

    __slots__ = (
        "_filled",
        "_released",
        "_throttles",
        "in_flight",
        "outcome",
        "retry_after",
        "seq",
        "started",
    )

    def __init__(
        self, seq: int, started: float, in_flight: int, filled: bool, throttles: int
    ) -> None:
        self.seq = seq
        self.started = started
        self.in_flight = in_flight
        self._filled = filled
        self._throttles = throttles
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
        self._k = s.recovery_seconds
        self._cubic_c = (1.0 - s.backoff) / self._k**3
        self._window_c = (1.0 - s.concurrency_backoff) / s.recovery_seconds**3

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
        self._l_max = self._limit
        self._l_epoch = now
        self._l_good = self._limit
        self._w_max = self._rate
        self._epoch = now
        self._recovery_seq = 0
        # Highest in-flight count at which a request recently succeeded (two buckets).
        self._ok_peak_cur = 0
        self._ok_peak_prev = 0
        self._peak_epoch = now
        # Whether a grant filled the window during the current concurrency round.
        self._round_full = False

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
        self._group_n = 0
        self._group_sum = 0.0
        self._smoothed = 0.0

        # Concurrency round.
        self._round_seq = 0
        self._round_n = 0
        self._round_sum = 0.0

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
                self._decrease(now, in_flight, permit, retry_after is not None)
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
            paused = until - max(self._hold_until, now)
            # CUBIC's clock and the send-rate measurement stop while nothing may be sent:
            # a pause is neither a probe nor a sign of less demand.
            self._epoch += paused
            self._m_paused += paused
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
        if self._tokens >= _ONE_TOKEN:
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def _grant(self, now: float) -> Permit:
        self._tokens -= 1.0
        in_flight = self._in_flight + 1
        self._in_flight = in_flight
        filled = in_flight >= self._slots
        if filled:
            self._round_full = True
        permit = Permit(self._seq, now, in_flight, filled, self._throttles)
        self._seq += 1
        # Send-rate measurement: an idle gap (no demand, no hold) starts a fresh interval.
        # Hold time does count: a server that keeps asking for pauses is telling us its
        # sustainable average, and that is what the send rate must reflect.
        if now - self._m_last - self._m_paused > max(_MEASURE_MAX_SECONDS, 2.0 / self._rate):
            self._m_start = now
            self._m_sends = 0
            self._m_paused = 0.0
        self._m_last = now
        self._m_sends += 1
        elapsed = now - self._m_start - self._m_paused
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
        # Once throttled, pace strictly: the limiter may be one that allows no burst at all.
        if self._slow_start:
            self._capacity = max(1.0, rate * self._settings.burst_seconds)
        else:
            self._capacity = 1.0
        if self._tokens > self._capacity:
            self._tokens = self._capacity

    def _set_limit(self, limit: float) -> None:
        s = self._settings
        limit = max(float(s.min_concurrency), min(limit, float(s.max_concurrency)))
        self._limit = limit
        self._slots = int(limit)

    def _close_interval(self, now: float, elapsed: float) -> None:
        measured = self._m_sends / elapsed if elapsed > 0 else self._send_rate
        if self._send_rate == 0.0:
            self._send_rate = measured
        else:
            # Weighted by the interval's length, so the average is over time, not intervals.
            weight = 1.0 - math.exp(-elapsed / _MEASURE_TAU)
            self._send_rate += weight * (measured - self._send_rate)
        self._m_start = now
        self._m_sends = 0
        self._m_paused = 0.0
        s = self._settings
        if self._slow_start:
            target = self._rate * s.slow_start_factor
        else:
            t = now - self._epoch - self._k
            target = self._w_max * (1.0 + self._cubic_c * t * t * t)
        # Slow start may follow the last interval; afterwards only the time average counts.
        usage = max(measured, self._send_rate) if self._slow_start else self._send_rate
        cap = max(self._floor_cap, s.rate_headroom * usage)
        self._set_rate(now, min(target, cap))

    def _decrease(self, now: float, in_flight: int, permit: Permit, told_to_wait: bool) -> None:
        """One congestion event: multiplicative decrease of the gate to blame."""
        s = self._settings
        self._decreases += 1
        self._recovery_seq = self._seq
        # A concurrency cap rejects exactly the requests sent with more in flight than any
        # that recently succeeded; a rate limit rejects at ordinary in-flight counts.
        # Retry-After is a rate limiter's answer, and a window at its floor cannot shrink.
        peak = max(self._ok_peak_cur, self._ok_peak_prev)
        window_bound = (
            (permit.in_flight > peak or (permit._filled and permit.in_flight >= peak))
            and not told_to_wait
            and self._slots > s.min_concurrency
        )
        base = self._rate
        if 0.0 < self._send_rate < base:
            base = self._send_rate
        if not window_bound:
            self._start_rate_epoch(base)
            self._epoch = now
            self._set_rate(now, base * s.backoff)
        elif self._slow_start:
            # A concurrency cap: the rate stops doubling and rests at the top of its curve.
            self._start_rate_epoch(base)
            self._epoch = now - self._k
            self._set_rate(now, self._rate)
        if window_bound:
            self._cut_window(now, min(self._limit, float(in_flight)))
        self._new_round()

    def _on_success(self, permit: Permit, now: float, latency: float) -> None:
        s = self._settings
        # The baseline is the lowest average of _GROUP_SAMPLES consecutive successes over
        # the last one or two latency windows: one fast call (a token) cannot set it alone.
        self._group_n += 1
        self._group_sum += latency
        if self._group_n == _GROUP_SAMPLES:
            group = self._group_sum / _GROUP_SAMPLES
            self._group_n = 0
            self._group_sum = 0.0
            if now - self._min_epoch >= s.latency_window:
                self._min_prev = self._min_cur
                self._min_cur = math.inf
                self._min_epoch = now
                self._min_latency = self._min_prev
            if group < self._min_cur:
                self._min_cur = group
                self._min_latency = min(group, self._min_prev)
        if self._smoothed == 0.0:
            self._smoothed = latency
        else:
            self._smoothed += _LATENCY_WEIGHT * (latency - self._smoothed)
        if now - self._peak_epoch >= _PEAK_SECONDS:
            self._ok_peak_prev = self._ok_peak_cur
            self._ok_peak_cur = 0
            self._peak_epoch = now
        # Only a flight that saw no throttle counts: requests bound for a 429 inflate the
        # in-flight count, and would hide a concurrency cap's signature.
        if permit.in_flight > self._ok_peak_cur and permit._throttles == self._throttles:
            self._ok_peak_cur = permit.in_flight
        if permit.seq < self._round_seq:
            return
        self._round_n += 1
        self._round_sum += latency
        # Rounds of half a window or more: a mix of fast and slow calls averages out.
        if self._round_n < _ROUND_SAMPLES or self._round_n * 2 < self._slots:
            return
        average = self._round_sum / self._round_n
        limit = self._limit
        if average > s.latency_tolerance * self._min_latency:
            # Queueing: cut to where latency would be back within the tolerance, but never
            # below just under the last window whose latency was fine. If latency is high
            # at every window (slower calls, not queueing), that bounds the harm.
            cut = max(_MAX_LATENCY_CUT, s.latency_tolerance * self._min_latency / average)
            target = max(limit * cut, self._l_good * s.concurrency_backoff)
            if target < limit:
                self._latency_decreases += 1
                self._cut_window(now, target / s.concurrency_backoff)
        elif self._round_full:
            self._l_good = limit
            # Grow only a window that was actually full: it never runs ahead of use.
            grown = limit * s.slow_start_factor
            if not self._limit_slow_start:
                t = now - self._l_epoch - s.recovery_seconds
                grown = min(grown, self._l_max * (1.0 + self._window_c * t * t * t))
            if grown > limit:
                self._set_limit(grown)
        self._new_round()

    def _start_rate_epoch(self, w_max: float) -> None:
        s = self._settings
        self._slow_start = False
        self._w_max = w_max
        # Probe no more often than every recovery_requests requests: at 3 req/s, a probe
        # every 2 s would make every sixth request a 429.
        self._k = max(s.recovery_seconds, s.recovery_requests / w_max)
        self._cubic_c = (1.0 - s.backoff) / self._k**3

    def _cut_window(self, now: float, at: float) -> None:
        """Start a new CUBIC epoch for the window: ``at`` is where congestion set in."""
        self._limit_slow_start = False
        self._l_max = at
        self._l_epoch = now
        self._set_limit(at * self._settings.concurrency_backoff)

    def _new_round(self) -> None:
        self._round_seq = self._seq
        self._round_n = 0
        self._round_sum = 0.0
        self._round_full = self._in_flight >= self._slots
