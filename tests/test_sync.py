"""Incremental sync against the simulator over real loopback sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from extractor._config import RetryPolicy
from extractor._pipeline import export
from extractor._schema import EMPLOYMENT_DETAILS
from extractor._sync import NoBaseSnapshotError, SyncOptions, sync
from extractor.simulator import Simulator
from tests.conftest import (
    assert_same_rows,
    expected_frame,
    export_config,
    simulator_fixture,
    snapshot_frame,
    start_simulator,
)
from tests.simulator.helpers import Client

EMPLOYEES = 600
SEED = 23

sim = simulator_fixture(employees=EMPLOYEES, seed=SEED)


def profile_requests(sim: Simulator) -> int:
    return sum(sim.stats()["by_endpoint"].get("employee", {}).values())


def options(**changes: Any) -> SyncOptions:
    return SyncOptions(**{"full_every_days": None, "sample_seed": 7, **changes})


async def test_sync_after_churn_equals_a_fresh_export(sim: Simulator, tmp_path: Path) -> None:
    config = export_config(sim.base_url, tmp_path)
    base = await export(config)
    assert base.exit_code == 0, base.error
    sim.churn(hires=12, updates=25, terminations=6, deletions=7)
    sim.reset_stats()

    result = await sync(config, options(verify_sample=40))

    assert result.exit_code == 0, result.error
    manifest = result.manifest
    assert manifest["mode"] == "incremental"
    assert manifest["base_snapshot_id"] == base.snapshot_id
    counts = manifest["sync"]["counts"]
    assert counts["new"] == 12
    assert counts["removed"] == 7
    assert counts["carried"] == EMPLOYEES - 7 - counts["changed"] - 40
    assert manifest["sync"]["verify_sample"] == {
        **manifest["sync"]["verify_sample"],
        "size": 40,
        "stale": 0,
        "misses_by_field": {},
    }
    # one profile call per changed, new and sampled employee, not one per employee
    assert profile_requests(sim) == counts["changed"] + counts["new"] + 40
    synced = snapshot_frame(tmp_path, result.snapshot_id)
    assert_same_rows(synced, expected_frame(sim.truth()))

    fresh = await export(config)
    assert fresh.exit_code == 0, fresh.error
    assert_same_rows(synced, snapshot_frame(tmp_path, fresh.snapshot_id))


async def test_the_change_records_land_in_their_own_table(sim: Simulator, tmp_path: Path) -> None:
    config = export_config(sim.base_url, tmp_path)
    assert (await export(config)).exit_code == 0
    made = sim.churn(updates=5, terminations=2)
    result = await sync(config, options(verify_sample=0))
    assert result.exit_code == 0, result.error
    changes = snapshot_frame(tmp_path, result.snapshot_id, "employee_changes")
    assert changes["change_id"].n_unique() == changes.height
    assert {c["employeeId"] for c in made} <= set(changes["employee_id"])
    assert result.manifest["tables"]["employee_changes"]["rows"] == changes.height


async def test_twice_in_a_row_gives_the_same_rows(sim: Simulator, tmp_path: Path) -> None:
    config = export_config(sim.base_url, tmp_path)
    assert (await export(config)).exit_code == 0
    sim.churn(hires=3, updates=4)
    first = await sync(config, options())
    second = await sync(config, options())
    assert first.exit_code == second.exit_code == 0
    assert second.manifest["base_snapshot_id"] == first.snapshot_id
    assert_same_rows(
        snapshot_frame(tmp_path, second.snapshot_id), snapshot_frame(tmp_path, first.snapshot_id)
    )
    state = (tmp_path / "_state" / "sync.json").read_text()
    assert second.snapshot_id in state


async def test_no_base_is_a_clear_error_or_a_full_export(sim: Simulator, tmp_path: Path) -> None:
    config = export_config(sim.base_url, tmp_path)
    with pytest.raises(NoBaseSnapshotError, match="ukg-extract export"):
        await sync(config, options())
    result = await sync(config, options(full_if_missing=True))
    assert result.exit_code == 0, result.error
    assert result.manifest["mode"] == "full"
    assert result.manifest["sync"]["full_reason"]
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(sim.truth()))


async def blind_sim() -> Simulator:
    return await start_simulator(
        employees=EMPLOYEES,
        seed=SEED,
        feed_blind_fields=("jobTitle", "locationId"),
        churn_blind_share=1.0,
    )


async def test_verify_sample_finds_the_changes_the_feed_missed(tmp_path: Path) -> None:
    sim = await blind_sim()
    try:
        config = export_config(sim.base_url, tmp_path)
        assert (await export(config)).exit_code == 0
        sim.churn(updates=15)
        blind = sim.blind_changes()
        assert blind, "the simulator made no unreported change"
        columns = {"jobTitle": "job_title", "locationId": "location_id"}
        missed = {(c["employeeId"], columns[f]) for c in blind for f in c["fields"]}
        expected: dict[str, int] = {}
        for _, column in missed:
            expected[column] = expected.get(column, 0) + 1

        result = await sync(config, options(verify_sample=EMPLOYEES, max_miss_rate=0.5))

        assert result.exit_code == 0, result.error
        report = result.manifest["sync"]["verify_sample"]
        assert result.manifest["mode"] == "incremental"
        assert report["misses_by_field"] == expected
        assert sorted(report["stale_ids"]) == sorted({c["employeeId"] for c in blind})
        # the stale rows were replaced by what the tenant holds now
        assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(sim.truth()))
    finally:
        await sim.stop()


async def test_a_high_miss_rate_refetches_everyone(tmp_path: Path) -> None:
    sim = await blind_sim()
    try:
        config = export_config(sim.base_url, tmp_path)
        assert (await export(config)).exit_code == 0
        sim.churn(updates=15)
        sim.reset_stats()

        result = await sync(config, options(verify_sample=200, max_miss_rate=0.001))

        assert result.exit_code == 0, result.error
        assert result.manifest["mode"] == "full"
        assert "miss rate" in result.manifest["sync"]["full_reason"]
        assert result.manifest["sync"]["counts"]["carried"] == 0
        assert profile_requests(sim) == EMPLOYEES
        assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(sim.truth()))
    finally:
        await sim.stop()


async def test_full_every_runs_a_full_export_when_the_last_is_old(
    sim: Simulator, tmp_path: Path
) -> None:
    config = export_config(sim.base_url, tmp_path)
    assert (await export(config)).exit_code == 0
    sim.reset_stats()
    result = await sync(config, options(full_every_days=1e-9))
    assert result.exit_code == 0, result.error
    assert result.manifest["mode"] == "full"
    assert "--full-every" in result.manifest["sync"]["full_reason"]
    assert profile_requests(sim) == EMPLOYEES


async def test_writes_and_employment_details_are_synced(sim: Simulator, tmp_path: Path) -> None:
    config = export_config(sim.base_url, tmp_path, employment_details=True)
    assert (await export(config)).exit_code == 0
    async with aiohttp.ClientSession() as session:
        client = Client(session, sim.base_url, sim.default_account)
        ids = (await client.all_ids())[:6]
        profile = "/personnel/v1/employees/{}"
        for employee_id in ids[:3]:
            reply = await client.call(
                "PATCH", profile.format(employee_id), json={"jobTitle": "Data Engineer"}
            )
            assert reply.status == 200, reply.body
        reply = await client.call(
            "POST",
            profile.format(ids[3]) + "/terminations",
            json={"terminationDate": "2026-12-01", "terminationReasonCode": "RESIGN"},
        )
        assert reply.status in (200, 201), reply.body
    sim.churn(hires=4, deletions=2)

    result = await sync(config, options(verify_sample=20))

    assert result.exit_code == 0, result.error
    assert result.manifest["mode"] == "incremental"
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(sim.truth()))
    assert_same_rows(
        snapshot_frame(tmp_path, result.snapshot_id, "employment_details"),
        expected_frame(sim.truth_employment_details(), EMPLOYMENT_DETAILS),
    )


async def test_sync_through_faults_is_still_exact(tmp_path: Path) -> None:
    sim = await start_simulator(employees=EMPLOYEES, seed=SEED)
    try:
        config = export_config(sim.base_url, tmp_path)
        assert (await export(config)).exit_code == 0
        sim.churn(hires=5, updates=30, deletions=5)
        sim.set_knobs(error_rate=0.05, reset_rate=0.02, truncate_rate=0.02, token_lifetime=1.0)
        result = await sync(config, options(verify_sample=50))
        sim.set_knobs(error_rate=0.0, reset_rate=0.0, truncate_rate=0.0)
        assert result.exit_code == 0, result.error
        assert result.manifest["requests"]["retries"] > 0
        assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(sim.truth()))
    finally:
        await sim.stop()


async def test_sync_finishes_an_unfinished_export_first(tmp_path: Path) -> None:
    sim = await start_simulator(
        employees=EMPLOYEES, seed=SEED, error_rate=0.3, fault_endpoints=("employee",)
    )
    try:
        config = export_config(sim.base_url, tmp_path, retry=RetryPolicy(max_attempts=1))
        failed = await export(config)
        assert failed.exit_code == 1
        assert failed.failed
        sim.set_knobs(error_rate=0.0)
        sim.reset_stats()
        result = await sync(config, options())
        assert result.exit_code == 0, result.error
        assert result.snapshot_id == failed.snapshot_id
        assert result.manifest["mode"] == "full"
        assert profile_requests(sim) == len(failed.failed)  # only what was missing
        assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(sim.truth()))
    finally:
        await sim.stop()
