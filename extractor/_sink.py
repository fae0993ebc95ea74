"""Where Parquet is written: Hive-partitioned files with large row groups, off the event loop.

:class:`PartitionedParquetWriter` is synchronous and meant for one worker thread. It splits
each batch by the partition column into per-partition buffers and writes a buffer as one row
group once it holds ``row_group_rows`` rows, so row groups stay large however small the
incoming batches are. When the rows buffered across all partitions exceed
``max_buffered_rows``, or their Arrow buffers ``max_buffered_bytes``, the largest buffer is
written early: memory is bounded whatever the tenant's size (at the cost of smaller row groups
when there are many partitions). The ``snapshot_id`` column is added as a row group is written,
not buffered.

A file is written as ``.<name>.inprogress`` and renamed to ``<name>`` only after its footer is
written and it is fsynced, so a file under a final name is always complete. A file is rolled
(closed, a new one started) once it reaches ``max_file_bytes``; sizes are checked between row
groups, so a file may exceed the limit by up to one row group.

:class:`AsyncTableWriter` is the face the pipeline uses: it queues record batches (bounded:
``write`` awaits when the queue is full) and converts and writes them in a worker thread, so
the event loop never waits for Parquet encoding or the disk. The sink knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._errors import SnapshotError
from ._schema import SNAPSHOT_COLUMN, Rejected, TableSpec, convert_records

__all__ = [
    "DEFAULT_BUFFERED_BYTES",
    "DEFAULT_FILE_BYTES",
    "DEFAULT_ROW_GROUP_ROWS",
    "HIVE_DEFAULT_PARTITION",
    "AsyncTableWriter",
    "FinishedFile",
    "PartitionedParquetWriter",
    "hive_segment",
    "io_error",
    "write_parquet_atomically",
]

DEFAULT_ROW_GROUP_ROWS = 65_536
DEFAULT_BUFFERED_ROWS = 131_072
#: About 100,000 employee rows (~240 bytes each in Arrow): with one or two partitions the
#: row groups are full 64k-row ones; with many, smaller ones are written early.
DEFAULT_BUFFERED_BYTES = 24 * 1024 * 1024
DEFAULT_FILE_BYTES = 128 * 1024 * 1024
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
INPROGRESS_SUFFIX = ".inprogress"

# The characters Hive escapes in a partition value (FileUtils.escapePathName), plus '%'.
_HIVE_UNSAFE = frozenset("\"#%'*/:=?\\{[]^\x7f") | {chr(c) for c in range(0x20)}


def hive_segment(column: str, value: str | None) -> str:
    """The directory name for a partition value, escaped URL-style as Hive does.

    Null and the empty string map to ``__HIVE_DEFAULT_PARTITION__`` (readers give back null).
    """
    if value is None or value == "":
        return f"{column}={HIVE_DEFAULT_PARTITION}"
    escaped = "".join(f"%{ord(c):02X}" if c in _HIVE_UNSAFE else c for c in value)
    return f"{column}={escaped}"


def io_error(exc: OSError, path: Path | str, action: str = "writing") -> SnapshotError:
    """Turn an OSError into a SnapshotError that says what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SnapshotError(
            f"disk full {action} {path}: free space and rerun; work written so far is kept"
        )
    if exc.errno == errno.EROFS:
        return SnapshotError(
            f"read-only file system {action} {path}: remount it writable (or use another "
            "--out) and rerun; work written so far is kept"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SnapshotError(
            f"permission denied {action} {path}: make the output folder writable and rerun; "
            "work written so far is kept"
        )
    reason = exc.strerror or str(exc)
    return SnapshotError(
        f"cannot complete {action} {path} ({reason}): fix the output folder and rerun; "
        "work written so far is kept"
    )


@contextlib.contextmanager
def _io_guard(path: Path | str, action: str = "writing") -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise io_error(exc, path, action) from exc


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    # fsync flushes the inode's data whichever descriptor asks: the write handle is Arrow's.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_output(path: Path) -> pa.NativeFile:
    """Open a file for writing (a seam: tests swap it to simulate a full disk)."""
    return pa.OSFile(str(path), "wb")


class FinishedFile(NamedTuple):
    """A complete, fsynced Parquet file; ``path`` is POSIX, relative to the writer's directory."""

    path: str
    rows: int
    bytes: int
    partition: str | None


_WRITER_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "write_statistics": True,
    "use_dictionary": True,
}


