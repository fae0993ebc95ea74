"""The export run: list ids -> bounded queue -> worker pool -> Parquet -> commit.

Stages and what bounds them:

* the pager lists ids page by page into a bounded work queue (backpressure
  stops the listing when workers fall behind);
* ``pool_size`` workers each take an id, fetch its profile (and its employment
  details when asked) through the :class:`~extractor._http.ApiClient`, whose
  every call waits on the one :class:`~extractor._rate.RateController`;
* fetched records collect into a shared batch handed to the table writers,
  which encode Parquet in a thread (the event loop never blocks on disk);
* every ``checkpoint_interval`` the writers close their files and the journal
  records them: that is what a rerun after a crash does not fetch again;
* catch-up passes list again and read ``employee-changes`` for the time the run
  spanned, refetching what was hired or changed and dropping what was removed,
  until a pass finds nothing new; then the snapshot is committed atomically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__
from ._auth import TokenProvider
from ._changes import CHANGE_SKEW, ChangeFeed, change_row
from ._config import ExportConfig
from ._errors import (
    AuthError,
    ExtractError,
    ForbiddenError,
    NotFoundError,
    PermanentError,
    SnapshotError,
    TransientError,
)
from ._http import ApiClient, open_pool
from ._idset import SeenIds, missing_from
from ._pager import list_employee_ids
from ._rate import DEFAULT_RATE_SETTINGS, Outcome, RateController, RateSettings
from ._schema import EMPLOYEES, EMPLOYMENT_DETAILS, SCHEMA_VERSION, TableSpec
from ._sink import AsyncTableWriter
from ._snapshot import SnapshotStore
from ._staging import StagedSnapshot
from ._stats import RunStats

__all__ = ["ExportResult", "Job", "export", "run_job"]

log = logging.getLogger("extractor")

#: Work queue length: enough to keep every worker busy, small enough to stay flat.
QUEUE_SIZE = 4096
#: Records handed to a table writer at once.
WRITE_BATCH = 1000
#: Page fetches in flight while listing in pass 0, where pages queue behind profiles anyway.
LISTING_CONCURRENCY = 8
#: Page fetches in flight when a catch-up pass lists again. Nothing else is running then,
#: so the listing is the run's critical path: at 8 a 20,000-employee relist took 13 round
#: trips (0.36 s at 20 ms); the rate controller still paces every page.
RELIST_CONCURRENCY = 64
#: The fewest connections a run opens when the file-descriptor limit is low.
MIN_POOL = 16
#: Failed ids listed in the manifest (the count is always exact).
MAX_FAILED_IN_MANIFEST = 1000


@dataclass
class ExportResult:
    """What an export did. ``exit_code`` follows PRODUCT.md (0, 1, 3)."""

    snapshot_id: str
    committed: bool
    complete: bool
    manifest_path: Path | None
    manifest: dict[str, Any]
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if not self.committed:
            return 1
        return 0 if self.complete else 3


@dataclass
class _CatchUp:
    pass_no: int
    listed: int = 0
    new: int = 0
    removed: int = 0
    changed: int = 0
    retried_failed: int = 0
    change_records: int = 0

    @property
    def found_anything(self) -> bool:
        return bool(self.new or self.removed or self.changed or self.retried_failed)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fingerprint(config: ExportConfig) -> dict[str, Any]:
    """What must match for a rerun to continue an unfinished snapshot."""
    return {
        "base_url": config.base_url,
        "client_id": config.credentials.client_id,
        "employment_details": config.employment_details,
        "schema_version": SCHEMA_VERSION,
    }


class _Run:
    """One export run; holds the state its stages share."""

    def __init__(
        self,
        config: ExportConfig,
        stats: RunStats,
        controller: RateController,
        staged: StagedSnapshot,
        started_at: datetime,
        segment: int,
        done: dict[str, set[str]],
    ) -> None:
        self.config = config
        self.stats = stats
        self.controller = controller
        self.staged = staged
        self.started_at = started_at
        self.pass_no = segment
        #: Every change before this moment is in the snapshot (or refetched): the start of
        #: the last catch-up pass, else the run's start. The next sync reads the feed from it.
        self.watermark = started_at
        self.done = done  # table -> ids already durable from an earlier segment
        # Pass 0 deduplicates by hash (SeenIds: 8 bytes an id) and keeps the exact ids it
        # enqueued as Arrow chunks; afterwards every known id lives in `known`, one Arrow
        # array (1,000,000 ids: about 16 MB, against about 150 MB as a set of str).
        self.seen = SeenIds()
        self.listed_chunks: list[pa.Array] = []
        self.known: pa.Array = pa.array([], pa.string())
        self.removed: set[str] = set()
        self.latest_pass: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.catch_ups: list[_CatchUp] = []
        self.feed = ChangeFeed(config.dialect, config.page_size, started_at - CHANGE_SKEW)
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self.writers: dict[str, AsyncTableWriter] = {}
        self.client: ApiClient
        self._checkpoint_lock = asyncio.Lock()

    # -- writing ------------------------------------------------------------

    async def _emit(self, table: str, record: dict[str, Any]) -> None:
        batch = self._batches[table]
        batch.append(record)
        if len(batch) >= WRITE_BATCH:
            self._batches[table] = []
            await self.writers[table].write(batch)

    async def flush_and_checkpoint(self) -> None:
        """Hand every buffered record to its writer, close files, journal them."""
        async with self._checkpoint_lock:
            pass_no = self.pass_no
            for table, batch in self._batches.items():
                if batch:
                    self._batches[table] = []
                    await self.writers[table].write(batch)
            for table, writer in self.writers.items():
                files = await writer.checkpoint()
                if files:
                    self.staged.record_finished(table, files, pass_no)

    async def checkpointer(self) -> None:
        while True:
            await anyio.sleep(self.config.checkpoint_interval)
            await self.flush_and_checkpoint()

    # -- fetching -----------------------------------------------------------

    async def worker(self) -> None:
        queue = self.queue
        while True:
            employee_id = await queue.get()
            try:
                await self._fetch_one(employee_id)
            finally:
                queue.task_done()

    async def _fetch_one(self, employee_id: str) -> None:
        client = self.client
        need_profile = employee_id not in self.done["employees"]
        need_details = (
            self.config.employment_details and employee_id not in self.done["employment_details"]
        )
        try:
            profile = None
            if need_profile:
                profile = await client.get_profile(employee_id)
                if not isinstance(profile, dict) or profile.get("employeeId") != employee_id:
                    self._fail(employee_id, "profile body is not this employee's record")
                    return
            details = None
            if need_details:
                details = await client.get_json(
                    client.employment_details_path(employee_id),
                    what=f"employment details {employee_id}",
                )
                if not isinstance(details, dict):
                    self._fail(employee_id, "employment details body is not an object")
                    return
                details.setdefault("employeeId", employee_id)
        except NotFoundError:
            # Deleted between listing and fetch: not a failure, and not in the snapshot.
            self.stats.vanished += 1
            self.removed.add(employee_id)
            return
        except (AuthError, ForbiddenError):
            raise  # every other call would fail the same way: stop the run
        except (TransientError, PermanentError) as exc:
            self._fail(employee_id, str(exc))
            return
        self.failed.pop(employee_id, None)
        self.stats.fetched += 1
        if profile is not None:
            await self._emit("employees", profile)
            self.stats.written += 1
        if details is not None:
            await self._emit("employment_details", details)

    def _fail(self, employee_id: str, reason: str) -> None:
        if employee_id not in self.failed:
            self.stats.failed += 1
        self.failed[employee_id] = reason

    async def enqueue(self, ids: Iterable[str]) -> None:
        for employee_id in ids:
            self.stats.queued += 1
            await self.queue.put(employee_id)

    # -- pass 0: list everything, fetch what is not yet written --------------

    async def first_pass(self) -> None:
        done_profiles = self.done["employees"]
        done_details = self.done["employment_details"]
        details = self.config.employment_details
        seen = self.seen
        stats = self.stats

        async def on_page(ids: list[str]) -> None:
            if done_profiles:
                kept = []
                for employee_id in ids:
                    if employee_id in done_profiles and (
                        not details or employee_id in done_details
                    ):
                        stats.skipped_done += 1  # written before a crash: not fetched again
                    else:
                        kept.append(employee_id)
                ids = kept
            fresh = seen.add_new(ids)  # a shifted page may repeat ids
            if fresh:
                self.listed_chunks.append(pa.array(fresh, pa.string()))
            stats.listed = len(seen) + stats.skipped_done
            await self.enqueue(fresh)

        def on_total(total: int) -> None:
            stats.total_reported = total

        stats.phase = "listing+fetching"
        await list_employee_ids(
            self.client,
            self.config.dialect,
            on_page,
            page_size=self.config.page_size,
            concurrency=LISTING_CONCURRENCY,
            on_total=on_total,
        )
        stats.phase = "fetching"
        await self.queue.join()
        # Pass 0 is done: from here on, ids are compared as Arrow arrays, and every
        # id a catch-up pass enqueues is fetched in full.
        # The listed chunks hold each id once (SeenIds) and never a done id: no unique()
        # (a hash table over every id string: the run's memory peak at 1M employees).
        chunks = [*self.listed_chunks, pa.array(list(done_profiles), pa.string())]
        self.known = pa.chunked_array(chunks, pa.string()).combine_chunks()
        self.seen = SeenIds()
        self.listed_chunks = []
        self.done = {"employees": set(), "employment_details": set()}
        stats.listed = len(self.known)

    # -- catch-up passes -------------------------------------------------------

    async def relist(self, expected: int | None = None) -> pa.Array:
        """Every id the tenant lists now, each once (a shifted page may repeat ids).

        ``expected`` (default: the ids known so far) sizes the first wave of pages.
        """
        pages: list[pa.Array] = []
        repeats: list[str] = []
        seen = SeenIds()

        async def on_page(ids: list[str]) -> None:
            fresh = seen.add_new(ids)
            if len(fresh) < len(ids):
                taken = set(fresh)
                repeats.extend(i for i in ids if i not in taken)
            if fresh:
                pages.append(pa.array(fresh, pa.string()))

        await list_employee_ids(
            self.client,
            self.config.dialect,
            on_page,
            page_size=self.config.page_size,
            concurrency=RELIST_CONCURRENCY,
            expected_total=expected if expected is not None else len(self.known),
        )
        listing = pa.chunked_array(pages, pa.string()).combine_chunks()
        if repeats:  # a repeat may be a different id that merely shares a hash: keep it
            unique = pc.unique(pa.array(repeats, pa.string()))
            lost = missing_from(unique, listing)
            if len(lost):
                listing = pa.concat_arrays([listing, lost])
        return listing

    async def read_changes(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """New change records since ``since`` (default: the run's start, less the allowed
        clock skew), deduplicated across calls. An unusable feed returns [] and is noted."""
        return await self.feed.read(self.client, since)

    async def record_changes(self, records: list[dict[str, Any]]) -> None:
        """Keep change records in the ``employee_changes`` table when the job writes one."""
        writer = self.writers.get("employee_changes")
        if writer is not None and records:
            await writer.write([change_row(r) for r in records])

    async def catch_up(self, number: int) -> _CatchUp:
        self.pass_no += 1
        self.staged.save_run_state({**self.staged.run_state, "pass_no": self.pass_no})
        report = _CatchUp(pass_no=number)
        self.stats.phase = f"catch-up {number}"
        self.watermark = _utcnow()
        listing = await self.relist()
        report.listed = len(listing)
        changes = await self.read_changes()
        await self.record_changes(changes)
        report.change_records = len(changes)
        known = self.known
        new_ids = set(missing_from(listing, known).to_pylist())
        gone = set(missing_from(known, listing).to_pylist())
        removed_now = gone - self.removed
        changed_candidates = {r["employeeId"] for r in changes}
        retry_candidates = set(self.failed)
        still_listed = _members(listing, changed_candidates | retry_candidates)
        changed = (changed_candidates & still_listed) - new_ids
        retry = retry_candidates & still_listed
        for employee_id in retry_candidates - still_listed:
            # failed, and gone from the tenant since: nothing left to fetch
            self.failed.pop(employee_id)
            self.stats.failed -= 1
        report.new, report.removed, report.changed = len(new_ids), len(removed_now), len(changed)
        report.retried_failed = len(retry - changed - new_ids)
        self.removed |= removed_now
        self.known = listing
        for employee_id in changed | retry:
            # a refetch replaces the earlier row: the commit drops rows of earlier passes
            self.latest_pass[employee_id] = self.pass_no
        refetch = new_ids | changed | retry
        self.stats.listed = len(listing)
        self.stats.total_reported = len(listing)
        await self.enqueue(sorted(refetch))
        await self.queue.join()
        return report


def _members(array: pa.Array, candidates: set[str]) -> set[str]:
    """The candidates that occur in ``array`` (one vectorised lookup)."""
    if not candidates:
        return set()
    probe = pa.array(sorted(candidates), pa.string())
    return set(probe.filter(pc.is_in(probe, value_set=array)).to_pylist())


def rate_settings_for(config: ExportConfig) -> RateSettings:
    changes: dict[str, Any] = {}
    if config.max_rate is not None:
        changes["max_rate"] = config.max_rate
        changes["initial_rate"] = min(DEFAULT_RATE_SETTINGS.initial_rate, config.max_rate)
    ceiling = config.max_concurrency
    if ceiling is None:
        # One socket per request in flight: leave half the process's file descriptors to
        # Parquet files, logs and the rest (a soft limit of 1024 is common).
        fd_budget = _open_files_limit() // 2
        if fd_budget < DEFAULT_RATE_SETTINGS.max_concurrency:
            ceiling = max(MIN_POOL, fd_budget)
    if ceiling is not None:
        changes["max_concurrency"] = ceiling
        changes["initial_concurrency"] = min(DEFAULT_RATE_SETTINGS.initial_concurrency, ceiling)
    return replace(DEFAULT_RATE_SETTINGS, **changes)


def _open_files_limit() -> int:
    try:
        import resource
    except ImportError:  # not POSIX
        return 1 << 20
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Job:
    """What a run does in its first pass and adds to its manifest.

    The full export lists every id and fetches each one; ``extractor._sync`` plugs in a
    job that fetches only what changed and carries the rest forward. Everything else (the
    session, the controller, the workers, checkpoints, catch-up passes, commit) is shared.
    """

    mode = "full"

    def fingerprint(self, config: ExportConfig) -> dict[str, Any]:
        """What must match for a rerun to continue an unfinished snapshot."""
        return _fingerprint(config)

    def tables(self, config: ExportConfig) -> list[TableSpec]:
        return [EMPLOYEES] + ([EMPLOYMENT_DETAILS] if config.employment_details else [])

    def first_segment(self) -> int:
        """The pass number of a new snapshot's first segment."""
        return 0

    def done_from_pass(self) -> int:
        """On resume, ids in journaled files from this pass on are not fetched again."""
        return 0

    async def first_pass(self, run: _Run) -> None:
        await run.first_pass()

    def manifest(self, run: _Run) -> dict[str, Any]:
        return {}


