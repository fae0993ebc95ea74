"""Org-graph checks on one snapshot: is the reporting tree a warehouse can build whole?

``supervisor_id`` holds the manager's ``employee_id``; ``company_code`` separates legal
entities. For one snapshot this module finds:

* **dangling supervisor ids**: ``supervisor_id`` set but not an ``employee_id`` of the snapshot
  (a manager deleted, or never exported);
* **cycles**: employees whose chain of managers comes back to them (a self-reference is a cycle
  of one); employees *under* a cycle (their chain runs into one) are counted apart;
* **active employees reporting to terminated managers** (status ``Terminated`` / ``T``);
* **cross-company reporting lines**: manager in another ``company_code``;
* **depth**: the level of each employee (1 = no manager, or a dangling one), its maximum and
  its histogram, for every employee whose chain ends (not on or under a cycle).

Lean, because every export runs :func:`org_summary` at commit time: the files are read
through pyarrow a batch at a time and each row leaves only numbers behind (two 64-bit hashes
of its ``employee_id``, a company number, a terminated flag; then its manager's row number),
about 30 MB at a million employees. polars is not imported for it (an export has no other use
for polars). Ids are matched by sorting hashes (:func:`_link`); levels and cycles come from
pointer jumping over numpy arrays (``log2(depth)`` rounds of ``ancestor = ancestor[ancestor]``).
:func:`check_org` adds the examples ``ukg-extract check`` prints, reading back the strings of
those rows only; :func:`write_reporting_lines` writes the ``reporting_lines`` table (employee,
each manager up the chain, level) for warehouses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._errors import SnapshotError
from ._read import KEY, Hashes, TableSource, TextColumns, hash_text, snapshot_files
from ._schema import SNAPSHOT_COLUMN
from ._sink import fsync_dir, io_error

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "REPORTING_LINES_TABLE",
    "OrgReport",
    "check_org",
    "org_summary",
    "write_reporting_lines",
]

REPORTING_LINES_TABLE = "reporting_lines"
SUPERVISOR = "supervisor_id"
COMPANY = "company_code"
STATUS = "employment_status"
_COLUMNS = (KEY, SUPERVISOR, COMPANY, STATUS)
_NONE = -1
#: How many examples of each problem a report keeps.
DEFAULT_SAMPLE = 20
#: Longest cycle a report spells out member by member.
_CYCLE_SHOWN = 12
#: Rows per batch (and row group) of the reporting_lines table.
_LINES_BATCH = 131_072
#: Nodes per step of the pointer jumping: bounds its temporary arrays.
_CHUNK = 65_536

#: A polars frame, a Parquet file, a folder of them, or a list of files.
Source: TypeAlias = TableSource
#: Row numbers (and levels): 32 bits are plenty and halve the arrays.
Rows = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class OrgReport:
    """Counts and examples of what is wrong with one snapshot's reporting graph."""

    counts: dict[str, int]
    #: level -> employees at that level (1 = top)
    depth_histogram: dict[int, int]
    #: examples: ``employee_id``, ``supervisor_id``
    dangling: pl.DataFrame
    #: examples, each cycle as its member ids in reporting order (long ones cut short)
    cycles: list[list[str]]
    #: examples: ``employee_id``, ``employment_status``, ``supervisor_id``, ``supervisor_status``
    reporting_to_terminated: pl.DataFrame
    #: examples: ``employee_id``, ``company_code``, ``supervisor_id``, ``supervisor_company``
    cross_company: pl.DataFrame
    #: the length of each example cycle (the lists in ``cycles`` may be cut short)
    cycle_lengths: list[int] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Employees with a problem of any kind (what ``check --strict`` fails on)."""
        c = self.counts
        return (
            c["dangling_supervisor"]
            + c["on_cycle"]
            + c["under_cycle"]
            + c["active_reporting_to_terminated"]
            + c["cross_company"]
        )


# -- rows to numbers --------------------------------------------------------------------------


def _not_unique() -> SnapshotError:
    return SnapshotError(
        f"{KEY} is not unique in this table: the org graph needs one row per employee "
        "(read one snapshot, not several)"
    )


#: Unicode White_Space: what polars' ``str.strip_chars()`` trims (``str.strip()`` would also
#: trim U+001C..U+001F).
_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
_TERMINATED = frozenset({"terminated", "t"})


def _is_terminated_text(value: str | None) -> bool:
    """``_diff.is_terminated`` for one value, without polars: ``Terminated`` or ``T``, any
    case, surrounding white space ignored; null is not terminated."""
    return value is not None and value.strip(_WHITE_SPACE).lower() in _TERMINATED


def _distinct(values: Any) -> tuple[list[str | None], npt.NDArray[np.intp]]:
    """(the distinct values of a text array, then None; each row's position in that list)."""
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary.to_pylist()
    return [*distinct, None], np.asarray(pc.fill_null(encoded.indices, len(distinct)))


def _nodes(table: TextColumns) -> tuple[Hashes, Hashes, npt.NDArray[np.int32], Bools]:
    """One pass: (two hashes of each ``employee_id``, company number, terminated) by row."""
    n = table.rows
    id1, id2 = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    company, terminated = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.bool_)
    # A number per company_code value, the same in every batch (a tenant has a handful).
    numbers: dict[str | None, int] = {None: _NONE}
    offset = 0
    for ids, companies, statuses in table.batches([KEY, COMPANY, STATUS]):
        rows = slice(offset, offset + len(ids))
        id1[rows], id2[rows] = hash_text(ids)
        values, index = _distinct(companies)
        company[rows] = np.array([numbers.setdefault(v, len(numbers)) for v in values])[index]
        values, index = _distinct(statuses)
        terminated[rows] = np.array([_is_terminated_text(v) for v in values])[index]
        offset += len(ids)
    if offset != n:
        raise SnapshotError(f"the employees files changed while being read ({offset} != {n} rows)")
    return id1, id2, company, terminated


