"""The SCD type 2 history across several snapshots, incremental and rebuilt."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from extractor._errors import ConfigError, SnapshotError
from extractor._history import (
    HISTORY_TABLE,
    VALIDITY_COLUMNS,
    _locked,
    build_history,
    scan_history,
)
from extractor._schema import EMPLOYEES
from tests.conftest import write_snapshot
from tests.test_diff import OLD_SPEC, employee, snapshot_id

S1, S2, S3, S4 = (snapshot_id(d) for d in (1, 2, 3, 4))


def at(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


def versions(out: Path) -> list[tuple[object, ...]]:
    frame = scan_history(out).collect()
    return sorted(
        frame.select(
            "employee_id",
            "valid_from",
            "valid_to",
            "is_current",
            "department_code",
            "employment_status",
        ).iter_rows(),
        key=lambda row: (row[0], str(row[1])),
    )


def table(out: Path) -> pl.DataFrame:
    return scan_history(out).collect().sort("employee_id", "valid_from")


@pytest.fixture
def three(tmp_path: Path) -> Path:
    write_snapshot(tmp_path, S1, [employee("E1"), employee("E2"), employee("E3")])
    write_snapshot(
        tmp_path,
        S2,
        [employee("E1", department_code="OPS"), employee("E2"), employee("E4")],  # E3 removed
    )
    return tmp_path


def add_third(out: Path) -> None:
    write_snapshot(
        out,
        S3,
        [
            employee("E1", department_code="OPS"),
            employee("E2", employment_status="Terminated", termination_date=date(2026, 1, 2)),
            employee("E3"),  # back again
            employee("E4"),
        ],
    )


EXPECTED = [
    ("E1", S1, S2, False, "FIN", "Active"),
    ("E1", S2, None, True, "OPS", "Active"),
    ("E2", S1, S3, False, "FIN", "Active"),
    ("E2", S3, None, True, "FIN", "Terminated"),
    ("E3", S1, S2, False, "FIN", "Active"),
    ("E3", S3, None, True, "FIN", "Active"),
    ("E4", S2, None, True, "FIN", "Active"),
]


def test_versions_across_three_snapshots_folded_incrementally(three: Path) -> None:
    first = build_history(three)
    assert first.folded == (S1, S2)
    assert first.rebuilt
    assert first.reason == "first build"
    assert (first.rows, first.current, first.opened, first.closed) == (5, 3, 5, 2)
    closed_file = three / HISTORY_TABLE / f"closed-{S2}.parquet"
    inode = closed_file.stat().st_ino

    add_third(three)
    second = build_history(three)
    assert second.folded == (S3,)
    assert not second.rebuilt
    assert second.reason is None
    assert second.snapshots == (S1, S2, S3)
    assert (second.opened, second.closed) == (2, 1)  # E2's new version and E3's return
    assert (second.rows, second.current) == (7, 4)
    assert versions(three) == EXPECTED
    # closed versions were not rewritten, only linked into the new generation
    assert closed_file.stat().st_ino == inode
    assert sorted(p.name for p in (three / HISTORY_TABLE).iterdir()) == [
        "_state.json",
        f"closed-{S2}.parquet",
        f"closed-{S3}.parquet",
        "current.parquet",
    ]

    frame = table(three)
    assert frame.columns == [*EMPLOYEES.schema.names, *VALIDITY_COLUMNS]
    e1 = frame.filter(pl.col("employee_id") == "E1").row(0, named=True)
    assert e1["valid_from_at"] == at(1)
    assert e1["valid_to_at"] == at(2)
    current = frame.filter(pl.col("is_current"))
    assert current["valid_to"].null_count() == current.height == 4
    assert current["valid_to_at"].null_count() == 4

    # a full rebuild gives the same table
    incremental = frame
    rebuilt = build_history(three, rebuild=True)
    assert rebuilt.rebuilt
    assert rebuilt.reason == "--rebuild was given"
    assert rebuilt.folded == (S1, S2, S3)
    assert table(three).equals(incremental)


def test_up_to_date_writes_nothing(three: Path) -> None:
    build_history(three)
    current = three / HISTORY_TABLE / "current.parquet"
    before = current.stat()
    again = build_history(three)
    assert again.folded == ()
    assert not again.rebuilt
    assert (again.rows, again.current) == (5, 3)
    assert current.stat().st_ino == before.st_ino
    assert current.stat().st_mtime_ns == before.st_mtime_ns


def test_incomplete_snapshots_are_left_out(three: Path) -> None:
    write_snapshot(three, S3, [employee("E1")], complete=False)
    result = build_history(three)
    assert result.folded == (S1, S2)
    assert result.skipped_incomplete == (S3,)
    state = json.loads((three / HISTORY_TABLE / "_state.json").read_text())
    assert state["snapshots"] == [S1, S2]
    assert state["skipped_incomplete"] == [S3]


def test_a_vanished_snapshot_forces_a_rebuild(three: Path) -> None:
    build_history(three)
    (three / "_snapshots" / f"{S1}.json").unlink()
    shutil.rmtree(three / "employees" / f"snapshot_id={S1}")
    result = build_history(three)
    assert result.rebuilt
    assert result.reason == f"snapshot {S1} is no longer committed"
    assert result.snapshots == (S2,)
    assert sorted(table(three)["employee_id"]) == ["E1", "E2", "E4"]


def test_an_older_snapshot_showing_up_forces_a_rebuild(tmp_path: Path) -> None:
    write_snapshot(tmp_path, S1, [employee("E1")])
    write_snapshot(tmp_path, S3, [employee("E1", job_title="Lead")])
    build_history(tmp_path)
    write_snapshot(tmp_path, S2, [employee("E1", job_title="Senior")])
    result = build_history(tmp_path)
    assert result.rebuilt
    assert result.reason == f"snapshot {S2} is older than the newest folded one"
    titles = table(tmp_path).sort("valid_from")["job_title"].to_list()
    assert titles == ["Analyst", "Senior", "Lead"]


def test_new_columns_rebuild_with_one_schema(tmp_path: Path) -> None:
    old = {
        "employee_id": "E1",
        "first_name": "Ann",
        "hire_date": "2020-01-06",
        "job_title": "Analyst",
        "department_code": "FIN",
        "company_code": "CORP01",
        "legacy_code": "X",
    }
    write_snapshot(tmp_path, S1, [old], spec=OLD_SPEC, schema_version=0)
    build_history(tmp_path)
    write_snapshot(tmp_path, S2, [employee("E1")])
    result = build_history(tmp_path)
    assert result.rebuilt
    assert result.reason is not None
    assert "new columns or types" in result.reason
    frame = table(tmp_path)  # every file has the union schema
    assert frame.schema["hire_date"] == pl.String  # text in one version, a date in the other
    assert frame["legacy_code"].to_list() == ["X", None]
    assert frame["hire_date"].to_list() == ["2020-01-06", "2020-01-06"]
    assert frame["is_current"].to_list() == [False, True]


def test_nothing_to_fold_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no complete snapshot"):
        build_history(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
    write_snapshot(tmp_path, S1, [employee("E1")], complete=False)
    with pytest.raises(ConfigError, match="no complete snapshot"):
        build_history(tmp_path)


def test_every_snapshot_gone_leaves_an_empty_table(three: Path) -> None:
    build_history(three)
    for sid in (S1, S2):
        (three / "_snapshots" / f"{sid}.json").unlink()
    result = build_history(three)
    assert result.rebuilt
    assert (result.rows, result.current, result.snapshots) == (0, 0, ())
    assert scan_history(three).collect().columns[-1] == "is_current"


def test_scan_history_before_any_build(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="ukg-extract history"):
        scan_history(tmp_path)


def test_interrupted_swap_is_undone_or_finished(three: Path) -> None:
    build_history(three)
    expected = table(three)
    live, work = three / HISTORY_TABLE, three / "_history"

    # crash after moving the old generation aside, before the new one was complete
    os.rename(live, work / "previous")
    (work / "next").mkdir()
    (work / "next" / "current.parquet").write_bytes(b"half")
    assert build_history(three).folded == ()
    assert table(three).equals(expected)
    assert not (work / "next").exists()
    assert not (work / "previous").exists()

    # crash between the two renames, the new generation complete
    shutil.copytree(live, work / "next")
    os.rename(live, work / "previous")
    assert build_history(three).folded == ()
    assert table(three).equals(expected)
    assert not (work / "previous").exists()


def test_one_history_run_at_a_time(three: Path) -> None:
    with _locked(three / "_history"), pytest.raises(SnapshotError, match="another"):
        build_history(three)
