"""The adaptive rate controller: gate mechanics on a fake clock, targets in simulation.

Unit tests drive :class:`RateController` with :class:`FakeTime` (an injected clock and
sleep, as botocore's retry tests do): nothing really sleeps. The scenario tests run
virtual workers against simulated servers on a virtual-time event loop
(``tests/_virtual_server.py``) and check the targets the benchmarks measure end to end.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from typing import Any

import pytest

from extractor._errors import ConfigError
from extractor._rate import (
    DEFAULT_RATE_SETTINGS,
    Outcome,
    Permit,
    RateController,
    RateSettings,
)
from tests._virtual_server import (
    ConcurrencyCapServer,
    QueueingServer,
    Reply,
    Server,
    TokenBucketServer,
    Trace,
    UnlimitedServer,
    run_scenario,
    run_virtual,
)

# ------------------------------------------------------------------ helpers


class FakeTime:
    """A clock that moves only when told, and a sleep that moves it.

    ``manual=False``: ``sleep(d)`` advances the clock by ``d`` at once.
    ``manual=True``: sleepers stay suspended until :meth:`advance` reaches their time,
    so a test can cancel a task in the middle of its sleep.
    """

    def __init__(self, *, manual: bool = False) -> None:
        self.now = 1000.0
        self.manual = manual
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.manual:
            self.now += seconds
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        await wake

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for when, wake in list(self._sleepers):
            if when <= self.now:
                self._sleepers.remove((when, wake))
                if not wake.done():
                    wake.set_result(None)
        await settle()

    @property
    def sleeping(self) -> int:
        return sum(1 for _, wake in self._sleepers if not wake.done())


async def settle() -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


def make(t: FakeTime, **settings: Any) -> RateController:
    return RateController(RateSettings(**settings), clock=t.clock, sleep=t.sleep)


async def send(c: RateController, outcome: Outcome = Outcome.SUCCESS) -> Permit:
    permit = await c.acquire()
    c.release(permit, outcome)
    return permit


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "changes",
    [
        {"backoff": 1.0},
        {"concurrency_backoff": 0.0},
        {"max_rate": 0.0},
        {"min_rate": -1.0},
        {"max_concurrency": 0},
        {"initial_concurrency": 0},
        {"latency_tolerance": 1.0},
        {"slow_start_factor": 1.0},
        {"recovery_seconds": 0.0},
        {"max_hold": -1.0},
        {"min_queue_delay": -0.1},
    ],
)
def test_settings_refuse_values_that_cannot_work(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RateSettings(**changes)


def test_ceilings_below_the_starting_point_clamp_it() -> None:
    t = FakeTime()
    c = make(t, max_rate=0.5, max_concurrency=2)
    assert c.current_rate == 0.5
    assert c.current_concurrency == 2


def test_defaults_start_cautiously() -> None:
    c = RateController()
    assert DEFAULT_RATE_SETTINGS.max_concurrency == 512
    assert c.current_rate == 100.0
    assert c.current_concurrency == 4
    assert c.in_flight == 0
    snapshot = c.snapshot()
    for key in ("rate", "concurrency", "in_flight", "throttles", "decreases"):
        assert key in snapshot
    assert snapshot["min_latency"] is None
    assert snapshot["smoothed_latency"] is None


# ------------------------------------------------------------------ gates


async def test_bucket_paces_requests_at_the_rate() -> None:
    t = FakeTime()
    c = make(t, initial_rate=10.0, max_rate=10.0)
    start = t.now
    for _ in range(21):  # the first goes at once, then one every 0.1 s
        await send(c)
    assert t.now - start == pytest.approx(2.0)
    assert c.current_rate == 10.0


async def test_a_new_rate_applies_to_the_very_next_send() -> None:
    # aiolimiter's AsyncLimiter keeps the refill rate it was built with; this bucket
    # must not.
    t = FakeTime()
    c = make(t, initial_rate=100.0, max_rate=100.0)
    for _ in range(100):
        await send(c)
    await send(c, Outcome.THROTTLED)
    rate = c.current_rate
    assert rate is not None
    assert rate == pytest.approx(80.0, rel=0.05)
    await send(c)
    start = t.now
    for _ in range(10):
        await send(c)
    assert (t.now - start) / 10 == pytest.approx(1 / rate, rel=0.05)


async def test_window_holds_back_sends_beyond_the_limit() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=2, max_concurrency=2)
    first = await c.acquire()
    await c.acquire()
    third = asyncio.create_task(c.acquire())
    await settle()
    assert not third.done()
    assert c.in_flight == 2
    c.release(first, Outcome.ERROR)
    await third
    assert c.in_flight == 2


async def test_waiters_are_served_in_arrival_order() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=1, max_concurrency=1)
    blocker = await c.acquire()
    order: list[int] = []

    async def one(i: int) -> None:
        permit = await c.acquire()
        order.append(i)
        await asyncio.sleep(0)
        c.release(permit, Outcome.SUCCESS)

    tasks = [asyncio.create_task(one(i)) for i in range(6)]
    await settle()
    assert order == []
    c.release(blocker, Outcome.SUCCESS)
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_permits_are_handed_out_in_a_batch() -> None:
    # When several slots free up at once, every waiter that may go gets its permit in
    # the same pass: no one-per-event-loop-iteration hand-over.
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=4, max_concurrency=4)
    held = [await c.acquire() for _ in range(4)]
    waiters = [asyncio.create_task(c.acquire()) for _ in range(4)]
    await settle()
    await t.advance(1.0)  # refill the bucket
    for permit in held:
        c.release(permit, Outcome.SUCCESS)
    assert c.in_flight == 4  # all four granted synchronously, before any waiter ran
    await asyncio.gather(*waiters)


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=1, max_concurrency=1)
    held = await c.acquire()
    waiter = asyncio.create_task(c.acquire())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    c.release(held, Outcome.SUCCESS)
    assert c.in_flight == 0
    await c.acquire()
    assert c.in_flight == 1


async def test_a_waiter_cancelled_after_its_grant_gives_the_permit_back() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=1, max_concurrency=1)
    held = await c.acquire()
    waiter = asyncio.create_task(c.acquire())
    await settle()
    await t.advance(1.0)
    c.release(held, Outcome.SUCCESS)
    assert c.in_flight == 1  # granted to the waiter, which has not run yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert c.in_flight == 0
    await c.acquire()
    assert c.in_flight == 1


async def test_a_cancelled_leader_hands_the_wait_to_the_next_in_line() -> None:
    t = FakeTime(manual=True)
    c = make(t, initial_rate=1.0, max_rate=1.0)
    await c.acquire()  # spends the only token
    leader = asyncio.create_task(c.acquire())
    second = asyncio.create_task(c.acquire())
    await settle()
    assert t.sleeping == 1  # one timer for the whole line
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await settle()
    assert t.sleeping == 1  # the next waiter took over the wait
    await t.advance(1.0)
    await second
    assert c.in_flight == 2


async def test_release_twice_counts_once() -> None:
    t = FakeTime()
    c = make(t)
    permit = await c.acquire()
    c.release(permit, Outcome.THROTTLED)
    c.release(permit, Outcome.THROTTLED)
    assert c.in_flight == 0
    assert c.snapshot()["throttles"] == 1


async def test_slot_releases_with_the_outcome_set_or_error() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0)
    async with c.slot() as permit:
        assert c.in_flight == 1
        permit.outcome = Outcome.THROTTLED
    assert c.in_flight == 0
    assert c.snapshot()["throttles"] == 1
    with pytest.raises(RuntimeError):
        async with c.slot():
            raise RuntimeError("request failed")
    assert c.in_flight == 0
    assert c.snapshot()["throttles"] == 1  # an exception is ERROR, not a throttle


# ------------------------------------------------------------------ holds


async def test_hold_pauses_every_new_send_with_one_shared_sleep() -> None:
    t = FakeTime()
    c = make(t, initial_rate=100.0, initial_concurrency=8)
    start = t.now
    c.hold(2.0)
    permits = await asyncio.gather(*(c.acquire() for _ in range(5)))
    assert all(p.started >= start + 2.0 for p in permits)
    assert t.sleeps == [pytest.approx(2.0)]  # the workers did not each sleep


async def test_retry_after_reported_twice_is_one_hold() -> None:
    # The HTTP layer calls hold() and then release(retry_after=...) for the same 429.
    t = FakeTime()
    c = make(t)
    permit = await c.acquire()
    start = t.now
    c.hold(3.0)
    c.release(permit, Outcome.THROTTLED, retry_after=3.0)
    assert c.snapshot()["holds"] == 1
    assert (await c.acquire()).started >= start + 3.0


async def test_a_hold_is_capped_at_max_hold() -> None:
    t = FakeTime()
    c = make(t, max_hold=60.0)
    await c.acquire()
    start = t.now
    c.hold(1e9)
    assert (await c.acquire()).started - start == pytest.approx(60.0)


async def test_a_long_hold_does_not_collapse_the_rate() -> None:
    t = FakeTime()
    c = make(t, initial_rate=50.0)
    for _ in range(200):
        await send(c)
    await send(c, Outcome.THROTTLED)
    rate, measured = c.current_rate, c.snapshot()["measured_rate"]
    assert rate is not None
    assert isinstance(measured, float)
    c.hold(30.0)
    for _ in range(20):
        await send(c)
    assert c.current_rate is not None
    assert c.current_rate >= 0.9 * rate
    measured_after = c.snapshot()["measured_rate"]
    assert isinstance(measured_after, float)
    assert measured_after >= 0.8 * measured


async def test_recovery_does_not_advance_during_a_hold() -> None:
    t = FakeTime()
    c = make(t, initial_rate=100.0)
    await send(c, Outcome.THROTTLED)  # W_max = 100, back to 80
    c.hold(10.0)  # long enough that a running CUBIC clock would be far past W_max
    for _ in range(10):
        await send(c)
    assert c.current_rate is not None
    assert c.current_rate < 85.0


# ------------------------------------------------------------------ congestion


async def test_slow_start_grows_a_used_gate_and_leaves_an_unused_one() -> None:
    t = FakeTime()
    c = make(t)
    start = t.now
    while (c.current_rate or 0.0) < 1000.0:
        await send(c)  # one at a time: the bucket binds, the window never fills
    assert t.now - start < 1.0  # from 10/s, doubling every interval
    assert c.current_concurrency == 4


async def test_a_burst_of_throttles_is_one_congestion_event() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=64, max_concurrency=64)
    permits = [await c.acquire() for _ in range(40)]
    rate = c.current_rate
    measured = c.snapshot()["measured_rate"]
    assert rate is not None
    assert isinstance(measured, float)
    for permit in permits:
        c.release(permit, Outcome.THROTTLED)
    snapshot = c.snapshot()
    assert snapshot["throttles"] == 40
    assert snapshot["decreases"] == 1
    base = min(rate, measured) if measured > 0 else rate
    assert c.current_rate == pytest.approx(0.8 * base, rel=0.01)
    assert c.current_concurrency == 64  # nothing pointed at the window

    # A request sent after the decrease that is throttled too: a new event.
    await send(c, Outcome.THROTTLED)
    assert c.snapshot()["decreases"] == 2


async def test_throttles_beyond_the_in_flight_of_successes_cut_the_window() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=16, max_concurrency=16)
    permits = [await c.acquire() for _ in range(8)]
    for permit in permits:
        c.release(permit, Outcome.SUCCESS)  # up to 8 in flight: fine
    permits = [await c.acquire() for _ in range(9)]
    rate = c.current_rate
    c.release(permits[-1], Outcome.THROTTLED)  # the 9th in flight: refused
    assert c.current_concurrency == 8  # 0.9 x 9 in flight
    assert c.current_rate == rate


async def test_throttles_at_ordinary_in_flight_cut_the_rate() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=16, max_concurrency=16)
    permits = [await c.acquire() for _ in range(8)]
    for permit in permits:
        c.release(permit, Outcome.SUCCESS)
    permits = [await c.acquire() for _ in range(4)]
    rate = c.current_rate
    assert rate is not None
    c.release(permits[-1], Outcome.THROTTLED)
    assert c.current_concurrency == 16
    assert c.current_rate is not None
    assert c.current_rate < 0.85 * rate


async def test_retry_after_always_slows_the_rate() -> None:
    t = FakeTime()
    c = make(t, initial_rate=1000.0, initial_concurrency=16, max_concurrency=16)
    permits = [await c.acquire() for _ in range(8)]
    for permit in permits:
        c.release(permit, Outcome.SUCCESS)
    permits = [await c.acquire() for _ in range(9)]
    rate = c.current_rate
    assert rate is not None
    c.release(permits[-1], Outcome.THROTTLED, retry_after=1.0)
    assert c.current_rate is not None
    assert c.current_rate < 0.85 * rate


async def test_the_rate_climbs_back_along_a_cubic_curve() -> None:
    t = FakeTime()
    c = make(t, initial_rate=100.0, recovery_seconds=2.0)
    await send(c, Outcome.THROTTLED)  # W_max = 100, back to 80
    assert c.current_rate == pytest.approx(80.0)
    start = t.now
    seen: dict[float, float] = {}
    while t.now - start < 4.0:
        await send(c)
        for mark in (1.0, 2.0, 4.0 - 0.05):
            if mark not in seen and t.now - start >= mark:
                assert c.current_rate is not None
                seen[mark] = c.current_rate
    assert 95.0 < seen[1.0] < 100.0  # concave: most of the way back after K/2
    assert seen[2.0] == pytest.approx(100.0, rel=0.03)  # W_max after K: the plateau
    assert seen[4.0 - 0.05] > 112.0  # then convex probing above it


# ------------------------------------------------------------------ simulation


def test_simulation_is_deterministic() -> None:
    def run() -> Trace:
        return run_scenario(TokenBucketServer(100.0, latency=0.02, seed=3), duration=5.0)

    first, second = run(), run()
    assert first.times == second.times
    assert first.outcomes == second.outcomes


SCENARIOS: list[tuple[str, Callable[[], Server], float, float, float]] = [
    # id, server, limit (successes/s), run length, steady state from
    ("token bucket R=100", lambda: TokenBucketServer(100.0, latency=0.02), 100.0, 60.0, 10.0),
    ("token bucket R=1000", lambda: TokenBucketServer(1000.0, latency=0.02), 1000.0, 20.0, 10.0),
    (
        "token bucket R=100, Retry-After 1 s",
        lambda: TokenBucketServer(100.0, latency=0.02, retry_after=1.0),
        100.0,
        60.0,
        10.0,
    ),
    (
        "32 in flight, 150 ms",
        lambda: ConcurrencyCapServer(32, latency=0.15),
        32 / 0.15,
        60.0,
        10.0,
    ),
]


@pytest.mark.parametrize(
    ("make_server", "limit", "duration", "warm_up"),
    [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS],
)
def test_holds_near_a_hidden_limit(
    make_server: Callable[[], Server], limit: float, duration: float, warm_up: float
) -> None:
    trace = run_scenario(make_server(), duration=duration)
    steady = trace.window(warm_up)
    assert steady.ok_rate >= 0.9 * limit, f"{steady.ok_rate:.1f}/s of {limit:.1f}"
    assert steady.throttled_share <= 0.05, f"{steady.throttled_share:.1%} throttled"
    assert trace.snapshot["in_flight"] == 0  # cancelled workers left nothing behind


def test_latency_keeps_a_queueing_server_busy_but_not_flooded() -> None:
    # 16 parallel servers of 50 ms; requests beyond that wait in a FIFO queue.
    trace = run_scenario(QueueingServer(16, latency=0.05), duration=30.0)
    steady = trace.window(10.0)
    assert steady.ok_rate >= 0.9 * 16 / 0.05
    assert steady.mean_latency <= 2.5 * 0.05  # 256 in flight would mean 16x
    decreases = trace.snapshot["latency_decreases"]
    assert isinstance(decreases, int)
    assert decreases > 0


def test_no_limit_means_the_ceiling_quickly_and_a_rate_far_above_use() -> None:
    trace = run_scenario(UnlimitedServer(0.005, seed=1), duration=1.1, sample_every=0.05)
    reached = next(t for t, c in trace.concurrency if c >= 256)  # 256 workers
    assert reached <= 0.75
    steady = trace.window(0.8)
    assert steady.ok_rate >= 0.9 * 256 / 0.005
    rate = trace.snapshot["rate"]
    assert isinstance(rate, float)
    assert rate >= 1.5 * steady.ok_rate  # the bucket is not what limits us


def test_the_window_stops_where_throughput_stops_rising() -> None:
    # 32 servers of 5 ms: 6,400/s at most, and every request beyond 32 in flight queues.
    # At 256 in flight the queue adds 35 ms, below the latency rule's min_queue_delay, so
    # only the bandwidth-delay cap keeps the window near 4 x 32 (it reached 512 without).
    trace = run_scenario(QueueingServer(32, latency=0.005), duration=5.0, sample_every=0.1)
    steady = trace.window(2.0)
    assert steady.ok_rate >= 0.95 * 32 / 0.005
    assert max(c for t, c in trace.concurrency if t >= 2.0) <= 160
    assert steady.mean_latency <= 4 * 0.005


def test_admin_ceilings_are_never_exceeded() -> None:
    settings = RateSettings(max_rate=200.0, max_concurrency=16)
    trace = run_scenario(UnlimitedServer(0.05, seed=2), duration=10.0, settings=settings)
    assert trace.max_in_flight <= 16
    sent = sorted(trace.sent)
    burst = 200.0 * settings.burst_seconds + 1
    busiest = max(bisect.bisect_left(sent, t + 1.0) - i for i, t in enumerate(sent))
    assert busiest <= 200.0 + burst
    assert trace.window(2.0).ok_rate >= 0.9 * 200.0  # and it does use what it may


class _PagePhase(Server):
    """30 ms profiles, except 6 s of 300 ms id pages, and a 5 ms token call every 5 s."""

    def __init__(self) -> None:
        super().__init__(0.03, seed=4)
        self.next_token = 0.0

    def arrive(self, now: float) -> Reply:
        if now >= self.next_token:
            self.next_token = now + 5.0
            return Reply(Outcome.SUCCESS, 0.005)
        scale = 0.3 if 10.0 <= now < 16.0 else 0.03
        return Reply(Outcome.SUCCESS, (0.8 + self.rng.expovariate(5.0)) * scale)


def test_slower_calls_are_not_mistaken_for_queueing() -> None:
    # A phase of slower calls looks like a latency rise at every window size; the
    # throughput floor keeps it from walking the window down.
    settings = RateSettings(max_concurrency=32)
    trace = run_scenario(_PagePhase(), duration=24.0, settings=settings, sample_every=0.5)
    assert min(c for t, c in trace.concurrency if t >= 2.0) >= int(0.9 * 32)
    assert trace.window(19.0).ok_rate >= 0.9 * 32 / 0.03


def test_virtual_loop_advances_time_without_sleeping() -> None:
    async def main(loop: asyncio.AbstractEventLoop) -> float:
        await asyncio.sleep(3600.0)
        return loop.time()

    assert run_virtual(main) == pytest.approx(3600.0)
