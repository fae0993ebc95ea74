"""Injected faults: 5xx, resets, truncated bodies, stalls and latency, each over a socket."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from .helpers import Harness, StartSimulator

IDS = "/personnel/v1/employee-ids"


async def _ready(start_simulator: StartSimulator, **knobs: float) -> Harness:
    """A simulator whose faults start only after the client holds a token."""
    harness = await start_simulator()
    await harness.client.token()
    harness.sim.set_knobs(**knobs)
    return harness


async def test_error_rate_answers_5xx_bodies(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, error_rate=1.0)
    replies = [await harness.client.get(IDS) for _ in range(12)]
    assert {reply.status for reply in replies} <= {500, 502, 503}
    assert len({reply.status for reply in replies}) > 1
    assert all(reply.body for reply in replies)
    stats = harness.sim.stats()
    assert stats["faults"]["error"] == 12
    assert sum(stats["by_endpoint"]["employee_ids"].values()) == 12


async def test_reset_rate_drops_the_connection_without_an_answer(
    start_simulator: StartSimulator,
) -> None:
    harness = await _ready(start_simulator, reset_rate=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await harness.client.get(IDS)
    # aiohttp retries a GET once when a reused keep-alive connection drops: 1 or 2 resets
    assert harness.sim.stats()["faults"]["reset"] in (1, 2)
    harness.sim.set_knobs(reset_rate=0.0)
    assert (await harness.client.get(IDS)).status == 200  # the server is fine


async def test_truncate_rate_sends_200_with_invalid_json(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, truncate_rate=1.0)
    for _ in range(5):
        reply = await harness.client.get(f"{IDS}?per-page=50")
        assert reply.status == 200
        assert int(reply.headers["Content-Length"]) == len(reply.body)
        assert reply.body.startswith(b'{"data":')
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(reply.body)
    assert harness.sim.stats()["faults"]["truncate"] == 5


async def test_a_truncated_error_is_not_dressed_up_as_200(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, truncate_rate=1.0)
    reply = await harness.client.get("/personnel/v1/employees/ZZZZZZZZZZZZ")
    assert reply.status == 404
    assert reply.json()["message"]


async def test_stall_holds_the_answer_until_the_client_gives_up(
    start_simulator: StartSimulator,
) -> None:
    harness = await _ready(start_simulator, stall_rate=1.0, stall_seconds=30)
    with pytest.raises(asyncio.TimeoutError):
        await harness.client.get(IDS, timeout=aiohttp.ClientTimeout(total=0.3))
    assert harness.sim.stats()["faults"]["stall"] == 1
    # stopping does not wait out the stall (the fixture's stop would otherwise hang)
    await asyncio.wait_for(harness.sim.stop(), timeout=10)


async def test_faults_never_hit_the_token_endpoint(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(error_rate=0.5, reset_rate=0.5)
    for _ in range(5):
        assert (await harness.client.fetch_token()).status == 200


async def test_latency_delays_answers(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, latency_ms=120, jitter_ms=20)
    started = time.monotonic()
    reply = await harness.client.get(IDS)
    assert reply.status == 200
    assert time.monotonic() - started >= 0.1  # a lower bound only: slower machines are fine


async def test_slow_tail_applies_to_a_share_of_requests(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, slow_tail_prob=1.0, slow_tail_ms=150)
    started = time.monotonic()
    assert (await harness.client.get(IDS)).status == 200
    assert time.monotonic() - started >= 0.15


async def test_fault_rates_mix_by_probability(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, error_rate=0.3)
    statuses = [(await harness.client.get(IDS)).status for _ in range(100)]
    errors = sum(status >= 500 for status in statuses)
    assert 10 < errors < 55  # seeded, so stable; the band only documents the intent
    assert statuses.count(200) == 100 - errors


async def test_faults_can_be_limited_to_some_endpoints(start_simulator: StartSimulator) -> None:
    harness = await _ready(start_simulator, error_rate=1.0)
    harness.sim.set_knobs(fault_endpoints=("employee",))
    listing = await harness.client.get(f"{IDS}?per-page=5")
    assert listing.status == 200
    employee_id = orjson.loads(listing.body)["data"][0]["employeeId"]
    profile = await harness.client.get(f"/personnel/v1/employees/{employee_id}")
    assert profile.status in (500, 502, 503)
    with pytest.raises(ValueError, match="unknown fault endpoints"):
        harness.sim.set_knobs(fault_endpoints=("nope",))
