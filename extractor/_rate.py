"""Adaptive rate and concurrency control: one controller per service account.

UKG does not publish its limits. A tenant may answer 429 beyond some requests per second
(a token bucket, with or without ``Retry-After``), beyond some requests in flight, both,
or never; and a busy server may queue instead of refusing. One :class:`RateController`
per service account discovers those limits while the export runs, and every call (token,
id pages, profiles) passes through it::

    permit = await controller.acquire()   # a free slot, a token, and no hold in force
    ...                                   # send the request
    controller.release(permit, Outcome.SUCCESS)    # or THROTTLED (429/503), or ERROR

Two gates
---------
A request may go when the *window* (requests in flight) has a free slot, the *bucket*
(requests per second, written by hand: aiolimiter's ``AsyncLimiter`` fixes its refill
rate in ``__init__``) holds a token, and no Retry-After hold is in force. Callers wait in
one FIFO line; whenever the gates open, permits are handed down the line in a batch (a
woken task only runs on the loop's next iteration, so waking one waiter at a time would
cap the rate at one request per iteration). Only the head of the line ever sleeps on a
timer, so a Retry-After pauses everyone with a single sleep. Per call the work is O(1).

Each gate runs the loop of TCP CUBIC, as the AWS SDKs' adaptive retry mode applies it to
request rates (botocore ``retries/adaptive.py``, ``retries/throttling.py``):

1. **Slow start.** From ``initial_rate`` and ``initial_concurrency`` both gates double
   (``slow_start_factor``) every measurement interval / round until the first congestion
   signal. A gate only grows while it is used: the rate never exceeds ``rate_headroom``
   times the measured send rate (botocore caps at 2x its ``RateClocker`` too), and the
   window grows only in rounds in which it was full, and never beyond four times the
   bandwidth-delay product (the highest delivery rate of a measurement interval times
   the baseline latency; BBR's cwnd gain). While throughput rises with the window the
   cap rises too; once a busy server stops delivering more, requests in flight would only
   queue there: on the simulator at 5 ms, 512 in flight was slower than 256. With no limit
   at all the window reaches ``max_concurrency`` (or that cap) and the bucket sits at
   twice the achieved rate, where it never binds.
2. **Congestion event.** A THROTTLED release is one; every further 429 for a request sent
   before that decrease is part of the same overload episode and only counted. That rule
   (TCP's one reduction per window of data) is what keeps a burst of 429s from
   collapsing the controller. The event cuts the gate that caused it:

   * the *window*, if the throttled request was sent with more requests in flight than
     any recent success, or took the window's last slot at that peak: a concurrency cap
     rejects exactly those. (A success whose flight overlapped a 429 is not counted:
     requests bound for a 429 inflate the in-flight count and would hide the cap.)
   * the *rate* otherwise, and always for a 429 with Retry-After (a rate limiter's
     answer) or when the window is already at ``min_concurrency``.

   The cut gate remembers where congestion set in, ``W_max`` (rate: the lower of the
   bucket's rate and the measured send rate; window: the requests in flight), and drops
   to ``backoff * W_max`` (``concurrency_backoff`` for the window).
3. **Recovery** follows CUBIC's ``W(t) = W_max * (1 + C * (t - K)**3)`` with
   ``C = (1 - backoff) / K**3``: concave back to ``W_max`` over ``K`` seconds, a plateau
   near it (this is where the controller *holds*, instead of sawing up and down), then
   convex probing above it in case the limit rose. For the rate,
   ``K = max(recovery_seconds, recovery_requests / W_max)``; for the window,
   ``K = recovery_seconds``. Once anything has been throttled the bucket holds a single
   token: strict pacing, since a limiter that rejects us may allow no burst at all.

Latency (Vegas / Gradient2)
---------------------------
The window also backs off when latency shows a queue. Every round (from a decision until
``max(4, window/2)`` successes of requests sent after it have come back) the average
latency of those successes is compared with a baseline: the lowest average of four
consecutive successes over the last one or two ``latency_window`` (so a single fast
call, such as a token, cannot set it). If the round is above both
``latency_tolerance * baseline`` and ``baseline + min_queue_delay``, the window is cut to
where latency would be back within the tolerance (by at most half), but never below
``latency_tolerance * peak delivery rate * baseline``: the window that the best recent
throughput (successes/s, highest over the last one or two latency windows) needs at the
tolerated latency, by Little's law, as BBR bounds in-flight by the bandwidth-delay
product. A real queue settles right at that floor; latency noise, or a phase of slower
calls (id pages after profiles), cannot walk the window down, since the floor falls only
once the throughput itself has been lower for a whole latency window. When the
baseline's oldest bucket expires while recent latency is more than 25% higher, the window
drops to a quarter for one short round first (BBR's PROBE_RTT), so our own queue drains
and the baseline stays honest instead of creeping up.

End-to-end latency cannot tell a queue at the server from a busy client: on a loaded
2-CPU machine the demo's own event-loop lag looked like queueing, and before the floor
and ``min_queue_delay`` the window once ratcheted down to 2 (230 requests/s instead of
1,300). Hence the two guards: a cut needs a queue worth ``min_queue_delay`` and can never
take away throughput that was recently achieved.

Holds
-----
``hold(seconds)``, or ``release(..., retry_after=...)``, stops new sends for that long.
Overlapping holds merge (the HTTP layer may report one Retry-After twice), ``max_hold``
caps a single one, and while a hold is in force the CUBIC clocks and the send-rate
measurement stop: a pause is neither a probe nor a drop in demand, so after a long hold
sending resumes at the rate it left off at.

Measuring
---------
Sends and successes are counted per interval (from 25 ms and 3 sends up to 1 s) and
averaged with weight ``1 - exp(-interval / 0.5 s)``, i.e. over time, not over intervals.
An idle gap with no demand and no hold starts a fresh interval rather than dragging the
averages down. ``snapshot()`` reports the send rate (``measured_rate``) with the gates,
counters and latencies.

Settings (:class:`RateSettings`)
--------------------------------
=====================  =========  ==========================================================
name                   default    meaning, and why this default
=====================  =========  ==========================================================
initial_rate           100.0      requests/s at start. The window is what keeps the start
                                  cautious on a real tenant (4 in flight at 200 ms is 20
                                  req/s); the bucket only has to stop a burst against a
                                  fast server. At 10/s it needed 0.3 s to measure its first
                                  interval (3 sends) and cost a 20 ms server 0.67 s of
                                  ramp; at 100/s 0.18 s (virtual-time simulation), for
                                  ~2.5% 429s instead of ~2% over 50 s at R = 100.
initial_concurrency    4          requests in flight at start (TCP's initial window).
min_rate               1.0        the rate never falls below this (UKG's own advice is a
                                  1 s backoff): a run never stalls outright.
min_concurrency        1          the window never shrinks below this.
max_rate               None       admin ceiling (``--max-rate``), never exceeded: the
                                  bucket holds at most 1 token once anything throttled,
                                  ``max_rate * burst_seconds`` before.
max_concurrency        512        admin ceiling (``--max-concurrency``) or the connection
                                  pool's size; never exceeded. By Little's law a window
                                  of W at latency L allows W / L requests/s: at 256 a 20 ms
                                  server that never queued capped an export at ~10,000/s
                                  (12,800 at best) while the simulator served 13,000/s at
                                  512. A server that queues raises latency first, and the
                                  latency rule cuts the window long before this.
backoff                0.8        rate cut on a throttle. botocore and CUBIC use 0.7;
                                  0.8 because ``W_max`` here is measured use, not the
                                  bucket's setting, and a cycle then averages ~95% of it.
concurrency_backoff    0.9        window cut. The window moves in whole requests and its
                                  cuts are attributed precisely, so a small cut holds a
                                  concurrency cap at ~97% with ~0.2% 429s.
recovery_seconds       2.0        CUBIC's K: seconds to climb back to ``W_max``; the
                                  plateau after it is where the controller holds.
recovery_requests      50         for the rate, K is at least this many requests at
                                  ``W_max``: probing every 2 s at 3 requests/s would make
                                  every sixth request a 429.
slow_start_factor      2.0        growth per interval/round before the first signal.
rate_headroom          2.0        the rate stays within this multiple of the measured send
                                  rate (botocore's 2.0), so a gate that is not the
                                  bottleneck cannot run away and a cut takes effect.
burst_seconds          0.05       bucket depth during slow start (rate x this, at least 1
                                  token): bursts of replies need not wait on a timer each.
latency_tolerance      2.0        a round averaging more than this times the baseline
                                  means a queue (queueing servers settle near 1.7x).
min_queue_delay        0.05       a round must also be this much (seconds) above the
                                  baseline: a smaller queue costs an API call little, and
                                  on a busy client the event loop's own lag is of this
                                  order (cutting the window for it only costs throughput).
latency_window         30.0       seconds per baseline bucket; the baseline covers the
                                  last 30 to 60 s.
max_hold               60.0       the longest pause one Retry-After may impose.
=====================  =========  ==========================================================

Internal constants (module level, named ``_MEASURE_*``, ``_ROUND_SAMPLES``,
``_GROUP_SAMPLES``, ``_PROBE_*``, ``_PEAK_SECONDS``, ``_MAX_LATENCY_CUT``) are explained
where they are defined.

What the simulation in ``tests/test_rate.py`` measures (virtual time, seeded jitter,
steady state after the first 10 s): against a token bucket of R = 100/s and 1000/s,
1.00 R with 0.4% and 0.05% 429s; with ``Retry-After: 1`` on every 429, 1.00 R with 0.5%;
against a cap of 32 in flight at 150 ms, 0.97 of 32/latency with 0.2% 429s; a queueing
server is kept at full throughput and 1.8x its service time; with no limit the window
reaches 256 in 0.7 s and the bucket stays at twice the achieved rate. Over whole runs,
start-up included, 429s stay at or below 2%.

Not thread-safe: use one controller from one event loop (asyncio or uvloop, directly or
through anyio on asyncio; it needs asyncio futures). ``current_rate`` is typed
``float | None`` for callers, but this implementation always enforces a rate.
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
# A concurrency round closes once max(_ROUND_SAMPLES, window / 2) successes of requests
# sent during it are back: about one round trip, and enough samples to average.
_ROUND_SAMPLES = 4
# A latency cut never takes more than half of the concurrency limit in one round.
_MAX_LATENCY_CUT = 0.5
# A token short by less than float noise counts as whole: a wait below the event loop's
# clock resolution would otherwise return at once with the bucket still short, forever.
_ONE_TOKEN = 1.0 - 1e-9
# Successes averaged together before they can become the latency baseline.
_GROUP_SAMPLES = 4
# When the expiring latency bucket's minimum is this much above the one before it, the
# window drops to _PROBE_FRACTION for one short round first (see _rotate_baseline).
_PROBE_TRIGGER = 1.25
_PROBE_FRACTION = 0.25
# Length of each of the two buckets over which the in-flight peak of successes is kept.
_PEAK_SECONDS = 1.0
# The window grows to at most this many times the bandwidth-delay product (the peak
# delivery rate times the baseline latency).
_BDP_GAIN = 4.0
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

    initial_rate: float = 100.0
    initial_concurrency: int = 4
    min_rate: float = 1.0
    min_concurrency: int = 1
    max_rate: float | None = None
    max_concurrency: int = 512
    backoff: float = 0.8
    concurrency_backoff: float = 0.9
    recovery_seconds: float = 2.0
    recovery_requests: float = 50.0
    slow_start_factor: float = 2.0
    rate_headroom: float = 2.0
    burst_seconds: float = 0.05
    latency_tolerance: float = 2.0
    min_queue_delay: float = 0.05
    latency_window: float = 30.0
    max_hold: float = 60.0

    def __post_init__(self) -> None:
        # Initial and minimum values above a ceiling are clamped to it, so an admin's
        # small --max-rate or --max-concurrency needs no other change.
        if not (self.min_rate > 0 and self.initial_rate > 0):
            raise ConfigError("rate settings need positive min_rate and initial_rate")
        if self.max_rate is not None and not self.max_rate > 0:
            raise ConfigError(f"max_rate must be positive, got {self.max_rate}")
        if min(self.min_concurrency, self.initial_concurrency) < 1:
            raise ConfigError("rate settings need min_concurrency and initial_concurrency >= 1")
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
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
        if self.max_hold < 0 or self.min_queue_delay < 0:
            raise ConfigError("rate settings need max_hold >= 0 and min_queue_delay >= 0")


DEFAULT_RATE_SETTINGS = RateSettings()


class Permit:
    """The right to send one request; hand it back to :meth:`RateController.release`.

    ``started`` is the clock reading at the grant (the latency is measured from it),
    ``seq`` the grant's sequence number, ``in_flight`` the requests in flight with this
    one. ``outcome`` and ``retry_after`` are only read by :meth:`RateController.slot`.
    """

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
        self._min_rate = min(s.min_rate, self._max_rate)
        self._max_limit = float(s.max_concurrency)
        self._min_limit = float(min(s.min_concurrency, s.max_concurrency))
        initial_rate = max(self._min_rate, min(s.initial_rate, self._max_rate))
        initial_limit = max(self._min_limit, min(float(s.initial_concurrency), self._max_limit))
        # The rate never falls below this for lack of measured use (see _close_interval).
        self._floor_cap = initial_rate
        self._k = s.recovery_seconds
        self._cubic_c = (1.0 - s.backoff) / self._k**3
        self._window_c = (1.0 - s.concurrency_backoff) / s.recovery_seconds**3

        # Gate state.
        self._rate = initial_rate
        self._capacity = max(1.0, self._rate * s.burst_seconds)
        self._tokens = 1.0
        self._refilled = now
        self._limit = initial_limit
        self._probing = False
        self._slots = int(initial_limit)
        self._in_flight = 0
        self._hold_until = -math.inf
        # FIFO line. A waiter's future gets its Permit, or None to make it the leader: the
        # one waiter (out of the line) that sleeps until the next token or the hold's end.
        self._waiters: collections.deque[asyncio.Future[Permit | None]] = collections.deque()
        self._leader = False
        self._leader_delay = 0.0
        self._seq = 0

        # Congestion state.
        self._slow_start = True
        self._limit_slow_start = True
        self._l_max = self._limit
        self._l_epoch = now
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
        # Successes per second (the delivery rate, averaged the same way) and its peak over
        # the last one or two latency windows. Unlike the send rate, it cannot overshoot
        # what the server actually completes.
        self._m_done = 0
        self._done_rate = 0.0
        self._done_peak_cur = 0.0
        self._done_peak_prev = 0.0
        # The same peak of single intervals, unsmoothed: it keeps up with slow start.
        self._raw_peak_cur = 0.0
        self._raw_peak_prev = 0.0

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
        if not self._waiters and not self._leader:
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
            self._m_done += 1
            self._on_success(permit, now, now - permit.started)
        elif outcome is Outcome.THROTTLED:
            self._throttles += 1
            if permit.seq >= self._recovery_seq:
                self._decrease(now, in_flight, permit, retry_after is not None)
        if retry_after is not None:
            self.hold(retry_after)
        if self._waiters and not self._leader:
            self._dispatch()

    def hold(self, seconds: float) -> None:
        """Send nothing new for ``seconds`` (a Retry-After); overlapping holds merge."""
        if not seconds > 0:  # also rejects NaN
            return
        now = self._clock()
        until = now + min(seconds, self._settings.max_hold)
        if until > self._hold_until:
            if self._hold_until <= now:
                self._holds += 1  # a new pause, not the same Retry-After seen twice
            paused = until - max(self._hold_until, now)
            # The CUBIC clocks and the send-rate measurement stop while nothing may be
            # sent: a pause is neither a probe nor a sign of less demand.
            self._epoch += paused
            self._l_epoch += paused
            self._m_paused += paused
            self._hold_until = until

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
            "waiting": len(self._waiters) + self._leader,
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
        # Measurement: time on hold does not count (see hold()), and an idle gap (no
        # demand) starts a fresh interval instead of dragging the averages down.
        if now - self._m_last - self._m_paused > max(_MEASURE_MAX_SECONDS, 2.0 / self._rate):
            self._m_start = now
            self._m_sends = 0
            self._m_done = 0
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
        loop = asyncio.get_running_loop()
        me: asyncio.Future[Permit | None] = loop.create_future()
        self._waiters.append(me)
        if not self._leader:
            self._dispatch()
        while True:
            try:
                permit = await me
            except BaseException:
                self._abandon(me)
                raise
            if permit is not None:
                return permit
            # Leader: sleep until the next token (or the hold's end), then rejoin the line
            # at its head and hand out whatever the gates allow, starting with ourselves.
            try:
                await self._sleep(self._leader_delay)
            except BaseException:
                self._leader = False
                self._dispatch()
                raise
            me = loop.create_future()
            self._waiters.appendleft(me)
            self._leader = False
            self._dispatch()

    def _dispatch(self) -> None:
        """Grant permits down the line while both gates allow; else appoint a leader.

        Granting many at once matters: a woken task only runs on the event loop's next
        iteration, so handing the line over one waiter at a time would cap the rate at
        one request per iteration.
        """
        waiters = self._waiters
        now = self._clock()
        while waiters:
            head = waiters[0]
            if head.done():  # cancelled; its task will find itself gone from the line
                waiters.popleft()
                continue
            delay = self._delay(now)
            if delay == 0.0:
                waiters.popleft()
                head.set_result(self._grant(now))
            elif delay == math.inf:
                return  # the next release() dispatches again
            else:
                waiters.popleft()
                self._leader = True
                self._leader_delay = delay
                head.set_result(None)
                return

    def _abandon(self, me: asyncio.Future[Permit | None]) -> None:
        """A waiter was cancelled: take back whatever it was handed, keep the line moving."""
        if me.done() and not me.cancelled():
            permit = me.result()
            if permit is None:
                self._leader = False
            elif not permit._released:
                # Granted but never delivered: the request was not sent.
                permit._released = True
                self._in_flight -= 1
                self._tokens = min(self._capacity, self._tokens + 1.0)
        else:
            with contextlib.suppress(ValueError):
                self._waiters.remove(me)
        if self._waiters and not self._leader:
            self._dispatch()

    # ------------------------------------------------------------------ control

    def _set_rate(self, now: float, rate: float) -> None:
        # Tokens earned so far accrue at the old rate before the new one applies.
        elapsed = now - self._refilled
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._refilled = now
        rate = max(self._min_rate, min(rate, self._max_rate))
        self._rate = rate
        # Once throttled, pace strictly: the limiter may be one that allows no burst at all.
        if self._slow_start:
            self._capacity = max(1.0, rate * self._settings.burst_seconds)
        else:
            self._capacity = 1.0
        if self._tokens > self._capacity:
            self._tokens = self._capacity

    def _set_limit(self, limit: float) -> None:
        limit = max(self._min_limit, min(limit, self._max_limit))
        self._limit = limit
        if self._probing:
            limit = max(self._min_limit, limit * _PROBE_FRACTION)
        self._slots = int(limit)

    def _close_interval(self, now: float, elapsed: float) -> None:
        if elapsed <= 0:
            return
        measured = self._m_sends / elapsed
        done = self._m_done / elapsed
        if self._send_rate == 0.0:
            self._send_rate = measured
            self._done_rate = done
        else:
            # Weighted by the interval's length, so the average is over time, not intervals.
            weight = 1.0 - math.exp(-elapsed / _MEASURE_TAU)
            self._send_rate += weight * (measured - self._send_rate)
            self._done_rate += weight * (done - self._done_rate)
        if self._done_rate > self._done_peak_cur:
            self._done_peak_cur = self._done_rate
        if done > self._raw_peak_cur:
            self._raw_peak_cur = done
        self._m_start = now
        self._m_sends = 0
        self._m_done = 0
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
        # Without recent successes there is no evidence either way: blame the rate.
        # Retry-After is a rate limiter's answer, and a window at its floor cannot shrink.
        peak = max(self._ok_peak_cur, self._ok_peak_prev)
        window_bound = (
            peak > 0
            and (permit.in_flight > peak or (permit._filled and permit.in_flight >= peak))
            and not told_to_wait
            and self._limit > self._min_limit
        )
        # Where congestion set in: the rate actually used, not the bucket's setting.
        base = self._rate
        if 0.0 < self._send_rate < base:
            base = self._send_rate
        if window_bound:
            self._cut_window(now, min(self._limit, float(in_flight)))
            if self._slow_start:
                # The rate stops doubling and rests at the top of its curve.
                self._start_rate_epoch(base)
                self._epoch = now - self._k
                self._set_rate(now, self._rate)  # strict pacing from now on
        else:
            self._start_rate_epoch(base)
            self._epoch = now
            self._set_rate(now, base * s.backoff)
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
            if group < self._min_cur:
                self._min_cur = group
                self._min_latency = min(group, self._min_prev)
            if now - self._min_epoch >= s.latency_window and not self._probing:
                self._rotate_baseline(now)
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
        if self._probing:
            if self._round_n >= 2 * _GROUP_SAMPLES:
                self._end_probe()
            return
        # Rounds of half a window or more: a mix of fast and slow calls averages out.
        if self._round_n < _ROUND_SAMPLES or self._round_n * 2 < self._slots:
            return
        average = self._round_sum / self._round_n
        limit = self._limit
        baseline = self._min_latency
        if average > s.latency_tolerance * baseline and average - baseline > s.min_queue_delay:
            # Queueing: cut to where latency would be back within the tolerance, but never
            # below what the best recent throughput needs at the tolerated latency (Little's
            # law, as BBR bounds in-flight by the bandwidth-delay product). A real queue
            # settles right there; latency noise, or a phase of slower calls, cannot walk
            # the window down, since the floor falls only if the throughput does, for a
            # whole latency window.
            cut = max(_MAX_LATENCY_CUT, s.latency_tolerance * baseline / average)
            peak = max(self._done_peak_cur, self._done_peak_prev)
            target = max(limit * cut, s.latency_tolerance * peak * baseline)
            if target < limit:
                self._latency_decreases += 1
                self._cut_window(now, target / s.concurrency_backoff)
        elif self._round_full:
            # Grow only a window that was actually full: it never runs ahead of use.
            grown = limit * s.slow_start_factor
            if not self._limit_slow_start:
                t = now - self._l_epoch - s.recovery_seconds
                grown = min(grown, self._l_max * (1.0 + self._window_c * t * t * t))
            # Nor far beyond the bandwidth-delay product (BBR's cwnd gain): while the
            # delivery rate keeps rising the cap rises with it; once it stops, more in
            # flight would only queue at a busy server.
            peak = max(self._raw_peak_cur, self._raw_peak_prev)
            if peak > 0.0 and baseline < math.inf:
                grown = min(grown, max(limit, _BDP_GAIN * peak * baseline))
            if grown > limit:
                self._set_limit(grown)
        self._new_round()

    def _rotate_baseline(self, now: float) -> None:
        """Let the oldest latency bucket expire, draining our queue first if it would rise."""
        rising = self._min_cur > _PROBE_TRIGGER * self._min_prev
        self._min_prev = self._min_cur
        self._min_cur = math.inf
        self._min_epoch = now
        self._min_latency = self._min_prev
        self._done_peak_prev = self._done_peak_cur
        self._done_peak_cur = self._done_rate
        self._raw_peak_prev = self._raw_peak_cur
        self._raw_peak_cur = self._done_rate
        if rising:
            # A queue of ours that never empties would otherwise become the new baseline,
            # and latency would creep up window after window. Like BBR's PROBE_RTT: a
            # quarter window for one short round lets the queue drain; its samples
            # re-measure the baseline.
            self._group_n = 0
            self._group_sum = 0.0
            self._probing = True
            self._set_limit(self._limit)
            self._new_round()

    def _end_probe(self) -> None:
        self._probing = False
        self._set_limit(self._limit)
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
