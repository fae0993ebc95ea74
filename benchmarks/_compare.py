"""Completeness and exactness of an export against the simulator's ground truth.

Each contender names its columns its own way (the API's camelCase, or snake_case) and types
them its own way (dates as ``date32`` or as strings), so both sides are brought to one form
first: snake_case names, every value as text (dates as ``YYYY-MM-DD``), missing columns as null.
Then, keyed by ``employee_id``: *missing* (in the truth, not in the output), *extra* (in the
output, not in the truth: stale or invented), *duplicated* (rows beyond the first of an id) and
*wrong* (ids present in both whose fields differ in at least one column).

For a tenant too big to fetch the truth of in the budget, :func:`count_ids` checks only that
the output holds as many distinct ids as the tenant has employees (no ids, no fields compared).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

__all__ = ["Exactness", "compare", "count_ids", "snake_case"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(name: str) -> str:
    """``employeeId`` -> ``employee_id``; snake_case names are left as they are."""
    return _CAMEL.sub("_", name).lower()


@dataclass(frozen=True)
class Exactness:
    truth: int
    rows: int
    missing: int
    extra: int
    duplicated: int
    wrong: int
    wrong_fields: dict[str, int] = field(default_factory=dict)
    error: str = ""
    scope: str = "fields"  # "fields": compared with the truth; "count": distinct ids counted

    @property
    def exact(self) -> bool:
        return not self.error and not (self.missing or self.extra or self.duplicated or self.wrong)

    def summary(self) -> str:
        if self.error:
            return f"unreadable: {self.error}"
        if self.scope == "count":
            distinct = self.rows - self.duplicated
            counted = f"{distinct:,} distinct ids of {self.truth:,}"
            dup = f", {self.duplicated:,} dup" if self.duplicated else ""
            return f"{counted}{dup} (count only, fields not compared)"
        if self.exact:
            return "exact"
        parts = [
            f"{n:,} {what}"
            for n, what in (
                (self.missing, "missing"),
                (self.extra, "extra"),
                (self.duplicated, "dup"),
                (self.wrong, "wrong"),
            )
            if n
        ]
        return ", ".join(parts)


def _as_text(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    exprs = []
    for name in columns:
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=pl.String).alias(name))
            continue
        dtype = frame.schema[name]
        col = pl.col(name)
        if dtype == pl.Date:
            expr = col.dt.strftime("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            expr = col.dt.date().dt.strftime("%Y-%m-%d")
        else:
            expr = col.cast(pl.String)
        exprs.append(expr.alias(name))
    return frame.select(exprs)


def read_output(files: Sequence[Path], *, hive: bool) -> pl.DataFrame:
    """Every row a contender wrote, with snake_case column names."""
    frame = pl.scan_parquet(
        [str(f) for f in files], hive_partitioning=hive, missing_columns="insert"
    ).collect()
    return frame.rename({c: snake_case(c) for c in frame.columns if snake_case(c) != c})


def compare(truth_ndjson: bytes, files: Sequence[Path], *, hive: bool) -> Exactness:
    truth = pl.read_ndjson(truth_ndjson, infer_schema_length=None) if truth_ndjson else None
    if truth is None or truth.height == 0:
        return Exactness(0, 0, 0, 0, 0, 0, error="empty ground truth")
    truth = truth.rename({c: snake_case(c) for c in truth.columns})
    columns = list(truth.columns)
    truth = _as_text(truth, columns)
    if not files:
        return Exactness(truth.height, 0, truth.height, 0, 0, 0)
    try:
        output = _as_text(read_output(files, hive=hive), columns)
    except Exception as exc:  # a contender's broken file is a result, not a crash of the harness
        return Exactness(truth.height, 0, 0, 0, 0, 0, error=f"{type(exc).__name__}: {exc}"[:200])
    key = "employee_id"
    duplicated = output.height - output[key].n_unique()
    unique = output.unique(subset=[key], keep="first", maintain_order=True)
    missing = truth.join(unique, on=key, how="anti").height
    extra = unique.join(truth, on=key, how="anti").height
    both = truth.join(unique, on=key, how="inner", suffix="__out")
    wrong_fields: dict[str, int] = {}
    any_wrong = pl.lit(False)
    for name in columns:
        if name == key:
            continue
        differs = ~pl.col(name).eq_missing(pl.col(f"{name}__out"))
        count = int(both.select(differs.sum()).item())
        if count:
            wrong_fields[name] = count
        any_wrong = any_wrong | differs
    wrong = int(both.select(any_wrong.sum()).item()) if both.height else 0
    return Exactness(
        truth=truth.height,
        rows=output.height,
        missing=missing,
        extra=extra,
        duplicated=duplicated,
        wrong=wrong,
        wrong_fields=wrong_fields,
    )


def count_ids(employees: int, files: Sequence[Path], *, hive: bool) -> Exactness:
    """Rows and distinct ``employee_id`` values of the output against the tenant's size."""
    if not files:
        return Exactness(employees, 0, employees, 0, 0, 0, scope="count")
    try:
        frame = pl.scan_parquet([str(f) for f in files], hive_partitioning=hive)
        key = next(c for c in frame.collect_schema().names() if snake_case(c) == "employee_id")
        ids = frame.select(
            pl.len().alias("rows"), pl.col(key).n_unique().alias("distinct")
        ).collect()
    except Exception as exc:  # a contender's broken file is a result, not a crash of the harness
        error = f"{type(exc).__name__}: {exc}"[:200]
        return Exactness(employees, 0, 0, 0, 0, 0, error=error, scope="count")
    rows, distinct = int(ids["rows"][0]), int(ids["distinct"][0])
    return Exactness(
        truth=employees,
        rows=rows,
        missing=max(0, employees - distinct),
        extra=max(0, distinct - employees),
        duplicated=rows - distinct,
        wrong=0,
        scope="count",
    )
