"""Arrow schemas of the exported tables, and the conversion of API records into Arrow batches.

Each table is a :class:`TableSpec`: which camelCase JSON field of the API becomes which
snake_case column, with an explicit Arrow type (dates are ``date32``). The schema version is
recorded in every manifest; bump :data:`SCHEMA_VERSION` whenever a column is added, removed,
renamed or retyped.

Conversion is column-at-a-time for speed: one Python list per column, one ``pa.array`` call
with an explicit type. :func:`records_to_batch` is strict: a value of the wrong type raises
``ValueError`` naming the field and the employee. :func:`convert_records` is what a sink calls:
it tries the fast strict path first and, only when that fails, checks every record with
:func:`validate_record`, rejects the bad ones and converts the rest. A clean batch (the normal
case) therefore pays for no per-record validation at all.

Masking: the API masks sensitive fields it does not let the service account read (the
simulator sends ``"*****"``; real tenants use other lengths). In a field listed in
``TableSpec.sensitive`` a non-empty value made only of ``*`` is stored as null, never as the
mask string.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "EMPLOYEES",
    "EMPLOYEE_CHANGES",
    "EMPLOYMENT_DETAILS",
    "SCHEMA_VERSION",
    "TABLES",
    "FieldSpec",
    "Rejected",
    "TableSpec",
    "convert_records",
    "records_to_batch",
    "validate_record",
]

SCHEMA_VERSION = 1

Kind = Literal["string", "date", "float64"]

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "date": pa.date32(),
    "float64": pa.float64(),
}

# A date, or a full ISO 8601 datetime whose date part is taken (the tenant's local date).
_DATE_CORE = (
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_DATE_PATTERN = f"^{_DATE_CORE}$"  # RE2 (Arrow): $ is the end of the text
_DATE_RE = re.compile(_DATE_CORE)
_MASK_PATTERN = r"^\*+$"
#: The snapshot partition column, stored in every file as well as in the path.
SNAPSHOT_COLUMN = "snapshot_id"


class FieldSpec(NamedTuple):
    """One API field and the column it becomes."""

    api_name: str
    column: str
    kind: Kind


class Rejected(NamedTuple):
    """A record that could not be converted; ``employee_id`` is None when the record had none."""

    employee_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """An exported table: its Arrow schema and how API fields map onto its columns.

    ``sensitive`` holds API field names whose masked values are stored as null. ``key`` is the
    column that is unique in a snapshot; ``partition_column`` also becomes a Hive directory
    level (``company_code=X``).
    """

    name: str
    schema: pa.Schema
    fields: tuple[FieldSpec, ...]
    key: str = "employee_id"
    partition_column: str = "company_code"
    sensitive: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        name: str,
        fields: Sequence[tuple[str, str, Kind]],
        *,
        key: str = "employee_id",
        partition_column: str = "company_code",
        sensitive: frozenset[str] = frozenset(),
    ) -> TableSpec:
        """Derive the schema from the fields; the key column is the only non-nullable one."""
        specs = tuple(FieldSpec(*f) for f in fields)
        schema = pa.schema(
            [pa.field(f.column, _ARROW_TYPES[f.kind], nullable=f.column != key) for f in specs],
            metadata={b"ukg_extract.schema_version": str(SCHEMA_VERSION).encode()},
        )
        columns = {f.column for f in specs}
        api_names = {f.api_name for f in specs}
        if key not in columns or partition_column not in columns:
            raise ValueError(f"table {name}: key and partition column must be columns")
        if not sensitive <= api_names:
            raise ValueError(f"table {name}: sensitive fields {sorted(sensitive - api_names)}")
        return cls(name, schema, specs, key, partition_column, sensitive)

    @property
    def key_field(self) -> FieldSpec:
        """The field that holds the key (``employeeId`` -> ``employee_id``)."""
        return next(f for f in self.fields if f.column == self.key)

    @property
    def file_schema(self) -> pa.Schema:
        """The schema inside a Parquet file: the table's columns, then ``snapshot_id``.

        The Hive partition values (``snapshot_id``, ``company_code``) are stored in the files
        too, as strings. Readers then take their type from the file instead of guessing it from
        the path: polars would otherwise try to parse ``20240101T000000Z`` as a date and fail,
        and polars, pyarrow and DuckDB would all turn a company code such as ``001`` into 1.
        A single file also stays self-describing when loaded on its own (Snowflake, BigQuery).
        """
        return self.schema.append(pa.field(SNAPSHOT_COLUMN, pa.string(), nullable=False))


EMPLOYEES = TableSpec.build(
    "employees",
    [
        ("employeeId", "employee_id", "string"),
        ("firstName", "first_name", "string"),
        ("lastName", "last_name", "string"),
        ("emailAddress", "email_address", "string"),
        ("employeeNumber", "employee_number", "string"),
        ("hireDate", "hire_date", "date"),
        ("jobTitle", "job_title", "string"),
        ("departmentCode", "department_code", "string"),
        ("locationId", "location_id", "string"),
        ("employmentStatus", "employment_status", "string"),
        ("supervisorId", "supervisor_id", "string"),
        ("companyCode", "company_code", "string"),
        ("payGroupCode", "pay_group_code", "string"),
        ("flsaStatus", "flsa_status", "string"),
        ("ethnicity", "ethnicity", "string"),
        ("gender", "gender", "string"),
        ("dateOfBirth", "date_of_birth", "date"),
        ("terminationDate", "termination_date", "date"),
    ],
    sensitive=frozenset({"ethnicity", "gender", "dateOfBirth"}),
)

EMPLOYMENT_DETAILS = TableSpec.build(
    "employment_details",
    [
        ("employeeId", "employee_id", "string"),
        ("companyCode", "company_code", "string"),
        ("jobTitle", "job_title", "string"),
        ("jobCode", "job_code", "string"),
        ("flsaStatus", "flsa_status", "string"),
        ("payGroupCode", "pay_group_code", "string"),
        ("employeeType", "employee_type", "string"),
        ("fullTimeOrPartTime", "full_time_or_part_time", "string"),
        ("hourlyOrSalaried", "hourly_or_salaried", "string"),
        ("scheduledWeeklyHours", "scheduled_weekly_hours", "float64"),
        ("employmentStatus", "employment_status", "string"),
        ("originalHireDate", "original_hire_date", "date"),
        ("lastHireDate", "last_hire_date", "date"),
        ("terminationDate", "termination_date", "date"),
    ],
)

#: The change records an incremental sync read from ``employee-changes`` (for audit). One row
#: a record; ``change_id`` (employee, time, type) is the key, ``change_type`` the partition.
EMPLOYEE_CHANGES = TableSpec.build(
    "employee_changes",
    [
        ("changeId", "change_id", "string"),
        ("employeeId", "employee_id", "string"),
        ("changeType", "change_type", "string"),
        ("changedDate", "changed_date", "date"),
        ("changedAt", "changed_at", "string"),
    ],
    key="change_id",
    partition_column="change_type",
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (EMPLOYEES, EMPLOYMENT_DETAILS, EMPLOYEE_CHANGES)
}


def _is_mask(value: object) -> bool:
    return isinstance(value, str) and value != "" and value.strip("*") == ""


def _value_problem(kind: Kind, value: object) -> str | None:
    """Why ``value`` cannot go into a column of ``kind`` (None: it can, or it is null)."""
    if value is None:
        return None
    if kind == "string":
        return None if isinstance(value, str) else f"expected a string, got {type(value).__name__}"
    if kind == "float64":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return None
        return f"expected a number, got {type(value).__name__}"
    if not isinstance(value, str):
        return f"expected a date string, got {type(value).__name__}"
    if _DATE_RE.fullmatch(value):
        try:
            dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
        else:
            return None
    return f"expected a date 'YYYY-MM-DD', got {value[:40]!r}"


def validate_record(spec: TableSpec, record: Mapping[str, Any]) -> str | None:
    """Why ``record`` cannot be converted, or None when it can.

    Mirrors the checks of :func:`records_to_batch` one record at a time; sensitive values are
    never quoted in the reason (it ends up in logs and manifests).
    """
    key = spec.key_field
    employee_id = record.get(key.api_name)
    if not isinstance(employee_id, str) or employee_id == "":
        return f"field {key.api_name!r}: missing or not a non-empty string"
    for f in spec.fields:
        value = record.get(f.api_name)
        if f.api_name in spec.sensitive and _is_mask(value):
            continue
        problem = _value_problem(f.kind, value)
        if problem is not None:
            if f.api_name in spec.sensitive:
                problem = f"expected a {f.kind} value, got {type(value).__name__}"
            return f"field {f.api_name!r} of employee {employee_id!r}: {problem}"
    return None


def _column(f: FieldSpec, values: list[Any], sensitive: bool) -> pa.Array:
    # Raises pa.ArrowInvalid / pa.ArrowTypeError / ValueError on a bad value; the caller turns
    # that into a message naming the record (found by the slow per-record check).
    if f.kind == "float64":
        # pa.array would silently turn True into 1.0.
        if any(type(v) is bool for v in values):
            raise ValueError("bool in a numeric column")
        return pa.array(values, type=pa.float64())
    arr = pa.array(values, type=pa.string())
    if sensitive and arr.null_count < len(arr):
        arr = pc.if_else(pc.match_substring_regex(arr, _MASK_PATTERN), None, arr)
    if f.kind == "string":
        return arr
    if arr.null_count == len(arr):
        return pa.nulls(len(arr), pa.date32())
    if not pc.all(pc.match_substring_regex(arr, _DATE_PATTERN)).as_py():
        raise ValueError("not a date")
    # Casting validates the calendar too (2022-02-30 fails).
    return pc.utf8_slice_codeunits(arr, 0, 10).cast(pa.date32())


def records_to_batch(spec: TableSpec, records: Sequence[Mapping[str, Any]]) -> pa.RecordBatch:
    """Convert API records into a batch of ``spec.schema`` (partition column included).

    Missing keys and masked sensitive values become null; unknown keys are ignored. Raises
    ``ValueError`` naming the first bad field and its employee when any value has the wrong
    type, or a record has no ``employeeId``. Use :func:`convert_records` to keep the good
    records of a batch that contains bad ones.
    """
    arrays: list[pa.Array] = []
    for f in spec.fields:
        values = [r.get(f.api_name) for r in records]
        try:
            arr = _column(f, values, f.api_name in spec.sensitive)
            if f.column == spec.key and (arr.null_count or pc.any(pc.equal(arr, "")).as_py()):
                raise ValueError("missing key")
        except (pa.ArrowException, ValueError, TypeError):
            for record in records:
                reason = validate_record(spec, record)
                if reason is not None:
                    raise ValueError(reason) from None
            raise  # the slow check found nothing: a bug in one of the two paths
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=spec.schema)


def convert_records(
    spec: TableSpec, records: Sequence[Mapping[str, Any]]
) -> tuple[pa.RecordBatch, list[Rejected]]:
    """Convert what can be converted; return the batch and the records rejected, with reasons.

    Fast path: one strict :func:`records_to_batch`. Only if it fails is each record validated.
    """
    try:
        return records_to_batch(spec, records), []
    except ValueError:
        pass
    good: list[Mapping[str, Any]] = []
    rejected: list[Rejected] = []
    key = spec.key_field.api_name
    for record in records:
        reason = validate_record(spec, record)
        if reason is None:
            good.append(record)
        else:
            employee_id = record.get(key)
            rejected.append(Rejected(employee_id if isinstance(employee_id, str) else None, reason))
    return records_to_batch(spec, good), rejected
