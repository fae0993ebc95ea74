"""Full exports against the simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from extractor._pipeline import export
from extractor._snapshot import list_snapshots
from extractor._stats import RunStats
from extractor.simulator import Simulator
from tests.conftest import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    assert_same_rows,
    expected_frame,
    export_config,
    simulator_fixture,
    snapshot_frame,
    start_simulator,
)

SEED = 11

sim = simulator_fixture(employees=600, seed=SEED)


def profile_requests(sim: Simulator) -> int:
    by = sim.stats()["by_endpoint"].get("employee", {})
    return sum(by.values())


async def test_every_employee_exactly_once_with_every_field(sim: Simulator, tmp_path: Path) -> None:
    result = await export(export_config(sim.base_url, tmp_path))
    assert result.exit_code == 0, result.error
    assert result.committed
    assert result.complete
    frame = snapshot_frame(tmp_path, result.snapshot_id)
    assert_same_rows(frame, expected_frame(sim.truth()))
    manifest = json.loads(Path(result.manifest_path or "").read_text())
    assert manifest["complete"] is True
    assert manifest["tables"]["employees"]["rows"] == 600
    assert manifest["counts"]["failed"] == 0
    # ids are listed at the maximum page size
    assert sim.stats()["by_endpoint"]["employee_ids"]["200"] <= 2 * (600 // 200 + 2)
    # nothing outside committed snapshots under the table folder
    assert [p.name for p in (tmp_path / "employees").iterdir()] == [
        f"snapshot_id={result.snapshot_id}"
    ]
    assert not list((tmp_path / "_staging").glob("*/*"))
    assert [s.snapshot_id for s in list_snapshots(tmp_path)] == [result.snapshot_id]


async def test_employment_details_table(sim: Simulator, tmp_path: Path) -> None:
    from extractor._schema import EMPLOYMENT_DETAILS

    result = await export(export_config(sim.base_url, tmp_path, employment_details=True))
    assert result.exit_code == 0, result.error
    frame = snapshot_frame(tmp_path, result.snapshot_id, "employment_details")
    assert_same_rows(frame, expected_frame(sim.truth_employment_details(), EMPLOYMENT_DETAILS))


async def test_masked_fields_are_null_not_the_mask(tmp_path: Path) -> None:
    sim = await start_simulator(employees=600, seed=SEED, default_sensitive_access=False)
    try:
        result = await export(export_config(sim.base_url, tmp_path))
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    frame = snapshot_frame(tmp_path, result.snapshot_id)
    for column in ("date_of_birth", "gender", "ethnicity"):
        assert frame[column].null_count() == frame.height, column
    assert frame["first_name"].null_count() == 0


async def test_token_expiry_in_the_middle(tmp_path: Path) -> None:
    # 8 in flight at 20 ms: at least 1.5 s for 600 profiles however fast the machine, so
    # the run outlives a 0.4 s token several times.
    sim = await start_simulator(employees=600, seed=SEED, token_lifetime=0.4, latency_ms=20)
    try:
        result = await export(export_config(sim.base_url, tmp_path, max_concurrency=8))
        truth = sim.truth()
        tokens = sim.stats()["by_endpoint"]["token"].get("200", 0)
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    assert tokens >= 2, "the run should have outlived its first token"
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(truth))


async def test_tokens_expiring_while_requests_wait_do_not_end_the_run(tmp_path: Path) -> None:
    # 1 s tokens under a rate limit, with 5xx backoffs: a request's token often expires
    # while it waits for a permit or a backoff. Each such 401 is a routine refresh, not a
    # verdict on the credentials (a review saw whole runs end here, blaming the API key).
    sim = await start_simulator(
        employees=600, seed=SEED, rate_limit=200, burst=20, token_lifetime=1.0, error_rate=0.05
    )
    try:
        result = await export(export_config(sim.base_url, tmp_path))
        truth = sim.truth()
        tokens = sim.stats()["by_endpoint"]["token"].get("200", 0)
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    assert tokens >= 3
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(truth))


@pytest.mark.parametrize("retry_after", [False, True])
async def test_429_storm(tmp_path: Path, retry_after: bool) -> None:
    sim = await start_simulator(
        employees=400, seed=SEED, rate_limit=300, burst=10, retry_after=retry_after
    )
    try:
        result = await export(export_config(sim.base_url, tmp_path))
        truth = sim.truth()
        stats = sim.stats()
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    assert stats["throttled"] > 0, "the limit should have been hit while probing"
    assert result.manifest["requests"]["throttled"] == stats["throttled"]
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(truth))


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rate": 0.1},
        {"reset_rate": 0.05},
        {"truncate_rate": 0.05},
        {"stall_rate": 0.01, "stall_seconds": 5},
    ],
    ids=["5xx", "reset", "truncated", "stalled"],
)
async def test_faults_are_retried(tmp_path: Path, knobs: dict[str, Any]) -> None:
    sim = await start_simulator(employees=300, seed=SEED, **knobs)
    try:
        config = export_config(sim.base_url, tmp_path)
        if "stall_rate" in knobs:
            from extractor._config import Timeouts

            config = config.with_changes(timeouts=Timeouts(connect=2.0, read=0.3))
        result = await export(config)
        truth = sim.truth()
        faults = sim.stats()["faults"]
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    assert sum(faults.values()) > 0
    if "reset_rate" not in knobs:  # aiohttp itself retries a reset keep-alive connection once
        assert result.manifest["requests"]["retries"] > 0
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(truth))


async def test_churn_during_the_run_is_caught_up(tmp_path: Path) -> None:
    sim = await start_simulator(employees=800, seed=SEED, latency_ms=1)
    stats = RunStats()
    churned: list[dict[str, Any]] = []

    async def churn_half_way() -> None:
        while stats.fetched < 300:
            await asyncio.sleep(0.005)
        churned.extend(sim.churn(hires=25, updates=25, terminations=10, deletions=25))

    try:
        task = asyncio.create_task(churn_half_way())
        result = await export(
            export_config(sim.base_url, tmp_path, max_concurrency=16), stats=stats
        )
        await task
        truth = sim.truth()
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    assert len(churned) == 85
    catch_up = result.manifest["catch_up"]
    assert catch_up
    assert catch_up[0]["new"] + catch_up[0]["removed"] + catch_up[0]["changed"] > 0
    assert result.manifest["consistent_at_commit"] is True
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(truth))


async def test_bad_api_key_fails_with_clear_message(sim: Simulator, tmp_path: Path) -> None:
    from extractor._config import Credentials

    creds = Credentials(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_key="wrong-key-123")
    result = await export(export_config(sim.base_url, tmp_path, credentials=creds))
    assert result.exit_code == 1
    assert result.error
    assert "UKG_API_KEY" in result.error
    assert "bearer" in result.error.lower()
    assert "wrong-key-123" not in result.error
    assert CLIENT_SECRET not in result.error
    assert list_snapshots(tmp_path) == []


async def test_bad_client_secret_fails_with_clear_message(sim: Simulator, tmp_path: Path) -> None:
    from extractor._config import Credentials

    creds = Credentials(client_id=CLIENT_ID, client_secret="nope-nope-nope", api_key=API_KEY)
    result = await export(export_config(sim.base_url, tmp_path, credentials=creds))
    assert result.exit_code == 1
    assert result.error
    assert "UKG_CLIENT_SECRET" in result.error
    assert "nope-nope-nope" not in result.error


async def test_unreachable_host_fails_cleanly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from extractor._config import RetryPolicy

    config = export_config(
        f"http://127.0.0.1:{port}", tmp_path, retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.02)
    )
    result = await export(config)
    assert result.exit_code == 1
    assert result.error
    assert "cannot connect" in result.error


async def test_deleted_after_listing_counts_as_vanished(tmp_path: Path) -> None:
    sim = await start_simulator(employees=600, seed=SEED, latency_ms=2)
    stats = RunStats()

    async def delete_once_listed() -> None:
        while stats.listed < 600 or stats.fetched < 100:
            await asyncio.sleep(0.002)
        sim.churn(deletions=60)

    try:
        task = asyncio.create_task(delete_once_listed())
        config = export_config(sim.base_url, tmp_path, max_concurrency=2)
        result = await export(config, stats=stats)
        await task
        truth = sim.truth()
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    counts = result.manifest["counts"]
    assert counts["vanished"] > 0, "some deleted employees were still waiting to be fetched"
    assert counts["failed"] == 0
    assert len(truth) == 540
    assert_same_rows(snapshot_frame(tmp_path, result.snapshot_id), expected_frame(truth))


async def test_the_manifest_records_the_org_graph_checks(tmp_path: Path) -> None:
    sim = await start_simulator(employees=600, seed=SEED)
    try:
        sim.churn(deletions=25)  # some of them managers: their reports now dangle
        result = await export(export_config(sim.base_url, tmp_path))
        truth = sim.truth()
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.error
    graph = result.manifest["org_graph"]
    dangling = [r for r in truth.values() if r["supervisorId"] and r["supervisorId"] not in truth]
    assert graph["employees"] == len(truth)
    assert graph["dangling_supervisor"] == len(dangling)
    assert graph["with_supervisor"] == sum(1 for r in truth.values() if r["supervisorId"])
    assert graph["max_depth"] >= 2