def _link(table: TextColumns, id1: Hashes, id2: Hashes) -> tuple[Rows, Bools]:
    """(row number of each employee's manager, _NONE when none or dangling; has a
    ``supervisor_id``). Sorts ``id1`` in place.

    The first hash of the employee ids is sorted and each supervisor id's first hash
    searched in it; the second hash confirms a match (a false match needs both to collide,
    about 2**-128). The supervisor ids are read a batch at a time in a second pass. Should
    two rows share the first hash, their ids are read back: equal ids are refused (not one
    snapshot), different ones (a real collision, about 2**-64 per pair) fall back to a join
    on the strings.
    """
    n = table.rows
    order = np.argsort(id1).astype(np.int32)
    id1.sort()
    shared = np.flatnonzero(id1[1:] == id1[:-1])
    if shared.size:
        sharing = np.unique(order[np.concatenate([shared, shared + 1])])
        ids = table.take(sharing, [KEY]).column(KEY)
        if pc.count_distinct(ids, mode="all").as_py() != len(ids):
            raise _not_unique()
        return _link_by_join(table)
    parent = np.empty(n, dtype=np.int32)
    has_supervisor = np.empty(n, dtype=np.bool_)
    offset = 0
    for (supervisors,) in table.batches([SUPERVISOR]):
        rows = slice(offset, offset + len(supervisors))
        sup1, sup2 = hash_text(supervisors)
        position = np.minimum(np.searchsorted(id1, sup1), n - 1)
        candidate = order[position]
        known = np.asarray(supervisors.is_valid())
        match = known & (id1[position] == sup1) & (id2[candidate] == sup2)
        parent[rows] = np.where(match, candidate, _NONE)
        has_supervisor[rows] = known
        offset += len(supervisors)
    return parent, has_supervisor


def _link_by_join(table: TextColumns) -> tuple[Rows, Bools]:
    """:func:`_link` by a join on the strings (when two employee ids share a hash)."""
    import polars as pl

    text = pa.large_string()
    parts = [
        pa.table({KEY: ids.cast(text), SUPERVISOR: supervisors.cast(text)})
        for ids, supervisors in table.batches([KEY, SUPERVISOR])
    ]
    frame = pl.from_arrow(pa.concat_tables(parts))
    assert isinstance(frame, pl.DataFrame)
    return _parents_by_join(frame), frame.get_column(SUPERVISOR).is_not_null().to_numpy()


def _parents(source: Source) -> Rows:
    """Row number of each employee's manager (_NONE: no supervisor id, or a dangling one)."""
    table = TextColumns(source, _COLUMNS)
    id1, id2, _, _ = _nodes(table)
    return _link(table, id1, id2)[0]


def _parents_by_join(data: pl.DataFrame) -> Rows:
    """What :func:`_parents` computes, by a join on the strings (``KEY``, ``SUPERVISOR``)."""
    import polars as pl

    rows = data.select(pl.col(KEY), pl.int_range(data.height, dtype=pl.Int64).alias("_row"))
    joined = data.select(SUPERVISOR).join(
        rows, left_on=SUPERVISOR, right_on=KEY, how="left", maintain_order="left"
    )
    return joined.get_column("_row").fill_null(_NONE).to_numpy().astype(np.int32)


