"""Incremental sync: a new complete snapshot from the last one plus what changed.

One round, in order (every step through the same controller, workers and writers as a
full export; :class:`SyncJob` is the export's first pass swapped for this one):

1. **Base**: the latest complete snapshot (or ``--base``). Its watermark (the moment from
   which changes may be missing from it) comes from ``<out>/_state/sync.json`` when that
   file describes the base, else from the base's manifest.
2. **Feed**: ``employee-changes`` from the watermark less ``overlap`` to now, in windows
   the tenant accepts, paginated. The records go to the ``employee_changes`` table.
3. **Listing**: a fresh id listing (N/200 calls) against the base's ids finds the hires
   and removals the feed did not report.
4. **Sample** (``verify_sample``): K employees the feed says did not change are fetched
   first and compared field by field with their base rows; every difference is a change
   the feed missed. Above ``max_miss_rate`` the feed is not trusted: the round fetches
   every employee (a full export inside the same snapshot).
5. **Refetch and carry**: changed and new employees are fetched while, in a thread, every
   other base row is streamed into the new snapshot (pass 0; fetched rows are pass 1 and
   up, so a row fetched again always wins at commit). Removed ids are dropped.
6. **Catch-up and commit** exactly as an export: the snapshot is consistent at commit.

State: ``<out>/_state/sync.json`` is written only after a commit. A killed round resumes
from its staging (same base); running twice in a row gives the same data.

Policy for when the feed is not trusted (documented in the README): a full export when
there is no usable base (``--full-if-missing``), when the last full snapshot is older
than ``full_every_days``, when the base's schema or tables do not fit this run, when the
feed is unavailable, or when the sampled miss rate exceeds ``max_miss_rate``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._config import ExportConfig
from ._errors import ConfigError, SnapshotError
from ._idset import missing_from
from ._pipeline import ExportResult, Job, _fingerprint, _iso, _Run, _utcnow, run_job
from ._rate import RateController
from ._read import parquet_files, read_batches
from ._schema import EMPLOYEE_CHANGES, SCHEMA_VERSION, TableSpec
from ._sink import FinishedFile, PartitionedParquetWriter
from ._snapshot import SnapshotInfo, SnapshotStore, list_snapshots
from ._staging import _dumps, _write_atomically
from ._stats import RunStats

__all__ = ["SyncOptions", "sync"]

log = logging.getLogger("extractor")

#: Where the sync state lives: written after each committed round.
SYNC_STATE = "sync.json"
#: Rows read from a base file at a time while carrying it forward.
CARRY_BATCH_ROWS = 65_536
#: Employees with a missed change listed in the manifest (the counts are always exact).
MAX_STALE_IN_MANIFEST = 100


class NoBaseSnapshotError(ConfigError):
    """Sync needs a complete snapshot to start from."""


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """How a sync round chooses its base and how far it trusts the change feed."""

    #: Snapshot id to start from; None = the latest complete snapshot.
    base: str | None = None
    #: No complete snapshot yet: run a full export instead of failing.
    full_if_missing: bool = False
    #: Seconds read again before the watermark, for changes recorded late.
    overlap: float = 900.0
    #: Unchanged employees refetched and compared with their carried rows.
    verify_sample: int = 100
    #: Share of the sample with a missed change above which the round refetches everyone.
    max_miss_rate: float = 0.02
    #: A full export when the last full snapshot is older than this many days (None: never).
    full_every_days: float | None = 7.0
    #: Seed for the sample (tests); None = random.
    sample_seed: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.overlap) or self.overlap < 0:
            raise ConfigError(f"--overlap must be 0 or more seconds, got {self.overlap}")
        if self.verify_sample < 0:
            raise ConfigError(f"--verify-sample must be 0 or more, got {self.verify_sample}")
        if not 0 <= self.max_miss_rate <= 1:
            raise ConfigError(f"--max-miss-rate must be between 0 and 1, got {self.max_miss_rate}")
        if self.full_every_days is not None and self.full_every_days <= 0:
            raise ConfigError(f"--full-every must be positive, got {self.full_every_days}")


# -- the round --------------------------------------------------------------------------------


async def sync(
    config: ExportConfig,
    options: SyncOptions | None = None,
    *,
    stats: RunStats | None = None,
    on_start: Callable[[RunStats, RateController], None] | None = None,
) -> ExportResult:
    """One sync round: commit a new complete snapshot built from the base and the feed.

    Falls back to a full export when the policy says so (see the module docstring); the
    manifest's ``mode`` says which ran and ``sync.reason`` why. Raises
    :class:`NoBaseSnapshotError` (a usage error) when there is no base and no
    ``full_if_missing``.
    """
    options = options or SyncOptions()
    stats = stats or RunStats()
    store = SnapshotStore(config.out)
    with store.lock():
        job, reason = _choose_job(config, options, store)
        if reason:
            log.info("sync: running a full export (%s)", reason)
        result = await run_job(config, store, job, stats, on_start)
        if result.committed:
            _save_state(store, result.manifest)
        return result


def _choose_job(
    config: ExportConfig, options: SyncOptions, store: SnapshotStore
) -> tuple[Job, str]:
    """The job for this round, and why it is a full export ("" when incremental)."""
    staged = store.in_progress()  # also finishes an interrupted commit: a possible base
    snapshots = [s for s in list_snapshots(store.out) if s.complete]
    fingerprint = staged.run_state.get("fingerprint", {}) if staged is not None else {}
    if fingerprint.get("mode") == "full-sync":
        # a round that fell back to a full export was interrupted: finish it
        return _FullSyncJob(str(fingerprint.get("reason", ""))), "resuming"
    if staged is not None and fingerprint == Job().fingerprint(config) and not config.fresh:
        # an export was interrupted: finishing it is both cheaper and fresher than a sync
        return Job(), f"finishing the unfinished export {staged.snapshot_id}"
    if options.base is not None:
        chosen = [s for s in snapshots if s.snapshot_id == options.base]
        if not chosen:
            known = ", ".join(s.snapshot_id for s in snapshots[-5:]) or "none"
            raise NoBaseSnapshotError(
                f"--base {options.base}: no complete snapshot with that id in {store.out} "
                f"(latest complete: {known})"
            )
        base = chosen[0]
    elif snapshots:
        base = snapshots[-1]
    elif options.full_if_missing:
        return _FullSyncJob("no complete snapshot to start from"), "no base snapshot"
    else:
        raise NoBaseSnapshotError(
            f"no complete snapshot in {store.out} to sync from: run `ukg-extract export "
            f"--out {store.out}` first, or pass --full-if-missing"
        )
    reason = _full_reason(config, options, store, base, snapshots)
    if reason:
        return _FullSyncJob(reason), reason
    return SyncJob(base, options, _watermark_of(store, base)), ""


def _full_reason(
    config: ExportConfig,
    options: SyncOptions,
    store: SnapshotStore,
    base: SnapshotInfo,
    snapshots: list[SnapshotInfo],
) -> str:
    manifest = base.manifest
    if manifest.get("schema_version") != SCHEMA_VERSION:
        return (
            f"base {base.snapshot_id} has schema version {manifest.get('schema_version')}, "
            f"this version writes {SCHEMA_VERSION}"
        )
    if config.employment_details and "employment_details" not in base.rows:
        return f"base {base.snapshot_id} has no employment_details table"
    if manifest.get("base_url") not in (None, config.base_url):
        return f"base {base.snapshot_id} is of another tenant ({manifest.get('base_url')})"
    if options.full_every_days is not None:
        fulls = [s for s in snapshots if s.mode == "full" and s.started_at]
        if not fulls:
            return "no full snapshot yet"
        last = _parse_time(str(fulls[-1].started_at))
        age = _utcnow() - last
        if age >= timedelta(days=options.full_every_days):
            return (
                f"the last full snapshot ({fulls[-1].snapshot_id}) is {age.days} day(s) old; "
                f"--full-every is {options.full_every_days:g}"
            )
    return ""


def _watermark_of(store: SnapshotStore, base: SnapshotInfo) -> datetime:
    state = _load_state(store)
    if state.get("snapshot_id") == base.snapshot_id and state.get("watermark"):
        return _parse_time(str(state["watermark"]))
    manifest = base.manifest
    when = manifest.get("watermark") or manifest.get("started_at")
    if not when:
        raise SnapshotError(
            f"the manifest of base snapshot {base.snapshot_id} has neither a watermark nor a "
            "start time; run a full export (`ukg-extract export`) to start a new chain"
        )
    return _parse_time(str(when))


# -- the jobs ---------------------------------------------------------------------------------


class _FullSyncJob(Job):
    """A full export that a sync round ran (no base, or the policy asked for one)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def fingerprint(self, config: ExportConfig) -> dict[str, Any]:
        return {**_fingerprint(config), "mode": "full-sync", "reason": self.reason}

    def tables(self, config: ExportConfig) -> list[TableSpec]:
        return [*super().tables(config), EMPLOYEE_CHANGES]

    def manifest(self, run: _Run) -> dict[str, Any]:
        return {"mode": "full", "sync": {"full_reason": self.reason}}


