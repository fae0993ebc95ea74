"""``diff``, ``history`` and ``check`` as the command line runs them, and end to end.

The commands are parsed by a parser built with ``add_parsers``, as ``cli.build_parser`` does.
The end-to-end test exports from the simulator, changes the tenant through its write
endpoints and churn, exports again and checks that ``diff`` reports exactly what changed in
the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from extractor._cli_analysis import add_parsers
from extractor._pipeline import export
from extractor._schema import EMPLOYEES
from extractor.simulator import Simulator
from tests.conftest import expected_frame, export_config, sim_config, write_snapshot
from tests.simulator.helpers import Client
from tests.test_diff import employee, snapshot_id


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ukg-extract")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture
def out(tmp_path: Path) -> Path:
    write_snapshot(
        tmp_path,
        snapshot_id(1),
        [employee("E1"), employee("E2", supervisor_id="E1"), employee("E3")],
    )
    write_snapshot(
        tmp_path,
        snapshot_id(2),
        [
            employee("E1", employment_status="Terminated", termination_date=date(2026, 1, 2)),
            employee("E2", supervisor_id="E4", department_code="OPS"),
            employee("E4", supervisor_id="E9"),
        ],
    )
    return tmp_path


# -- diff -------------------------------------------------------------------------------------


def test_diff_table(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("diff", "--out", str(out)) == 0
    text = capsys.readouterr().out
    for word in ("termination", "department_move", "manager_change", "hire", "removal"):
        assert word in text
    assert "department_code" in text
    assert f"A {snapshot_id(1)}" in text


def test_diff_exit_code(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("diff", "--out", str(out), "--exit-code") == 1
    same = [snapshot_id(1), snapshot_id(1)]
    assert run("diff", "--out", str(out), *same, "--exit-code") == 0
    assert "no differences" in capsys.readouterr().out
    assert (
        run("diff", "--out", str(out), "--exit-code", "--fields", "last_name", "--ignore", "x") == 2
    )


def test_diff_machine_formats(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("diff", "--out", str(out), "--format", "csv") == 0
    csv_frame = pl.read_csv(capsys.readouterr().out.encode(), infer_schema=False)
    assert csv_frame.columns == ["employee_id", "change", "kind", "field", "old", "new"]
    assert csv_frame.filter(pl.col("change") == "added")["employee_id"].to_list() == ["E4"]
    assert csv_frame.filter(pl.col("change") == "removed")["employee_id"].to_list() == ["E3"]

    target = out / "diff.parquet"
    assert run("diff", "--out", str(out), "--format", "parquet", "--output", str(target)) == 0
    assert pl.read_parquet(target).rows() == csv_frame.rows()

    json_path = out / "diff.json"
    assert run("diff", "--out", str(out), "--format", "json", "--output", str(json_path)) == 0
    data = json.loads(json_path.read_text())
    assert data["summary"]["by_kind"]["termination"] == 1
    assert data["summary"]["by_kind"]["manager_change"] == 1
    assert {c["field"] for c in data["changes"] if c["employee_id"] == "E2"} == {
        "department_code",
        "supervisor_id",
    }

    assert run("diff", "--out", str(out), "--fields", "department_code", "--format", "json") == 0
    narrowed = json.loads(capsys.readouterr().out)
    assert narrowed["summary"]["by_field"] == {"department_code": 1}


def test_diff_usage_errors(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("diff", "--out", str(out), "20990101T000000Z") == 2
    err = capsys.readouterr().err
    assert "not committed" in err
    assert snapshot_id(1) in err
    assert snapshot_id(2) in err
    assert run("diff", "--out", str(out), "--format", "parquet") == 2
    assert "--output" in capsys.readouterr().err
    assert run("diff", "--out", str(out / "empty")) == 2
    assert "two complete snapshots" in capsys.readouterr().err


# -- history ----------------------------------------------------------------------------------


def test_history_command(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("history", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "rebuilt (first build)" in text
    assert snapshot_id(1) in text
    assert snapshot_id(2) in text
    assert run("history", "--out", str(out)) == 0
    assert "up to date" in capsys.readouterr().out
    write_snapshot(out, snapshot_id(3), [employee("E2", supervisor_id="E4")])
    assert run("history", "--out", str(out), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["folded"] == [snapshot_id(3)]
    assert data["rebuilt"] is False
    assert run("history", "--out", str(out), "--rebuild", "--json") == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "--rebuild was given"
    assert run("history", "--out", str(out / "typo")) == 2
    assert "no complete snapshot" in capsys.readouterr().err


# -- check ------------------------------------------------------------------------------------


def test_check_command(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", "--out", str(out)) == 0  # the latest complete snapshot
    text = capsys.readouterr().out
    assert snapshot_id(2) in text
    assert "dangling supervisor id" in text
    assert "E9" in text
    assert run("check", "--out", str(out), "--strict") == 1
    capsys.readouterr()
    assert run("check", "--out", str(out), snapshot_id(1), "--strict", "--json") == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["counts"]["dangling_supervisor"] == 0
    assert clean["reporting_lines"] is None

    assert run("check", "--out", str(out), snapshot_id(2), "--json", "--reporting-lines") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["dangling_supervisor"] == 1
    assert report["counts"]["active_reporting_to_terminated"] == 0
    assert report["dangling"] == [{"employee_id": "E4", "supervisor_id": "E9"}]
    lines = pl.read_parquet(Path(report["reporting_lines"]) / "part-00000.parquet")
    assert lines.select("employee_id", "manager_id", "level").rows() == [("E2", "E4", 1)]

    assert run("check", "--out", str(out), "nope") == 2
    assert "available" in capsys.readouterr().err


# -- end to end -------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def ground_truth_diff(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> tuple[set[str], set[str], set[tuple[str, str, str | None, str | None]]]:
    """What changed between two truths, compared naively record by record."""
    old = {r["employee_id"]: r for r in expected_frame(before).to_dicts()}
    new = {r["employee_id"]: r for r in expected_frame(after).to_dicts()}
    columns = [c for c in EMPLOYEES.schema.names if c != "employee_id"]
    changes = {
        (employee_id, column, _text(old[employee_id][column]), _text(new[employee_id][column]))
        for employee_id in old.keys() & new.keys()
        for column in columns
        if old[employee_id][column] != new[employee_id][column]
    }
    return new.keys() - old.keys(), old.keys() - new.keys(), changes


async def _make_changes(sim: Simulator) -> dict[str, str]:
    """Hire, move, re-manage, retitle and terminate through the write endpoints."""
    truth = list(sim.truth().values())
    active = [p for p in truth if p["employmentStatus"] == "Active" and p["departmentCode"]]
    mover, retitled, terminated = active[0], active[1], active[2]
    department = next(
        p["departmentCode"]
        for p in truth
        if p["companyCode"] == mover["companyCode"]
        and p["departmentCode"] not in (None, mover["departmentCode"])
    )
    tops = {p["companyCode"]: p for p in truth if p["supervisorId"] is None}
    managed = next(
        p
        for p in active[3:]
        if p["companyCode"] in tops
        and tops[p["companyCode"]]["employeeId"] != p["employeeId"]
        and p["supervisorId"] != tops[p["companyCode"]]["employeeId"]
    )
    new_manager = tops[managed["companyCode"]]["employeeId"]
    today = datetime.now(UTC).date().isoformat()
    base = "/personnel/v1/employees"
    async with aiohttp.ClientSession() as session:
        client = Client(session, sim.base_url, sim.default_account)
        replies = [
            await client.call(
                "PATCH", f"{base}/{mover['employeeId']}", json={"departmentCode": department}
            ),
            await client.call(
                "PATCH", f"{base}/{managed['employeeId']}", json={"supervisorId": new_manager}
            ),
            await client.call(
                "PATCH", f"{base}/{retitled['employeeId']}", json={"jobTitle": "Diff Tester"}
            ),
            await client.call(
                "POST",
                f"{base}/{terminated['employeeId']}/terminations",
                json={"terminationDate": today, "terminationReasonCode": "RESIGN"},
            ),
            await client.call(
                "POST",
                base,
                json={
                    "firstName": "Grace",
                    "lastName": "Hopper",
                    "emailAddress": "grace@example.com",
                    "hireDate": today,
                    "companyCode": mover["companyCode"],
                },
            ),
        ]
    for reply in replies:
        assert reply.status in (200, 201), reply.body
    return {
        "mover": mover["employeeId"],
        "managed": managed["employeeId"],
        "retitled": retitled["employeeId"],
        "terminated": terminated["employeeId"],
        "hired": replies[-1].json()["employeeId"],
    }


@pytest.mark.slow
async def test_end_to_end_diff_finds_exactly_the_simulators_changes(tmp_path: Path) -> None:
    sim = Simulator(sim_config(employees=300, seed=23), env={})
    await sim.start()
    try:
        first = await export(export_config(sim.base_url, tmp_path))
        assert first.exit_code == 0, first.error
        before = sim.truth()
        deleted = {c["employeeId"] for c in sim.churn(deletions=2)}
        made = await _make_changes(sim)
        after = sim.truth()
        second = await export(export_config(sim.base_url, tmp_path))
        assert second.exit_code == 0, second.error
    finally:
        await sim.stop()
    assert first.snapshot_id != second.snapshot_id

    report = tmp_path / "diff.json"
    argv = ["diff", "--out", str(tmp_path), "--format", "json", "--output", str(report)]
    assert run(*argv, "--exit-code") == 1
    data = json.loads(report.read_text())
    assert data["summary"]["a"]["snapshot_id"] == first.snapshot_id
    assert data["summary"]["b"]["snapshot_id"] == second.snapshot_id

    added, removed, changes = ground_truth_diff(before, after)
    assert {r["employee_id"] for r in data["added"]} == added == {made["hired"]}
    assert {r["employee_id"] for r in data["removed"]} == removed == deleted
    reported = {(c["employee_id"], c["field"], c["old"], c["new"]) for c in data["changes"]}
    assert reported == changes
    kinds = {(c["employee_id"], c["kind"]) for c in data["changes"]}
    assert (made["mover"], "department_move") in kinds
    assert (made["managed"], "manager_change") in kinds
    assert (made["retitled"], "title_change") in kinds
    assert (made["terminated"], "termination") in kinds
    by_kind = data["summary"]["by_kind"]
    assert (by_kind["hire"], by_kind["removal"], by_kind["termination"]) == (1, 2, 1)

    # the history folds both exports; the org check runs on the real export
    assert run("history", "--out", str(tmp_path), "--json") == 0
    assert run("check", "--out", str(tmp_path), "--json") == 0
