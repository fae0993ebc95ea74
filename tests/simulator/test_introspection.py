"""``/_sim`` routes and ``stats()``: what tests and benchmarks read and steer."""

from __future__ import annotations

import orjson
import pytest

from .helpers import Harness


async def test_stats_count_requests_by_endpoint_and_status(harness: Harness) -> None:
    client = harness.client
    ids = await client.all_ids(per_page=200)  # 2 full pages and 1 empty one
    for employee_id in ids[:3]:
        await client.get(f"/personnel/v1/employees/{employee_id}")
    await client.get("/personnel/v1/employees/ZZZZZZZZZZZZ")
    await client.raw("GET", "/personnel/v1/employee-ids")  # 401
    stats = harness.sim.stats()
    assert stats["by_endpoint"]["token"] == {"200": 1}
    assert stats["by_endpoint"]["employee_ids"] == {"200": 3, "401": 1}
    assert stats["by_endpoint"]["employee"] == {"200": 3, "404": 1}
    assert stats["requests"] == 9
    assert stats["throttled"] == 0
    assert stats["peak_in_flight"] >= 1
    assert stats["faults"] == {"error": 0, "reset": 0, "truncate": 0, "stall": 0}
    timeline = stats["timeline"]
    assert sum(bucket[1] for bucket in timeline) == 9
    assert sum(bucket[2] for bucket in timeline) == 7
    assert [bucket[0] for bucket in timeline] == [i * 0.25 for i in range(len(timeline))]
    harness.sim.reset_stats()
    assert harness.sim.stats()["requests"] == 0


async def test_http_stats_and_reset_are_not_counted(harness: Harness) -> None:
    await harness.client.get("/personnel/v1/employee-ids")
    stats = (await harness.client.raw("GET", "/_sim/stats")).json()
    assert stats["requests"] == 2
    assert stats == harness.sim.stats()
    assert (await harness.client.raw("POST", "/_sim/reset-stats")).status == 200
    assert (await harness.client.raw("GET", "/_sim/stats")).json()["requests"] == 0


async def test_http_truth_streams_ndjson(harness: Harness) -> None:
    reply = await harness.client.raw("GET", "/_sim/truth")
    assert reply.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in reply.body.splitlines()]
    truth = harness.sim.truth()
    assert {line["employeeId"]: line for line in lines} == truth
    assert len(lines) == 250
    details = await harness.client.raw("GET", "/_sim/truth?kind=employment-details")
    detail_lines = [orjson.loads(line) for line in details.body.splitlines()]
    assert {d["employeeId"]: d for d in detail_lines} == harness.sim.truth_employment_details()
    assert (await harness.client.raw("GET", "/_sim/truth?kind=nope")).status == 400


async def test_http_churn_applies_events_now(harness: Harness) -> None:
    reply = await harness.client.raw("POST", "/_sim/churn", json={"hires": 2, "deletions": 1})
    assert reply.status == 200
    changes = reply.json()["data"]
    assert [c["changeType"] for c in changes] == ["HIRE", "HIRE", "DELETE"]
    assert len(harness.sim.truth()) == 251
    bad = await harness.client.raw("POST", "/_sim/churn", json={"explosions": 1})
    assert bad.status == 400


async def test_http_knobs_read_and_change_the_running_simulator(harness: Harness) -> None:
    knobs = (await harness.client.raw("GET", "/_sim/knobs")).json()
    assert knobs["rate_limit"] is None
    assert "employees" not in knobs
    reply = await harness.client.raw(
        "POST", "/_sim/knobs", json={"latency_ms": 5, "churn_mix": [1, 1, 1, 1]}
    )
    assert reply.status == 200
    assert reply.json()["latency_ms"] == 5
    assert harness.sim.config.churn_mix == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "body",
    [{"employees": 5}, {"warp_speed": 9}, {"error_rate": 2}, {"rate_limit": "fast"}, [1]],
)
async def test_bad_knobs_get_400_and_change_nothing(harness: Harness, body: object) -> None:
    before = harness.sim.knobs()
    reply = await harness.client.raw("POST", "/_sim/knobs", json=body)
    assert reply.status == 400
    assert reply.json()["message"]
    assert harness.sim.knobs() == before


def test_set_knobs_refuses_structural_and_unknown_knobs(harness: Harness) -> None:
    with pytest.raises(ValueError, match="seed"):
        harness.sim.set_knobs(seed=3)
    with pytest.raises(TypeError, match="nonsense"):
        harness.sim.set_knobs(nonsense=1)
    with pytest.raises(ValueError, match="probability"):
        harness.sim.set_knobs(reset_rate=-1)