# -- the graph --------------------------------------------------------------------------------


@dataclass
class _Graph:
    """The reporting graph as arrays indexed by row number (no strings)."""

    parent: Rows  # row number of the manager, _NONE when none or dangling
    has_supervisor: Bools
    level: Rows  # 1 at the top; 0 for employees on or under a cycle
    on_cycle: Bools
    cycle_label: Rows  # for each employee on a cycle, by row: the cycle's smallest row
    terminated: Bools
    company: npt.NDArray[np.int32]  # a number per company_code value, _NONE for null

    def to_terminated(self) -> Bools:
        """Active (not terminated) employees whose manager is terminated."""
        known = self.parent != _NONE
        mask: Bools = known & ~self.terminated
        return mask & self.terminated[np.where(known, self.parent, 0)]

    def cross_company(self) -> Bools:
        """Employees whose manager's ``company_code`` differs (null differs from a value)."""
        known: Bools = self.parent != _NONE
        differs: Bools = self.company != self.company[np.where(known, self.parent, 0)]
        return known & differs


def _graph(table: TextColumns) -> _Graph:
    id1, id2, company, terminated = _nodes(table)
    parent, has_supervisor = _link(table, id1, id2)
    del id1, id2
    n = table.rows
    level, resolved = _levels(parent)
    on_cycle = np.zeros(n, dtype=bool)
    label = np.zeros(0, dtype=np.int32)
    unresolved = np.flatnonzero(~resolved).astype(np.int32)
    del resolved
    if unresolved.size:
        # After >= n steps every unresolved chain sits on its cycle; the map is a bijection on
        # each cycle, so the nodes reached are exactly the cycle members.
        reached = _jump(parent, unresolved, steps_log2=int(np.ceil(np.log2(n + 1))) + 1)
        members = np.unique(reached)
        on_cycle[members] = True
        label = _cycle_minimum(parent, members, n)
    return _Graph(
        parent=parent,
        has_supervisor=has_supervisor,
        level=level,
        on_cycle=on_cycle,
        cycle_label=label,
        terminated=terminated,
        company=company,
    )


def _levels(parent: Rows) -> tuple[Rows, Bools]:
    """Level of each node (1 at the top) by pointer jumping; unresolved: on or under a cycle.

    Each round moves every pending node's (ancestor, distance) pair to its ancestor's, a
    chunk at a time so that no temporary outgrows a chunk. A node may read an ancestor that
    already moved on in this round: the pair it reads is still consistent and only jumps
    further, so ``log2(depth) + 1`` rounds still resolve every chain that ends.
    """
    n = parent.size
    ancestor = parent.copy()
    distance = (parent != _NONE).astype(np.int32)
    active = np.arange(n, dtype=np.int32)[parent != _NONE]
    for _ in range(int(np.ceil(np.log2(n + 1))) + 1):
        if not active.size:
            break
        pending = np.empty(active.size, dtype=np.bool_)
        for start in range(0, active.size, _CHUNK):
            nodes = active[start : start + _CHUNK]
            up = ancestor[nodes]
            # Capped at n: a chain that ends is shorter; on a cycle the sum would only grow.
            distance[nodes] = np.minimum(distance[nodes] + distance[up], n)
            ancestor[nodes] = jumped = ancestor[up]
            pending[start : start + _CHUNK] = jumped != _NONE
        active = active[pending]
    resolved = ancestor == _NONE
    del ancestor
    distance += 1
    distance[~resolved] = 0
    return distance, resolved


def _jump(parent: Rows, nodes: Rows, *, steps_log2: int) -> Rows:
    """The ``2**steps_log2``-th ancestor of each of ``nodes`` (all on or under cycles).

    Doubling only over ``nodes`` is enough: the manager of a node on or under a cycle is on
    or under one too, so every entry read is one being doubled.
    """
    table = parent.copy()
    for _ in range(steps_log2):
        table[nodes] = table[table[nodes]]
    return table[nodes]


def _cycle_minimum(parent: Rows, members: Rows, n: int) -> Rows:
    """For each cycle member: the smallest row number on its cycle (labels the cycle)."""
    minimum = np.arange(n, dtype=np.int32)
    hop = parent.copy()
    rounds = int(np.ceil(np.log2(members.size + 1))) + 1
    for _ in range(rounds):
        up = hop[members]
        minimum[members] = np.minimum(minimum[members], minimum[up])
        hop[members] = hop[up]
    return minimum[members]