class SyncJob(Job):
    """The first pass of an incremental round (see the module docstring)."""

    mode = "incremental"

    def __init__(self, base: SnapshotInfo, options: SyncOptions, watermark: datetime) -> None:
        self.base = base
        self.options = options
        self.base_watermark = watermark
        self.since = watermark - timedelta(seconds=options.overlap)
        self.counts: dict[str, int] = {}
        self.sample: dict[str, Any] = {}
        self.stale: dict[str, list[str]] = {}
        self.escalated = ""

    def fingerprint(self, config: ExportConfig) -> dict[str, Any]:
        return {**_fingerprint(config), "mode": "incremental", "base": self.base.snapshot_id}

    def tables(self, config: ExportConfig) -> list[TableSpec]:
        return [*super().tables(config), EMPLOYEE_CHANGES]

    def first_segment(self) -> int:
        return 1  # pass 0 is the carried rows

    def done_from_pass(self) -> int:
        return 1

    def base_dir(self, store: SnapshotStore, table: str) -> Path:
        return store.table_path(table, self.base.snapshot_id)

    async def first_pass(self, run: _Run) -> None:
        staged = run.staged
        store = staged.store
        stats = run.stats
        state = dict(staged.run_state)
        self.escalated = str(state.get("escalated", ""))

        stats.phase = "reading changes"
        records = await run.read_changes(self.since)
        if not run.feed.available and not self.escalated:
            self.escalated = f"the change feed is unavailable ({run.feed.note})"
        await run.record_changes(records)
        stats.phase = "listing"
        base_ids = _read_keys(self.base_dir(store, "employees"), "employee_id")
        listing = await run.relist(expected=len(base_ids))
        # set differences on sorted hashes (_idset): no hash table over every id string
        new = missing_from(listing, base_ids)
        removed = missing_from(base_ids, listing)
        reported = pa.array(sorted({str(r["employeeId"]) for r in records}), pa.string())
        not_listed = missing_from(reported, listing)
        changed = missing_from(reported, pa.concat_arrays([new, not_listed]))
        run.known = listing
        run.removed |= set(removed.to_pylist())
        stats.listed = stats.total_reported = len(listing)
        self.counts = {
            "base_rows": len(base_ids),
            "listed": len(listing),
            "change_records": len(records),
            "changed": len(changed),
            "new": len(new),
            "removed": len(removed),
        }

        # -- the sample: ask the tenant about employees the feed says did not change
        if "sample" in state:
            self.sample = dict(state["sample"])
            self.stale = {k: list(v) for k, v in self.sample.pop("stale", {}).items()}
        elif self.options.verify_sample and not self.escalated:
            refetched = pa.chunked_array([new, changed], pa.string()).combine_chunks()
            unchanged = missing_from(listing, refetched)
            ids = _pick(unchanged, self.options.verify_sample, self.options.sample_seed)
            stats.phase = "verifying a sample"
            await run.enqueue(sorted(set(ids) - run.done["employees"]))
            await run.queue.join()
            await run.flush_and_checkpoint()
            self.stale = _compare_sample(
                staged.path, staged.journal(), self.base_dir(store, "employees"), ids
            )
            self.sample = {"ids": ids, "size": len(ids)}
            staged.save_run_state(
                {**staged.run_state, "sample": {**self.sample, "stale": self.stale}}
            )
        sample_ids = pa.array(self.sample.get("ids", []), pa.string())
        rate = len(self.stale) / len(sample_ids) if len(sample_ids) else 0.0
        if not self.escalated and rate > self.options.max_miss_rate:
            self.escalated = (
                f"the sampled miss rate {rate:.1%} is above --max-miss-rate "
                f"{self.options.max_miss_rate:.1%}"
            )
        if self.escalated and not state.get("escalated"):
            log.warning("sync: refetching every employee: %s", self.escalated)
            staged.save_run_state({**staged.run_state, "escalated": self.escalated})

        # -- refetch what changed (or everything), carry the rest forward meanwhile
        stats.phase = "fetching changes"
        if self.escalated:
            fetch = listing.filter(pc.invert(pc.is_in(listing, value_set=sample_ids)))
        else:
            fetch = pa.chunked_array([changed, new], pa.string()).combine_chunks()
        done = run.done["employees"]
        todo = [i for i in fetch.to_pylist() if i not in done]
        carried: list[int] = [0]
        async with anyio.create_task_group() as tg:
            if not self.escalated:
                exclude = pa.chunked_array([fetch, removed, sample_ids], pa.string())
                tg.start_soon(self._carry, run, exclude.combine_chunks(), carried)
            await run.enqueue(todo)
            await run.queue.join()
        self.counts["carried"] = carried[0]
        self.counts["fetched"] = len(fetch) + len(sample_ids)

    async def _carry(self, run: _Run, exclude: pa.Array, carried: list[int]) -> None:
        """Stream the base rows that are not refetched into the new snapshot (pass 0)."""
        staged = run.staged
        if staged.run_state.get("carried") is not None:
            carried[0] = int(staged.run_state["carried"])
            return
        store = staged.store
        tables = [t for t in run.writers if t in ("employees", "employment_details")]
        stop = threading.Event()
        total = 0
        for table in tables:
            spec = store.spec(table)
            try:
                files, rows = await anyio.to_thread.run_sync(
                    _carry_table,
                    self.base_dir(store, table),
                    staged.table_dir(table),
                    spec,
                    exclude,
                    staged.snapshot_id,
                    stop,
                    abandon_on_cancel=True,
                )
            except BaseException:
                stop.set()  # the thread stops at its next batch and deletes its files
                raise
            staged.record_finished(table, files, 0)
            if table == "employees":
                total = rows
        staged.save_run_state({**staged.run_state, "carried": total})
        carried[0] = total

    def manifest(self, run: _Run) -> dict[str, Any]:
        # a sampled employee the feed reported during the run changed while we looked
        reported_later = {key[0] for key in run.feed.keys}
        stale = {k: v for k, v in self.stale.items() if k not in reported_later}
        by_field: dict[str, int] = {}
        for fields in stale.values():
            for name in fields:
                by_field[name] = by_field.get(name, 0) + 1
        size = int(self.sample.get("size", 0))
        return {
            "mode": "full" if self.escalated else "incremental",
            "base_snapshot_id": self.base.snapshot_id,
            "sync": {
                "base_snapshot_id": self.base.snapshot_id,
                "base_watermark": _iso(self.base_watermark),
                "changes_since": _iso(self.since),
                "counts": self.counts,
                "verify_sample": {
                    "size": size,
                    "stale": len(stale),
                    "miss_rate": round(len(stale) / size, 6) if size else None,
                    "misses_by_field": dict(sorted(by_field.items())),
                    "stale_ids": sorted(stale)[:MAX_STALE_IN_MANIFEST],
                },
                "full_reason": self.escalated or None,
            },
        }