def write_parquet_atomically(path: Path, table: pa.Table, *, row_group_rows: int) -> int:
    """Write ``table`` to ``path`` (temp name, fsync, atomic replace); return the file size.

    Used to rewrite a staged file in place, with the sink's settings.
    """
    tmp = path.with_name(f".{path.name}{INPROGRESS_SUFFIX}")
    with _io_guard(path):
        sink = _open_output(tmp)
        try:
            writer = pq.ParquetWriter(sink, table.schema, **_WRITER_OPTIONS)
            try:
                writer.write_table(table, row_group_size=max(1, row_group_rows))
            finally:
                _close_writer(writer)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            sink.close()
        _fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return path.stat().st_size


@dataclass
class _OpenFile:
    tmp: Path
    final: Path
    relative: str
    sink: pa.NativeFile
    writer: pq.ParquetWriter
    rows: int = 0


@dataclass
class _Buffer:
    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


class PartitionedParquetWriter:
    """Write batches of one table as Hive-partitioned Parquet files under ``directory``.

    Files: ``directory/<partition_column>=<value>/<file_prefix>-<seq:05d>.parquet``. The prefix
    must be unique among writers that share a directory at the same time (e.g. the pass number);
    a name already taken on disk is skipped, never overwritten. Not thread-safe: one thread at
    a time. After an error the writer is unusable; call :meth:`abort`.
    """

    def __init__(
        self,
        directory: Path,
        spec: TableSpec,
        *,
        file_prefix: str,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        max_buffered_rows: int = DEFAULT_BUFFERED_ROWS,
        max_buffered_bytes: int = DEFAULT_BUFFERED_BYTES,
        max_file_bytes: int = DEFAULT_FILE_BYTES,
        compression: str = "zstd",
        snapshot_id: str | None = None,
    ) -> None:
        if min(row_group_rows, max_buffered_rows, max_buffered_bytes, max_file_bytes) < 1:
            raise ValueError(
                "row_group_rows, max_buffered_rows, max_buffered_bytes and max_file_bytes "
                "must be >= 1"
            )
        if not file_prefix or "/" in file_prefix or file_prefix.startswith("."):
            raise ValueError(f"file_prefix {file_prefix!r} is not a plain file name")
        self.directory = Path(directory)
        self.spec = spec
        self.file_prefix = file_prefix
        self.row_group_rows = row_group_rows
        self.max_buffered_rows = max_buffered_rows
        self.max_buffered_bytes = max_buffered_bytes
        self.max_file_bytes = max_file_bytes
        self._options = {**_WRITER_OPTIONS, "compression": compression}
        self._file_schema = spec.file_schema
        self._partition_index = spec.schema.get_field_index(spec.partition_column)
        self.snapshot_id = snapshot_id or _snapshot_id_of(self.directory)
        self._snapshot_value = pa.scalar(self.snapshot_id, pa.string())
        self._buffers: dict[str | None, _Buffer] = {}
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._open: dict[str | None, _OpenFile] = {}
        self._next_seq: dict[str | None, int] = {}
        self._finished: list[FinishedFile] = []
        self._closed = False
        self._failed: Exception | None = None

    # -- public -------------------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory, not yet handed to Parquet."""
        return self._buffered_rows

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the Arrow buffers of :attr:`buffered_rows`."""
        return self._buffered_bytes

    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer a batch of ``spec.schema``; write row groups that are full."""
        self._check_usable()
        if not batch.schema.equals(self.spec.schema):
            raise ValueError(f"batch schema differs from table {self.spec.name!r}")
        if batch.num_rows == 0:
            return
        for partition, part in self._split(batch):
            buf = self._buffers.setdefault(partition, _Buffer())
            size = part.nbytes
            buf.batches.append(part)
            buf.rows += part.num_rows
            buf.bytes += size
            self._buffered_rows += part.num_rows
            self._buffered_bytes += size
            self._guarded(self._drain_full, partition)
        while (
            self._buffered_rows > self.max_buffered_rows
            or self._buffered_bytes > self.max_buffered_bytes
        ):
            largest = max(self._buffers, key=lambda p: self._buffers[p].rows)
            self._guarded(self._flush, largest)

    def checkpoint(self) -> list[FinishedFile]:
        """Write every buffer and close every open file; return the files finished since the
        previous checkpoint. Every row written before this call is then durably on disk under
        a final name (each checkpoint closes a file per partition: call it every minute or so,
        not per batch).
        """
        self._check_usable()
        for partition in list(self._buffers):
            self._guarded(self._flush, partition)
        for partition in list(self._open):
            self._guarded(self._finish_file, partition)
        finished, self._finished = self._finished, []
        # The buffers just written are garbage: let the pool hand their memory back now.
        pa.default_memory_pool().release_unused()
        return finished

    def close(self) -> list[FinishedFile]:
        """Final :meth:`checkpoint`; the writer cannot be used afterwards."""
        finished = self.checkpoint()
        self._closed = True
        return finished

    def abort(self) -> None:
        """Drop buffers and delete in-progress files (best effort; never raises for I/O)."""
        self._closed = True
        self._buffers.clear()
        self._buffered_rows = 0
        self._buffered_bytes = 0
        for open_file in self._open.values():
            with contextlib.suppress(Exception):
                _close_writer(open_file.writer)
            with contextlib.suppress(Exception):
                open_file.sink.close()
            with contextlib.suppress(OSError):
                open_file.tmp.unlink()
        self._open.clear()

    # -- internals -----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise RuntimeError("writer is closed")

    def _guarded(self, action: Callable[[str | None], None], partition: str | None) -> None:
        try:
            action(partition)
        except Exception as exc:
            self._failed = exc
            raise

    def _split(self, batch: pa.RecordBatch) -> Iterator[tuple[str | None, pa.RecordBatch]]:
        column = batch.column(self._partition_index)
        values = pc.unique(column).to_pylist()
        for value in values:
            if len(values) == 1:
                part = batch
            elif value is None:
                part = batch.filter(pc.is_null(column))
            else:
                part = batch.filter(pc.equal(column, value))
            yield None if value == "" else value, part

    def _drain_full(self, partition: str | None) -> None:
        buf = self._buffers[partition]
        if buf.rows < self.row_group_rows:
            return
        table = pa.Table.from_batches(buf.batches, schema=self.spec.schema)
        offset = 0
        while buf.rows - offset >= self.row_group_rows:
            self._write_row_group(partition, table.slice(offset, self.row_group_rows))
            offset += self.row_group_rows
        rest = table.slice(offset)
        buf.batches = rest.combine_chunks().to_batches() if rest.num_rows else []
        kept = sum(b.nbytes for b in buf.batches)
        self._buffered_rows -= offset
        self._buffered_bytes -= buf.bytes - kept
        buf.rows = rest.num_rows
        buf.bytes = kept

    def _flush(self, partition: str | None) -> None:
        buf = self._buffers.pop(partition, None)
        if buf is None or buf.rows == 0:
            return
        self._buffered_rows -= buf.rows
        self._buffered_bytes -= buf.bytes
        self._write_row_group(partition, pa.Table.from_batches(buf.batches, self.spec.schema))

    def _write_row_group(self, partition: str | None, table: pa.Table) -> None:
        snapshot = pa.repeat(self._snapshot_value, table.num_rows)
        table = pa.Table.from_arrays([*table.columns, snapshot], schema=self._file_schema)
        open_file = self._open.get(partition) or self._open_file(partition)
        with _io_guard(open_file.final):
            open_file.writer.write_table(table, row_group_size=max(1, table.num_rows))
            open_file.rows += table.num_rows
            size = open_file.sink.tell()
        # The row group's buffers are garbage now. Returned at once, not at the next
        # checkpoint: between checkpoints freed-but-kept memory grew by ~80 MB at 1M rows.
        del table
        pa.default_memory_pool().release_unused()
        if size >= self.max_file_bytes:
            self._finish_file(partition)

    def _open_file(self, partition: str | None) -> _OpenFile:
        segment = hive_segment(self.spec.partition_column, partition)
        part_dir = self.directory / segment
        with _io_guard(part_dir):
            if not part_dir.is_dir():
                part_dir.mkdir(parents=True, exist_ok=True)
                fsync_dir(part_dir.parent)
            seq = self._next_seq.get(partition, 0)
            while True:
                name = f"{self.file_prefix}-{seq:05d}.parquet"
                final = part_dir / name
                tmp = part_dir / f".{name}{INPROGRESS_SUFFIX}"
                if not final.exists() and not tmp.exists():
                    break
                seq += 1
            self._next_seq[partition] = seq + 1
            sink = _open_output(tmp)
            try:
                writer = pq.ParquetWriter(sink, self._file_schema, **self._options)
            except BaseException:
                sink.close()
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        open_file = _OpenFile(tmp, final, f"{segment}/{name}", sink, writer)
        self._open[partition] = open_file
        return open_file

    def _finish_file(self, partition: str | None) -> None:
        open_file = self._open[partition]
        with _io_guard(open_file.final):
            try:
                _close_writer(open_file.writer)
            finally:
                open_file.sink.close()
            _fsync_file(open_file.tmp)
            os.rename(open_file.tmp, open_file.final)
            fsync_dir(open_file.final.parent)
            size = open_file.final.stat().st_size
        del self._open[partition]
        self._finished.append(FinishedFile(open_file.relative, open_file.rows, size, partition))


