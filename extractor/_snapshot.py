"""Where snapshots are committed: the lock, the atomic commit, recovery, listing.

Layout under the output folder (the contract readers depend on)::

    <out>/employees/snapshot_id=<id>/company_code=X/*.parquet        committed data
    <out>/employment_details/snapshot_id=<id>/...
    <out>/_snapshots/<id>.json                  manifest: the commit marker, written last
    <out>/_staging/<id>/...                     the unfinished snapshot (see ``_staging``)
    <out>/_state/lock                           flock held for the whole run

Commit: exclusions are applied and the tables verified inside staging; then ``commit.json`` is
written, each table directory is moved into place with one ``rename`` (atomic on one
filesystem), the manifest is written atomically and the staging folder removed. A crash after
``commit.json`` is rolled forward by the next :meth:`SnapshotStore.in_progress` or
:meth:`SnapshotStore.commit`. Readers that glob ``<out>/<table>/**`` see a table of a snapshot
whole or not at all; readers that start from the manifests see whole snapshots only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._errors import ConfigError, SnapshotError
from ._idset import repeated_values
from ._schema import SCHEMA_VERSION, TABLES, TableSpec
from ._sink import fsync_dir, io_error, write_parquet_atomically
from ._staging import (
    COMMIT_STATE,
    JOURNAL,
    RUN_STATE,
    JournalEntry,
    StagedSnapshot,
    _data_files,
    _dumps,
    _iso,
    _read_json,
    _read_keys,
    _write_atomically,
)

__all__ = [
    "SnapshotInfo",
    "SnapshotStore",
    "latest_snapshot",
    "list_snapshots",
]

log = logging.getLogger(__name__)

SNAPSHOT_ID_FORMAT = "%Y%m%dT%H%M%SZ"
_SNAPSHOT_ID = re.compile(r"\d{8}T\d{6}Z")
STAGING_DIR = "_staging"
MANIFESTS_DIR = "_snapshots"
STATE_DIR = "_state"


def _remove_tree(path: Path) -> None:
    """Remove a folder so that it disappears at once: rename to a hidden name, then delete."""
    if not path.exists():
        return
    trash = path.with_name(f".{path.name}.trash")
    if trash.exists():
        shutil.rmtree(trash)
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash)


# -- the store --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A committed snapshot, as its manifest describes it."""

    snapshot_id: str
    complete: bool
    mode: str | None
    rows: dict[str, int]
    started_at: str | None
    finished_at: str | None
    manifest_path: Path
    manifest: dict[str, Any]