# -- carrying rows forward --------------------------------------------------------------------


def _read_keys(directory: Path, key: str) -> pa.Array:
    """One column of every file of a committed table, as one array."""
    chunks = [batch.column(key) for batch in read_batches(parquet_files(directory), [key])]
    return pa.chunked_array(chunks, pa.string()).combine_chunks()


def _carry_table(
    source: Path,
    target: Path,
    spec: TableSpec,
    exclude: pa.Array,
    snapshot_id: str,
    stop: threading.Event,
) -> tuple[list[FinishedFile], int]:
    """Copy the rows of ``source`` whose key is not in ``exclude`` (runs in a thread)."""
    writer = PartitionedParquetWriter(target, spec, file_prefix="carry", snapshot_id=snapshot_id)
    rows = 0
    try:
        for path in parquet_files(source):
            with pq.ParquetFile(path) as parquet:
                for batch in parquet.iter_batches(
                    batch_size=CARRY_BATCH_ROWS, columns=spec.schema.names
                ):
                    if stop.is_set():
                        writer.abort()
                        return [], 0
                    keep = pc.invert(pc.is_in(batch.column(spec.key), value_set=exclude))
                    kept = batch.filter(keep)
                    if kept.num_rows:
                        writer.write(pa.RecordBatch.from_arrays(kept.columns, schema=spec.schema))
                        rows += kept.num_rows
        return writer.close(), rows
    except BaseException:
        writer.abort()
        raise


