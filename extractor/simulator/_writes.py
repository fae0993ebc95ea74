"""Validation of the three writes, with the rules of the guide's scenarios.

* ``POST /employees``: firstName, lastName, emailAddress, hireDate and companyCode
  are required and companyCode must be a company of the tenant. Job placement
  (jobTitle, departmentCode, supervisorId, locationId) is not writable on create:
  the guide's onboarding flow PATCHes it afterwards.
* ``PATCH /employees/{id}``: only the fields in ``PATCHABLE``; departmentCode must
  exist in the employee's company (cross-company writes are not permitted),
  supervisorId must be a current employee and may not create a cycle, locationId
  and payGroupCode must be in the tenant's tables. Status and dates change only
  through the termination endpoint.
* ``POST /employees/{id}/terminations``: terminationDate (not before the hire date)
  and a terminationReasonCode from the tenant's reason table.

Each function returns clean values or raises a 400 ``ApiError`` naming the field.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from ._problems import bad_request
from ._reference import FLSA_STATUSES, PAY_GROUPS, TERMINATION_REASONS
from ._store import EmployeeStore

__all__ = ["PATCHABLE", "check_create", "check_patch", "check_termination"]

REQUIRED_ON_CREATE: tuple[str, ...] = (
    "firstName",
    "lastName",
    "emailAddress",
    "hireDate",
    "companyCode",
)
OPTIONAL_ON_CREATE = frozenset(
    {
        "employeeNumber",
        "payGroupCode",
        "flsaStatus",
        "employmentStatus",
        "dateOfBirth",
        "gender",
        "ethnicity",
    }
)
PATCHABLE = frozenset(
    {
        "firstName",
        "lastName",
        "emailAddress",
        "employeeNumber",
        "jobTitle",
        "departmentCode",
        "supervisorId",
        "locationId",
        "payGroupCode",
        "flsaStatus",
    }
)
_PLACEMENT = frozenset({"jobTitle", "departmentCode", "supervisorId", "locationId"})
_VIA_TERMINATION = frozenset({"employmentStatus", "terminationDate"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_TEXT = 100


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, *, nullable: bool) -> str | None:
    value = body[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        kind = "a non-empty string" + (" or null" if nullable else "")
        raise bad_request(f"Field '{key}' must be {kind} of at most {_MAX_TEXT} characters")
    return value


def _email(body: dict[str, Any], key: str) -> str:
    value = _text(body, key, nullable=False)
    assert value is not None
    if _EMAIL.fullmatch(value) is None:
        raise bad_request(f"Field '{key}' must be an email address")
    return value


def _date(body: dict[str, Any], key: str, *, nullable: bool = False) -> str | None:
    value = body[key]
    if value is None and nullable:
        return None
    try:
        if not isinstance(value, str) or _DATE.fullmatch(value) is None:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"Field '{key}' must be a date as YYYY-MM-DD") from None
    return value


def _choice(body: dict[str, Any], key: str, allowed: frozenset[str]) -> str | None:
    value = body[key]
    if value is not None and (not isinstance(value, str) or value not in allowed):
        raise bad_request(f"Field '{key}' must be one of {sorted(allowed)} or null")
    return None if value is None else str(value)


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    return _text(body, key, nullable=True) if key in body else None


def check_create(body: Any, store: EmployeeStore) -> dict[str, Any]:
    """The full record (without employeeId) of a valid ``POST /employees`` body."""
    body = _require_object(body)
    for key in body:
        if key in _PLACEMENT:
            raise bad_request(
                f"Field '{key}' cannot be set when creating an employee; "
                f"PATCH /personnel/v1/employees/{{employeeId}} after creation"
            )
        if key not in REQUIRED_ON_CREATE and key not in OPTIONAL_ON_CREATE:
            raise bad_request(f"Field '{key}' cannot be set when creating an employee")
    missing = [key for key in REQUIRED_ON_CREATE if body.get(key) in (None, "")]
    if missing:
        raise bad_request(f"Missing required field(s): {', '.join(missing)}")
    first, last = _text(body, "firstName", nullable=False), _text(body, "lastName", nullable=False)
    email = _email(body, "emailAddress")
    hire_date = _date(body, "hireDate")
    company = body["companyCode"]
    if not isinstance(company, str) or company not in store.tenant.company_index:
        raise bad_request(
            f"companyCode {str(company)[:32]!r} does not match a company configured in this tenant"
        )
    status = body.get("employmentStatus") or "Active"
    if not isinstance(status, str) or status not in ("Active", "Leave"):
        raise bad_request(
            "Field 'employmentStatus' must be 'Active' or 'Leave' on create; "
            "terminate through POST /personnel/v1/employees/{employeeId}/terminations"
        )
    flsa = _choice(body, "flsaStatus", FLSA_STATUSES) if "flsaStatus" in body else None
    pay_group = _choice(body, "payGroupCode", PAY_GROUPS) if "payGroupCode" in body else None
    birth = _date(body, "dateOfBirth", nullable=True) if "dateOfBirth" in body else None
    if birth is not None and hire_date is not None and birth >= hire_date:
        raise bad_request("Field 'dateOfBirth' must be before 'hireDate'")
    return {
        "firstName": first,
        "lastName": last,
        "emailAddress": email,
        "employeeNumber": _optional_text(body, "employeeNumber"),
        "hireDate": hire_date,
        "jobTitle": None,
        "departmentCode": None,
        "locationId": None,
        "employmentStatus": status,
        "supervisorId": None,
        "companyCode": company,
        "payGroupCode": pay_group,
        "flsaStatus": flsa,
        "ethnicity": _optional_text(body, "ethnicity"),
        "gender": _optional_text(body, "gender"),
        "dateOfBirth": birth,
        "terminationDate": None,
        "jobCode": None,
        "employeeType": "Regular",
        "fullTimeOrPartTime": "F",
        "hourlyOrSalaried": "S" if flsa == "Exempt" else "H",
        "scheduledWeeklyHours": 40.0,
        "lastHireDate": hire_date,
    }


def check_patch(body: Any, index: int, store: EmployeeStore) -> dict[str, Any]:
    """The field changes of a valid ``PATCH /employees/{id}`` body."""
    body = _require_object(body)
    if not body:
        raise bad_request(f"The request body names no field to update; patchable: {_patchable()}")
    for key in body:
        if key in _VIA_TERMINATION:
            raise bad_request(
                f"Field '{key}' is not patchable; terminate through "
                "POST /personnel/v1/employees/{employeeId}/terminations"
            )
        if key not in PATCHABLE:
            raise bad_request(f"Field '{key}' is not patchable; patchable: {_patchable()}")
    changes: dict[str, Any] = {}
    for key in ("firstName", "lastName"):
        if key in body:
            changes[key] = _text(body, key, nullable=False)
    if "emailAddress" in body:
        changes["emailAddress"] = _email(body, "emailAddress")
    for key in ("employeeNumber", "jobTitle"):
        if key in body:
            changes[key] = _text(body, key, nullable=True)
    if "jobTitle" in changes:
        changes["jobCode"] = store.tenant.job_code(changes["jobTitle"])
    if "departmentCode" in body:
        changes["departmentCode"] = _department(body["departmentCode"], index, store)
    if "locationId" in body:
        changes["locationId"] = _choice(body, "locationId", store.tenant.locations)
    if "payGroupCode" in body:
        changes["payGroupCode"] = _choice(body, "payGroupCode", PAY_GROUPS)
    if "flsaStatus" in body:
        changes["flsaStatus"] = _choice(body, "flsaStatus", FLSA_STATUSES)
        changes["hourlyOrSalaried"] = "S" if changes["flsaStatus"] == "Exempt" else "H"
    if "supervisorId" in body:
        changes["supervisorId"] = _supervisor(body["supervisorId"], index, store)
    return changes


def _patchable() -> str:
    return ", ".join(sorted(PATCHABLE))


def _department(code: Any, index: int, store: EmployeeStore) -> str | None:
    if code is None:
        return None
    tenant = store.tenant
    if not isinstance(code, str) or code not in tenant.department_company:
        raise bad_request(
            f"departmentCode {str(code)[:32]!r} does not match a department configured "
            "in this tenant"
        )
    company = store.record(index)["companyCode"]
    if tenant.company_codes[tenant.department_company[code]] != company:
        raise bad_request(
            f"departmentCode {code!r} belongs to another company; "
            f"cross-company writes are not permitted (employee's company: {company})"
        )
    return code


def _supervisor(supervisor_id: Any, index: int, store: EmployeeStore) -> str | None:
    if supervisor_id is None:
        return None
    candidate = store.index_of(supervisor_id) if isinstance(supervisor_id, str) else None
    if candidate is None:
        raise bad_request(f"supervisorId {str(supervisor_id)[:32]!r} is not a current employee")
    if candidate == index:
        raise bad_request("An employee cannot be their own supervisor")
    if store.would_cycle(index, candidate):
        raise bad_request("supervisorId would make the employee their own indirect supervisor")
    return str(supervisor_id)


def check_termination(body: Any, index: int, store: EmployeeStore) -> str:
    """The termination date of a valid ``POST .../terminations`` body."""
    body = _require_object(body)
    unknown = sorted(set(body) - {"terminationDate", "terminationReasonCode"})
    if unknown:
        raise bad_request(f"Unknown field(s): {', '.join(unknown)}")
    missing = [key for key in ("terminationDate", "terminationReasonCode") if key not in body]
    if missing:
        raise bad_request(f"Missing required field(s): {', '.join(missing)}")
    termination_date = _date(body, "terminationDate")
    reason = body["terminationReasonCode"]
    if not isinstance(reason, str) or reason not in TERMINATION_REASONS:
        raise bad_request(
            f"terminationReasonCode {str(reason)[:32]!r} is not in the tenant's reason code "
            f"table ({', '.join(sorted(TERMINATION_REASONS))})"
        )
    record = store.record(index)
    if record["employmentStatus"] == "Terminated":
        raise bad_request("The employee is already terminated")
    assert termination_date is not None
    if record["hireDate"] is not None and termination_date < record["hireDate"]:
        raise bad_request("Field 'terminationDate' must not be before the hire date")
    return termination_date
