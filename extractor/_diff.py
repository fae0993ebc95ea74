"""Field-level difference of two committed snapshots of the employees table.

Keyed by ``employee_id`` (never ``employee_number``). Built on polars lazy frames run by the
streaming engine, in two passes so that memory stays near the size of the answer:

1. each snapshot is reduced to ``(employee_id, hash of the compared columns)``; a full join of
   the two small frames gives the added ids, the removed ids and the *candidates* (both sides,
   hashes differ);
2. only the candidate, added and removed rows are read again (the id filter is pushed into the
   Parquet scan), compared column by column with ``ne_missing`` (null equals null, so a field
   masked as null in both snapshots is unchanged), and only the changed cells become rows.

The hash only preselects: every reported change is confirmed on the values themselves, so a
hash collision can at worst hide a change (probability about 2^-64 per employee), never
invent one. Hashes live for one call and are never written anywhere: polars does not promise
stable hashes across versions.

Kinds of change (the summary counts employees; one employee may count under several kinds):

=================  ======================================================================
``hire``           ``employee_id`` in B, not in A
``removal``        ``employee_id`` in A, not in B (deleted in UKG; a termination keeps the
                   employee in the listing with a terminated status)
``termination``    ``employment_status`` changed to terminated (``Terminated`` or ``T``, any
                   case); a ``termination_date`` change of that employee counts here too
``rehire``         ``employment_status`` changed from terminated to anything else (with its
                   ``termination_date`` change)
``department_move`` ``department_code`` changed
``manager_change`` ``supervisor_id`` changed
``title_change``   ``job_title`` changed
``other``          any other column changed (names, e-mail, location, pay group, ...)
=================  ======================================================================

Only the ``snapshot_id`` column (partition bookkeeping) is never compared; ``company_code`` is
data as well as a partition and is compared like any other column. Snapshots written with
different schema versions are compared on the columns both have; the others are reported as
skipped, and a column whose type differs is compared as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ._errors import ConfigError
from ._read import (
    BOOKKEEPING_COLUMNS,
    KEY,
    UnknownSnapshotError,
    collect_by_file,
    describe_snapshots,
    resolve_snapshot,
    scan_snapshot,
    scan_snapshot_files,
)
from ._snapshot import SnapshotInfo, list_snapshots

__all__ = [
    "KINDS",
    "DiffResult",
    "SnapshotSide",
    "diff_snapshots",
    "is_terminated",
]

#: The kinds of change, in the order summaries list them.
KINDS: tuple[str, ...] = (
    "hire",
    "removal",
    "termination",
    "rehire",
    "department_move",
    "manager_change",
    "title_change",
    "other",
)
_FIELD_KINDS = {
    "department_code": "department_move",
    "supervisor_id": "manager_change",
    "job_title": "title_change",
}
_STATUS = "employment_status"
_TERMINATION_DATE = "termination_date"
_TERMINATED_VALUES = ["terminated", "t"]
_HASH = "__hash"
_NEW = "__new"


# -- which two snapshots --------------------------------------------------------------------------


def _resolve_pair(out: Path, a: str | None, b: str | None) -> tuple[SnapshotInfo, SnapshotInfo]:
    snapshots = list_snapshots(out)
    if a is None and b is None:
        complete = [s for s in snapshots if s.complete]
        if len(complete) < 2:
            raise UnknownSnapshotError(
                f"diff needs two complete snapshots in {out}, found {len(complete)} "
                f"(committed: {describe_snapshots(snapshots)}); name them explicitly or export "
                "again"
            )
        return complete[-2], complete[-1]
    if a is None:  # only B: a caller passing keywords
        raise UnknownSnapshotError("give snapshot A as well as B, or neither")
    info_a = resolve_snapshot(out, a, snapshots=snapshots)
    info_b = resolve_snapshot(out, b, snapshots=snapshots)
    return info_a, info_b


# -- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotSide:
    """One of the two snapshots compared."""

    snapshot_id: str
    complete: bool
    schema_version: int | None
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "complete": self.complete,
            "schema_version": self.schema_version,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class DiffResult:
    """What changed from snapshot ``a`` to snapshot ``b``.

    ``added`` and ``removed`` hold the whole rows (of B and of A) of hires and removals;
    ``changes`` one row per changed field: ``employee_id``, ``field``, ``old``, ``new`` (values
    as text, null for null) and ``kind``, ordered by ``employee_id`` then column order.
    """

    a: SnapshotSide
    b: SnapshotSide
    columns: tuple[str, ...]
    added: pl.DataFrame
    removed: pl.DataFrame
    changes: pl.DataFrame
    by_field: dict[str, int]
    by_kind: dict[str, int]
    changed_employees: int
    #: column -> why it was not compared (only in one snapshot)
    skipped: dict[str, str] = field(default_factory=dict)
    #: columns whose type differs between the snapshots: compared as text
    compared_as_text: tuple[str, ...] = ()
    #: columns left out by ``fields`` / ``ignore``
    ignored: tuple[str, ...] = ()

    @property
    def has_differences(self) -> bool:
        return bool(self.added.height or self.removed.height or self.changes.height)

    def summary(self) -> dict[str, Any]:
        """Counts and notes, JSON-serialisable (what ``--format json`` puts under ``summary``)."""
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "added": self.added.height,
            "removed": self.removed.height,
            "changed_employees": self.changed_employees,
            "field_changes": self.changes.height,
            "by_kind": dict(self.by_kind),
            "by_field": dict(self.by_field),
            "compared_columns": list(self.columns),
            "skipped_columns": dict(self.skipped),
            "compared_as_text": list(self.compared_as_text),
            "ignored_columns": list(self.ignored),
        }

    def to_frame(self) -> pl.DataFrame:
        """One long table: ``employee_id, change, kind, field, old, new`` (all text).

        ``change`` is ``added``, ``removed`` or ``changed``; added and removed employees are one
        row each with ``field``, ``old`` and ``new`` null. What ``--format csv|parquet`` write.
        """
        null = pl.lit(None, pl.String)

        def whole(frame: pl.DataFrame, change: str, kind: str) -> pl.DataFrame:
            return frame.select(
                pl.col(KEY),
                pl.lit(change).alias("change"),
                pl.lit(kind).alias("kind"),
                null.alias("field"),
                null.alias("old"),
                null.alias("new"),
            )

        frames = [
            whole(self.added, "added", "hire"),
            whole(self.removed, "removed", "removal"),
            self.changes.select(
                pl.col(KEY), pl.lit("changed").alias("change"), "kind", "field", "old", "new"
            ),
        ]
        return pl.concat(frames, how="vertical")

    def to_json(self) -> dict[str, Any]:
        """Summary, whole added and removed rows, and the field changes (dates as ISO text)."""
        return {
            "summary": self.summary(),
            "added": _json_rows(self.added),
            "removed": _json_rows(self.removed),
            "changes": self.changes.to_dicts(),
        }


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    text = frame.with_columns(pl.exclude(pl.String).cast(pl.String))
    return text.to_dicts()


# -- the diff -------------------------------------------------------------------------------------


def is_terminated(column: str | pl.Expr) -> pl.Expr:
    """True where an employment status means terminated (``Terminated`` / ``T``); null -> False."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.str.strip_chars().str.to_lowercase().is_in(_TERMINATED_VALUES).fill_null(False)