async def export(
    config: ExportConfig,
    *,
    stats: RunStats | None = None,
    on_start: Callable[[RunStats, RateController], None] | None = None,
) -> ExportResult:
    """Export every employee into a committed Parquet snapshot under ``config.out``.

    Resumes the unfinished snapshot of an earlier run with the same tenant and
    settings (unless ``config.fresh``). Returns an :class:`ExportResult`; raises
    :class:`ExtractError` subclasses only for problems before the run starts
    (e.g. the output folder is locked by another run).
    """
    stats = stats or RunStats()
    store = SnapshotStore(config.out)
    with store.lock():
        return await run_job(config, store, Job(), stats, on_start)


async def run_job(
    config: ExportConfig,
    store: SnapshotStore,
    job: Job,
    stats: RunStats,
    on_start: Callable[[RunStats, RateController], None] | None = None,
) -> ExportResult:
    """Run ``job`` to a committed snapshot; the caller holds ``store.lock()``."""
    fingerprint = job.fingerprint(config)
    staged = store.in_progress()
    if staged is not None and (config.fresh or staged.run_state.get("fingerprint") != fingerprint):
        reason = "--fresh" if config.fresh else "its settings differ from this run's"
        log.warning("discarding unfinished snapshot %s (%s)", staged.snapshot_id, reason)
        store.discard(staged)
        staged = None
    if staged is None and store.recovered_commits:
        # the previous run was killed while committing; that commit is now finished
        snapshot_id = store.recovered_commits[-1]
        manifest = store.read_manifest(snapshot_id)
        log.info("finished the interrupted commit of snapshot %s", snapshot_id)
        return ExportResult(
            snapshot_id=snapshot_id,
            committed=True,
            complete=bool(manifest.get("complete")),
            manifest_path=store.manifest_path(snapshot_id),
            manifest=manifest,
        )
    done: dict[str, set[str]] = {"employees": set(), "employment_details": set()}
    if staged is None:
        started_at = _utcnow()
        snapshot_id = store.new_snapshot_id(started_at)
        segment = job.first_segment()
        staged = store.begin(
            snapshot_id,
            {"fingerprint": fingerprint, "started_at": _iso(started_at), "pass_no": segment},
        )
        log.info("starting snapshot %s (%s)", snapshot_id, job.mode)
    else:
        staged.resume()
        started_at = datetime.fromisoformat(
            str(staged.run_state["started_at"]).replace("Z", "+00:00")
        )
        # a new segment's rows must outrank every row already written
        segment = int(staged.run_state.get("pass_no", 0)) + 1
        staged.save_run_state({**staged.run_state, "pass_no": segment})
        since = job.done_from_pass()
        done["employees"] = staged.written_ids("employees", min_pass=since)
        if config.employment_details:
            done["employment_details"] = staged.written_ids("employment_details", min_pass=since)
        log.info(
            "resuming snapshot %s: %d employees already written",
            staged.snapshot_id,
            len(done["employees"]),
        )
    resumed_from = len(done["employees"])

    settings = rate_settings_for(config)
    controller = RateController(settings)
    pool_size = settings.max_concurrency
    if on_start is not None:
        on_start(stats, controller)
    run = _Run(config, stats, controller, staged, started_at, segment, done)
    error: str | None = None
    wall_start = time.monotonic()
    async with open_pool(config.base_url, config.timeouts, limit=pool_size) as pool:
        tokens = TokenProvider(
            pool=pool,
            token_url=config.base_url + config.dialect.token_path,
            credentials=config.credentials,
            retry=config.retry,
            acquire=controller.acquire,
            release=lambda permit, ok: controller.release(
                permit, Outcome.SUCCESS if ok else Outcome.THROTTLED
            ),
            stats=stats.requests,
        )
        run.client = ApiClient(
            pool=pool,
            base_url=config.base_url,
            credentials=config.credentials,
            dialect=config.dialect,
            tokens=tokens,
            controller=controller,
            retry=config.retry,
            stats=stats.requests,
        )
        for spec in job.tables(config):
            run.writers[spec.name] = AsyncTableWriter(
                staged.table_dir(spec.name),
                spec,
                file_prefix=f"part-{segment:03d}",
                snapshot_id=staged.snapshot_id,
            )
            run._batches[spec.name] = []
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(pool_size):
                    tg.start_soon(run.worker)
                tg.start_soon(run.checkpointer)
                await job.first_pass(run)
                await run.flush_and_checkpoint()
                for number in range(1, config.catch_up_passes + 1):
                    report = await run.catch_up(number)
                    run.catch_ups.append(report)
                    await run.flush_and_checkpoint()
                    if not report.found_anything:
                        break
                tg.cancel_scope.cancel()
            # The commit does not need the listed ids: at 1M employees they are 20 MB
            # that would sit under the commit's own peak (key checks, org graph).
            run.known = pa.array([], pa.string())  # stats.listed keeps its length
            for table, writer in run.writers.items():
                files = await writer.close()
                if files:
                    staged.record_finished(table, files, run.pass_no)
        except BaseException as exc:
            error = _describe(exc)
            # Keep whatever is written so a rerun resumes; never commit. Shielded: after
            # a SIGTERM or a cancel, the awaits of this cleanup would be cancelled too.
            with anyio.CancelScope(shield=True):
                for table, writer in run.writers.items():
                    try:
                        pending, run._batches[table] = run._batches[table], []
                        if pending:
                            await writer.write(pending)
                        files = await writer.close()
                        if files:
                            staged.record_finished(table, files, run.pass_no)
                    except SnapshotError as close_error:  # already says what to do
                        log.warning("could not close the %s writer: %s", table, close_error)
                    except Exception:
                        log.warning("could not close the %s writer", table, exc_info=True)
            if not isinstance(exc, Exception):
                raise
    elapsed = time.monotonic() - wall_start
    rejected = {
        r.employee_id or "<record without employeeId>": r.reason
        for writer in run.writers.values()
        for r in writer.rejected
    }
    for employee_id, reason in rejected.items():
        run._fail(employee_id, f"record rejected: {reason}")
    complete = error is None and not run.failed
    manifest = {**_manifest(run, config, elapsed, complete, resumed_from), **job.manifest(run)}
    if error is not None or (run.failed and not config.allow_partial):
        if error is None:
            error = (
                f"{len(run.failed)} employee(s) could not be fetched after retries; nothing "
                "was committed. Rerun the same command to retry them (written work is kept), "
                "or pass --allow-partial to commit without them."
            )
        staged.save_run_state({**staged.run_state, "last_error": error})
        return ExportResult(
            snapshot_id=staged.snapshot_id,
            committed=False,
            complete=False,
            manifest_path=None,
            manifest=manifest,
            failed=dict(run.failed),
            error=error,
        )
    stats.phase = "committing"
    manifest_path = store.commit(
        staged,
        manifest,
        removed=run.removed,
        latest_pass=run.latest_pass,
        annotate=_org_graph,
    )
    stats.phase = "done"
    final = store.read_manifest(staged.snapshot_id)
    return ExportResult(
        snapshot_id=staged.snapshot_id,
        committed=True,
        complete=complete,
        manifest_path=manifest_path,
        manifest=final,
        failed=dict(run.failed),
    )


