"""Snapshots on disk: lock, staging, journal, resume, commit, recovery and listing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from extractor._errors import SnapshotError
from extractor._schema import EMPLOYEES, EMPLOYMENT_DETAILS, records_to_batch
from extractor._sink import FinishedFile, PartitionedParquetWriter
from extractor._snapshot import (
    SnapshotStore,
    latest_snapshot,
    list_snapshots,
)
from extractor._staging import StagedSnapshot

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
HIVE = {"hive_partitioning": True, "try_parse_hive_dates": False}
REPO = Path(__file__).resolve().parents[1]


def employee(employee_id: str, company: str = "A", **fields: Any) -> dict[str, Any]:
    return {"employeeId": employee_id, "companyCode": company, "firstName": "F", **fields}


def write_files(
    staged: StagedSnapshot,
    ids: list[str],
    *,
    pass_no: int = 1,
    table: str = "employees",
    company: str | list[str] = "A",
    prefix: str | None = None,
    journal: bool = True,
) -> list[FinishedFile]:
    """Write ids into one checkpoint of a table's staging folder, journaled by default."""
    spec = {"employees": EMPLOYEES, "employment_details": EMPLOYMENT_DETAILS}[table]
    companies = [company] if isinstance(company, str) else company
    records = [employee(i, companies[n % len(companies)]) for n, i in enumerate(ids)]
    writer = PartitionedParquetWriter(
        staged.table_dir(table), spec, file_prefix=prefix or f"part-{pass_no:03d}"
    )
    writer.write(records_to_batch(spec, records))
    files = writer.close()
    if journal:
        staged.record_finished(table, files, pass_no)
    return files


def begin(out: Path, now: datetime = NOW) -> tuple[SnapshotStore, StagedSnapshot]:
    store = SnapshotStore(out)
    staged = store.begin(store.new_snapshot_id(now), {"fingerprint": "abc", "pass_no": 0})
    return store, staged


def committed_ids(out: Path, table: str = "employees") -> list[str]:
    df = pl.scan_parquet(f"{out}/{table}/**/*.parquet", **HIVE).collect()
    return sorted(df["employee_id"].to_list())


# -- ids, lock, begin -----------------------------------------------------------------------


