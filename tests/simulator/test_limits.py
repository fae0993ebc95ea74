"""The hidden throttle: token bucket and in-flight cap, as units and over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from extractor.simulator._limits import AccountLimits, TokenBucket, retry_after_header

from .helpers import READ_ONLY, StartSimulator

IDS = "/personnel/v1/employee-ids"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_grants_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=3.0, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 0.05
    assert bucket.take() == pytest.approx(0.05)
    clock.now += 0.05
    assert bucket.take() == 0.0
    clock.now += 10  # refills up to the burst only
    assert [bucket.take() for _ in range(4)][-1] > 0


def test_a_refused_request_costs_no_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(5):
        assert bucket.take() > 0
    clock.now += 1.0
    assert bucket.take() == 0.0


def test_limits_cap_in_flight_per_account_before_the_bucket() -> None:
    clock = FakeClock()
    limits = AccountLimits(clock)
    limits.configure(rate=None, burst=1.0, max_in_flight=2)
    assert limits.admit("a") is None
    assert limits.admit("a") is None
    assert limits.admit("a") == 1.0
    assert limits.admit("b") is None  # another account has its own cap
    limits.release("a")
    assert limits.admit("a") is None
    assert limits.in_flight("a") == 2


def test_reconfiguring_keeps_the_bucket_level() -> None:
    clock = FakeClock()
    limits = AccountLimits(clock)
    limits.configure(rate=1.0, burst=5.0, max_in_flight=None)
    for _ in range(5):
        assert limits.admit("a") is None
        limits.release("a")
    limits.configure(rate=100.0, burst=100.0, max_in_flight=None)
    assert limits.admit("a") is not None  # still empty, but it refills faster now
    clock.now += 0.011
    assert limits.admit("a") is None


@pytest.mark.parametrize(("wait", "header"), [(0.001, "1"), (0.5, "1"), (1.0, "1"), (1.2, "2")])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: str) -> None:
    assert retry_after_header(wait) == header


@pytest.mark.parametrize("retry_after", [False, True])
async def test_rate_limit_answers_429(start_simulator: StartSimulator, retry_after: bool) -> None:
    # A slow refill (0.5/s) so that the test's own speed cannot matter.
    harness = await start_simulator(rate_limit=0.5, burst=4, retry_after=retry_after)
    client = harness.client
    await client.token()  # the token request takes one of the four
    replies = [await client.get(IDS) for _ in range(6)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429, 429]
    throttled = replies[-1]
    assert "message" in throttled.json()
    if retry_after:
        assert throttled.headers["Retry-After"] == "2"
    else:
        assert "Retry-After" not in throttled.headers
    stats = harness.sim.stats()
    assert stats["throttled"] == 3
    assert stats["by_endpoint"]["employee_ids"] == {"200": 3, "429": 3}


async def test_each_account_has_its_own_bucket(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(rate_limit=0.5, burst=2)
    client = harness.client
    await client.token()
    assert (await client.get(IDS)).status == 200
    assert (await client.get(IDS)).status == 429
    reader = harness.client_for(READ_ONLY)
    assert (await reader.get(IDS)).status == 200


async def test_token_requests_are_throttled_too(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(rate_limit=0.5, burst=2)
    statuses = [(await harness.client.fetch_token()).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_limits_change_at_runtime(start_simulator: StartSimulator) -> None:
    harness = await start_simulator()
    client = harness.client
    await client.token()
    harness.sim.set_knobs(rate_limit=0.5, burst=1)
    assert (await client.get(IDS)).status == 200
    assert (await client.get(IDS)).status == 429
    harness.sim.set_knobs(rate_limit=None)
    assert (await client.get(IDS)).status == 200


async def test_requests_beyond_max_in_flight_get_429(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(max_in_flight=2, latency_ms=300, retry_after=True)
    client = harness.client
    await client.token()
    replies = await asyncio.gather(*(client.get(IDS) for _ in range(5)))
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [200, 200, 429, 429, 429]
    assert all(r.headers["Retry-After"] == "1" for r in replies if r.status == 429)
    stats = harness.sim.stats()
    assert stats["peak_in_flight"] >= 2
    assert stats["throttled"] == 3
