"""Schema mapping: API records -> Arrow batches with explicit types."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from extractor._schema import (
    EMPLOYEES,
    EMPLOYMENT_DETAILS,
    SCHEMA_VERSION,
    TABLES,
    Rejected,
    convert_records,
    records_to_batch,
    validate_record,
)


def employee(employee_id: str = "E1", **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "employeeId": employee_id,
        "firstName": "Jane",
        "lastName": "Doe",
        "emailAddress": "jane.doe@example.com",
        "employeeNumber": "000123",
        "hireDate": "2022-03-15",
        "jobTitle": "Engineer",
        "departmentCode": "ENG",
        "locationId": "L1",
        "employmentStatus": "Active",
        "supervisorId": "E0",
        "companyCode": "CORP01",
        "payGroupCode": "PG1",
        "flsaStatus": "Exempt",
        "ethnicity": "Declined",
        "gender": "F",
        "dateOfBirth": "1990-07-01",
        "terminationDate": None,
    }
    record.update(fields)
    return record


def test_schema_version_is_recorded() -> None:
    assert SCHEMA_VERSION == 1
    assert EMPLOYEES.schema.metadata[b"ukg_extract.schema_version"] == b"1"
    assert set(TABLES) == {"employees", "employment_details", "employee_changes"}


def test_employees_columns_and_types() -> None:
    schema = EMPLOYEES.schema
    assert schema.names == [
        "employee_id",
        "first_name",
        "last_name",
        "email_address",
        "employee_number",
        "hire_date",
        "job_title",
        "department_code",
        "location_id",
        "employment_status",
        "supervisor_id",
        "company_code",
        "pay_group_code",
        "flsa_status",
        "ethnicity",
        "gender",
        "date_of_birth",
        "termination_date",
    ]
    dates = {"hire_date", "date_of_birth", "termination_date"}
    for f in schema:
        assert f.type == (pa.date32() if f.name in dates else pa.string()), f.name
        assert f.nullable == (f.name != "employee_id"), f.name
    assert EMPLOYEES.sensitive == {"ethnicity", "gender", "dateOfBirth"}
    assert EMPLOYEES.key == "employee_id"
    assert EMPLOYEES.partition_column == "company_code"
    # partition values are stored in the files too, so readers never guess their types
    assert EMPLOYEES.file_schema.names == [*schema.names, "snapshot_id"]


def test_employment_details_types() -> None:
    schema = EMPLOYMENT_DETAILS.schema
    assert schema.field("scheduled_weekly_hours").type == pa.float64()
    for name in ("original_hire_date", "last_hire_date", "termination_date"):
        assert schema.field(name).type == pa.date32()
    assert schema.field("full_time_or_part_time").type == pa.string()
    assert schema.names[:2] == ["employee_id", "company_code"]


def test_records_to_batch_values_and_types() -> None:
    batch = records_to_batch(EMPLOYEES, [employee()])
    assert batch.schema.equals(EMPLOYEES.schema)
    row = batch.to_pylist()[0]
    assert row["employee_id"] == "E1"
    assert row["employee_number"] == "000123"  # customer number, kept as text
    assert row["hire_date"] == dt.date(2022, 3, 15)
    assert row["date_of_birth"] == dt.date(1990, 7, 1)
    assert row["termination_date"] is None
    assert row["company_code"] == "CORP01"  # the partition column is a real column


def test_datetime_strings_keep_their_date_part() -> None:
    records = [
        employee("E1", hireDate="2022-03-15T00:00:00"),
        employee("E2", hireDate="2022-03-15T23:30:00-05:00"),
        employee("E3", hireDate="2022-03-15T10:00:00.123Z"),
    ]
    batch = records_to_batch(EMPLOYEES, records)
    assert batch.column("hire_date").to_pylist() == [dt.date(2022, 3, 15)] * 3


@pytest.mark.parametrize("mask", ["*", "*****", "**********"])
def test_masked_sensitive_values_are_null(mask: str) -> None:
    record = employee(ethnicity=mask, gender=mask, dateOfBirth=mask)
    row = records_to_batch(EMPLOYEES, [record]).to_pylist()[0]
    assert row["ethnicity"] is None
    assert row["gender"] is None
    assert row["date_of_birth"] is None
    assert validate_record(EMPLOYEES, record) is None


def test_mask_detection_only_in_sensitive_fields() -> None:
    row = records_to_batch(EMPLOYEES, [employee(jobTitle="***", gender="F*")]).to_pylist()[0]
    assert row["job_title"] == "***"
    assert row["gender"] == "F*"


def test_missing_keys_are_null_and_unknown_keys_ignored() -> None:
    batch = records_to_batch(EMPLOYEES, [{"employeeId": "E9", "surprise": {"nested": 1}}])
    row = batch.to_pylist()[0]
    assert row["employee_id"] == "E9"
    assert all(v is None for k, v in row.items() if k != "employee_id")
    assert "surprise" not in batch.schema.names


def test_empty_input_gives_an_empty_batch() -> None:
    batch = records_to_batch(EMPLOYEES, [])
    assert batch.num_rows == 0
    assert batch.schema.equals(EMPLOYEES.schema)


def test_employment_details_numbers() -> None:
    records = [
        {"employeeId": "E1", "scheduledWeeklyHours": 40, "lastHireDate": "2020-01-02"},
        {"employeeId": "E2", "scheduledWeeklyHours": 37.5},
    ]
    batch = records_to_batch(EMPLOYMENT_DETAILS, records)
    assert batch.column("scheduled_weekly_hours").to_pylist() == [40.0, 37.5]
    assert batch.column("last_hire_date").to_pylist() == [dt.date(2020, 1, 2), None]


BAD_EMPLOYEES = [
    pytest.param({"firstName": 42}, "firstName", id="number-for-string"),
    pytest.param({"employeeNumber": 123}, "employeeNumber", id="int-employee-number"),
    pytest.param({"hireDate": "15/03/2022"}, "hireDate", id="foreign-date"),
    pytest.param({"hireDate": "2022-02-30"}, "hireDate", id="impossible-date"),
    pytest.param({"hireDate": "2022-03-15junk"}, "hireDate", id="date-with-junk"),
    pytest.param({"hireDate": "2022-03-15\n"}, "hireDate", id="date-with-newline"),
    pytest.param({"hireDate": 20220315}, "hireDate", id="date-as-number"),
    pytest.param({"terminationDate": "*****"}, "terminationDate", id="mask-not-sensitive"),
    pytest.param({"dateOfBirth": "soon"}, "dateOfBirth", id="sensitive-bad-date"),
    pytest.param({"supervisorId": ["E0"]}, "supervisorId", id="list-for-string"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_EMPLOYEES)
def test_bad_values_raise_naming_field_and_employee(fields: dict[str, Any], field: str) -> None:
    records = [employee("E1"), employee("E2", **fields), employee("E3")]
    with pytest.raises(ValueError, match=rf"'{field}' of employee 'E2'"):
        records_to_batch(EMPLOYEES, records)
    reason = validate_record(EMPLOYEES, records[1])
    assert reason is not None
    assert field in reason
    assert "E2" in reason


def test_sensitive_values_are_not_quoted_in_errors() -> None:
    with pytest.raises(ValueError, match="dateOfBirth") as info:
        records_to_batch(EMPLOYEES, [employee(dateOfBirth="born 1 July 1990")])
    assert "July" not in str(info.value)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"firstName": "x"}, id="missing"),
        pytest.param({"employeeId": None}, id="null"),
        pytest.param({"employeeId": ""}, id="empty"),
        pytest.param({"employeeId": 17}, id="number"),
    ],
)
def test_record_without_a_usable_employee_id_is_bad(record: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="employeeId"):
        records_to_batch(EMPLOYEES, [employee("E1"), record])
    assert validate_record(EMPLOYEES, record) is not None


def test_bool_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="scheduledWeeklyHours"):
        records_to_batch(EMPLOYMENT_DETAILS, [{"employeeId": "E1", "scheduledWeeklyHours": True}])


@pytest.mark.parametrize(("fields", "field"), BAD_EMPLOYEES)
def test_validate_record_agrees_with_fast_path(fields: dict[str, Any], field: str) -> None:
    good = employee("G")
    bad = employee("B", **fields)
    assert validate_record(EMPLOYEES, good) is None
    records_to_batch(EMPLOYEES, [good])
    assert validate_record(EMPLOYEES, bad) is not None
    with pytest.raises(ValueError, match=field):
        records_to_batch(EMPLOYEES, [bad])


def test_convert_records_keeps_good_records_and_rejects_bad_ones() -> None:
    records = [
        employee("E1"),
        employee("E2", hireDate="yesterday"),
        {"firstName": "no id"},
        employee("E4", gender="*****"),
    ]
    batch, rejected = convert_records(EMPLOYEES, records)
    assert batch.column("employee_id").to_pylist() == ["E1", "E4"]
    assert batch.column("gender").to_pylist() == ["F", None]
    assert [r.employee_id for r in rejected] == ["E2", None]
    assert all(isinstance(r, Rejected) and r.reason for r in rejected)


def test_convert_records_clean_batch_rejects_nothing() -> None:
    batch, rejected = convert_records(EMPLOYEES, [employee(f"E{i}") for i in range(100)])
    assert batch.num_rows == 100
    assert rejected == []
