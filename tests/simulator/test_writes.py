"""Create, patch and terminate: the guide's validation rules, each one over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Harness

EMPLOYEES = "/personnel/v1/employees"
NEW_HIRE = {
    "firstName": "John",
    "lastName": "Smith",
    "emailAddress": "john.smith@example.com",
    "hireDate": "2024-01-10",
    "companyCode": "CORP01",
}


async def _some_employee(harness: Harness, **match: Any) -> dict[str, Any]:
    return next(
        profile
        for profile in harness.sim.truth().values()
        if all(profile[key] == value for key, value in match.items())
    )


async def test_create_returns_an_id_that_is_then_listed_and_readable(harness: Harness) -> None:
    reply = await harness.client.call("POST", EMPLOYEES, json=NEW_HIRE)
    assert reply.status == 201
    body = reply.json()
    assert body["status"] == "created"
    employee_id = body["employeeId"]
    profile = (await harness.client.get(f"{EMPLOYEES}/{employee_id}")).json()
    assert {key: profile[key] for key in NEW_HIRE} == NEW_HIRE
    assert profile["employmentStatus"] == "Active"
    assert profile["jobTitle"] is None
    assert profile["supervisorId"] is None
    assert employee_id in await harness.client.all_ids()
    assert harness.sim.truth()[employee_id] == profile


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"firstName": None}, "firstName"),
        ({"lastName": ""}, "lastName"),
        ({"emailAddress": None}, "emailAddress"),
        ({"hireDate": None}, "hireDate"),
        ({"companyCode": None}, "companyCode"),
        ({"emailAddress": "not-an-email"}, "emailAddress"),
        ({"hireDate": "2024-02-30"}, "hireDate"),
        ({"hireDate": "10/01/2024"}, "hireDate"),
        ({"companyCode": "CORP99"}, "companyCode"),
        ({"companyCode": "corp01"}, "companyCode"),
        ({"jobTitle": "Engineer"}, "PATCH"),
        ({"departmentCode": "ENG-01"}, "PATCH"),
        ({"employeeId": "ABCDEFGHIJKL"}, "employeeId"),
        ({"employmentStatus": "Terminated"}, "employmentStatus"),
        ({"flsaStatus": "Sometimes"}, "flsaStatus"),
        ({"firstName": ["John"]}, "firstName"),
        ({"payGroupCode": {"x": 1}}, "payGroupCode"),
    ],
)
async def test_create_validation(harness: Harness, change: dict[str, Any], mentions: str) -> None:
    body = {**NEW_HIRE, **change}
    reply = await harness.client.call("POST", EMPLOYEES, json=body)
    assert reply.status == 400
    assert mentions in reply.json()["message"]
    assert harness.sim.stats()["by_endpoint"]["create"] == {"400": 1}


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_bodies_that_are_not_a_json_object_get_400(harness: Harness, raw: bytes) -> None:
    target = await _some_employee(harness, employmentStatus="Active")
    for method, path in (
        ("POST", EMPLOYEES),
        ("PATCH", f"{EMPLOYEES}/{target['employeeId']}"),
        ("POST", f"{EMPLOYEES}/{target['employeeId']}/terminations"),
    ):
        reply = await harness.client.call(
            method, path, data=raw, headers={"Content-Type": "application/json"}
        )
        assert reply.status == 400, (method, path)
        assert "JSON" in reply.json()["message"]


async def test_patch_updates_patchable_fields(harness: Harness) -> None:
    target = await _some_employee(harness, companyCode="CORP02")
    manager = await _some_employee(harness, companyCode="CORP02", jobTitle="Director of Finance")
    path = f"{EMPLOYEES}/{target['employeeId']}"
    change = {
        "jobTitle": "Senior Engineer",
        "departmentCode": "ENG-02",
        "locationId": "SEA01",
        "supervisorId": manager["employeeId"],
        "flsaStatus": "Exempt",
        "employeeNumber": None,
    }
    reply = await harness.client.call("PATCH", path, json=change)
    assert reply.status == 200
    assert reply.json() == {"employeeId": target["employeeId"], "status": "updated"}
    profile = (await harness.client.get(path)).json()
    assert {key: profile[key] for key in change} == change
    details = (await harness.client.get(f"{path}/employment-details")).json()
    assert details["jobTitle"] == "Senior Engineer"
    assert details["jobCode"] == "OTHER"  # a title outside the tenant's job table
    assert details["hourlyOrSalaried"] == "S"


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"employeeId": "ABCDEFGHIJKL"}, "not patchable"),
        ({"employmentStatus": "Terminated"}, "terminations"),
        ({"terminationDate": "2024-01-01"}, "terminations"),
        ({"companyCode": "CORP02"}, "not patchable"),
        ({"hireDate": "2020-01-01"}, "not patchable"),
        ({"dateOfBirth": "1990-01-01"}, "not patchable"),
        ({"departmentCode": "NOPE-01"}, "departmentCode"),
        ({"departmentCode": "ENG-03"}, "cross-company"),
        ({"supervisorId": "ZZZZZZZZZZZZ"}, "supervisorId"),
        ({"locationId": "MARS01"}, "locationId"),
        ({"payGroupCode": "DAILY"}, "payGroupCode"),
        ({"flsaStatus": "exempt"}, "flsaStatus"),
        ({"firstName": None}, "firstName"),
        ({"emailAddress": "x@"}, "emailAddress"),
        ({}, "no field"),
    ],
)
async def test_patch_validation(harness: Harness, change: dict[str, Any], mentions: str) -> None:
    target = await _some_employee(harness, companyCode="CORP01")
    before = harness.sim.truth()[target["employeeId"]]
    reply = await harness.client.call("PATCH", f"{EMPLOYEES}/{target['employeeId']}", json=change)
    assert reply.status == 400
    assert mentions in reply.json()["message"]
    assert harness.sim.truth()[target["employeeId"]] == before


async def test_patch_refuses_supervisor_loops(harness: Harness) -> None:
    truth = harness.sim.truth()
    employee = next(p for p in truth.values() if p["supervisorId"] is not None)
    manager_id = employee["supervisorId"]
    own = await harness.client.call(
        "PATCH",
        f"{EMPLOYEES}/{employee['employeeId']}",
        json={"supervisorId": employee["employeeId"]},
    )
    assert own.status == 400
    loop = await harness.client.call(
        "PATCH", f"{EMPLOYEES}/{manager_id}", json={"supervisorId": employee["employeeId"]}
    )
    assert loop.status == 400
    assert "indirect" in loop.json()["message"]


async def test_writes_to_unknown_employees_get_404(harness: Harness) -> None:
    patch = await harness.client.call("PATCH", f"{EMPLOYEES}/ZZZZZZZZZZZZ", json={"jobTitle": "X"})
    assert patch.status == 404
    terminate = await harness.client.call(
        "POST",
        f"{EMPLOYEES}/ZZZZZZZZZZZZ/terminations",
        json={"terminationDate": "2024-06-30", "terminationReasonCode": "RESIGN"},
    )
    assert terminate.status == 404


async def test_termination_sets_status_and_date_and_keeps_the_employee_listed(
    harness: Harness,
) -> None:
    target = await _some_employee(harness, employmentStatus="Active")
    path = f"{EMPLOYEES}/{target['employeeId']}"
    reply = await harness.client.call(
        "POST",
        f"{path}/terminations",
        json={"terminationDate": "2026-06-30", "terminationReasonCode": "RESIGN"},
    )
    assert reply.status == 200
    assert reply.json() == {
        "employeeId": target["employeeId"],
        "terminationDate": "2026-06-30",
        "status": "terminated",
    }
    profile = (await harness.client.get(path)).json()
    assert profile["employmentStatus"] == "Terminated"
    assert profile["terminationDate"] == "2026-06-30"
    details = (await harness.client.get(f"{path}/employment-details")).json()
    assert details["employmentStatus"] == "Terminated"
    assert target["employeeId"] in await harness.client.all_ids()


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"terminationDate": "2026-06-30", "terminationReasonCode": "BORED"}, "reason code"),
        ({"terminationDate": "2026-06-30", "terminationReasonCode": ["RESIGN"]}, "reason code"),
        ({"terminationReasonCode": "RESIGN"}, "terminationDate"),
        ({"terminationDate": "2026-06-30"}, "terminationReasonCode"),
        ({"terminationDate": "30/06/2026", "terminationReasonCode": "RESIGN"}, "terminationDate"),
        ({"terminationDate": "1900-01-01", "terminationReasonCode": "RESIGN"}, "hire date"),
        (
            {"terminationDate": "2026-06-30", "terminationReasonCode": "RESIGN", "note": "x"},
            "note",
        ),
    ],
)
async def test_termination_validation(
    harness: Harness, body: dict[str, Any], mentions: str
) -> None:
    target = await _some_employee(harness, employmentStatus="Active")
    path = f"{EMPLOYEES}/{target['employeeId']}/terminations"
    reply = await harness.client.call("POST", path, json=body)
    assert reply.status == 400
    assert mentions in reply.json()["message"]


async def test_an_employee_cannot_be_terminated_twice(harness: Harness) -> None:
    target = await _some_employee(harness, employmentStatus="Terminated")
    reply = await harness.client.call(
        "POST",
        f"{EMPLOYEES}/{target['employeeId']}/terminations",
        json={"terminationDate": "2026-06-30", "terminationReasonCode": "RETIRE"},
    )
    assert reply.status == 400
    assert "already terminated" in reply.json()["message"]