def _org_graph(staging: Path) -> dict[str, Any]:
    """The org-graph check counts of the staged employees table, for the manifest.

    A check that cannot run is noted, never a reason to lose the snapshot."""
    from ._orgcheck import org_summary  # numpy and pyarrow only: lean at commit time

    # The commit's key checks just freed their arrays: hand that memory back before the
    # graph's arrays are built, or the two peaks add up (at 1M employees, +55 MB).
    pa.default_memory_pool().release_unused()
    try:
        return {"org_graph": org_summary(staging / "employees")}
    except Exception as exc:  # the data is committed either way
        log.warning("org-graph checks failed: %s", exc)
        return {"org_graph": {"error": f"{type(exc).__name__}: {exc}"}}


def _describe(exc: BaseException) -> str:
    """One readable line for the first real error inside a task-group failure."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = inner[0] if inner else exc.exceptions[0]
    if isinstance(exc, ExtractError):
        return str(exc)
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _manifest(
    run: _Run, config: ExportConfig, elapsed: float, complete: bool, resumed_from: int
) -> dict[str, Any]:
    stats = run.stats
    failed = sorted(run.failed)
    return {
        "format_version": 1,
        "tool": f"ukg-extract {__version__}",
        "mode": "full",
        "complete": complete,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(_utcnow()),
        "base_url": config.base_url,
        "schema_version": SCHEMA_VERSION,
        "tables_exported": sorted(run.writers),
        "counts": {
            "listed": run.stats.listed,
            "total_reported": stats.total_reported,
            "fetched_this_run": stats.fetched,
            "resumed_from_checkpoint": resumed_from,
            "vanished": stats.vanished,
            "removed_during_run": len(run.removed),
            "failed": len(failed),
        },
        "failed_ids": failed[:MAX_FAILED_IN_MANIFEST],
        "requests": stats.requests.as_dict(elapsed),
        "rate_controller": run.controller.snapshot(),
        "catch_up": [
            {
                "pass": c.pass_no,
                "listed": c.listed,
                "change_records": c.change_records,
                "new": c.new,
                "changed": c.changed,
                "removed": c.removed,
                "retried_failed": c.retried_failed,
            }
            for c in run.catch_ups
        ],
        "consistent_at_commit": bool(run.catch_ups) and not run.catch_ups[-1].found_anything,
        "watermark": _iso(run.watermark),
        "change_feed": "used" if run.feed.available else run.feed.note,
        "duration_seconds": round(elapsed, 3),
    }