def _snapshot_id_of(directory: Path) -> str:
    """``<table>/snapshot_id=X`` (committed layout) or ``_staging/X/<table>`` (staging)."""
    prefix = f"{SNAPSHOT_COLUMN}="
    if directory.name.startswith(prefix):
        return directory.name[len(prefix) :]
    return directory.parent.name


def _close_writer(writer: pq.ParquetWriter) -> None:
    try:
        writer.close()
    except BaseException:
        writer.is_open = False  # else pyarrow's __del__ retries the close and fails again
        raise


# -- async face ----------------------------------------------------------------------------


class AsyncTableWriter:
    """Convert and write record batches in a dedicated worker thread; the event loop never waits
    for Parquet encoding or the disk.

    ``await write(records)`` queues a batch and returns; it awaits only while
    ``max_pending_batches`` batches are queued (backpressure). ``await checkpoint()`` waits until
    everything queued is written and returns the files finished since the previous checkpoint.
    ``await close()`` is the final checkpoint. Records that cannot be converted are skipped and
    listed in :attr:`rejected`; the list is complete for every write that precedes the latest
    ``checkpoint`` or ``close``. An error in the thread (a full disk, say) is raised as
    :class:`SnapshotError` by the next ``write``, ``checkpoint`` or ``close``; ``close`` after an
    error deletes the in-progress files before raising it. Usable as ``async with`` too: leaving
    the block by an exception aborts (rows not yet checkpointed are dropped; the journal does not
    list them, so a rerun refetches them). Needs an asyncio event loop (uvloop included).
    """

    def __init__(
        self,
        directory: Path,
        spec: TableSpec,
        *,
        file_prefix: str,
        max_pending_batches: int = 4,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        max_buffered_rows: int = DEFAULT_BUFFERED_ROWS,
        max_buffered_bytes: int = DEFAULT_BUFFERED_BYTES,
        max_file_bytes: int = DEFAULT_FILE_BYTES,
        compression: str = "zstd",
        snapshot_id: str | None = None,
    ) -> None:
        if max_pending_batches < 1:
            raise ValueError("max_pending_batches must be >= 1")
        self.spec = spec
        self._writer = PartitionedParquetWriter(
            directory,
            spec,
            file_prefix=file_prefix,
            row_group_rows=row_group_rows,
            max_buffered_rows=max_buffered_rows,
            max_buffered_bytes=max_buffered_bytes,
            max_file_bytes=max_file_bytes,
            compression=compression,
            snapshot_id=snapshot_id,
        )
        # One worker: jobs run one at a time, in the order they were submitted.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"parquet-{spec.name}")
        self._slots = asyncio.Semaphore(max_pending_batches)
        self._lock = threading.Lock()  # guards _finished between the thread and the loop
        self._finished: list[FinishedFile] = []
        self._error: Exception | None = None  # set by the worker thread, read by the loop
        self._closed = False
        self._aborting = False
        #: Records skipped because they could not be converted, with the reason.
        self.rejected: list[Rejected] = []
        #: Rows converted and handed to the Parquet writer (durable only after a checkpoint).
        self.rows_accepted = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            if not self._closed:
                await self.close()
        else:
            await self.abort()

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Queue records (API JSON dicts) for conversion and writing."""
        self._raise_if_unusable()
        if not records:
            return
        await self._slots.acquire()
        try:
            future = self._executor.submit(self._run_write, records)
        except BaseException:
            self._slots.release()
            raise
        asyncio.wrap_future(future).add_done_callback(lambda _: self._slots.release())

    async def checkpoint(self) -> list[FinishedFile]:
        """Wait until everything queued is written; return the files finished since the last
        checkpoint (durable, under their final names)."""
        self._raise_if_unusable()
        await asyncio.wrap_future(self._executor.submit(self._run_checkpoint, final=False))
        return self._take_finished()

    async def close(self) -> list[FinishedFile]:
        """Final checkpoint; the writer accepts nothing afterwards.

        After an error, deletes the in-progress files and raises the error.
        """
        if self._closed:  # idempotent: a failure path may close twice
            if self._error is not None:
                raise self._error
            return []
        if self._error is None:
            await asyncio.wrap_future(self._executor.submit(self._run_checkpoint, final=True))
        if self._error is not None:
            await self.abort()
            raise self._error
        self._closed = True
        self._executor.shutdown(wait=False)
        return self._take_finished()

    async def abort(self) -> None:
        """Drop what is not checkpointed and delete in-progress files; never raises for I/O."""
        if self._closed:
            return
        self._closed = True
        self._aborting = True  # batches still queued are skipped, not encoded
        future = self._executor.submit(self._writer.abort)
        self._executor.shutdown(wait=False)
        # Shielded: an abort that is itself cancelled would leave temp files behind.
        await asyncio.shield(asyncio.wrap_future(future))

    def _take_finished(self) -> list[FinishedFile]:
        with self._lock:
            files, self._finished = self._finished, []
        if self._error is not None:
            raise self._error
        return files

    def _raise_if_unusable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("writer is closed")

    # The _run_* methods run in the worker thread; they never raise (errors are kept).

    def _run_write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._error is not None or self._aborting:
            return
        try:
            batch, rejected = convert_records(self.spec, records)
            self.rejected.extend(rejected)
            self._writer.write(batch)
            self.rows_accepted += batch.num_rows
        except Exception as exc:
            self._error = exc

    def _run_checkpoint(self, *, final: bool) -> None:
        if self._error is not None or self._aborting:
            return
        try:
            files = self._writer.close() if final else self._writer.checkpoint()
        except Exception as exc:
            self._error = exc
            return
        with self._lock:
            self._finished.extend(files)
