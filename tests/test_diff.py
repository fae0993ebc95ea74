"""Snapshot diffs on hand-built snapshots with known answers.

Snapshots are written through the real commit path (``SnapshotStore.begin`` -> the Parquet
sink -> journal -> ``commit``), so the diff reads exactly the layout an export leaves.
``write_snapshot`` (in ``conftest``) is shared with the history, org-check and CLI tests.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from extractor._diff import KINDS, diff_snapshots
from extractor._errors import ConfigError
from extractor._read import UnknownSnapshotError
from extractor._schema import EMPLOYEES, TableSpec
from tests.conftest import write_snapshot

# -- helpers shared by the analysis tests -----------------------------------------------------


def snapshot_id(day: int) -> str:
    return f"202601{day:02d}T000000Z"


def employee(employee_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "employee_id": employee_id,
        "first_name": "Ann",
        "last_name": f"Lee-{employee_id}",
        "email_address": f"{employee_id.lower()}@example.com",
        "employee_number": f"N-{employee_id}",
        "hire_date": date(2020, 1, 6),
        "job_title": "Analyst",
        "department_code": "FIN",
        "location_id": "NYC",
        "employment_status": "Active",
        "supervisor_id": None,
        "company_code": "CORP01",
        "pay_group_code": "BW",
        "flsa_status": "Exempt",
        "ethnicity": None,  # masked: null in both snapshots means unchanged
        "gender": None,
        "date_of_birth": None,
        "termination_date": None,
    }
    base.update(fields)
    return base


def changes_of(result: Any) -> set[tuple[str, str, str | None, str | None, str]]:
    return {
        (r["employee_id"], r["field"], r["old"], r["new"], r["kind"])
        for r in result.changes.iter_rows(named=True)
    }


# -- every kind of change ---------------------------------------------------------------------


@pytest.fixture
def every_kind(tmp_path: Path) -> Path:
    a = [
        employee("E01"),
        employee("E02", department_code="FIN"),
        employee("E03", supervisor_id="E01"),
        employee("E04"),
        employee("E05"),
        employee("E06", employment_status="Terminated", termination_date=date(2025, 3, 1)),
        employee("E07"),
        employee("E08"),
        employee("E10"),
        employee("E11", employment_status="A", company_code="CORP02"),
        employee("E12", employment_status="Active"),
    ]
    b = [
        employee("E01"),  # unchanged (masked columns null in both)
        employee("E02", department_code="OPS"),
        employee("E03", supervisor_id="E02"),
        employee("E04", job_title="Senior Analyst"),
        employee("E05", employment_status="Terminated", termination_date=date(2026, 1, 2)),
        employee("E06", employment_status="Active", termination_date=None),
        employee("E07", email_address="new@example.com", department_code="OPS"),
        # E08 removed
        employee("E09"),  # hired
        employee("E10", gender="F"),  # null -> value is a change
        employee("E11", employment_status="T", company_code="CORP03"),  # moved company too
        employee("E12", employment_status="Leave"),
    ]
    write_snapshot(tmp_path, snapshot_id(1), a)
    write_snapshot(tmp_path, snapshot_id(2), b)
    return tmp_path


def test_every_kind_of_change(every_kind: Path) -> None:
    result = diff_snapshots(every_kind)
    assert (result.a.snapshot_id, result.b.snapshot_id) == (snapshot_id(1), snapshot_id(2))
    assert (result.a.rows, result.b.rows) == (11, 11)
    assert result.added.get_column("employee_id").to_list() == ["E09"]
    assert result.removed.get_column("employee_id").to_list() == ["E08"]
    # whole rows of hires and removals, with their types
    assert result.added.row(0, named=True)["hire_date"] == date(2020, 1, 6)
    assert changes_of(result) == {
        ("E02", "department_code", "FIN", "OPS", "department_move"),
        ("E03", "supervisor_id", "E01", "E02", "manager_change"),
        ("E04", "job_title", "Analyst", "Senior Analyst", "title_change"),
        ("E05", "employment_status", "Active", "Terminated", "termination"),
        ("E05", "termination_date", None, "2026-01-02", "termination"),
        ("E06", "employment_status", "Terminated", "Active", "rehire"),
        ("E06", "termination_date", "2025-03-01", None, "rehire"),
        ("E07", "email_address", "e07@example.com", "new@example.com", "other"),
        ("E07", "department_code", "FIN", "OPS", "department_move"),
        ("E10", "gender", None, "F", "other"),
        ("E11", "employment_status", "A", "T", "termination"),
        ("E11", "company_code", "CORP02", "CORP03", "other"),
        ("E12", "employment_status", "Active", "Leave", "other"),
    }
    assert result.by_kind == {
        "hire": 1,
        "removal": 1,
        "termination": 2,
        "rehire": 1,
        "department_move": 2,
        "manager_change": 1,
        "title_change": 1,
        "other": 4,  # E07, E10, E11, E12
    }
    assert list(result.by_kind) == list(KINDS)
    assert result.by_field == {
        "email_address": 1,
        "job_title": 1,
        "department_code": 2,
        "employment_status": 4,
        "supervisor_id": 1,
        "company_code": 1,
        "gender": 1,
        "termination_date": 2,
    }
    assert list(result.by_field) == [c for c in EMPLOYEES.schema.names if c in result.by_field]
    assert result.changed_employees == 9
    assert result.has_differences
    # ordered by employee, then column order
    assert result.changes.get_column("employee_id").is_sorted()
    assert result.changes.filter(pl.col("employee_id") == "E07")["field"].to_list() == [
        "email_address",
        "department_code",
    ]
    assert "snapshot_id" not in result.columns
    assert "employee_id" not in result.columns


def test_long_table_and_json(every_kind: Path) -> None:
    result = diff_snapshots(every_kind)
    frame = result.to_frame()
    assert frame.columns == ["employee_id", "change", "kind", "field", "old", "new"]
    assert frame.height == 1 + 1 + result.changes.height
    assert frame.filter(pl.col("change") == "added").row(0) == (
        "E09",
        "added",
        "hire",
        None,
        None,
        None,
    )
    assert frame.filter(pl.col("change") == "removed")["kind"].to_list() == ["removal"]
    data = json.loads(json.dumps(result.to_json()))  # JSON-serialisable as it is
    assert data["summary"]["by_kind"]["termination"] == 2
    assert data["added"][0]["employee_id"] == "E09"
    assert data["added"][0]["hire_date"] == "2020-01-06"
    assert len(data["changes"]) == result.changes.height


def test_identical_content_in_different_snapshots_is_no_difference(tmp_path: Path) -> None:
    rows = [employee(f"E{i:02d}", supervisor_id="E00" if i else None) for i in range(30)]
    write_snapshot(tmp_path, snapshot_id(1), rows)
    write_snapshot(tmp_path, snapshot_id(2), list(reversed(rows)))
    result = diff_snapshots(tmp_path)
    assert not result.has_differences
    assert result.changes.height == 0
    assert result.by_field == {}
    assert set(result.by_kind.values()) == {0}
    assert result.changed_employees == 0


def test_empty_string_and_null_differ(tmp_path: Path) -> None:
    write_snapshot(tmp_path, snapshot_id(1), [employee("E1", job_title="")])
    write_snapshot(tmp_path, snapshot_id(2), [employee("E1", job_title=None)])
    assert changes_of(diff_snapshots(tmp_path)) == {("E1", "job_title", "", None, "title_change")}


# -- choosing snapshots -----------------------------------------------------------------------


def test_default_is_the_latest_two_complete_and_explicit_ids_win(tmp_path: Path) -> None:
    write_snapshot(tmp_path, snapshot_id(1), [employee("E1")])
    write_snapshot(tmp_path, snapshot_id(2), [employee("E1", job_title="X")])
    write_snapshot(tmp_path, snapshot_id(3), [employee("E1", job_title="Y")])
    write_snapshot(tmp_path, snapshot_id(4), [], complete=False)
    result = diff_snapshots(tmp_path)
    assert (result.a.snapshot_id, result.b.snapshot_id) == (snapshot_id(2), snapshot_id(3))
    assert changes_of(result) == {("E1", "job_title", "X", "Y", "title_change")}

    explicit = diff_snapshots(tmp_path, snapshot_id(1), snapshot_id(3))
    assert changes_of(explicit) == {("E1", "job_title", "Analyst", "Y", "title_change")}
    # only A: against the latest complete snapshot
    assert diff_snapshots(tmp_path, snapshot_id(1)).b.snapshot_id == snapshot_id(3)
    # an incomplete snapshot can be named explicitly, and says so
    partial = diff_snapshots(tmp_path, snapshot_id(3), snapshot_id(4))
    assert partial.b.complete is False
    assert partial.removed.get_column("employee_id").to_list() == ["E1"]


def test_unknown_snapshot_lists_the_available_ones(tmp_path: Path) -> None:
    write_snapshot(tmp_path, snapshot_id(1), [employee("E1")])
    write_snapshot(tmp_path, snapshot_id(2), [employee("E1")])
    with pytest.raises(UnknownSnapshotError) as info:
        diff_snapshots(tmp_path, "20990101T000000Z", snapshot_id(2))
    assert isinstance(info.value, ConfigError)
    assert snapshot_id(1) in str(info.value)
    assert snapshot_id(2) in str(info.value)


def test_fewer_than_two_complete_snapshots(tmp_path: Path) -> None:
    with pytest.raises(UnknownSnapshotError, match="found 0"):
        diff_snapshots(tmp_path)
    write_snapshot(tmp_path, snapshot_id(1), [employee("E1")])
    write_snapshot(tmp_path, snapshot_id(2), [employee("E1")], complete=False)
    with pytest.raises(UnknownSnapshotError, match=r"found 1 .*20260102T000000Z \(incomplete\)"):
        diff_snapshots(tmp_path)


# -- narrowing --------------------------------------------------------------------------------


def test_fields_and_ignore(every_kind: Path) -> None:
    only = diff_snapshots(every_kind, fields=["department_code", "supervisor_id"])
    assert only.columns == ("department_code", "supervisor_id")
    assert {r[1] for r in changes_of(only)} == {"department_code", "supervisor_id"}
    assert only.by_kind["termination"] == 0
    # hires and removals do not depend on the columns compared
    assert (only.by_kind["hire"], only.by_kind["removal"]) == (1, 1)
    assert "job_title" in only.ignored

    without = diff_snapshots(every_kind, ignore=["email_address", "gender"])
    assert "email_address" not in without.columns
    assert without.ignored == ("email_address", "gender")
    assert not [c for c in changes_of(without) if c[1] in ("email_address", "gender")]
    assert ("E07", "department_code", "FIN", "OPS", "department_move") in changes_of(without)

    with pytest.raises(ConfigError, match=r"unknown column.*no_such_column"):
        diff_snapshots(every_kind, fields=["no_such_column"])
    with pytest.raises(ConfigError, match="--ignore"):
        diff_snapshots(every_kind, ignore=["nope"])


# -- schema versions --------------------------------------------------------------------------


OLD_SPEC = TableSpec.build(
    "employees",
    [
        ("employeeId", "employee_id", "string"),
        ("firstName", "first_name", "string"),
        ("hireDate", "hire_date", "string"),  # an older version kept dates as text
        ("jobTitle", "job_title", "string"),
        ("departmentCode", "department_code", "string"),
        ("companyCode", "company_code", "string"),
        ("legacyCode", "legacy_code", "string"),
    ],
)


def test_schema_versions_diff_on_common_columns(tmp_path: Path) -> None:
    old = [
        {
            "employee_id": "E1",
            "first_name": "Ann",
            "hire_date": "2020-01-06",
            "job_title": "Analyst",
            "department_code": "FIN",
            "company_code": "CORP01",
            "legacy_code": "X1",
        },
        {
            "employee_id": "E2",
            "first_name": "Bo",
            "hire_date": "2021-02-03",
            "job_title": "Clerk",
            "department_code": "OPS",
            "company_code": "CORP01",
            "legacy_code": "X2",
        },
    ]
    write_snapshot(tmp_path, snapshot_id(1), old, spec=OLD_SPEC, schema_version=0)
    write_snapshot(
        tmp_path,
        snapshot_id(2),
        [
            employee("E1", first_name="Ann", location_id="LON"),
            employee("E2", first_name="Bo", hire_date=date(2021, 2, 4), job_title="Clerk"),
        ],
    )
    result = diff_snapshots(tmp_path)
    assert (result.a.schema_version, result.b.schema_version) == (0, 1)
    assert result.skipped["legacy_code"].startswith("only in A")
    assert result.skipped["location_id"].startswith("only in B")
    assert "legacy_code" not in result.columns
    assert "location_id" not in result.columns
    assert result.compared_as_text == ("hire_date",)
    # equal dates compare equal as text (E1 is unchanged); the changed one is reported
    assert changes_of(result) == {
        ("E2", "hire_date", "2021-02-03", "2021-02-04", "other"),
        ("E2", "department_code", "OPS", "FIN", "department_move"),
    }


# -- empty snapshots --------------------------------------------------------------------------


def test_empty_snapshots(tmp_path: Path) -> None:
    rows = [employee("E1"), employee("E2"), employee("E3", company_code="CORP02")]
    write_snapshot(tmp_path, snapshot_id(1), [])
    write_snapshot(tmp_path, snapshot_id(2), rows)
    write_snapshot(tmp_path, snapshot_id(3), [])
    write_snapshot(tmp_path, snapshot_id(4), [])

    hires = diff_snapshots(tmp_path, snapshot_id(1), snapshot_id(2))
    assert hires.added.get_column("employee_id").to_list() == ["E1", "E2", "E3"]
    assert hires.removed.height == 0
    assert hires.changes.height == 0
    assert hires.by_kind["hire"] == 3
    assert (hires.a.rows, hires.b.rows) == (0, 3)

    gone = diff_snapshots(tmp_path, snapshot_id(2), snapshot_id(3))
    assert gone.removed.get_column("employee_id").to_list() == ["E1", "E2", "E3"]
    assert gone.by_kind["removal"] == 3

    nothing = diff_snapshots(tmp_path, snapshot_id(3), snapshot_id(4))
    assert not nothing.has_differences
    assert nothing.to_frame().height == 0


# -- volume: no per-row Python ----------------------------------------------------------------


def test_many_rows_few_changes(tmp_path: Path) -> None:
    n = 20_000
    base = pl.DataFrame([employee("X")]).select(pl.exclude("employee_id"))
    frame = pl.DataFrame({"employee_id": [f"E{i:06d}" for i in range(n)]}).join(base, how="cross")
    write_snapshot(tmp_path, snapshot_id(1), frame)
    changed = frame.with_columns(
        department_code=pl.when(pl.col("employee_id").str.ends_with("7"))
        .then(pl.lit("OPS"))
        .otherwise(pl.col("department_code"))
    ).filter(pl.col("employee_id") != "E000000")
    write_snapshot(tmp_path, snapshot_id(2), changed)
    result = diff_snapshots(tmp_path)
    assert result.by_kind["department_move"] == n // 10
    assert result.by_field == {"department_code": n // 10}
    assert result.removed.get_column("employee_id").to_list() == ["E000000"]
