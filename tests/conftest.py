"""Shared helpers: the simulator on loopback and readers for committed snapshots."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from extractor._config import Credentials, ExportConfig, RetryPolicy, Timeouts
from extractor._schema import EMPLOYEES, TableSpec, records_to_batch
from extractor._sink import PartitionedParquetWriter
from extractor._snapshot import SnapshotStore
from extractor.simulator import Simulator, SimulatorConfig

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret-4f9c2a7e"
API_KEY = "test-api-key-8d1b3c"
ENV = {"UKG_CLIENT_ID": CLIENT_ID, "UKG_CLIENT_SECRET": CLIENT_SECRET, "UKG_API_KEY": API_KEY}
CREDENTIALS = Credentials(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_key=API_KEY)

#: Quick retries so fault tests finish fast (the production default starts at 1 s).
FAST_RETRY = RetryPolicy(max_attempts=8, base=0.02, cap=0.5)


def sim_config(*, employees: int, seed: int, **knobs: Any) -> SimulatorConfig:
    """A simulated tenant whose default account uses the test credentials and sees every field."""
    base: dict[str, Any] = {
        "employees": employees,
        "seed": seed,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "api_key": API_KEY,
        "default_sensitive_access": True,
    }
    base.update(knobs)
    return SimulatorConfig(**base)


async def start_simulator(*, employees: int, seed: int, **knobs: Any) -> Simulator:
    """A simulator built by :func:`sim_config`, listening on loopback; the caller stops it."""
    sim = Simulator(sim_config(employees=employees, seed=seed, **knobs), env={})
    await sim.start()
    return sim


def simulator_fixture(*, employees: int, seed: int, **knobs: Any) -> Any:
    """A test module's ``sim`` fixture: ``sim = simulator_fixture(employees=..., seed=...)``.

    Each test gets a fresh simulator (:func:`start_simulator`), stopped after it.
    """

    @pytest.fixture
    async def sim() -> AsyncIterator[Simulator]:
        started = await start_simulator(employees=employees, seed=seed, **knobs)
        try:
            yield started
        finally:
            await started.stop()

    return sim


def export_config(base_url: str, out: Path, **changes: Any) -> ExportConfig:
    defaults: dict[str, Any] = {
        "base_url": base_url,
        "credentials": CREDENTIALS,
        "out": out,
        "retry": FAST_RETRY,
        "timeouts": Timeouts(connect=5.0, read=5.0),
        "progress": "quiet",
        "checkpoint_interval": 5.0,
    }
    defaults.update(changes)
    return ExportConfig(**defaults)


def snapshot_frame(out: Path, snapshot_id: str, table: str = "employees") -> pl.DataFrame:
    """A committed snapshot as the output contract promises readers see it."""
    frame = pl.scan_parquet(f"{out}/{table}/**/*.parquet", hive_partitioning=True)
    return frame.filter(pl.col("snapshot_id") == snapshot_id).drop("snapshot_id").collect()


def expected_frame(
    truth: Mapping[str, Mapping[str, Any]], spec: TableSpec = EMPLOYEES
) -> pl.DataFrame:
    """The simulator's ground truth converted by the same schema rules."""
    batch = records_to_batch(spec, list(truth.values()))
    frame = pl.from_arrow(pa.Table.from_batches([batch]))
    assert isinstance(frame, pl.DataFrame)
    return frame


def assert_same_rows(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    columns = expected.columns
    assert sorted(actual.columns) == sorted(columns)
    a = actual.select(columns).sort("employee_id")
    e = expected.select(columns).sort("employee_id")
    assert a.height == e.height, f"{a.height} rows, expected {e.height}"
    assert a["employee_id"].n_unique() == a.height, "duplicate employee_id"
    missing = set(e["employee_id"]) - set(a["employee_id"])
    extra = set(a["employee_id"]) - set(e["employee_id"])
    assert not missing, f"missing {sorted(missing)[:5]}"
    assert not extra, f"extra {sorted(extra)[:5]}"
    diff = a.join(e, on="employee_id", suffix="_expected")
    for column in columns:
        if column == "employee_id":
            continue
        bad = diff.filter(pl.col(column).ne_missing(pl.col(f"{column}_expected")))
        assert bad.height == 0, f"{column} differs for {bad['employee_id'].head(5).to_list()}"


# -- committed snapshots for the analysis tests (diff, history, check) ------------------------


def write_snapshot(
    out: Path,
    sid: str,
    rows: Sequence[Mapping[str, Any]] | pl.DataFrame,
    *,
    spec: TableSpec = EMPLOYEES,
    complete: bool = True,
    schema_version: int | None = None,
    committed_at: datetime | None = None,
) -> None:
    """Commit a snapshot of ``rows`` (snake_case columns; missing ones null) into ``out``."""
    if isinstance(rows, pl.DataFrame):
        table = rows.select(spec.schema.names).to_arrow().cast(spec.schema)
    else:
        table = pa.Table.from_pylist([dict(r) for r in rows], schema=spec.schema)
    store = SnapshotStore(out, tables={spec.name: spec})
    staged = store.begin(sid, {})
    writer = PartitionedParquetWriter(
        staged.table_dir(spec.name), spec, file_prefix="p0", snapshot_id=sid
    )
    for batch in table.to_batches(max_chunksize=50_000):
        writer.write(batch)
    staged.record_finished(spec.name, writer.close(), 0)
    moment = committed_at or datetime.strptime(sid, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    manifest = {"mode": "full", "complete": complete, "started_at": sid}
    path = store.commit(staged, manifest, now=moment)
    if schema_version is not None:  # the store always writes the current version
        data = json.loads(path.read_text())
        data["schema_version"] = schema_version
        path.write_text(json.dumps(data))
