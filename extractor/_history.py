"""The employee history: a slowly-changing-dimension (type 2) table over all snapshots.

One row per version of an employee: the employee's columns as exported, then

==================  ==========================================================================
``valid_from``      id of the first snapshot that holds this version
``valid_to``        id of the first snapshot that no longer holds it (the employee changed or
                    was removed); null while the version is current
``valid_from_at``   commit time of ``valid_from`` (UTC; the snapshot is consistent as of then)
``valid_to_at``     commit time of ``valid_to``; null while current
``is_current``      true for the versions in the newest folded snapshot
==================  ==========================================================================

A new version starts whenever any column but ``snapshot_id`` differs (null equals null). Only
complete snapshots are folded in: a partial one lacks some employees, which would otherwise
look removed and re-hired.

Layout (readers: ``pl.scan_parquet("<out>/employee_history/*.parquet")``)::

    <out>/employee_history/closed-<snapshot_id>.parquet   versions closed by that snapshot
    <out>/employee_history/current.parquet                the open versions
    <out>/employee_history/_state.json                    which snapshots are folded in
    <out>/_history/                                       lock and work in progress

Incremental: a new snapshot is compared with the current versions only (ids and row hashes,
then the differing rows), a ``closed-<id>.parquet`` is added and ``current.parquet``
replaced; closed files never change again. The whole table is rebuilt from the snapshots
when asked (``rebuild=True``), when a folded snapshot disappeared, when a snapshot older than
the newest folded one shows up, or when the columns change (a new schema version), so that
every file of the table has one schema.

Atomic: each run writes a complete new generation of the folder under ``<out>/_history/next``
(unchanged closed files hard-linked), ``_state.json`` last, then swaps it in with two renames.
A crash leaves either generation, and the next run finishes or undoes the swap.
Row hashes are computed afresh in each run and never stored: polars does not promise stable
hashes across versions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from ._errors import ConfigError, SnapshotError
from ._read import BOOKKEEPING_COLUMNS, KEY, collect_by_file, scan_snapshot, scan_snapshot_files
from ._sink import fsync_dir, io_error
from ._snapshot import SNAPSHOT_ID_FORMAT, SnapshotInfo, list_snapshots

__all__ = [
    "HISTORY_TABLE",
    "VALIDITY_COLUMNS",
    "HistoryResult",
    "build_history",
    "scan_history",
]

log = logging.getLogger(__name__)

HISTORY_TABLE = "employee_history"
STATE_FILE = "_state.json"
WORK_DIR = "_history"
CURRENT_FILE = "current.parquet"
CLOSED_PREFIX = "closed-"
FORMAT_VERSION = 1
_TIME = pl.Datetime("us", "UTC")
#: The columns the history adds after the employee's own.
VALIDITY_COLUMNS: dict[str, pl.DataType] = {
    "valid_from": pl.String(),
    "valid_to": pl.String(),
    "valid_from_at": _TIME,
    "valid_to_at": _TIME,
    "is_current": pl.Boolean(),
}
#: The column types the state file may name (types of the employees tables).
_DTYPES: dict[str, pl.DataType] = {
    str(dtype): dtype
    for dtype in (
        pl.String(),
        pl.Date(),
        pl.Float64(),
        pl.Int64(),
        pl.Int32(),
        pl.Boolean(),
        _TIME,
        pl.Datetime("us"),
        pl.Datetime("ms"),
        pl.Datetime("ns"),
    )
}

_HASH = "__hash"
_NEW = "__new"


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What one :func:`build_history` call did."""

    path: Path
    #: snapshots folded in by this call, oldest first (empty: the table was up to date)
    folded: tuple[str, ...]
    #: every snapshot the table now holds
    snapshots: tuple[str, ...]
    #: incomplete snapshots left out
    skipped_incomplete: tuple[str, ...]
    rebuilt: bool
    #: why the table was rebuilt from scratch (None for an incremental fold)
    reason: str | None
    #: versions opened / closed by this call
    opened: int
    closed: int
    #: versions in the table, and how many of them are current
    rows: int
    current: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "folded": list(self.folded),
            "snapshots": list(self.snapshots),
            "skipped_incomplete": list(self.skipped_incomplete),
            "rebuilt": self.rebuilt,
            "reason": self.reason,
            "opened": self.opened,
            "closed": self.closed,
            "rows": self.rows,
            "current": self.current,
        }


