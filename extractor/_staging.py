"""The staging area of one unfinished snapshot: its data, checkpoint journal and run state.

Layout of the staging folder (created by :meth:`SnapshotStore.begin`)::

    <out>/_staging/<id>/<table>/company_code=X/...  data being written
    <out>/_staging/<id>/journal.jsonl           one fsynced line per finished file
    <out>/_staging/<id>/run.json                run state saved by the pipeline
    <out>/_staging/<id>/commit.json             the manifest to write, once a commit has begun

The journal is the checkpoint: a data file counts as written only once its line is in the
journal. On resume, files the journal does not list (in-progress or finished after the last
checkpoint, e.g. before a kill -9) are deleted and their employees are fetched again.

The small durable-file helpers here are shared with ``_snapshot`` (the store, which imports
this module; this one imports the store for annotations only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ._errors import SnapshotError
from ._schema import SCHEMA_VERSION
from ._sink import FinishedFile, fsync_dir, io_error

if TYPE_CHECKING:
    from ._snapshot import SnapshotStore

__all__ = [
    "JournalEntry",
    "StagedSnapshot",
]

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
RUN_STATE = "run.json"
COMMIT_STATE = "commit.json"


# -- small durable-file helpers ---------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _dumps(data: Mapping[str, Any]) -> bytes:
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default)
    return (text + "\n").encode("utf-8")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise io_error(exc, path) from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SnapshotError(
            f"cannot read {path} ({exc}): restore or remove the file, then rerun"
        ) from exc
    if not isinstance(data, dict):
        raise SnapshotError(f"{path} is not a JSON object: restore or remove it, then rerun")
    return data


def _data_files(table_dir: Path) -> Iterator[Path]:
    for path in sorted(table_dir.rglob("*")):
        if path.is_file():
            yield path


def _read_keys(path: Path, key: str) -> tuple[pa.ChunkedArray, pa.Schema, int]:
    """The key column of a Parquet file, its schema, and its largest row group."""
    with pq.ParquetFile(path) as pf:
        metadata = pf.metadata
        biggest = max(
            (metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)), default=0
        )
        return pf.read(columns=[key]).column(key), pf.schema_arrow, biggest


# -- journal ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One finished data file, as recorded in the journal; ``path`` is relative to the table."""

    table: str
    path: str
    rows: int
    bytes: int
    partition: str | None
    pass_no: int

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "path": self.path,
            "rows": self.rows,
            "bytes": self.bytes,
            "partition": self.partition,
            "pass": self.pass_no,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalEntry:
        return cls(
            table=str(data["table"]),
            path=str(data["path"]),
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            partition=None if data.get("partition") is None else str(data["partition"]),
            pass_no=int(data["pass"]),
        )


def _journal_line(entry: JournalEntry) -> bytes:
    return json.dumps(entry.to_json(), sort_keys=True, ensure_ascii=False).encode() + b"\n"