# -- reports ----------------------------------------------------------------------------------


def _counts(graph: _Graph) -> dict[str, int]:
    n = graph.parent.size
    has_supervisor = graph.has_supervisor
    return {
        "employees": n,
        "with_supervisor": int(has_supervisor.sum()),
        "top_level": int((~has_supervisor).sum()),
        "dangling_supervisor": int((has_supervisor & (graph.parent == _NONE)).sum()),
        "self_supervised": int((graph.parent == np.arange(n)).sum()),
        "on_cycle": int(graph.on_cycle.sum()),
        "cycles": int(np.unique(graph.cycle_label).size),
        "under_cycle": int(((graph.level == 0) & ~graph.on_cycle).sum()),
        "active_reporting_to_terminated": int(graph.to_terminated().sum()),
        "cross_company": int(graph.cross_company().sum()),
        "max_depth": int(graph.level.max()) if n else 0,
    }


def _first_by_id(table: TextColumns, masks: Sequence[Bools], sample: int) -> list[Rows]:
    """For each mask: the row numbers of its first ``sample`` employees by ``employee_id``,
    in that order (one pass over the ids, keeping ``sample`` of them per mask)."""
    import polars as pl

    best = [pl.DataFrame(schema={KEY: pl.String, "_row": pl.Int32}) for _ in masks]
    if sample > 0 and any(bool(mask.any()) for mask in masks):
        offset = 0
        for (ids,) in table.batches([KEY]):
            end = offset + len(ids)
            for i, mask in enumerate(masks):
                rows = np.flatnonzero(mask[offset:end])
                if rows.size:
                    found = pl.DataFrame(
                        {
                            KEY: pl.Series(KEY, ids.take(rows), pl.String),
                            "_row": pl.Series("_row", rows + offset, pl.Int32),
                        }
                    )
                    best[i] = pl.concat([best[i], found]).sort(KEY).head(sample)
            offset = end
    return [frame.get_column("_row").to_numpy().astype(np.int32) for frame in best]


def _cycle_rows(graph: _Graph, sample: int) -> tuple[list[list[int]], list[int]]:
    """The first ``sample`` cycles (by smallest row number) as the row numbers of at most
    ``_CYCLE_SHOWN`` members in reporting order, and each cycle's length."""
    labels, sizes = np.unique(graph.cycle_label, return_counts=True)
    shown: list[list[int]] = []
    lengths: list[int] = []
    for label, size in zip(labels[:sample].tolist(), sizes[:sample].tolist(), strict=True):
        members, node = [], label
        for _ in range(min(size, _CYCLE_SHOWN)):
            members.append(node)
            node = int(graph.parent[node])
        shown.append(members)
        lengths.append(int(size))
    return shown, lengths


def org_summary(source: Source) -> dict[str, int]:
    """Counts of the org-graph checks for one snapshot's employees (for the manifest).

    ``source``: a frame, a Parquet file, a folder of one snapshot's employees files (e.g.
    ``<out>/employees/snapshot_id=X`` or a staged table folder), or a list of such files.
    Reads four columns a batch at a time and keeps numbers only (about 30 MB at a million
    employees; a lazy frame is collected first). Keys: ``employees``,
    ``with_supervisor``, ``top_level``, ``dangling_supervisor``, ``self_supervised``,
    ``on_cycle``, ``cycles``, ``under_cycle``, ``active_reporting_to_terminated``,
    ``cross_company``, ``max_depth``.
    """
    return _counts(_graph(TextColumns(source, _COLUMNS)))