# -- the sample -------------------------------------------------------------------------------


def _pick(ids: pa.Array, k: int, seed: int | None) -> list[str]:
    if k >= len(ids):
        return sorted(ids.to_pylist())
    chosen = random.Random(seed).sample(range(len(ids)), k)
    return sorted(ids.take(pa.array(chosen, pa.int64())).to_pylist())


def _compare_sample(
    staging: Path, journal: list[Any], base_dir: Path, ids: list[str]
) -> dict[str, list[str]]:
    """Employee id -> the fields whose fetched value differs from the carried one."""
    if not ids:
        return {}
    wanted = pa.array(ids, pa.string())
    fresh_files = [
        str(staging / e.table / e.path) for e in journal if e.table == "employees" and e.pass_no
    ]
    fresh = _rows_of(fresh_files, wanted)
    base = _rows_of([str(p) for p in parquet_files(base_dir)], wanted)
    columns = [c for c in fresh.column_names if c != "snapshot_id" and c in base.column_names]
    fresh_by_id = {row["employee_id"]: row for row in fresh.select(columns).to_pylist()}
    stale: dict[str, list[str]] = {}
    for row in base.select(columns).to_pylist():
        now = fresh_by_id.get(row["employee_id"])
        if now is None:
            continue  # vanished or failed: nothing to compare
        fields = [c for c in columns if row[c] != now[c]]
        if fields:
            stale[row["employee_id"]] = fields
    return stale


