"""Churn moves offset pages under a reader, exactly as a live tenant does."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from .helpers import Harness, StartSimulator

IDS = "/personnel/v1/employee-ids"


def _around_now() -> str:
    today = datetime.now(UTC).date()
    return f"startDate={today - timedelta(days=1)}&endDate={today + timedelta(days=1)}"


async def _page(harness: Harness, page: int, per_page: int = 100) -> list[str]:
    body = (await harness.client.get(f"{IDS}?page={page}&per-page={per_page}")).json()
    return [item["employeeId"] for item in body["data"]]


async def test_deletions_between_page_reads_make_a_naive_pager_miss_ids(
    harness: Harness,
) -> None:
    first = await _page(harness, 1)
    records = harness.sim.churn(deletions=40)
    assert {r["changeType"] for r in records} == {"DELETE"}
    rest = await _page(harness, 2) + await _page(harness, 3)
    seen = set(first + rest)
    current = set(harness.sim.truth())
    missed = current - seen
    assert missed, "ids were shifted back past the reader"
    deleted = {r["employeeId"] for r in records}
    assert not missed & deleted


async def test_hires_between_page_reads_make_a_naive_pager_repeat_ids(harness: Harness) -> None:
    first = await _page(harness, 1)
    records = harness.sim.churn(hires=40)
    assert {r["changeType"] for r in records} == {"HIRE"}
    second = await _page(harness, 2)
    assert set(first) & set(second), "ids were shifted forward into the next page"
    total = (await harness.client.get(IDS)).json()["total"]
    assert total == 290


async def test_a_deleted_employee_is_gone_and_a_terminated_one_stays(harness: Harness) -> None:
    deleted = harness.sim.churn(deletions=1)[0]["employeeId"]
    terminated = harness.sim.churn(terminations=1)[0]["employeeId"]
    path = "/personnel/v1/employees/"
    assert (await harness.client.get(path + deleted)).status == 404
    assert (await harness.client.get(path + deleted + "/employment-details")).status == 404
    profile = (await harness.client.get(path + terminated)).json()
    assert profile["employmentStatus"] == "Terminated"
    assert profile["terminationDate"] is not None
    ids = await harness.client.all_ids()
    assert deleted not in ids
    assert terminated in ids
    assert deleted not in harness.sim.truth()
    assert len(ids) == 249


async def test_churned_updates_change_the_truth_and_stay_valid(harness: Harness) -> None:
    before = harness.sim.truth()
    records = harness.sim.churn(updates=30)
    after = harness.sim.truth()
    changed = {r["employeeId"] for r in records}
    assert changed
    assert any(before[i] != after[i] for i in changed)
    assert all(before[i] == after[i] for i in set(before) - changed)
    for employee_id in changed:  # the tree stays a tree and fields stay in the tenant tables
        seen = {employee_id}
        manager = after[employee_id]["supervisorId"]
        while manager is not None:
            assert manager not in seen
            seen.add(manager)
            manager = after[manager]["supervisorId"] if manager in after else None


async def test_background_churn_feeds_the_change_log(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(churn_rate=200.0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        feed = (await harness.client.get(f"/personnel/v1/employee-changes?{_around_now()}")).json()
        if feed["total"] >= 20:
            break
        await asyncio.sleep(0.05)
    assert feed["total"] >= 20
    kinds = {change["changeType"] for change in feed["data"]}
    assert kinds <= {"HIRE", "UPDATE", "TERMINATION", "DELETE"}
    assert len(kinds) >= 3
    harness.sim.set_knobs(churn_rate=0)


async def test_churn_can_be_switched_on_at_runtime(harness: Harness) -> None:
    harness.sim.set_knobs(churn_rate=500.0, churn_mix=(1, 0, 0, 0))
    deadline = time.monotonic() + 10
    while (await harness.client.get(IDS)).json()["total"] == 250:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    harness.sim.set_knobs(churn_rate=0.0)
    await asyncio.sleep(0.1)
    total = (await harness.client.get(IDS)).json()["total"]
    await asyncio.sleep(0.15)
    assert (await harness.client.get(IDS)).json()["total"] == total  # stopped: only hires grew