def check_org(source: Source, *, sample: int = DEFAULT_SAMPLE) -> OrgReport:
    """The counts of :func:`org_summary` with up to ``sample`` examples of each problem.

    Reads the files twice more than :func:`org_summary`: the ids to pick the examples, then
    the examples' rows.
    """
    import polars as pl

    table = TextColumns(source, _COLUMNS)
    graph = _graph(table)
    dangling = graph.has_supervisor & (graph.parent == _NONE)
    masks = [dangling, graph.to_terminated(), graph.cross_company()]
    own = _first_by_id(table, masks, sample)
    cycles, lengths = _cycle_rows(graph, sample)
    wanted = [*own, graph.parent[own[1]], graph.parent[own[2]]]
    wanted.extend(np.asarray(members, dtype=np.int32) for members in cycles)
    needed = np.unique(np.concatenate(wanted))
    rows = pl.from_arrow(table.take(needed, _COLUMNS))
    assert isinstance(rows, pl.DataFrame)

    def column(name: str, at: Rows) -> pl.Series:
        return rows.get_column(name).gather(np.searchsorted(needed, at))

    def examples(i: int, columns: dict[str, str]) -> pl.DataFrame:
        """``columns`` maps a name in the result to a column of the employee, or to
        ``supervisor_<column>`` for the manager's."""
        frame = {}
        for name, of in columns.items():
            if of.startswith("supervisor_") and of != SUPERVISOR:
                frame[name] = column(of.removeprefix("supervisor_"), graph.parent[own[i]])
            else:
                frame[name] = column(of, own[i])
        return pl.DataFrame(frame)

    levels, counts = np.unique(graph.level[graph.level > 0], return_counts=True)
    return OrgReport(
        counts=_counts(graph),
        depth_histogram=dict(zip(levels.tolist(), counts.tolist(), strict=True)),
        dangling=examples(0, {KEY: KEY, SUPERVISOR: SUPERVISOR}),
        cycles=[column(KEY, np.asarray(m, dtype=np.int32)).to_list() for m in cycles],
        cycle_lengths=lengths,
        reporting_to_terminated=examples(
            1,
            {
                KEY: KEY,
                STATUS: STATUS,
                SUPERVISOR: SUPERVISOR,
                "supervisor_status": f"supervisor_{STATUS}",
            },
        ),
        cross_company=examples(
            2,
            {
                KEY: KEY,
                COMPANY: COMPANY,
                SUPERVISOR: SUPERVISOR,
                "supervisor_company": f"supervisor_{COMPANY}",
            },
        ),
    )


# -- reporting lines --------------------------------------------------------------------------


def _reporting_batches(graph: _Graph, ids: Any, snapshot_id: str) -> Iterator[pa.RecordBatch]:
    """(employee, manager ``level`` steps up) for chains that end, level by level, in slices
    of at most ``_LINES_BATCH`` rows so that memory stays flat however wide a level is.
    ``ids``: the ``employee_id`` of each row (a pyarrow array)."""
    resolved = np.flatnonzero(graph.level > 0)
    employee = resolved[graph.parent[resolved] != _NONE]
    manager = graph.parent[employee]
    level = 1
    while employee.size:
        for start in range(0, employee.size, _LINES_BATCH):
            rows = slice(start, start + _LINES_BATCH)
            size = employee[rows].size
            yield pa.record_batch(
                [
                    ids.take(employee[rows]),
                    ids.take(manager[rows]),
                    pa.array(np.full(size, level, dtype=np.int32)),
                    pa.array([snapshot_id] * size, pa.string()),
                ],
                names=REPORTING_LINES_SCHEMA.names,
            )
        up = graph.parent[manager]
        keep = up != _NONE
        employee, manager = employee[keep], up[keep]
        level += 1


REPORTING_LINES_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field("manager_id", pa.string(), nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field(SNAPSHOT_COLUMN, pa.string(), nullable=False),
    ]
)


def write_reporting_lines(out: Path, snapshot_id: str, source: Source | None = None) -> Path:
    """Write ``<out>/reporting_lines/snapshot_id=<id>/part-00000.parquet``; return its folder.

    One row per (employee, manager up the chain): ``employee_id``, ``manager_id``, ``level``
    (1 = direct manager) and ``snapshot_id``. Chains stop at the top or at a dangling id;
    employees on or under a cycle have no rows (``check`` lists them). The folder is replaced
    whole with one rename, so readers see the old table or the new one.
    """
    out = Path(out)
    table = TextColumns(snapshot_files(out, snapshot_id) if source is None else source, _COLUMNS)
    graph = _graph(table)
    ids = table.column(KEY)
    target = out / REPORTING_LINES_TABLE / f"{SNAPSHOT_COLUMN}={snapshot_id}"
    work = out / "_reporting_lines"
    staging, trash = work / f"{snapshot_id}.new", work / f"{snapshot_id}.old"
    try:
        for leftover in (staging, trash):
            if leftover.exists():
                shutil.rmtree(leftover)
        staging.mkdir(parents=True)
        path = staging / "part-00000.parquet"
        with pq.ParquetWriter(path, REPORTING_LINES_SCHEMA, compression="zstd") as writer:
            for batch in _reporting_batches(graph, ids, snapshot_id):
                writer.write_batch(batch.cast(REPORTING_LINES_SCHEMA))
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        fsync_dir(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.rename(target, trash)
        os.rename(staging, target)
        fsync_dir(target.parent)
        with contextlib.suppress(OSError):
            shutil.rmtree(trash)
    except OSError as exc:
        raise io_error(exc, target) from exc
    return target