def scan_history(out: Path) -> pl.LazyFrame:
    """The history table as a lazy frame (raises SnapshotError if it was never built)."""
    folder = Path(out) / HISTORY_TABLE
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise SnapshotError(f"no history in {out}: run `ukg-extract history --out {out}` first")
    return pl.scan_parquet(files, hive_partitioning=False)


# -- small helpers ----------------------------------------------------------------------------


def _snapshot_time(info: SnapshotInfo) -> datetime:
    """When the snapshot's data holds: its commit time (else finish, start, or its id)."""
    for name in ("committed_at", "finished_at", "started_at"):
        value = info.manifest.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(value)
                return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.strptime(info.snapshot_id, SNAPSHOT_ID_FORMAT).replace(tzinfo=UTC)


def _data_schema(frame: pl.LazyFrame) -> dict[str, pl.DataType]:
    schema = frame.collect_schema()
    return {name: dtype for name, dtype in schema.items() if name not in BOOKKEEPING_COLUMNS}


def _union_schema(schemas: Sequence[Mapping[str, pl.DataType]]) -> dict[str, pl.DataType]:
    """Columns of every snapshot in first-seen order, the key first; conflicting types: text."""
    union: dict[str, pl.DataType] = {KEY: pl.String()}
    for schema in schemas:
        for name, dtype in schema.items():
            if str(dtype) not in _DTYPES:  # a type the state file could not name: as text
                union[name] = pl.String()
            elif name not in union:
                union[name] = dtype
            elif union[name] != dtype:
                union[name] = pl.String()
    return union