def test_new_snapshot_id_is_utc_and_unique(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.new_snapshot_id(NOW) == "20240506T070809Z"
    store.begin("20240506T070809Z", {})
    assert store.new_snapshot_id(NOW) == "20240506T070810Z"
    (tmp_path / "employees" / "snapshot_id=20240506T070810Z").mkdir(parents=True)
    assert store.new_snapshot_id(NOW) == "20240506T070811Z"
    with pytest.raises(ValueError, match="timezone"):
        store.new_snapshot_id(datetime(2024, 1, 1))


def test_lock_prevents_a_second_run(tmp_path: Path) -> None:
    first, second = SnapshotStore(tmp_path), SnapshotStore(tmp_path)
    busy = rf"another ukg-extract run \(pid {os.getpid()}\)"
    with first.lock(), pytest.raises(SnapshotError, match=busy), second.lock():
        pass  # pragma: no cover
    with second.lock():  # released on exit
        pass


def test_lock_is_held_against_another_process(tmp_path: Path) -> None:
    script = "import sys, time\nfrom pathlib import Path\nfrom extractor._snapshot import "
    script += "SnapshotStore\nwith SnapshotStore(Path(sys.argv[1])).lock():\n"
    script += "    print('locked', flush=True)\n    time.sleep(30)\n"
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(SnapshotError, match=f"pid {child.pid}"), SnapshotStore(tmp_path).lock():
            pass  # pragma: no cover
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    with SnapshotStore(tmp_path).lock():  # a killed holder releases the lock
        pass


def test_begin_and_run_state_round_trip(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    assert staged.run_state == {"fingerprint": "abc", "pass_no": 0}
    staged.save_run_state({**staged.run_state, "pass_no": 2, "started_at": NOW})
    again = SnapshotStore(tmp_path).in_progress()
    assert again is not None
    assert again.snapshot_id == staged.snapshot_id
    assert again.run_state == {
        "fingerprint": "abc",
        "pass_no": 2,
        "started_at": "2024-05-06T07:08:09Z",
    }
    with pytest.raises(SnapshotError, match="already exists"):
        store.begin(staged.snapshot_id, {})
    assert [p.name for p in (tmp_path / "_staging").iterdir()] == [staged.snapshot_id]


def test_in_progress_returns_the_newest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.in_progress() is None
    store.begin("20240101T000000Z", {})
    store.begin("20240301T000000Z", {})
    staged = store.in_progress()
    assert staged is not None
    assert staged.snapshot_id == "20240301T000000Z"


def test_discard_removes_staging(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1"])
    store.discard(staged)
    assert store.in_progress() is None
    assert list((tmp_path / "_staging").iterdir()) == []


# -- journal and resume ---------------------------------------------------------------------


def test_journal_records_files_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    _, staged = begin(tmp_path)
    files = write_files(staged, ["E1", "E2", "E3"], company=["A", "B"])
    assert [(e.path, e.rows, e.partition, e.pass_no) for e in staged.journal()] == [
        (f.path, f.rows, f.partition, 1) for f in files
    ]
    with open(staged.journal_path, "ab") as fh:
        fh.write(b'{"table": "employees", "path": "company_code=A/part-9')  # kill -9 mid-line
    assert len(staged.journal()) == 2
    more = write_files(staged, ["E4"], pass_no=2)  # appending after a torn line stays valid
    entries = staged.journal()
    assert [e.path for e in entries] == [f.path for f in files + more]
    assert staged.journal_path.read_bytes().endswith(b"\n")
    assert staged.written_ids("employees") == {"E1", "E2", "E3", "E4"}


def test_corrupt_journal_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    _, staged = begin(tmp_path)
    write_files(staged, ["E1"])
    with open(staged.journal_path, "ab") as fh:
        fh.write(b"garbage\n")
    write_files(staged, ["E2"], pass_no=2)
    with pytest.raises(SnapshotError, match=r"corrupt.*--fresh"):
        staged.journal()


def test_resume_deletes_unjournaled_files(tmp_path: Path) -> None:
    _, staged = begin(tmp_path)
    kept = write_files(staged, ["E1", "E2"])
    write_files(staged, ["E3"], prefix="late", journal=False)  # finished after the checkpoint
    open_writer = PartitionedParquetWriter(
        staged.table_dir("employees"), EMPLOYEES, file_prefix="open", row_group_rows=1
    )
    open_writer.write(records_to_batch(EMPLOYEES, [employee("E4", "C")]))  # still in progress
    table_dir = staged.path / "employees"
    assert len([p for p in table_dir.rglob("*") if p.is_file()]) == 3

    entries = staged.resume()

    assert [e.path for e in entries["employees"]] == [f.path for f in kept]
    remaining = sorted(p.relative_to(table_dir).as_posix() for p in table_dir.rglob("*"))
    assert remaining == ["company_code=A", kept[0].path]
    assert staged.written_ids("employees") == {"E1", "E2"}
    assert staged.written_ids("employment_details") == set()
    open_writer.abort()


def test_resume_forgets_journaled_files_that_vanished(tmp_path: Path) -> None:
    _, staged = begin(tmp_path)
    write_files(staged, ["E1"], company="A")
    gone = write_files(staged, ["E2"], company="B", pass_no=2)
    (staged.path / "employees" / gone[0].path).unlink()
    entries = staged.resume()
    assert [e.partition for e in entries["employees"]] == ["A"]
    assert staged.written_ids("employees") == {"E1"}  # E2 will be fetched again
    assert len(staged.journal()) == 1


def test_kill_9_mid_write_then_resume(tmp_path: Path) -> None:
    """A real process killed with SIGKILL between checkpoints; the rerun keeps what it journaled."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        from datetime import UTC, datetime
        from pathlib import Path
        from extractor._schema import EMPLOYEES, records_to_batch
        from extractor._sink import PartitionedParquetWriter
        from extractor._snapshot import SnapshotStore

        store = SnapshotStore(Path(sys.argv[1]))
        with store.lock():
            staged = store.begin(store.new_snapshot_id(datetime.now(UTC)), {"pass_no": 0})
            writer = PartitionedParquetWriter(
                staged.table_dir("employees"), EMPLOYEES, file_prefix="p", row_group_rows=100
            )
            def batch(lo, hi):
                return records_to_batch(EMPLOYEES, [
                    {"employeeId": f"E{i:05d}", "companyCode": "AB"[i % 2]} for i in range(lo, hi)
                ])
            writer.write(batch(0, 1000))
            staged.record_finished("employees", writer.checkpoint(), 1)
            writer.write(batch(1000, 1500))   # row groups on disk, files still open
            writer.checkpoint()               # finished files that never reach the journal
            writer.write(batch(1500, 1800))
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, check=False, timeout=60
    )
    assert result.returncode == -signal.SIGKILL

    store = SnapshotStore(tmp_path)
    with store.lock():  # the dead process's lock is gone
        staged = store.in_progress()
        assert staged is not None
        table_dir = staged.path / "employees"
        assert any(p.name.endswith(".inprogress") for p in table_dir.rglob("*"))
        staged.resume()
        assert not any(p.name.endswith(".inprogress") for p in table_dir.rglob("*"))
        assert staged.written_ids("employees") == {f"E{i:05d}" for i in range(1000)}
        write_files(staged, [f"E{i:05d}" for i in range(1000, 1800)], pass_no=2, prefix="q")
        store.commit(staged, {"complete": True})
    assert committed_ids(tmp_path) == [f"E{i:05d}" for i in range(1800)]


# -- commit ---------------------------------------------------------------------------------


def test_commit_publishes_tables_and_manifest(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1", "E2", "E3", "E4"], company=["A", "B"])
    write_files(staged, ["E1", "E2"], table="employment_details")
    manifest = {"complete": True, "mode": "full", "tenant": "Zürich AG", "started_at": NOW}
    path = store.commit(staged, manifest, now=NOW)

    assert path == tmp_path / "_snapshots" / f"{staged.snapshot_id}.json"
    assert not staged.path.exists()
    assert list((tmp_path / "_staging").iterdir()) == []
    text = path.read_text(encoding="utf-8")
    assert "Zürich AG" in text  # UTF-8, not \u escapes
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    data = json.loads(text)
    assert data["snapshot_id"] == staged.snapshot_id
    assert data["schema_version"] == 1
    assert data["committed_at"] == "2024-05-06T07:08:09Z"
    assert data["started_at"] == "2024-05-06T07:08:09Z"
    assert data["tables"]["employees"]["rows"] == 4
    assert data["tables"]["employees"]["files"] == 2
    assert data["tables"]["employees"]["partitions"] == ["A", "B"]
    assert data["tables"]["employment_details"]["rows"] == 2
    files = list((tmp_path / "employees").rglob("*.parquet"))
    assert data["tables"]["employees"]["bytes"] == sum(p.stat().st_size for p in files)
    assert [p.name for p in (tmp_path / "_snapshots").iterdir()] == [path.name]  # no temp left

    df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", **HIVE).collect()
    assert sorted(df["employee_id"]) == ["E1", "E2", "E3", "E4"]
    assert set(df["snapshot_id"]) == {staged.snapshot_id}
    assert committed_ids(tmp_path, "employment_details") == ["E1", "E2"]
    assert store.read_manifest(staged.snapshot_id) == data


def test_commit_applies_exclusions_rewriting_only_affected_files(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1", "E2", "E3"], pass_no=1, company="A")
    untouched = write_files(staged, ["E4", "E5"], pass_no=1, company="B")
    write_files(staged, ["E6"], pass_no=1, company="C")  # every row excluded: file goes
    write_files(staged, ["E2", "E6"], pass_no=2, company="D")  # refetched in a catch-up pass
    before = (staged.path / "employees" / untouched[0].path).stat()

    store.commit(staged, {"complete": True}, removed={"E3", "E9"}, latest_pass={"E2": 2, "E6": 2})

    df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", **HIVE).collect()
    rows = sorted(df.select("employee_id", "company_code").iter_rows())
    assert rows == [("E1", "A"), ("E2", "D"), ("E4", "B"), ("E5", "B"), ("E6", "D")]
    table_dir = store.table_path("employees", staged.snapshot_id)
    after = (table_dir / untouched[0].path).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not (table_dir / "company_code=C").exists()
    stats = store.read_manifest(staged.snapshot_id)["tables"]["employees"]
    assert stats["rows"] == 5
    assert stats["files"] == 3
    assert stats["partitions"] == ["A", "B", "D"]
    for path in table_dir.rglob("*.parquet"):  # rewritten files keep the sink's format
        assert pq.read_schema(path).equals(EMPLOYEES.file_schema)
        assert pq.read_metadata(path).row_group(0).column(0).compression == "ZSTD"


def test_duplicates_refuse_to_commit(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1", "E2"], company="A")
    write_files(staged, ["E2", "E3"], company="B", prefix="again")
    with pytest.raises(SnapshotError, match=r"1 employee_id value\(s\) occur more than once.*E2"):
        store.commit(staged, {"complete": True})
    assert not (tmp_path / "employees").exists()
    assert list_snapshots(tmp_path) == []
    assert staged.path.is_dir()  # kept for a rerun
    assert staged.written_ids("employees") == {"E1", "E2", "E3"}


def test_unjournaled_files_refuse_to_commit(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1"])
    write_files(staged, ["E2"], prefix="late", journal=False)
    with pytest.raises(SnapshotError, match="not in the journal"):
        store.commit(staged, {"complete": True})
    assert list_snapshots(tmp_path) == []


def test_manifest_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1"])
    write_files(staged, ["E1"], table="employment_details")
    real = SnapshotStore._publish_manifest
    seen: list[bool] = []

    def publish(self: SnapshotStore, snapshot_id: str, data: bytes) -> None:
        for table in ("employees", "employment_details"):
            seen.append(self.table_path(table, snapshot_id).is_dir())
            seen.append(not (staged.path / table).exists())
        real(self, snapshot_id, data)

    monkeypatch.setattr(SnapshotStore, "_publish_manifest", publish)
    store.commit(staged, {"complete": True})
    assert seen == [True] * 4


def test_crash_between_rename_and_manifest_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1", "E2"], company=["A", "B"])
    write_files(staged, ["E1"], table="employment_details")

    def crash(self: SnapshotStore, snapshot_id: str, data: bytes) -> None:
        raise KeyboardInterrupt  # stands in for kill -9: nothing after this runs

    monkeypatch.setattr(SnapshotStore, "_publish_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        store.commit(staged, {"complete": True, "mode": "full"})
    monkeypatch.undo()
    assert list_snapshots(tmp_path) == []
    assert store.table_path("employees", staged.snapshot_id).is_dir()

    rerun = SnapshotStore(tmp_path)
    assert rerun.in_progress() is None
    assert rerun.recovered_commits == [staged.snapshot_id]
    (info,) = list_snapshots(tmp_path)
    assert info.snapshot_id == staged.snapshot_id
    assert info.rows == {"employees": 2, "employment_details": 1}
    assert info.mode == "full"
    assert not (tmp_path / "_staging" / staged.snapshot_id).exists()
    assert committed_ids(tmp_path) == ["E1", "E2"]


def test_crash_after_one_table_moved_is_finished_by_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1"])
    write_files(staged, ["E1"], table="employment_details")
    real_rename = os.rename
    calls: list[str] = []

    def rename_once(src: Any, dst: Any) -> None:
        if "snapshot_id=" in str(dst):
            calls.append(str(dst))
            if len(calls) == 2:
                raise KeyboardInterrupt  # died after moving the first table
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_once)
    with pytest.raises(KeyboardInterrupt):
        store.commit(staged, {"complete": True})
    monkeypatch.undo()
    assert staged.commit_pending
    with pytest.raises(SnapshotError, match="being committed"):
        staged.resume()

    path = store.commit(staged)  # finishes with the manifest saved before the renames
    assert json.loads(path.read_text())["complete"] is True
    assert committed_ids(tmp_path) == ["E1"]
    assert committed_ids(tmp_path, "employment_details") == ["E1"]


def test_discard_of_an_interrupted_commit_removes_moved_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["E1"])

    def crash(self: SnapshotStore, snapshot_id: str, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SnapshotStore, "_publish_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        store.commit(staged, {"complete": True})
    monkeypatch.undo()
    store.discard(staged)
    assert not store.table_path("employees", staged.snapshot_id).exists()
    assert store.in_progress() is None
    assert list_snapshots(tmp_path) == []


def test_readers_see_committed_snapshots_only(tmp_path: Path) -> None:
    store, first = begin(tmp_path)
    write_files(first, ["E1", "E2"])
    store.commit(first, {"complete": True})

    second = store.begin(store.new_snapshot_id(NOW), {})
    write_files(second, ["E1", "E2", "E3"], company=["A", "B"])
    in_flight = PartitionedParquetWriter(
        second.table_dir("employees"), EMPLOYEES, file_prefix="open", row_group_rows=1
    )
    in_flight.write(records_to_batch(EMPLOYEES, [employee("E4")]))

    def visible() -> tuple[set[str], set[str]]:
        df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", **HIVE).collect()
        table = ds.dataset(tmp_path / "employees", format="parquet", partitioning="hive").to_table()
        return set(df["snapshot_id"]), set(table.column("snapshot_id").to_pylist())

    assert visible() == ({first.snapshot_id}, {first.snapshot_id})
    in_flight.abort()
    store.commit(second, {"complete": True})
    both = {first.snapshot_id, second.snapshot_id}
    assert visible() == (both, both)
    df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", **HIVE).collect()
    assert dict(df.group_by("snapshot_id").len().iter_rows()) == {
        first.snapshot_id: 2,
        second.snapshot_id: 3,
    }


def test_list_and_latest_snapshots(tmp_path: Path) -> None:
    assert list_snapshots(tmp_path) == []
    assert latest_snapshot(tmp_path) is None
    store = SnapshotStore(tmp_path)
    for n, complete in enumerate([True, True, False]):
        staged = store.begin(f"2024010{n + 1}T000000Z", {})
        write_files(staged, [f"E{i}" for i in range(n + 1)])
        manifest = {
            "complete": complete,
            "mode": "full",
            "started_at": f"2024-01-0{n + 1}T00:00:00Z",
            "finished_at": f"2024-01-0{n + 1}T00:10:00Z",
        }
        store.commit(staged, manifest)
    (tmp_path / "_snapshots" / "README.txt").write_text("not a manifest")

    infos = list_snapshots(tmp_path)
    assert [i.snapshot_id for i in infos] == [
        "20240101T000000Z",
        "20240102T000000Z",
        "20240103T000000Z",
    ]
    assert [i.rows["employees"] for i in infos] == [1, 2, 3]
    assert [i.complete for i in infos] == [True, True, False]
    assert infos[0].started_at == "2024-01-01T00:00:00Z"
    assert infos[0].finished_at == "2024-01-01T00:10:00Z"
    assert infos[0].mode == "full"
    assert infos[0].manifest["snapshot_id"] == "20240101T000000Z"
    assert infos[0].manifest_path == tmp_path / "_snapshots" / "20240101T000000Z.json"
    latest = latest_snapshot(tmp_path)
    assert latest is not None
    assert latest.snapshot_id == "20240102T000000Z"
    any_latest = latest_snapshot(tmp_path, complete_only=False)
    assert any_latest is not None
    assert any_latest.snapshot_id == "20240103T000000Z"


def test_unknown_table_name_is_refused(tmp_path: Path) -> None:
    _, staged = begin(tmp_path)
    with pytest.raises(ValueError, match="unknown table"):
        staged.table_dir("payroll")


def test_rows_of_a_later_pass_replace_earlier_ones_without_being_told(tmp_path: Path) -> None:
    # A resumed run refetches an id that an earlier segment had already written: the
    # commit keeps the row of the highest pass, even with no latest_pass given.
    store, staged = begin(tmp_path)
    write_files(staged, ["e1", "e2", "e3"], pass_no=0)
    write_files(staged, ["e2"], pass_no=2, company="B")
    store.commit(staged, {"mode": "full"})
    df = pl.scan_parquet(f"{tmp_path}/employees/**/*.parquet", **HIVE).collect()
    assert sorted(df["employee_id"].to_list()) == ["e1", "e2", "e3"]
    assert df.filter(pl.col("employee_id") == "e2")["company_code"].to_list() == ["B"]


def test_same_pass_duplicates_still_refuse_to_commit(tmp_path: Path) -> None:
    store, staged = begin(tmp_path)
    write_files(staged, ["e1", "e2"], pass_no=1)
    write_files(staged, ["e2"], pass_no=1, prefix="other")
    with pytest.raises(SnapshotError, match="more than once"):
        store.commit(staged, {"mode": "full"})