def _split_list(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    names = [v.strip() for v in values if v and v.strip()]
    return list(dict.fromkeys(names))


def _select_columns(
    schema_a: Mapping[str, pl.DataType],
    schema_b: Mapping[str, pl.DataType],
    fields: list[str] | None,
    ignore: list[str] | None,
    sides: tuple[str, str],
) -> tuple[list[str], dict[str, str], list[str], list[str]]:
    """(compared, skipped, compared_as_text, ignored) for two file schemas."""
    data_a = [c for c in schema_a if c not in BOOKKEEPING_COLUMNS and c != KEY]
    data_b = [c for c in schema_b if c not in BOOKKEEPING_COLUMNS and c != KEY]
    known = list(dict.fromkeys([*data_a, *data_b]))
    for given, flag in ((fields, "fields"), (ignore, "ignore")):
        unknown = sorted(set(given or ()) - set(known) - {KEY})
        if unknown:
            raise ConfigError(
                f"--{flag}: unknown column(s) {', '.join(unknown)}; the snapshots have: "
                f"{', '.join(known)}"
            )
    wanted = [c for c in known if fields is None or c in fields]
    ignored = [c for c in known if c not in wanted or c in (ignore or ())]
    wanted = [c for c in wanted if c not in ignored]
    skipped: dict[str, str] = {}
    compared: list[str] = []
    for column in wanted:
        if column not in schema_b:
            skipped[column] = f"only in {sides[0]}"
        elif column not in schema_a:
            skipped[column] = f"only in {sides[1]}"
        else:
            compared.append(column)
    as_text = [c for c in compared if schema_a[c] != schema_b[c]]
    return compared, skipped, as_text, ignored


def _comparable(columns: Sequence[str], as_text: Sequence[str]) -> list[pl.Expr]:
    return [pl.col(c).cast(pl.String) if c in as_text else pl.col(c) for c in columns]


def _keyed_hashes(
    frame: pl.LazyFrame, columns: Sequence[str], as_text: Sequence[str]
) -> pl.LazyFrame:
    # No compared column (``fields`` named only skipped ones): only presence is compared.
    digest = pl.struct(_comparable(columns, as_text)).hash() if columns else pl.lit(0, pl.UInt64)
    return frame.select(pl.col(KEY), digest.alias(_HASH))


def _differing_ids(
    keys_a: pl.DataFrame, keys_b: pl.DataFrame
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(added, removed, candidates) from the ids and row hashes of A and B, each sorted."""
    old_hash, new_hash = pl.col(_HASH), pl.col(_HASH + _NEW)
    differing = (
        keys_a.lazy()
        .join(keys_b.lazy(), on=KEY, how="full", coalesce=True, suffix=_NEW)
        .filter(old_hash.ne_missing(new_hash))
        .collect(engine="streaming")
    )

    def ids(condition: pl.Expr) -> pl.Series:
        return differing.filter(condition).get_column(KEY).sort()

    return (
        ids(old_hash.is_null()),
        ids(new_hash.is_null()),
        ids(old_hash.is_not_null() & new_hash.is_not_null()),
    )


def _rows_of(frame: pl.LazyFrame, ids: pl.Series) -> pl.DataFrame:
    """The whole rows (bookkeeping columns dropped) of the employees ``ids``."""
    columns = [c for c in frame.collect_schema() if c not in BOOKKEEPING_COLUMNS]
    return (
        frame.filter(pl.col(KEY).is_in(ids.implode())).select(columns).collect(engine="streaming")
    )


def _summaries(
    changes: pl.DataFrame, columns: Sequence[str], added: int, removed: int
) -> tuple[dict[str, int], dict[str, int]]:
    """(changes by field in column order, employees by kind in ``KINDS`` order)."""
    per_field = changes.group_by("field").len()
    counted = dict(zip(per_field["field"].to_list(), per_field["len"].to_list(), strict=True))
    by_field = {c: int(counted[c]) for c in columns if c in counted}
    per_kind = changes.group_by("kind").agg(pl.col(KEY).n_unique())
    by_kind = dict.fromkeys(KINDS, 0)
    by_kind.update({str(k): int(v) for k, v in zip(per_kind["kind"], per_kind[KEY], strict=True)})
    by_kind["hire"], by_kind["removal"] = added, removed
    return by_field, by_kind


def _field_changes(
    wide: pl.DataFrame, columns: Sequence[str], as_text: Sequence[str]
) -> pl.DataFrame:
    """Unpivot only the changed cells of the candidate rows (``wide`` = A joined with B)."""
    parts: list[pl.LazyFrame] = []
    lazy = wide.lazy()
    for column in columns:
        old, new = pl.col(column), pl.col(column + _NEW)
        if column in as_text:
            old, new = old.cast(pl.String), new.cast(pl.String)
        parts.append(
            lazy.filter(old.ne_missing(new)).select(
                pl.col(KEY),
                pl.lit(column).alias("field"),
                old.cast(pl.String).alias("old"),
                new.cast(pl.String).alias("new"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={KEY: pl.String, "field": pl.String, "old": pl.String, "new": pl.String}
        )
    changes = pl.concat(parts, how="vertical").collect()
    return changes.sort(KEY, maintain_order=True)


def _with_kinds(changes: pl.DataFrame) -> pl.DataFrame:
    status = pl.col("field") == _STATUS
    terminated = changes.filter(status & is_terminated("new") & ~is_terminated("old"))
    rehired = changes.filter(status & is_terminated("old") & ~is_terminated("new"))
    in_terminated = pl.col(KEY).is_in(terminated.get_column(KEY).implode())
    in_rehired = pl.col(KEY).is_in(rehired.get_column(KEY).implode())
    kind: Any = pl.when(pl.col("field").is_in([_STATUS, _TERMINATION_DATE])).then(
        pl.when(in_terminated)
        .then(pl.lit("termination"))
        .when(in_rehired)
        .then(pl.lit("rehire"))
        .otherwise(pl.lit("other"))
    )
    for column, name in _FIELD_KINDS.items():
        kind = kind.when(pl.col("field") == column).then(pl.lit(name))
    return changes.with_columns(kind.otherwise(pl.lit("other")).alias("kind"))


def diff_snapshots(
    out: Path,
    a: str | None = None,
    b: str | None = None,
    *,
    fields: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> DiffResult:
    """Compare two committed snapshots of ``out`` (default: the latest two complete ones).

    ``fields`` limits the comparison to those columns, ``ignore`` leaves columns out (both by
    column name). Raises :class:`UnknownSnapshotError` (a ``ConfigError``) for a snapshot id
    that is not committed, ``ConfigError`` for an unknown column name.
    """
    out = Path(out)
    info_a, info_b = _resolve_pair(out, a, b)
    frame_a, frame_b = (
        scan_snapshot(out, info_a.snapshot_id),
        scan_snapshot(out, info_b.snapshot_id),
    )
    schema_a, schema_b = frame_a.collect_schema(), frame_b.collect_schema()
    columns, skipped, as_text, ignored = _select_columns(
        schema_a,
        schema_b,
        _split_list(fields),
        _split_list(ignore),
        (f"A ({info_a.snapshot_id})", f"B ({info_b.snapshot_id})"),
    )

    # Pass 1: ids and row hashes, a file at a time; the streaming join keeps only the ids
    # whose hash differs or that are on one side only.
    def keyed(part: pl.LazyFrame) -> pl.LazyFrame:
        return _keyed_hashes(part, columns, as_text)

    keys_a = collect_by_file(scan_snapshot_files(out, info_a.snapshot_id), keyed)
    keys_b = collect_by_file(scan_snapshot_files(out, info_b.snapshot_id), keyed)
    rows_a, rows_b = keys_a.height, keys_b.height
    added_ids, removed_ids, candidates = _differing_ids(keys_a, keys_b)
    del keys_a, keys_b

    # Pass 2: read back only the rows that differ (the id filter reaches the Parquet reader).
    wide_a = _rows_of(frame_a, pl.concat([removed_ids, candidates]))
    wide_b = _rows_of(frame_b, pl.concat([added_ids, candidates]))
    removed = wide_a.filter(pl.col(KEY).is_in(removed_ids.implode())).sort(KEY)
    added = wide_b.filter(pl.col(KEY).is_in(added_ids.implode())).sort(KEY)
    in_candidates = pl.col(KEY).is_in(candidates.implode())
    wide = (
        wide_a.filter(in_candidates)
        .select(KEY, *columns)
        .join(wide_b.filter(in_candidates).select(KEY, *columns), on=KEY, how="inner", suffix=_NEW)
        .sort(KEY)
    )
    changes = _with_kinds(_field_changes(wide, columns, as_text))
    by_field, by_kind = _summaries(changes, columns, added.height, removed.height)

    return DiffResult(
        a=_side(info_a, rows_a),
        b=_side(info_b, rows_b),
        columns=tuple(columns),
        added=added,
        removed=removed,
        changes=changes.select(KEY, "field", "old", "new", "kind"),
        by_field=by_field,
        by_kind=by_kind,
        changed_employees=changes.get_column(KEY).n_unique(),
        skipped=skipped,
        compared_as_text=tuple(as_text),
        ignored=tuple(ignored),
    )


def _side(info: SnapshotInfo, rows: int) -> SnapshotSide:
    version = info.manifest.get("schema_version")
    return SnapshotSide(
        snapshot_id=info.snapshot_id,
        complete=info.complete,
        schema_version=int(version)
        if isinstance(version, int | str) and str(version).isdigit()
        else None,
        rows=rows,
    )