class SnapshotStore:
    """The snapshots of one output folder: lock, staging, commit and listing."""

    def __init__(self, out: Path, *, tables: Mapping[str, TableSpec] = TABLES) -> None:
        self.out = Path(out)
        self.tables = dict(tables)
        self.staging_root = self.out / STAGING_DIR
        self.manifests_dir = self.out / MANIFESTS_DIR
        self.state_dir = self.out / STATE_DIR
        #: Snapshot ids whose interrupted commit :meth:`in_progress` finished.
        self.recovered_commits: list[str] = []

    def spec(self, table_name: str) -> TableSpec:
        try:
            return self.tables[table_name]
        except KeyError:
            raise ValueError(f"unknown table {table_name!r}") from None

    def table_path(self, table_name: str, snapshot_id: str) -> Path:
        """Where a committed table lives: ``<out>/<table>/snapshot_id=<id>``."""
        return self.out / table_name / f"snapshot_id={snapshot_id}"

    def manifest_path(self, snapshot_id: str) -> Path:
        return self.manifests_dir / f"{snapshot_id}.json"

    def read_manifest(self, snapshot_id: str) -> dict[str, Any]:
        """The manifest of a committed snapshot."""
        return _read_json(self.manifest_path(snapshot_id))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<out>/_state/lock`` for the whole run; a second run gets a SnapshotError."""
        path = self.state_dir / "lock"
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unusable_out(self.out, exc) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise io_error(exc, path, "locking") from exc
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                raise SnapshotError(
                    f"another ukg-extract run (pid {holder or '?'}) is writing to {self.out}: "
                    "wait for it to finish, or choose another output folder"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def new_snapshot_id(self, now: datetime) -> str:
        """``now`` in UTC as ``YYYYMMDDTHHMMSSZ``, moved on a second at a time until unused."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        moment = now.astimezone(UTC).replace(microsecond=0)
        while True:
            snapshot_id = moment.strftime(SNAPSHOT_ID_FORMAT)
            if not self._taken(snapshot_id):
                return snapshot_id
            moment += timedelta(seconds=1)

    def _taken(self, snapshot_id: str) -> bool:
        if self.manifest_path(snapshot_id).exists():
            return True
        if (self.staging_root / snapshot_id).exists():
            return True
        return any(self.out.glob(f"*/snapshot_id={snapshot_id}"))

    def in_progress(self) -> StagedSnapshot | None:
        """The unfinished snapshot to resume (the newest if several), or None.

        First finishes any commit a crash interrupted (listed in :attr:`recovered_commits`)
        and tidies folders left by finished commits.
        """
        self._recover()
        ids = self._staged_ids()
        if not ids:
            return None
        if len(ids) > 1:
            log.warning("several unfinished snapshots %s; resuming the newest", ids)
        return StagedSnapshot(self, ids[-1])

    def begin(self, snapshot_id: str, run_state: Mapping[str, Any]) -> StagedSnapshot:
        """Create the staging folder of a new snapshot (atomically) with its run state."""
        if not _SNAPSHOT_ID.fullmatch(snapshot_id):
            raise ValueError(f"snapshot id {snapshot_id!r} is not YYYYMMDDTHHMMSSZ")
        if self._taken(snapshot_id):
            raise SnapshotError(f"snapshot {snapshot_id} already exists in {self.out}")
        final = self.staging_root / snapshot_id
        tmp = self.staging_root / f".{snapshot_id}.new"
        data = {"schema_version": SCHEMA_VERSION, "snapshot_id": snapshot_id}
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            _write_atomically(tmp / RUN_STATE, _dumps({**data, "state": dict(run_state)}))
            _write_atomically(tmp / JOURNAL, b"")
            os.rename(tmp, final)
            fsync_dir(self.staging_root)
            fsync_dir(self.out)  # _staging itself may be new
        except OSError as exc:
            raise io_error(exc, final, "creating") from exc
        return StagedSnapshot(self, snapshot_id)

    def discard(self, staged: StagedSnapshot) -> None:
        """Delete an unfinished snapshot, including tables an interrupted commit moved."""
        if self.manifest_path(staged.snapshot_id).exists():
            raise SnapshotError(f"snapshot {staged.snapshot_id} is committed; not discarding it")
        try:
            if staged.commit_pending:
                for table in self.tables:
                    _remove_tree(self.table_path(table, staged.snapshot_id))
            _remove_tree(staged.path)
        except OSError as exc:
            raise io_error(exc, staged.path, "removing") from exc

    # -- commit -------------------------------------------------------------------------

    def commit(
        self,
        staged: StagedSnapshot,
        manifest: Mapping[str, Any] | None = None,
        *,
        removed: Collection[str] = frozenset(),
        latest_pass: Mapping[str, int] | None = None,
        now: datetime | None = None,
        annotate: Callable[[Path], Mapping[str, Any]] | None = None,
    ) -> Path:
        """Publish a staged snapshot; return the manifest's path.

        ``removed``: keys to drop from every file. ``latest_pass``: key -> the pass that wrote
        it last; its rows in files of earlier passes are dropped. Only files holding such keys
        are rewritten. Refuses (SnapshotError, nothing published) when a key occurs twice in a
        table or staging holds files the journal does not list. The store adds
        ``snapshot_id``, ``schema_version``, ``committed_at`` and ``tables`` to ``manifest``.
        ``annotate(staging folder)``, called once the tables are final, returns more manifest
        keys (e.g. checks of the data). If ``staged.commit_pending``, finishes that commit;
        ``manifest`` is then ignored.
        """
        if staged.commit_pending:
            self._finish_commit(staged.snapshot_id)
            return self.manifest_path(staged.snapshot_id)
        if manifest is None:
            raise ValueError("manifest is required")
        latest_pass = latest_pass or {}
        by_table = self._checked_entries(staged)
        tables: dict[str, dict[str, Any]] = {}
        kept: list[JournalEntry] = []
        obsolete: list[Path] = []
        for table, entries in by_table.items():
            stats, table_kept, table_obsolete = self._prepare_table(
                staged, table, entries, removed, latest_pass
            )
            tables[table] = stats
            kept.extend(table_kept)
            obsolete.extend(table_obsolete)
        # Journal first, then delete: a crash in between leaves unjournaled files, which a
        # resume removes.
        staged._rewrite_journal(kept)
        try:
            for path in obsolete:
                path.unlink()
                with contextlib.suppress(OSError):  # only if nothing else is in it
                    path.parent.rmdir()
        except OSError as exc:
            raise io_error(exc, staged.path, "cleaning") from exc
        given = dict(manifest)
        if annotate is not None:
            given.update(annotate(staged.path))
        given_tables = given.get("tables")
        if isinstance(given_tables, Mapping):
            tables = {t: {**dict(given_tables.get(t) or {}), **s} for t, s in tables.items()}
        final = {
            **given,
            "snapshot_id": staged.snapshot_id,
            "schema_version": SCHEMA_VERSION,
            "committed_at": _iso(now or datetime.now(UTC)),
            "tables": tables,
        }
        _write_atomically(staged.path / COMMIT_STATE, _dumps(final))
        self._finish_commit(staged.snapshot_id)
        return self.manifest_path(staged.snapshot_id)

    def _checked_entries(self, staged: StagedSnapshot) -> dict[str, list[JournalEntry]]:
        entries = staged.journal()
        listed = {(e.table, e.path) for e in entries}
        by_table: dict[str, list[JournalEntry]] = {}
        for table_dir in sorted(p for p in staged.path.iterdir() if p.is_dir()):
            self._spec_for_commit(table_dir.name)
            by_table[table_dir.name] = []
            stray = [
                p.relative_to(table_dir).as_posix()
                for p in _data_files(table_dir)
                if (table_dir.name, p.relative_to(table_dir).as_posix()) not in listed
            ]
            if stray:
                raise SnapshotError(
                    f"snapshot {staged.snapshot_id}: {len(stray)} file(s) in {table_dir} are not "
                    f"in the journal (e.g. {stray[0]}); nothing was committed. Close every "
                    "writer and journal its files before committing; a rerun resumes cleanly"
                )
        for entry in entries:
            path = staged.path / entry.table / entry.path
            if not path.is_file():
                raise SnapshotError(
                    f"snapshot {staged.snapshot_id}: journaled file {path} is missing; nothing "
                    "was committed. Rerun the same command to refetch what it held"
                )
            by_table.setdefault(entry.table, []).append(entry)
        return by_table

    def _spec_for_commit(self, table: str) -> TableSpec:
        try:
            return self.spec(table)
        except ValueError:
            raise SnapshotError(
                f"staging holds an unknown table {table!r}: remove it or rerun with --fresh"
            ) from None

    def _prepare_table(
        self,
        staged: StagedSnapshot,
        table: str,
        entries: Sequence[JournalEntry],
        removed: Collection[str],
        latest_pass: Mapping[str, int],
    ) -> tuple[dict[str, Any], list[JournalEntry], list[Path]]:
        """Apply exclusions to a table's files and verify its keys are unique."""
        spec = self._spec_for_commit(table)
        expected = spec.file_schema
        read: list[tuple[pa.ChunkedArray, pa.Schema, int]] = []
        for entry in entries:
            path = staged.path / table / entry.path
            try:
                read.append(_read_keys(path, spec.key))
            except OSError as exc:
                raise io_error(exc, path, "reading") from exc
        # A key written in several passes (a catch-up refetch, or a resumed run that
        # refetched it) keeps only the row of its highest pass: a file of pass p drops
        # the keys that files of later passes hold. Later passes are small in practice,
        # so this never builds a hash table over the whole table.
        later = _keys_of_later_passes(entries, [r[0] for r in read])
        drop_sets: dict[int, pa.Array] = {}
        for pass_no in {e.pass_no for e in entries}:
            ids = set(removed) | {k for k, last in latest_pass.items() if last > pass_no}
            extra = pa.array(sorted(ids), pa.string())
            drop_sets[pass_no] = pc.unique(
                pa.chunked_array([extra, later[pass_no]], pa.string()).combine_chunks()
            )
        key_chunks: list[pa.Array] = []
        kept: list[JournalEntry] = []
        obsolete: list[Path] = []
        for entry, (keys, schema, row_group_rows) in zip(entries, read, strict=True):
            path = staged.path / table / entry.path
            if not schema.equals(expected):
                raise SnapshotError(
                    f"{path} does not have the schema of table {table!r} (version "
                    f"{SCHEMA_VERSION}); nothing was committed. Rerun with --fresh"
                )
            drop = drop_sets[entry.pass_no]
            if len(drop):
                mask = pc.is_in(keys, value_set=drop)
                if pc.any(mask).as_py():
                    keep_mask = pc.invert(mask)
                    keys = keys.filter(keep_mask)
                    if len(keys) == 0:
                        obsolete.append(path)
                        continue
                    with pq.ParquetFile(path) as pf:
                        data = pf.read()
                    write_parquet_atomically(
                        path, data.filter(keep_mask), row_group_rows=row_group_rows
                    )
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise io_error(exc, path, "reading") from exc
            key_chunks.extend(keys.chunks)
            kept.append(
                JournalEntry(table, entry.path, len(keys), size, entry.partition, entry.pass_no)
            )
        self._check_unique(staged.snapshot_id, table, spec.key, key_chunks)
        partitions = sorted({e.partition for e in kept}, key=lambda v: (v is not None, v or ""))
        stats = {
            "rows": sum(e.rows for e in kept),
            "files": len(kept),
            "bytes": sum(e.bytes for e in kept),
            "partitions": partitions,
        }
        return stats, kept, obsolete

    @staticmethod
    def _check_unique(snapshot_id: str, table: str, key: str, chunks: list[pa.Array]) -> None:
        # Sorted 64-bit hashes, 8 bytes a key: a hash table over a million key strings
        # (pc.count_distinct) was one of the peaks of a 1M-employee run's memory.
        repeated = repeated_values(chunks)
        if not repeated:
            return
        examples = ", ".join(repeated[:5])
        raise SnapshotError(
            f"snapshot {snapshot_id}: {len(repeated)} {key} value(s) occur more than once in "
            f"table {table!r} (e.g. {examples}); nothing was committed. The staged data is kept: "
            "rerun the same command to retry the commit, or --fresh to export from scratch"
        )

    def _finish_commit(self, snapshot_id: str) -> None:
        """Move the tables named in commit.json into place, write the manifest, tidy up."""
        staging = self.staging_root / snapshot_id
        final = _read_json(staging / COMMIT_STATE)
        try:
            for table in sorted(final.get("tables") or {}):
                source = staging / table
                target = self.table_path(table, snapshot_id)
                if source.exists() and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(source, target)
                    fsync_dir(target.parent)
                elif source.exists() or not target.exists():
                    raise SnapshotError(
                        f"cannot finish committing snapshot {snapshot_id}: table {table!r} is "
                        f"{'in both' if source.exists() else 'in neither'} {source} and "
                        f"{target}. Inspect both folders, keep one, and rerun"
                    )
            fsync_dir(staging)
            self.manifests_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.out)  # <out>/<table> and _snapshots may be new
            self._publish_manifest(snapshot_id, _dumps(final))
            _remove_tree(staging)
        except OSError as exc:
            raise io_error(exc, staging, "committing") from exc

    def _publish_manifest(self, snapshot_id: str, data: bytes) -> None:
        # The commit point: a snapshot exists once its manifest does.
        _write_atomically(self.manifest_path(snapshot_id), data)

    def _staged_ids(self) -> list[str]:
        if not self.staging_root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.staging_root.iterdir()
            if p.is_dir() and _SNAPSHOT_ID.fullmatch(p.name)
        )

    def _recover(self) -> None:
        if not self.staging_root.is_dir():
            return
        try:
            for leftover in self.staging_root.iterdir():
                if leftover.name.startswith(".") and leftover.is_dir():
                    shutil.rmtree(leftover)  # a begin, discard or cleanup cut short
            for snapshot_id in self._staged_ids():
                staging = self.staging_root / snapshot_id
                if self.manifest_path(snapshot_id).exists():
                    _remove_tree(staging)  # committed; only the cleanup was cut short
                elif (staging / COMMIT_STATE).exists():
                    log.warning("finishing the interrupted commit of snapshot %s", snapshot_id)
                    self._finish_commit(snapshot_id)
                    self.recovered_commits.append(snapshot_id)
        except OSError as exc:
            raise io_error(exc, self.staging_root, "cleaning") from exc