def _rows_of(files: list[str], wanted: pa.Array) -> pa.Table:
    if not files:
        return pa.table({"employee_id": pa.array([], pa.string())})
    dataset = ds.dataset(files, format="parquet")
    return dataset.to_table(filter=pc.field("employee_id").isin(wanted))


# -- state ------------------------------------------------------------------------------------


def _state_path(store: SnapshotStore) -> Path:
    return store.state_dir / SYNC_STATE


def _load_state(store: SnapshotStore) -> dict[str, Any]:
    path = _state_path(store)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s (%s); using the base snapshot's manifest", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(store: SnapshotStore, manifest: dict[str, Any]) -> None:
    """After a commit: the new snapshot is the next round's base."""
    sync_info = manifest.get("sync") or {}
    previous = _load_state(store)
    state = {
        "snapshot_id": manifest.get("snapshot_id"),
        "mode": manifest.get("mode"),
        "watermark": manifest.get("watermark"),
        "committed_at": manifest.get("committed_at"),
        "base_snapshot_id": sync_info.get("base_snapshot_id"),
        "full_reason": sync_info.get("full_reason"),
        "miss_rate": (sync_info.get("verify_sample") or {}).get("miss_rate"),
        "last_full_snapshot_id": (
            manifest.get("snapshot_id")
            if manifest.get("mode") == "full"
            else previous.get("last_full_snapshot_id")
        ),
    }
    _write_atomically(_state_path(store), _dumps(state))


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
