"""Profiles and employment details: exact fields, masking, 404s, realistic data."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date

import pytest

from extractor.simulator import Simulator, SimulatorConfig

from .helpers import SENSITIVE, Harness

PROFILE_KEYS = {
    "employeeId",
    "firstName",
    "lastName",
    "emailAddress",
    "employeeNumber",
    "hireDate",
    "jobTitle",
    "departmentCode",
    "locationId",
    "employmentStatus",
    "supervisorId",
    "companyCode",
    "payGroupCode",
    "flsaStatus",
    "ethnicity",
    "gender",
    "dateOfBirth",
    "terminationDate",
}
EMPLOYMENT_KEYS = {
    "employeeId",
    "companyCode",
    "jobTitle",
    "jobCode",
    "flsaStatus",
    "payGroupCode",
    "employeeType",
    "fullTimeOrPartTime",
    "hourlyOrSalaried",
    "scheduledWeeklyHours",
    "employmentStatus",
    "originalHireDate",
    "lastHireDate",
    "terminationDate",
}
SENSITIVE_KEYS = ("dateOfBirth", "ethnicity", "gender")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


async def test_profile_has_exactly_the_guide_fields_with_sensitive_ones_masked(
    harness: Harness,
) -> None:
    truth = harness.sim.truth()
    for employee_id in list(truth)[:20]:
        reply = await harness.client.get(f"/personnel/v1/employees/{employee_id}")
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        profile = reply.json()
        assert set(profile) == PROFILE_KEYS
        expected = truth[employee_id]
        for key in PROFILE_KEYS - set(SENSITIVE_KEYS):
            assert profile[key] == expected[key]
        for key in SENSITIVE_KEYS:
            assert profile[key] == ("*****" if expected[key] is not None else None)


async def test_sensitive_access_shows_the_real_values(harness: Harness) -> None:
    truth = harness.sim.truth()
    hr = harness.client_for(SENSITIVE)
    for employee_id in list(truth)[:20]:
        profile = (await hr.get(f"/personnel/v1/employees/{employee_id}")).json()
        assert profile == truth[employee_id]
        assert profile["dateOfBirth"] is None or DAY.fullmatch(profile["dateOfBirth"])


async def test_a_null_sensitive_value_stays_null_when_masked(harness: Harness) -> None:
    truth = harness.sim.truth()
    no_ethnicity = next(i for i, p in truth.items() if p["ethnicity"] is None)
    profile = (await harness.client.get(f"/personnel/v1/employees/{no_ethnicity}")).json()
    assert profile["ethnicity"] is None
    assert profile["dateOfBirth"] == "*****"


async def test_sensitive_access_of_the_default_account_is_a_knob(harness: Harness) -> None:
    employee_id = next(iter(harness.sim.truth()))
    harness.sim.set_knobs(default_sensitive_access=True)
    profile = (await harness.client.get(f"/personnel/v1/employees/{employee_id}")).json()
    assert profile == harness.sim.truth()[employee_id]


@pytest.mark.parametrize(
    "employee_id",
    ["ZZZZZZZZZZZZ", "000000000000", "short", "lowercase0001", "EMP-001", "%C3%A9t%C3%A9"],
)
async def test_unknown_ids_get_404(harness: Harness, employee_id: str) -> None:
    for suffix in ("", "/employment-details"):
        reply = await harness.client.get(f"/personnel/v1/employees/{employee_id}{suffix}")
        assert reply.status == 404
        assert "message" in reply.json()


async def test_employment_details_are_consistent_with_the_profile(harness: Harness) -> None:
    truth = harness.sim.truth()
    details_truth = harness.sim.truth_employment_details()
    assert set(details_truth) == set(truth)
    for employee_id in list(truth)[:20]:
        reply = await harness.client.get(
            f"/personnel/v1/employees/{employee_id}/employment-details"
        )
        details = reply.json()
        assert set(details) == EMPLOYMENT_KEYS
        assert details == details_truth[employee_id]
        profile = truth[employee_id]
        for key in ("companyCode", "jobTitle", "flsaStatus", "payGroupCode", "terminationDate"):
            assert details[key] == profile[key]
        assert details["employmentStatus"] == profile["employmentStatus"]
        assert details["originalHireDate"] == profile["hireDate"]
        assert details["lastHireDate"] >= details["originalHireDate"]
        assert details["employeeType"] in ("Regular", "Temporary")
        assert details["fullTimeOrPartTime"] in ("F", "P")
        assert details["hourlyOrSalaried"] in ("H", "S")
        assert isinstance(details["scheduledWeeklyHours"], float)


def test_generated_tenant_looks_like_a_real_one() -> None:
    sim = Simulator(SimulatorConfig(employees=5000, companies=4), env={})
    truth = sim.truth()
    assert len(truth) == 5000

    statuses = Counter(profile["employmentStatus"] for profile in truth.values())
    assert 0.84 < statuses["Active"] / 5000 < 0.92
    assert 0.02 < statuses["Leave"] / 5000 < 0.06
    assert 0.05 < statuses["Terminated"] / 5000 < 0.11
    for profile in truth.values():
        assert DAY.fullmatch(profile["hireDate"])
        if profile["employmentStatus"] == "Terminated":
            assert profile["terminationDate"] > profile["hireDate"]
        else:
            assert profile["terminationDate"] is None
        assert profile["dateOfBirth"] < profile["hireDate"]
        assert date.fromisoformat(profile["hireDate"]) <= date(2025, 12, 31)
        assert profile["flsaStatus"] in ("Exempt", "Non-Exempt")
        assert "@" in profile["emailAddress"]
        assert profile["departmentCode"].endswith(profile["companyCode"][-2:])

    assert Counter(p["companyCode"] for p in truth.values()).keys() == {
        "CORP01",
        "CORP02",
        "CORP03",
        "CORP04",
    }
    assert len({p["emailAddress"] for p in truth.values()}) == 5000


def test_supervisors_form_one_tree_mostly_within_companies() -> None:
    truth = Simulator(SimulatorConfig(employees=3000), env={}).truth()
    roots = [i for i, p in truth.items() if p["supervisorId"] is None]
    assert len(roots) == 1
    cross_company = 0
    for employee_id, profile in truth.items():
        seen = {employee_id}
        manager = profile["supervisorId"]
        if manager is not None and truth[manager]["companyCode"] != profile["companyCode"]:
            cross_company += 1
        while manager is not None:  # every chain ends at the root without a loop
            assert manager in truth
            assert manager not in seen
            seen.add(manager)
            manager = truth[manager]["supervisorId"]
    assert 0 < cross_company < 0.05 * len(truth)
    reports = Counter(p["supervisorId"] for p in truth.values())
    assert reports.most_common(1)[0][1] >= 5  # managers have teams