def _keys_of_later_passes(
    entries: Sequence[JournalEntry], keys: Sequence[pa.ChunkedArray]
) -> dict[int, pa.Array]:
    """For each pass, the distinct keys written by files of any later pass."""
    by_pass: dict[int, list[pa.Array]] = {}
    for entry, chunked in zip(entries, keys, strict=True):
        by_pass.setdefault(entry.pass_no, []).extend(chunked.chunks)
    later: dict[int, pa.Array] = {}
    accumulated: list[pa.Array] = []
    for pass_no in sorted(by_pass, reverse=True):
        later[pass_no] = (
            pc.unique(pa.chunked_array(accumulated, pa.string()).combine_chunks())
            if accumulated
            else pa.array([], pa.string())
        )
        accumulated.extend(by_pass[pass_no])
    return later


# -- listing ----------------------------------------------------------------------------------


def _unusable_out(out: Path, exc: OSError) -> ConfigError:
    """The output folder cannot even hold the lock: nothing was sent or written yet."""
    if exc.errno == errno.ENOTDIR or (out.exists() and not out.is_dir()):
        why = "is a file (or under one), not a folder"
    elif exc.errno == errno.EROFS:
        why = "is on a read-only file system"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "is not writable by this user"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "is on a full disk"
    else:
        why = f"cannot be used ({exc.strerror or exc})"
    return ConfigError(f"the output folder {out} {why}: choose another with --out")


