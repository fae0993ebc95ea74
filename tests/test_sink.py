"""The Parquet sink: Hive partitions, large row groups, rolling, durability, the async face."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from extractor import _sink
from extractor._errors import SnapshotError
from extractor._schema import EMPLOYEES, records_to_batch
from extractor._sink import (
    AsyncTableWriter,
    FinishedFile,
    PartitionedParquetWriter,
    hive_segment,
)

# polars parses hive values that look like dates by default and cannot parse the snapshot id
# format (YYYYMMDDTHHMMSSZ): readers pass try_parse_hive_dates=False or a hive_schema.
HIVE = {"hive_partitioning": True, "try_parse_hive_dates": False}


def employee(i: int, company: str | None = "A", **fields: Any) -> dict[str, Any]:
    return {
        "employeeId": f"E{i:07d}",
        "firstName": f"First{i}",
        "lastName": f"Last{i % 1000}",
        "emailAddress": f"user{i}@example.com",
        "employeeNumber": str(100000 + i),
        "hireDate": "2021-06-01",
        "jobTitle": "Engineer",
        "companyCode": company,
        "dateOfBirth": "*****",
        **fields,
    }


def batch_of(start: int, count: int, companies: list[str | None]) -> pa.RecordBatch:
    records = [employee(i, companies[i % len(companies)]) for i in range(start, start + count)]
    return records_to_batch(EMPLOYEES, records)


def parquet_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.parquet"))


def inprogress_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.inprogress"))


def all_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_hive_segment_escapes_like_hive() -> None:
    assert hive_segment("company_code", "CORP01") == "company_code=CORP01"
    assert hive_segment("company_code", "A/B") == "company_code=A%2FB"
    assert hive_segment("company_code", "50%=x") == "company_code=50%25%3Dx"
    assert hive_segment("company_code", "a\nb") == "company_code=a%0Ab"
    assert hive_segment("company_code", "Zürich Süd") == "company_code=Zürich Süd"
    assert hive_segment("company_code", None) == "company_code=__HIVE_DEFAULT_PARTITION__"
    assert hive_segment("company_code", "") == "company_code=__HIVE_DEFAULT_PARTITION__"


def test_partitions_by_company_readable_by_polars_and_pyarrow(tmp_path: Path) -> None:
    table_dir = tmp_path / "employees" / "snapshot_id=20240101T000000Z"
    writer = PartitionedParquetWriter(table_dir, EMPLOYEES, file_prefix="part")
    companies: list[str | None] = ["A", "B/2", None, "50%"]
    for start in range(0, 4000, 500):
        writer.write(batch_of(start, 500, companies))
    files = writer.close()

    assert {f.partition for f in files} == set(companies)
    assert sum(f.rows for f in files) == 4000
    for f in files:
        assert (table_dir / f.path).stat().st_size == f.bytes
        assert f.path.startswith(hive_segment("company_code", f.partition) + "/part-")
        schema = pq.read_schema(table_dir / f.path)
        assert schema.equals(EMPLOYEES.file_schema)  # partition values stored as strings too

    df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", **HIVE).collect()
    assert df.height == 4000
    assert df["snapshot_id"].unique().to_list() == ["20240101T000000Z"]
    counts = dict(df.group_by("company_code").len().iter_rows())
    assert counts == {"A": 1000, "B/2": 1000, None: 1000, "50%": 1000}
    assert df.schema["hire_date"] == pl.Date
    assert df.filter(pl.col("employee_id") == "E0000002")["company_code"].to_list() == [None]

    dataset = ds.dataset(tmp_path / "employees", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 4000
    assert set(table.column("company_code").to_pylist()) == set(companies)
    assert table.column("date_of_birth").null_count == 4000  # masked -> null


def test_readers_keep_codes_as_text_with_a_hive_schema(tmp_path: Path) -> None:
    table_dir = tmp_path / "employees" / "snapshot_id=20240101T000000Z"
    writer = PartitionedParquetWriter(table_dir, EMPLOYEES, file_prefix="part")
    writer.write(batch_of(0, 10, ["001", "002"]))
    writer.close()
    hive_schema = {"snapshot_id": pl.String, "company_code": pl.String}
    df = pl.scan_parquet(
        f"{tmp_path}/employees/**/*.parquet", hive_partitioning=True, hive_schema=hive_schema
    ).collect()
    assert sorted(df["company_code"].unique()) == ["001", "002"]  # leading zeros kept
    assert df["snapshot_id"].unique().to_list() == ["20240101T000000Z"]


def test_plain_polars_call_from_the_contract(tmp_path: Path) -> None:
    table_dir = tmp_path / "employees" / "snapshot_id=20240101T000000Z"
    writer = PartitionedParquetWriter(table_dir, EMPLOYEES, file_prefix="part")
    writer.write(batch_of(0, 10, ["A"]))
    writer.close()
    df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", hive_partitioning=True).collect()
    assert df.height == 10


def test_row_groups_are_large_not_one_per_batch(tmp_path: Path) -> None:
    writer = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=1000)
    for start in range(0, 5500, 100):  # 55 small batches
        writer.write(batch_of(start, 100, ["A"]))
    (finished,) = writer.close()
    metadata = pq.read_metadata(tmp_path / finished.path)
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes == [1000] * 5 + [500]


def test_file_format_zstd_statistics_dictionary(tmp_path: Path) -> None:
    writer = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part")
    writer.write(batch_of(0, 2000, ["A"]))
    (finished,) = writer.close()
    metadata = pq.read_metadata(tmp_path / finished.path)
    column = metadata.row_group(0).column(0)
    assert column.compression == "ZSTD"
    assert column.statistics is not None
    assert column.statistics.has_min_max
    job_title = metadata.row_group(0).column(EMPLOYEES.file_schema.get_field_index("job_title"))
    assert any("DICTIONARY" in e for e in job_title.encodings)


def test_files_roll_at_max_file_bytes(tmp_path: Path) -> None:
    writer = PartitionedParquetWriter(
        tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=500, max_file_bytes=20_000
    )
    for start in range(0, 10_000, 1000):
        writer.write(batch_of(start, 1000, ["A"]))
    files = writer.close()
    assert len(files) > 2
    assert sum(f.rows for f in files) == 10_000
    names = [f.path for f in files]
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for f in files[:-1]:
        assert f.bytes >= 20_000  # rolled once the limit was reached, not before
    read = pl.read_parquet(tmp_path / "company_code=A" / "*.parquet")
    assert read["employee_id"].n_unique() == 10_000


def test_buffering_is_bounded_across_many_partitions(tmp_path: Path) -> None:
    companies: list[str | None] = [f"C{i:02d}" for i in range(40)]
    writer = PartitionedParquetWriter(
        tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=10_000, max_buffered_rows=1_000
    )
    for start in range(0, 8_000, 400):
        writer.write(batch_of(start, 400, companies))
        assert writer.buffered_rows <= 1_000
    files = writer.close()
    assert sum(f.rows for f in files) == 8_000
    assert writer.buffered_rows == 0


def test_buffering_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    limit = 200_000
    writer = PartitionedParquetWriter(
        tmp_path,
        EMPLOYEES,
        file_prefix="part",
        row_group_rows=100_000,
        max_buffered_bytes=limit,
    )
    per_batch = batch_of(0, 400, ["A", "B"]).nbytes
    for start in range(0, 8_000, 400):
        writer.write(batch_of(start, 400, ["A", "B"]))
        assert 0 < writer.buffered_bytes <= limit
        assert writer.buffered_bytes >= writer.buffered_rows * per_batch // 400 // 2
    files = writer.close()
    assert sum(f.rows for f in files) == 8_000
    assert (writer.buffered_rows, writer.buffered_bytes) == (0, 0)
    # written early, but still in row groups of many batches each
    metadata = pq.ParquetFile(tmp_path / files[0].path).metadata
    assert metadata.num_row_groups > 1
    assert metadata.row_group(0).num_rows > 400


def test_snapshot_column_is_in_every_file_but_not_buffered(tmp_path: Path) -> None:
    writer = PartitionedParquetWriter(
        tmp_path / "_staging" / "20240101T000000Z" / "employees", EMPLOYEES, file_prefix="p"
    )
    batch = batch_of(0, 300, ["A"])
    writer.write(batch)
    assert writer.buffered_bytes == batch.nbytes
    (file,) = writer.close()
    table = pq.read_table(tmp_path / "_staging" / "20240101T000000Z" / "employees" / file.path)
    assert table.schema.equals(EMPLOYEES.file_schema)
    assert set(table.column("snapshot_id").to_pylist()) == {"20240101T000000Z"}


def test_in_progress_files_are_never_visible_under_final_names(tmp_path: Path) -> None:
    writer = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=100)
    writer.write(batch_of(0, 1000, ["A"]))  # ten row groups already on disk
    assert parquet_files(tmp_path) == []
    hidden = sorted(p.name for p in (tmp_path / "company_code=A").iterdir())
    assert hidden == [".part-00000.parquet.inprogress"]
    assert ds.dataset(tmp_path, format="parquet").files == []  # readers skip dot files

    files = writer.checkpoint()
    assert [f.path for f in files] == ["company_code=A/part-00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "company_code=A").iterdir()) == ["part-00000.parquet"]
    writer.write(batch_of(1000, 200, ["A"]))
    assert [p.name for p in parquet_files(tmp_path)] == ["part-00000.parquet"]
    writer.close()
    assert [p.name for p in parquet_files(tmp_path)] == ["part-00000.parquet", "part-00001.parquet"]


def test_checkpoint_fsyncs_before_rename_and_survives_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        events.append(("rename", str(src)))
        real_rename(src, dst)

    monkeypatch.setattr(_sink.os, "fsync", fsync)
    monkeypatch.setattr(_sink.os, "rename", rename)

    writer = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=100)
    writer.write(batch_of(0, 250, ["A", "B"]))
    files = writer.checkpoint()
    assert len(files) == 2
    for f in files:
        tmp = str(tmp_path / Path(f.path).parent / f".{Path(f.path).name}.inprogress")
        assert events.index(("fsync", tmp)) < events.index(("rename", tmp))
        # the directory entry is fsynced after the rename
        renamed_at = events.index(("rename", tmp))
        assert ("fsync", str((tmp_path / f.path).parent)) in events[renamed_at:]

    # The process "dies" with a file open: what was checkpointed is complete and readable.
    writer.write(batch_of(250, 500, ["A"]))
    for f in files:
        assert pq.read_table(tmp_path / f.path).num_rows == f.rows
    writer.abort()
    assert [p.name for p in (tmp_path / "company_code=A").iterdir()] == ["part-00000.parquet"]


def test_names_already_taken_are_skipped_not_overwritten(tmp_path: Path) -> None:
    first = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part")
    first.write(batch_of(0, 10, ["A"]))
    (one,) = first.close()
    second = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part")
    second.write(batch_of(10, 10, ["A"]))
    (two,) = second.close()
    assert one.path != two.path
    assert pq.read_table(tmp_path / one.path).num_rows == 10


def test_wrong_schema_is_refused(tmp_path: Path) -> None:
    writer = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part")
    with pytest.raises(ValueError, match="schema"):
        writer.write(pa.record_batch({"employee_id": ["E1"]}))


def test_disk_full_is_a_snapshot_error_and_writer_stays_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sink, "_open_output", lambda path: pa.OSFile("/dev/full", "wb"))
    writer = PartitionedParquetWriter(tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=10)
    with pytest.raises(SnapshotError, match=r"disk full writing .*free space and rerun"):
        writer.write(batch_of(0, 100, ["A"]))
    with pytest.raises(SnapshotError, match="disk full"):
        writer.checkpoint()
    writer.abort()
    assert parquet_files(tmp_path) == []


# -- AsyncTableWriter ---------------------------------------------------------------------


async def test_async_writer_writes_and_checkpoints(tmp_path: Path) -> None:
    writer = AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=1000)
    for start in range(0, 3000, 250):
        await writer.write([employee(i, ["A", "B"][i % 2]) for i in range(start, start + 250)])
    first = await writer.checkpoint()
    assert sum(f.rows for f in first) == 3000
    assert all(isinstance(f, FinishedFile) for f in first)
    await writer.write([employee(i) for i in range(3000, 3010)])
    second = await writer.close()
    assert [f.rows for f in second] == [10]
    assert await writer.close() == []  # idempotent
    df = pl.read_parquet(tmp_path / "**" / "*.parquet", hive_partitioning=True)
    assert df.height == 3010
    assert writer.rows_accepted == 3010


async def test_async_writer_rejects_bad_records_not_the_batch(tmp_path: Path) -> None:
    writer = AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part")
    records = [employee(i) for i in range(10)]
    records[3]["hireDate"] = "not a date"
    records[7]["firstName"] = 7
    await writer.write(records)
    files = await writer.close()
    assert sum(f.rows for f in files) == 8
    assert [r.employee_id for r in writer.rejected] == ["E0000003", "E0000007"]
    assert "hireDate" in writer.rejected[0].reason


async def test_async_writer_does_not_block_the_event_loop(tmp_path: Path) -> None:
    records = [employee(i, ["A", "B", "C"][i % 3]) for i in range(150_000)]
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    writer = AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part")
    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await writer.write(records)
    queued = time.perf_counter() - started
    files = await writer.close()
    elapsed = time.perf_counter() - started
    stop.set()
    await ticking

    assert sum(f.rows for f in files) == 150_000
    assert queued < 0.05  # write() only queues
    assert elapsed > 0.2  # the work was long enough for the test to mean something
    assert len(gaps) > 20
    assert max(gaps) < 0.25, f"event loop stalled for {max(gaps):.3f} s"


async def test_async_writer_applies_backpressure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    writer = AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part", max_pending_batches=2)
    real_write = writer._writer.write

    def slow_write(batch: pa.RecordBatch) -> None:
        gate.wait(10)
        real_write(batch)

    monkeypatch.setattr(writer._writer, "write", slow_write)
    await writer.write([employee(1)])
    await writer.write([employee(2)])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(writer.write([employee(3)]), 0.2)
    gate.set()
    await asyncio.wait_for(writer.write([employee(4)]), 5)
    files = await writer.close()
    assert sum(f.rows for f in files) == 3  # the write that timed out was never queued


async def test_async_writer_surfaces_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sink, "_open_output", lambda path: pa.OSFile("/dev/full", "wb"))
    writer = AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=10)
    await writer.write([employee(i) for i in range(100)])  # fails in the thread
    with pytest.raises(SnapshotError, match=r"disk full writing .*work written so far is kept"):
        await writer.checkpoint()
    with pytest.raises(SnapshotError, match="disk full"):
        await writer.write([employee(200)])
    with pytest.raises(SnapshotError, match="disk full"):
        await writer.close()
    assert inprogress_files(tmp_path) == []


async def test_async_writer_surfaces_error_raised_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(path: Path) -> pa.NativeFile:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(_sink, "_open_output", no_space)
    writer = AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part")
    await writer.write([employee(1)])
    with pytest.raises(SnapshotError, match="disk full"):
        await writer.close()


async def test_async_writer_context_aborts_on_error(tmp_path: Path) -> None:
    async def fail_half_way() -> None:
        async with AsyncTableWriter(
            tmp_path, EMPLOYEES, file_prefix="part", row_group_rows=10
        ) as writer:
            await writer.write([employee(i) for i in range(100)])
            await writer.checkpoint()
            await writer.write([employee(i) for i in range(100, 150)])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_half_way()
    # the checkpointed file stays; the open one is gone
    assert all_files(tmp_path) == ["part-00000.parquet"]


async def test_async_writer_context_closes_on_success(tmp_path: Path) -> None:
    async with AsyncTableWriter(tmp_path, EMPLOYEES, file_prefix="part") as writer:
        await writer.write([employee(i) for i in range(5)])
    assert pq.read_table(tmp_path / "company_code=A" / "part-00000.parquet").num_rows == 5
    with pytest.raises(RuntimeError, match="closed"):
        await writer.write([employee(9)])