def _align(frame: pl.LazyFrame, columns: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    present = frame.collect_schema()
    return frame.select(
        [
            pl.col(name).cast(dtype) if name in present else pl.lit(None, dtype).alias(name)
            for name, dtype in columns.items()
        ]
    )


def _height(path: Path) -> int:
    """Rows in a Parquet file, from its footer."""
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def _row_hash(columns: Mapping[str, pl.DataType]) -> pl.Expr:
    data = [name for name in columns if name != KEY]
    return pl.struct(data).hash() if data else pl.lit(0, pl.UInt64)


def _dtype_names(columns: Mapping[str, pl.DataType]) -> list[list[str]]:
    """``[[name, type], ...]``: a list, because the column order matters (files share it)."""
    return [[name, str(dtype)] for name, dtype in columns.items()]


def _state_columns(state: Mapping[str, Any]) -> dict[str, str]:
    return {str(name): str(dtype) for name, dtype in state.get("columns") or []}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def _locked(work: Path) -> Iterator[None]:
    """Hold ``<out>/_history/lock``: one history run per output folder at a time."""
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise SnapshotError(
                f"another `ukg-extract history` is updating {work.parent / HISTORY_TABLE}: "
                "wait for it to finish and rerun"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _recover(out: Path) -> None:
    """Finish or undo a swap that a crash interrupted; drop unfinished generations."""
    live, work = out / HISTORY_TABLE, out / WORK_DIR
    following, previous = work / "next", work / "previous"
    if not live.exists():
        if (following / STATE_FILE).exists():
            log.warning("finishing the interrupted update of %s", live)
            os.rename(following, live)
        elif previous.exists():
            log.warning("restoring %s after an interrupted update", live)
            os.rename(previous, live)
        fsync_dir(out)
    for leftover in (following, previous):
        if leftover.exists():
            shutil.rmtree(leftover)


def _publish(out: Path, generation: Path) -> None:
    live, previous = out / HISTORY_TABLE, out / WORK_DIR / "previous"
    if live.exists():
        os.rename(live, previous)
    os.rename(generation, live)
    fsync_dir(out)
    fsync_dir(previous.parent)
    if previous.exists():
        shutil.rmtree(previous)


def _read_state(out: Path) -> dict[str, Any] | None:
    path = out / HISTORY_TABLE / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s): rebuilding the history", path, exc)
        return None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        return None
    return data


# -- folding one snapshot in ------------------------------------------------------------------


@dataclass
class _Fold:
    """The open versions while snapshots are folded in one after another."""

    columns: dict[str, pl.DataType]
    generation: Path
    current: Path | None  # Parquet file of the open versions (None: no version yet)
    current_rows: int = 0
    opened: int = 0
    closed: int = 0
    _turn: int = 0

    def _history_frame(self) -> pl.LazyFrame:
        if self.current is None:
            schema = {**self.columns, **VALIDITY_COLUMNS}
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(self.current, hive_partitioning=False)

    def fold(self, out: Path, info: SnapshotInfo) -> None:
        snapshot_id, at = info.snapshot_id, _snapshot_time(info)
        parts = [_align(part, self.columns) for part in scan_snapshot_files(out, snapshot_id)]
        snapshot = pl.concat(parts, how="vertical")
        current = self._history_frame()
        if self.current is None:  # the first snapshot: every row opens a version
            closing = pl.Series(KEY, [], pl.String)
            opening = None
        else:
            digest = _row_hash(self.columns)

            def keyed(frame: pl.LazyFrame) -> pl.LazyFrame:
                return frame.select(pl.col(KEY), digest.alias(_HASH))

            keys_old = collect_by_file([current], keyed)
            keys_new = collect_by_file(parts, keyed)
            old_hash, new_hash = pl.col(_HASH), pl.col(_HASH + _NEW)
            differing = (
                keys_old.lazy()
                .join(keys_new.lazy(), on=KEY, how="full", coalesce=True, suffix=_NEW)
                .filter(old_hash.ne_missing(new_hash))
                .collect(engine="streaming")
            )
            del keys_old, keys_new
            closing = differing.filter(old_hash.is_not_null()).get_column(KEY)
            opening = differing.filter(new_hash.is_not_null()).get_column(KEY)

        if closing.len():
            closed_path = self.generation / f"{CLOSED_PREFIX}{snapshot_id}.parquet"
            current.filter(pl.col(KEY).is_in(closing.implode())).with_columns(
                pl.lit(snapshot_id, pl.String).alias("valid_to"),
                pl.lit(at, _TIME).alias("valid_to_at"),
                pl.lit(False).alias("is_current"),
            ).sink_parquet(closed_path, sync_on_close="all")
        opened_rows = (
            snapshot if opening is None else snapshot.filter(pl.col(KEY).is_in(opening.implode()))
        )
        opened_rows = opened_rows.with_columns(
            pl.lit(snapshot_id, pl.String).alias("valid_from"),
            pl.lit(None, pl.String).alias("valid_to"),
            pl.lit(at, _TIME).alias("valid_from_at"),
            pl.lit(None, _TIME).alias("valid_to_at"),
            pl.lit(True).alias("is_current"),
        )
        kept = current.filter(~pl.col(KEY).is_in(closing.implode()))
        target = self.generation / f".current-{self._turn}.parquet"
        self._turn += 1
        pl.concat([kept, opened_rows], how="vertical").sink_parquet(target, sync_on_close="all")
        if self.current is not None and self.current.parent == self.generation:
            self.current.unlink()
        self.current = target
        opened = _height(target) if opening is None else opening.len()
        self.current_rows += opened - closing.len()
        self.opened += opened
        self.closed += closing.len()


# -- the public entry point ---------------------------------------------------------------------


def _plan(
    out: Path, state: dict[str, Any] | None, complete: Sequence[SnapshotInfo], rebuild: bool
) -> tuple[str | None, list[SnapshotInfo]]:
    """(why a full rebuild is needed or None, the snapshots to fold in incrementally)."""
    if rebuild:
        return "--rebuild was given", list(complete)
    if state is None:
        return "first build", list(complete)
    folded = [str(s) for s in state.get("snapshots") or []]
    ids = [s.snapshot_id for s in complete]
    gone = [s for s in folded if s not in ids]
    if gone:
        return f"snapshot {gone[0]} is no longer committed", list(complete)
    if ids[: len(folded)] != folded:
        newer = next(i for i, s in zip(ids, folded, strict=False) if i != s)
        return f"snapshot {newer} is older than the newest folded one", list(complete)
    pending = list(complete[len(folded) :])
    known = _state_columns(state)
    unknown = sorted(str(dtype) for dtype in known.values() if dtype not in _DTYPES)
    if unknown or KEY not in known:
        return f"{STATE_FILE} has column types this version does not read ({unknown})", list(
            complete
        )
    columns = {name: _DTYPES[dtype] for name, dtype in known.items()}
    for info in pending:
        merged = _union_schema([columns, _data_schema(scan_snapshot(out, info.snapshot_id))])
        changed = [name for name, dtype in merged.items() if columns.get(name) != dtype]
        if changed:
            why = f"snapshot {info.snapshot_id} has new columns or types ({', '.join(changed)})"
            return why, list(complete)
    return None, pending


def build_history(out: Path, *, rebuild: bool = False) -> HistoryResult:
    """Fold every committed complete snapshot into ``<out>/employee_history``.

    Incremental unless ``rebuild`` (or a change that needs it, see the module docstring);
    returns what was folded in. Raises ConfigError when ``out`` holds no complete snapshot
    and no history yet (a mistyped folder), SnapshotError when another history run holds the
    lock or the folder cannot be written.
    """
    out = Path(out)
    live, work = out / HISTORY_TABLE, out / WORK_DIR
    if not (live / STATE_FILE).exists() and not any(s.complete for s in list_snapshots(out)):
        raise ConfigError(
            f"no complete snapshot in {out} to build a history from: check --out, or run "
            f"`ukg-extract export --out {out}` first"
        )
    try:
        with _locked(work):
            _recover(out)
            return _build(out, live, work, rebuild)
    except OSError as exc:
        raise io_error(exc, live, "updating") from exc


def _build(out: Path, live: Path, work: Path, rebuild: bool) -> HistoryResult:
    snapshots = list_snapshots(out)
    complete = [s for s in snapshots if s.complete]
    skipped = tuple(s.snapshot_id for s in snapshots if not s.complete)
    state = _read_state(out)
    reason, pending = _plan(out, state, complete, rebuild)
    if reason is None and state is not None and not pending:
        return HistoryResult(
            path=live,
            folded=(),
            snapshots=tuple(state["snapshots"]),
            skipped_incomplete=skipped,
            rebuilt=False,
            reason=None,
            opened=0,
            closed=0,
            rows=int(state["rows"]),
            current=int(state["current_rows"]),
        )

    generation = work / "next"
    generation.mkdir(parents=True)
    if reason is None:
        assert state is not None
        columns = {name: _DTYPES[dtype] for name, dtype in _state_columns(state).items()}
        fold = _Fold(columns, generation, live / CURRENT_FILE, int(state["current_rows"]))
        for old in sorted(live.glob(f"{CLOSED_PREFIX}*.parquet")):
            _link_or_copy(old, generation / old.name)
        already = [str(s) for s in state["snapshots"]]
        rows_before = int(state["rows"])
    else:
        log.info("building %s from scratch: %s", live, reason)
        schemas = [_data_schema(scan_snapshot(out, s.snapshot_id)) for s in pending]
        fold = _Fold(_union_schema(schemas), generation, None)
        already, rows_before = [], 0

    for info in pending:
        fold.fold(out, info)
    final = generation / CURRENT_FILE
    if fold.current is not None and fold.current.parent == generation:
        os.rename(fold.current, final)
    elif fold.current is not None:  # nothing pending after a rebuild: cannot happen
        _link_or_copy(fold.current, final)
    else:  # no complete snapshot at all: an empty table with the current schema
        pl.LazyFrame(schema={**fold.columns, **VALIDITY_COLUMNS}).sink_parquet(final)
    folded = [*already, *(s.snapshot_id for s in pending)]
    rows = rows_before + fold.opened
    state_data = {
        "format_version": FORMAT_VERSION,
        "table": "employees",
        "snapshots": folded,
        "skipped_incomplete": list(skipped),
        "columns": _dtype_names(fold.columns),
        "rows": rows,
        "current_rows": fold.current_rows,
        "files": sorted(p.name for p in generation.glob("*.parquet")),
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    fsync_dir(generation)
    _write_json(generation / STATE_FILE, state_data)
    _publish(out, generation)
    return HistoryResult(
        path=live,
        folded=tuple(s.snapshot_id for s in pending),
        snapshots=tuple(folded),
        skipped_incomplete=skipped,
        rebuilt=reason is not None,
        reason=reason,
        opened=fold.opened,
        closed=fold.closed,
        rows=rows,
        current=fold.current_rows,
    )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