def list_snapshots(out: Path) -> list[SnapshotInfo]:
    """The committed snapshots of an output folder, oldest first."""
    folder = Path(out) / MANIFESTS_DIR
    if not folder.is_dir():
        return []
    infos: list[SnapshotInfo] = []
    for path in sorted(folder.glob("*.json")):
        if not _SNAPSHOT_ID.fullmatch(path.stem):
            continue
        manifest = _read_json(path)
        tables = manifest.get("tables") or {}
        rows = {
            name: int(stats.get("rows", 0))
            for name, stats in tables.items()
            if isinstance(stats, Mapping)
        }
        mode = manifest.get("mode")
        started, finished = manifest.get("started_at"), manifest.get("finished_at")
        infos.append(
            SnapshotInfo(
                snapshot_id=path.stem,
                complete=bool(manifest.get("complete", False)),
                mode=None if mode is None else str(mode),
                rows=rows,
                started_at=None if started is None else str(started),
                finished_at=None if finished is None else str(finished),
                manifest_path=path,
                manifest=manifest,
            )
        )
    return infos


def latest_snapshot(out: Path, *, complete_only: bool = True) -> SnapshotInfo | None:
    """The newest committed snapshot (the newest complete one unless ``complete_only=False``)."""
    for info in reversed(list_snapshots(out)):
        if info.complete or not complete_only:
            return info
    return None
