"""Deterministic discrete-event simulation for the rate controller (tests only).

A real asyncio event loop runs on *virtual* time: whenever the loop would block
waiting for its next timer, the selector jumps the clock to that timer instead of
sleeping. Futures, cancellation and ``asyncio.sleep`` behave exactly as in
production, a 60-second run takes a fraction of a second, and with a seeded
random generator every run is identical.

Server models answer each request with an outcome and a latency:

* :class:`TokenBucketServer`: ``rate`` requests/second with a ``burst``; 429 beyond.
* :class:`ConcurrencyCapServer`: 429 beyond ``cap`` requests in flight.
* :class:`QueueingServer`: ``capacity`` parallel servers, FIFO queue beyond (latency
  rises with load, nothing is rejected).
* :class:`UnlimitedServer`: always answers.

:func:`run_scenario` drives ``workers`` virtual workers through ``acquire`` /
``release`` against one server and returns a :class:`Trace` of every response.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import selectors
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extractor._rate import Outcome, RateController, RateSettings

# ------------------------------------------------------------------ virtual loop


class _VirtualSelector(selectors.SelectSelector):
    """Never blocks: "waiting" for ``timeout`` seconds advances the virtual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("virtual loop deadlock: nothing is scheduled")
        if timeout > 0:
            self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is virtual; it never really sleeps."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[VirtualTimeLoop], Any]) -> Any:
    """Run ``main(loop)`` (a coroutine factory) to completion on a fresh virtual loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


# ------------------------------------------------------------------ servers


def _jitter(rng: random.Random, base: float) -> float:
    # A floor at 0.8x and an exponential tail: mean = base, like real request latency.
    return base * (0.8 + rng.expovariate(5.0))


@dataclass
class Reply:
    outcome: Outcome
    latency: float
    retry_after: float | None = None


class Server:
    """Base: ``arrive(now)`` returns the reply; ``leave(now)`` when it is delivered."""

    def __init__(self, latency: float, seed: int) -> None:
        self.latency = latency
        self.rng = random.Random(seed)

    def arrive(self, now: float) -> Reply:
        raise NotImplementedError

    def leave(self, now: float, reply: Reply) -> None:
        return None


class UnlimitedServer(Server):
    def arrive(self, now: float) -> Reply:
        return Reply(Outcome.SUCCESS, _jitter(self.rng, self.latency))


class TokenBucketServer(Server):
    def __init__(
        self,
        rate: float,
        *,
        latency: float,
        burst: float | None = None,
        retry_after: float | None = None,
        seed: int = 1,
    ) -> None:
        super().__init__(latency, seed)
        self.rate = rate
        self.burst = rate if burst is None else burst
        self.tokens = self.burst
        self.last = 0.0
        self.retry_after = retry_after

    def arrive(self, now: float) -> Reply:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        latency = _jitter(self.rng, self.latency)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Reply(Outcome.SUCCESS, latency)
        return Reply(Outcome.THROTTLED, latency, self.retry_after)


class ConcurrencyCapServer(Server):
    def __init__(
        self, cap: int, *, latency: float, reject_latency: float | None = None, seed: int = 1
    ) -> None:
        super().__init__(latency, seed)
        self.cap = cap
        self.busy = 0
        self.reject_latency = latency if reject_latency is None else reject_latency

    def arrive(self, now: float) -> Reply:
        if self.busy >= self.cap:
            return Reply(Outcome.THROTTLED, _jitter(self.rng, self.reject_latency))
        self.busy += 1
        return Reply(Outcome.SUCCESS, _jitter(self.rng, self.latency))

    def leave(self, now: float, reply: Reply) -> None:
        if reply.outcome is Outcome.SUCCESS:
            self.busy -= 1


class QueueingServer(Server):
    """``capacity`` parallel servers of service time ``latency``; beyond them, a FIFO queue."""

    def __init__(self, capacity: int, *, latency: float, seed: int = 1) -> None:
        super().__init__(latency, seed)
        self.free_at = [0.0] * capacity  # heap of the times each server is next free

    def arrive(self, now: float) -> Reply:
        start = max(now, self.free_at[0])
        finish = start + _jitter(self.rng, self.latency)
        heapq.heapreplace(self.free_at, finish)
        return Reply(Outcome.SUCCESS, finish - now)


# ------------------------------------------------------------------ driver


@dataclass
class Trace:
    """Every response of a run: completion time, outcome and latency, in order."""

    duration: float
    times: list[float] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    max_in_flight: int = 0
    concurrency: list[tuple[float, int]] = field(default_factory=list)
    rate: list[tuple[float, float | None]] = field(default_factory=list)
    snapshot: dict[str, float | int | None] = field(default_factory=dict)

    def window(self, start: float, end: float | None = None) -> Window:
        end = self.duration if end is None else end
        ok = throttled = errors = 0
        latency = 0.0
        for t, outcome, lat in zip(self.times, self.outcomes, self.latencies, strict=True):
            if start <= t < end:
                if outcome is Outcome.SUCCESS:
                    ok += 1
                    latency += lat
                elif outcome is Outcome.THROTTLED:
                    throttled += 1
                else:
                    errors += 1
        return Window(end - start, ok, throttled, errors, latency / ok if ok else 0.0)


@dataclass(frozen=True)
class Window:
    seconds: float
    ok: int
    throttled: int
    errors: int
    mean_latency: float

    @property
    def ok_rate(self) -> float:
        return self.ok / self.seconds

    @property
    def throttled_share(self) -> float:
        total = self.ok + self.throttled + self.errors
        return self.throttled / total if total else 0.0


def run_scenario(
    server: Server,
    *,
    duration: float,
    workers: int = 256,
    settings: RateSettings | None = None,
    sample_every: float = 0.5,
) -> Trace:
    """Drive ``workers`` workers against ``server`` for ``duration`` virtual seconds."""

    async def main(loop: VirtualTimeLoop) -> Trace:
        kwargs: dict[str, Any] = {} if settings is None else {"settings": settings}
        controller = RateController(**kwargs, clock=loop.time, sleep=asyncio.sleep)
        trace = Trace(duration)
        times, outcomes, latencies, sent = trace.times, trace.outcomes, trace.latencies, trace.sent
        sleep = asyncio.sleep

        async def worker() -> None:
            while True:
                permit = await controller.acquire()
                sent.append(permit.started)
                if controller.in_flight > trace.max_in_flight:
                    trace.max_in_flight = controller.in_flight
                reply = server.arrive(loop.time())
                try:
                    await sleep(reply.latency)
                except asyncio.CancelledError:
                    server.leave(loop.time(), reply)
                    controller.release(permit, Outcome.ERROR)
                    raise
                server.leave(loop.time(), reply)
                controller.release(permit, reply.outcome, retry_after=reply.retry_after)
                times.append(loop.time())
                outcomes.append(reply.outcome)
                latencies.append(reply.latency)

        tasks = [loop.create_task(worker()) for _ in range(workers)]
        while loop.time() < duration:
            trace.concurrency.append((loop.time(), controller.current_concurrency))
            trace.rate.append((loop.time(), controller.current_rate))
            await sleep(min(sample_every, duration - loop.time()))
        # Stop at the deadline: waiting workers are cancelled inside acquire(), requests in
        # flight are released, and nothing may be left holding a slot.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        trace.snapshot = controller.snapshot()
        return trace

    result: Trace = run_virtual(main)
    return result