class StagedSnapshot:
    """A snapshot being written under ``<out>/_staging/<snapshot_id>``.

    Get one from :meth:`SnapshotStore.begin` or :meth:`SnapshotStore.in_progress`; hold the
    store's lock while using it.
    """

    def __init__(self, store: SnapshotStore, snapshot_id: str) -> None:
        self.store = store
        self.snapshot_id = snapshot_id
        self.path = store.staging_root / snapshot_id
        state = _read_json(self.path / RUN_STATE)
        self.schema_version = int(state.get("schema_version", 0))
        self.run_state: dict[str, Any] = dict(state.get("state") or {})

    def __repr__(self) -> str:
        return f"StagedSnapshot({self.snapshot_id!r}, path={str(self.path)!r})"

    @property
    def commit_pending(self) -> bool:
        """True when a commit began (``commit.json`` written) but did not finish."""
        return (self.path / COMMIT_STATE).exists()

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL

    def table_dir(self, table_name: str) -> Path:
        """The staging folder of a table (created): the directory to give its writer."""
        self.store.spec(table_name)
        path = self.path / table_name
        if not path.is_dir():
            try:
                path.mkdir()
                fsync_dir(self.path)
            except OSError as exc:
                raise io_error(exc, path, "creating") from exc
        return path

    def save_run_state(self, state: Mapping[str, Any]) -> None:
        """Replace the saved run state (atomically); it must be JSON-serialisable."""
        data = {"schema_version": SCHEMA_VERSION, "snapshot_id": self.snapshot_id}
        _write_atomically(self.path / RUN_STATE, _dumps({**data, "state": dict(state)}))
        self.run_state = dict(state)

    def record_finished(self, table_name: str, files: Sequence[FinishedFile], pass_no: int) -> None:
        """Journal finished files (one fsync): from now on they count as written."""
        if not files:
            return
        self.store.spec(table_name)
        data = b"".join(
            _journal_line(JournalEntry(table_name, f.path, f.rows, f.bytes, f.partition, pass_no))
            for f in files
        )
        try:
            self._repair_journal()
            with open(self.journal_path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise io_error(exc, self.journal_path) from exc

    def journal(self) -> list[JournalEntry]:
        """The journaled files, in order; a torn last line (a crash mid-append) is ignored."""
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise io_error(exc, self.journal_path, "reading") from exc
        entries: dict[tuple[str, str], JournalEntry] = {}
        lines = raw.split(b"\n")
        for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: torn or empty
            if not line.strip():
                continue
            try:
                entry = JournalEntry.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise SnapshotError(
                    f"{self.journal_path} line {number} is corrupt: the unfinished snapshot "
                    "cannot be resumed; rerun with --fresh to start a new one"
                ) from exc
            entries[(entry.table, entry.path)] = entry
        return list(entries.values())

    def resume(self) -> dict[str, list[JournalEntry]]:
        """Make staging match the journal; return the journaled files by table.

        Deletes every data file the journal does not list (in-progress files, files finished
        after the last checkpoint) and forgets journal lines whose file is gone (their
        employees are then fetched again). Call it before any writer of this snapshot starts.
        """
        if self.commit_pending:
            raise SnapshotError(
                f"snapshot {self.snapshot_id} is being committed: call commit to finish it"
            )
        entries = self.journal()
        listed = {(e.table, e.path) for e in entries}
        removed = 0
        try:
            for table_dir in sorted(p for p in self.path.iterdir() if p.is_dir()):
                for path in _data_files(table_dir):
                    relative = path.relative_to(table_dir).as_posix()
                    if (table_dir.name, relative) not in listed:
                        path.unlink()
                        removed += 1
                for folder in sorted(table_dir.iterdir()):
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
        except OSError as exc:
            raise io_error(exc, self.path, "cleaning") from exc
        kept = [e for e in entries if (self.path / e.table / e.path).is_file()]
        if len(kept) != len(entries):
            log.warning(
                "snapshot %s: %d journaled files are missing; their employees will be refetched",
                self.snapshot_id,
                len(entries) - len(kept),
            )
        self._rewrite_journal(kept)
        if removed:
            log.info("snapshot %s: removed %d unjournaled files", self.snapshot_id, removed)
        by_table: dict[str, list[JournalEntry]] = {}
        for entry in kept:
            by_table.setdefault(entry.table, []).append(entry)
        return by_table

    def written_ids(self, table_name: str, *, min_pass: int = 0) -> set[str]:
        """The keys in the journaled files of a table from pass ``min_pass`` on (reads only
        the key column)."""
        key = self.store.spec(table_name).key
        ids: set[str] = set()
        for entry in self.journal():
            if entry.table == table_name and entry.pass_no >= min_pass:
                path = self.path / table_name / entry.path
                try:
                    keys, _, _ = _read_keys(path, key)
                except OSError as exc:
                    raise io_error(exc, path, "reading") from exc
                ids.update(keys.to_pylist())
        return ids

    def _repair_journal(self) -> None:
        # A crash mid-append leaves a torn last line; cut it so the next line starts clean.
        path = self.journal_path
        with open(path, "a+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            raw = fh.read()
            fh.truncate(raw.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())

    def _rewrite_journal(self, entries: Sequence[JournalEntry]) -> None:
        _write_atomically(self.journal_path, b"".join(_journal_line(e) for e in entries))
