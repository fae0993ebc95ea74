"""Employee records computed from (seed, index) on demand.

Nothing is stored per generated employee: every request recomputes the record
from a keyed hash (BLAKE2b) of the index, keyed by the seed, so a million-employee
tenant costs no memory and the same seed always gives the same data. Dates are
relative to a fixed reference day, never to today's date, for the same reason.

Company = ``index % companies``; within a company the ``local`` number orders
people by seniority: local 0 is the company's top, 1-9 are directors, and every
other employee reports to someone with a lower local number in the same company
(a few dotted lines cross companies), so ``supervisorId`` always forms a tree.
Company tops report to the group CEO (index 0), whose ``supervisorId`` is null.
"""

from __future__ import annotations

import functools
import hashlib
from array import array
from datetime import date
from typing import Any

from ._ids import IdCodec
from ._reference import (
    DEPARTMENTS,
    DIRECTOR_JOB_CODE,
    ETHNICITIES,
    EXECUTIVE,
    FIRST_NAMES,
    GENDERS,
    LAST_NAMES,
    PAY_GROUPS_HOURLY,
    PAY_GROUPS_SALARIED,
    Tenant,
    email_safe,
)

__all__ = [
    "EMPLOYMENT_KEYS",
    "PROFILE_KEYS",
    "RECORD_KEYS",
    "REFERENCE_DAY",
    "RecordGenerator",
    "iso_day",
]

PROFILE_KEYS: tuple[str, ...] = (
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
)
EMPLOYMENT_KEYS: tuple[str, ...] = (
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
)
# A stored record holds both views; originalHireDate is the profile's hireDate.
RECORD_KEYS: tuple[str, ...] = PROFILE_KEYS + tuple(
    key for key in EMPLOYMENT_KEYS if key not in PROFILE_KEYS and key != "originalHireDate"
)

REFERENCE_DAY = date(2025, 12, 31).toordinal()
_FIRST_HIRE_DAY = date(1995, 1, 2).toordinal()
_HIRE_SPAN = REFERENCE_DAY - 60 - _FIRST_HIRE_DAY
_YEAR = 365.25
_M64 = 0xFFFFFFFFFFFFFFFF
_P = 65536  # draws are 16-bit: probabilities below are written as p * _P
_ACTIVE = int(0.88 * _P)
_LEAVE = int(0.92 * _P)
_ETHNICITY_WEIGHTS = (55, 18, 12, 8, 4, 2, 1)
_CEO = EXECUTIVE.jobs[0]
_DIRECTOR_TITLES = tuple(f"Director of {department.name}" for department in DEPARTMENTS)
_FIRST_SAFE = tuple(email_safe(name) for name in FIRST_NAMES)
_LAST_SAFE = tuple(email_safe(name) for name in LAST_NAMES)


@functools.cache  # a few tens of thousands of distinct days at most
def iso_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _cumulative(weights: tuple[int, ...]) -> tuple[int, ...]:
    out, total = [], 0
    for weight in weights:
        total += weight
        out.append(total)
    return tuple(out)


_ETHNICITY_CUMULATIVE = _cumulative(_ETHNICITY_WEIGHTS)


def _pick(cumulative: tuple[int, ...], draw: int) -> int:
    """Index of a weighted choice, ``draw`` uniform in [0, 65536)."""
    target = draw * cumulative[-1] // _P
    for i, bound in enumerate(cumulative):
        if target < bound:
            return i
    return len(cumulative) - 1


class RecordGenerator:
    """Computes the generated (never-changed) record of any employee index."""

    def __init__(self, seed: int, tenant: Tenant, codec: IdCodec) -> None:
        key = (seed & _M64).to_bytes(8, "little") + (seed >> 64 & _M64).to_bytes(8, "little")
        self._hasher = hashlib.blake2b(key=key, digest_size=48, person=b"ukg-sim-employee")
        self._tenant = tenant
        self._codec = codec
        self._companies = len(tenant.company_codes)

    def _draws(self, index: int) -> array[int]:
        """24 independent 16-bit draws for one employee: a keyed BLAKE2b of the index.

        Copying a pre-keyed hasher is several times faster than any pure-Python mix.
        """
        hasher = self._hasher.copy()
        hasher.update(index.to_bytes(8, "little"))
        return array("H", hasher.digest())

    def supervisor_index(self, index: int) -> int | None:
        """The generated manager of ``index``: always a lower index, None for the group CEO."""
        companies = self._companies
        return self._parent(index % companies, index // companies, self._draws(index))

    def _parent(self, company: int, local: int, d: array[int]) -> int | None:
        companies = self._companies
        if local == 0:
            return None if company == 0 else 0
        low, high = (local - 1) // 10, (local - 1) // 4
        parent_local = low + d[2] % (high - low + 1)
        parent_company = company
        if companies > 1 and d[3] < 650:  # about 1%: a dotted line into another company
            parent_company = d[4] % companies
        return parent_local * companies + parent_company

    def record(self, index: int) -> dict[str, Any]:
        """The full generated record (profile and employment fields) of ``index``."""
        tenant = self._tenant
        companies = self._companies
        company, local = index % companies, index // companies
        d = self._draws(index)

        first_i, last_i = d[0] % len(FIRST_NAMES), d[1] % len(LAST_NAMES)
        supervisor = self._parent(company, local, d)

        # department is an index into the company's codes: 0 is the executive office.
        if local == 0:
            department, title, code, flsa = 0, _CEO.title, _CEO.code, "Exempt"
        elif local <= 9:
            department = 1 + (local - 1) % len(DEPARTMENTS)
            title, code, flsa = _DIRECTOR_TITLES[department - 1], DIRECTOR_JOB_CODE, "Exempt"
        else:
            department = 1 + _pick(tenant.department_cumulative, d[5])
            jobs = DEPARTMENTS[department - 1].jobs
            job = jobs[d[6] % len(jobs)]
            title, code, flsa = job.title, job.code, job.flsa_status

        if local == 0:
            status = "Active"
            hire_day = _FIRST_HIRE_DAY + d[7] % 400
        else:
            status = "Active" if d[8] < _ACTIVE else "Leave" if d[8] < _LEAVE else "Terminated"
            recency = d[7] / _P
            hire_day = REFERENCE_DAY - 60 - int(_HIRE_SPAN * recency * recency)
        termination_day = None
        if status == "Terminated":
            termination_day = hire_day + 1 + (REFERENCE_DAY - hire_day - 1) * d[9] // _P
        last_hire_day = hire_day
        if d[10] < 3277:  # about 5% were rehired: lastHireDate after originalHireDate
            last_hire_day = hire_day + ((termination_day or REFERENCE_DAY) - hire_day) * d[11] // _P
        birth_day = hire_day - int((18 + 44 * d[12] / _P) * _YEAR)

        employee_type = "Temporary" if d[13] < 3932 else "Regular"
        part_time_cut = 32768 if employee_type == "Temporary" else 5243
        full_time = "P" if d[14] < part_time_cut else "F"
        hours = (40.0 if d[15] % 5 else 37.5) if full_time == "F" else (20.0, 24.0, 30.0)[d[15] % 3]
        salaried = flsa == "Exempt" or d[16] < 6554
        pay_groups = PAY_GROUPS_SALARIED if salaried else PAY_GROUPS_HOURLY
        locations = tenant.company_locations[company]
        slot = d[17] % 20
        location = locations[0 if slot < 8 else 1 + (slot - 8) // 3]

        ethnicity = None if d[18] < 5243 else ETHNICITIES[_pick(_ETHNICITY_CUMULATIVE, d[19])]
        gender_draw = d[20] % 100
        gender = (
            None
            if gender_draw < 2
            else GENDERS[0 if gender_draw < 51 else 1 if gender_draw < 98 else 2]
        )

        codec = self._codec
        return {
            "employeeId": codec.id_of(index),
            "firstName": FIRST_NAMES[first_i],
            "lastName": LAST_NAMES[last_i],
            "emailAddress": (
                f"{_FIRST_SAFE[first_i]}.{_LAST_SAFE[last_i]}{index + 1}@{tenant.domains[company]}"
            ),
            "employeeNumber": f"{index + 1:06d}",
            "hireDate": iso_day(hire_day),
            "jobTitle": title,
            "departmentCode": tenant.department_codes[company][department],
            "locationId": location,
            "employmentStatus": status,
            "supervisorId": None if supervisor is None else codec.id_of(supervisor),
            "companyCode": tenant.company_codes[company],
            "payGroupCode": pay_groups[d[21] % len(pay_groups)],
            "flsaStatus": flsa,
            "ethnicity": ethnicity,
            "gender": gender,
            "dateOfBirth": iso_day(birth_day),
            "terminationDate": None if termination_day is None else iso_day(termination_day),
            "jobCode": code,
            "employeeType": employee_type,
            "fullTimeOrPartTime": full_time,
            "hourlyOrSalaried": "S" if salaried else "H",
            "scheduledWeeklyHours": hours,
            "lastHireDate": iso_day(last_hire_day),
        }
