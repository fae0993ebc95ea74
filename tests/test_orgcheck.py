"""Org-graph checks against a plain Python reference, on hand-made and generated graphs."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from extractor import _orgcheck, _read
from extractor._diff import is_terminated
from extractor._errors import SnapshotError
from extractor._orgcheck import DEFAULT_SAMPLE, check_org, org_summary, write_reporting_lines
from tests.conftest import write_snapshot
from tests.test_diff import employee, snapshot_id


def frame(rows: list[tuple[str, str | None, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema=["employee_id", "supervisor_id", "company_code", "employment_status"],
        orient="row",
    )


def test_hand_made_graph() -> None:
    data = frame(
        [
            ("a", None, "C1", "Terminated"),
            ("b", "a", "C1", "Active"),  # reports to a terminated manager
            ("c", "b", "C2", "Active"),  # cross-company
            ("d", "ghost", "C1", "Active"),  # dangling
            ("e", "f", "C1", "Active"),  # cycle e -> f -> g -> e
            ("f", "g", "C1", "Active"),
            ("g", "e", "C1", "Active"),
            ("h", "e", "C1", "Active"),  # under the cycle
            ("i", "i", "C1", "Active"),  # its own supervisor
            ("j", "a", "C1", "Leave"),  # on leave counts as active
            ("k", "a", "C1", "T"),  # terminated reporting to terminated: fine
        ]
    )
    report = check_org(data)
    assert report.counts == {
        "employees": 11,
        "with_supervisor": 10,
        "top_level": 1,
        "dangling_supervisor": 1,
        "self_supervised": 1,
        "on_cycle": 4,
        "cycles": 2,
        "under_cycle": 1,
        "active_reporting_to_terminated": 2,
        "cross_company": 1,
        "max_depth": 3,
    }
    assert report.depth_histogram == {1: 2, 2: 3, 3: 1}
    assert sorted(report.cycles) == [["e", "f", "g"], ["i"]]
    assert sorted(report.cycle_lengths) == [1, 3]
    assert report.dangling.rows() == [("d", "ghost")]
    assert report.reporting_to_terminated["employee_id"].to_list() == ["b", "j"]
    assert report.cross_company.row(0) == ("c", "C2", "b", "C1")
    assert report.problems == 1 + 4 + 1 + 2 + 1
    assert org_summary(data) == report.counts


def test_clean_tree_and_empty_input() -> None:
    tree = frame([("a", None, "C1", "Active"), ("b", "a", "C1", "Active")])
    assert check_org(tree).problems == 0
    empty = check_org(frame([]))
    assert empty.counts["employees"] == 0
    assert empty.counts["max_depth"] == 0
    assert empty.cycles == []


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(SnapshotError, match="not unique"):
        org_summary(frame([("a", None, "C1", "Active"), ("a", None, "C1", "Active")]))


# -- generated graphs against a reference -----------------------------------------------------


def reference(data: pl.DataFrame) -> dict[str, Any]:
    """Walk every chain in Python: the obvious algorithm, for small graphs."""
    ids = data["employee_id"].to_list()
    sups = data["supervisor_id"].to_list()
    status = dict(zip(ids, data["employment_status"].to_list(), strict=True))
    company = dict(zip(ids, data["company_code"].to_list(), strict=True))
    parent = {e: s for e, s in zip(ids, sups, strict=True) if s in status}
    on_cycle: set[str] = set()
    cycles: list[frozenset[str]] = []
    level: dict[str, int] = {}
    for start in ids:
        path: list[str] = []
        seen: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in level and node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = parent.get(node)
        if node is not None and node in seen:  # closed a new cycle
            cycle = path[seen[node] :]
            on_cycle.update(cycle)
            cycles.append(frozenset(cycle))
        base = 0 if node is None else level.get(node, 0)
        # levels for nodes above a cycle stay unset (0 marks "no level")
        for offset, member in enumerate(reversed(path)):
            if base == 0 and node is not None:
                level[member] = 0
            else:
                level[member] = base + offset + 1
    terminated = {e for e, s in status.items() if s in ("Terminated", "T")}
    return {
        "dangling_supervisor": sum(1 for s in sups if s is not None and s not in status),
        "on_cycle": len(on_cycle),
        "cycles": len(set(cycles)),
        "under_cycle": sum(1 for e in ids if level[e] == 0 and e not in on_cycle),
        "self_supervised": sum(1 for e, s in zip(ids, sups, strict=True) if e == s),
        "active_reporting_to_terminated": sum(
            1 for e, s in parent.items() if e not in terminated and s in terminated
        ),
        "cross_company": sum(1 for e, s in parent.items() if company[e] != company[s]),
        "max_depth": max(level.values(), default=0),
        "histogram": dict(Counter(v for v in level.values() if v)),
    }


def generated(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    ids = [f"E{rng.getrandbits(40):012x}" for _ in range(n)]
    sups: list[str | None] = [None] * n
    for i in range(1, n):
        if rng.random() > 0.01:
            sups[i] = ids[rng.randrange(max(0, i - 50), i)]  # deep-ish chains
    roots = [i for i in range(1, n) if sups[i] is None]
    for r in roots[: len(roots) // 2]:  # a root points into its own subtree: a long cycle
        below = [i for i in range(r + 1, min(n, r + 400)) if sups[i] == ids[r]]
        if below:
            sups[r] = ids[rng.choice(below)]
    picked = rng.sample(range(n), 15 + 3 + 5)  # distinct employees for each injection
    for i in picked[:15]:
        sups[i] = f"GHOST{i}"
    for i in picked[15:18]:
        sups[i] = ids[i]
    ring = picked[18:]  # a ring through unrelated employees
    for x, y in zip(ring, ring[1:] + ring[:1], strict=True):
        sups[x] = ids[y]
    order = list(range(n))
    rng.shuffle(order)
    return pl.DataFrame(
        {
            "employee_id": [ids[i] for i in order],
            "supervisor_id": [sups[i] for i in order],
            "company_code": [rng.choice(["C1", "C1", "C1", "C2"]) for _ in order],
            "employment_status": [
                rng.choice(["Active"] * 8 + ["Leave", "Terminated"]) for _ in order
            ],
        }
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_graphs_match_the_reference(seed: int) -> None:
    data = generated(4000, seed)
    expected = reference(data)
    report = check_org(data)
    counts = report.counts
    for key in (
        "dangling_supervisor",
        "on_cycle",
        "cycles",
        "under_cycle",
        "self_supervised",
        "active_reporting_to_terminated",
        "cross_company",
        "max_depth",
    ):
        assert counts[key] == expected[key], key
    assert report.depth_histogram == expected["histogram"]
    assert counts["cycles"] >= 3  # the injected ones at least
    assert counts["dangling_supervisor"] == 15
    assert sum(report.depth_histogram.values()) + counts["on_cycle"] + counts["under_cycle"] == (
        4000
    )
    # every example cycle really is one
    parent = dict(zip(data["employee_id"], data["supervisor_id"], strict=True))
    for members, length in zip(report.cycles, report.cycle_lengths, strict=True):
        node = members[0]
        for _ in range(length):
            node = parent[node]
        assert node == members[0]


def test_hash_lookup_and_string_join_agree() -> None:
    from extractor._orgcheck import _parents, _parents_by_join

    data = generated(3000, 4).with_columns(
        supervisor_id=pl.when(pl.col("employee_id").str.ends_with("a"))
        .then(pl.lit(None, pl.String))
        .otherwise("supervisor_id")
    )
    assert (_parents(data) == _parents_by_join(data)).all()


def test_a_long_chain() -> None:
    n = 3000
    ids = [f"E{i:05d}" for i in range(n)]
    data = pl.DataFrame(
        {
            "employee_id": ids,
            "supervisor_id": [None, *ids[:-1]],
            "company_code": ["C1"] * n,
            "employment_status": ["Active"] * n,
        }
    )
    assert org_summary(data)["max_depth"] == n


# -- the lean path against a join on the strings -----------------------------------------------

STATUSES = ["Active"] * 6 + ["Leave", "Terminated", " t ", "TERMINATED\u00a0", "\u001ct", None]


def messy(n: int, seed: int) -> pl.DataFrame:
    """A generated graph (cycles, dangling ids) with null companies and odd statuses."""
    rng = random.Random(seed)
    return generated(n, seed).with_columns(
        company_code=pl.Series([rng.choice(["C1", "C1", "C2", None]) for _ in range(n)]),
        employment_status=pl.Series([rng.choice(STATUSES) for _ in range(n)]),
    )


def join_reference(data: pl.DataFrame, sample: int) -> tuple[dict[str, int], dict[str, Any]]:
    """The counts and examples that need no walking of chains, by a plain polars join."""
    managers = data.select(
        pl.col("employee_id").alias("supervisor_id"),
        pl.col("company_code").alias("supervisor_company"),
        pl.col("employment_status").alias("supervisor_status"),
        pl.lit(True).alias("found"),
    )
    rows = data.join(managers, on="supervisor_id", how="left", maintain_order="left")
    found = pl.col("found").fill_null(False)
    has_supervisor = pl.col("supervisor_id").is_not_null()
    problems = {
        "dangling": has_supervisor & ~found,
        "reporting_to_terminated": found
        & ~is_terminated("employment_status")
        & is_terminated("supervisor_status"),
        "cross_company": found & pl.col("company_code").ne_missing(pl.col("supervisor_company")),
    }
    counts = rows.select(
        employees=pl.len(),
        with_supervisor=has_supervisor.sum(),
        top_level=(~has_supervisor).sum(),
        dangling_supervisor=problems["dangling"].sum(),
        self_supervised=(pl.col("employee_id") == pl.col("supervisor_id")).sum(),
        active_reporting_to_terminated=problems["reporting_to_terminated"].sum(),
        cross_company=problems["cross_company"].sum(),
    ).row(0, named=True)
    shown = {
        "dangling": ["employee_id", "supervisor_id"],
        "reporting_to_terminated": [
            "employee_id",
            "employment_status",
            "supervisor_id",
            "supervisor_status",
        ],
        "cross_company": ["employee_id", "company_code", "supervisor_id", "supervisor_company"],
    }
    examples = {
        name: rows.filter(problems[name]).sort("employee_id").head(sample).select(columns).rows()
        for name, columns in shown.items()
    }
    return counts, examples


def assert_matches_references(report: Any, data: pl.DataFrame, sample: int) -> None:
    counts, examples = join_reference(data, sample)
    walked = reference(data)
    assert {k: report.counts[k] for k in counts} == counts
    for key in ("on_cycle", "cycles", "under_cycle", "max_depth"):
        assert report.counts[key] == walked[key], key
    assert report.depth_histogram == walked["histogram"]
    assert report.dangling.rows() == examples["dangling"]
    assert report.reporting_to_terminated.rows() == examples["reporting_to_terminated"]
    assert report.cross_company.rows() == examples["cross_company"]


def write_parts(folder: Path, data: pl.DataFrame, parts: int = 3) -> list[Path]:
    """``data`` as ``parts`` Parquet files of small row groups; the last without company_code."""
    files = []
    size = -(-data.height // parts)
    for i in range(parts):
        part = data.slice(i * size, size)
        if i == parts - 1:
            part = part.drop("company_code")
        path = folder / f"company_code=X{i}" / "part.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(part.to_arrow(), path, row_group_size=250)
        files.append(path)
    return files


@pytest.mark.parametrize("seed", [5, 6])
def test_lean_path_matches_a_join_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Batches far smaller than the files and their row groups: every boundary is crossed.
    monkeypatch.setattr(_read, "BATCH_ROWS", 97)
    data = messy(3000, seed)
    files = write_parts(tmp_path / "employees", data)
    as_read = data.with_columns(  # the last file has no company_code: null there
        company_code=pl.when(pl.int_range(pl.len()) < 2000).then("company_code")
    )
    for source in (tmp_path / "employees", files, as_read, as_read.lazy()):
        report = check_org(source, sample=7)
        assert_matches_references(report, as_read, 7)
        assert org_summary(source) == report.counts
    assert report.counts["dangling_supervisor"] == 15
    assert report.counts["cross_company"] > 0
    assert report.counts["active_reporting_to_terminated"] > 0


def test_null_and_empty_ids_are_kept_apart() -> None:
    data = frame(
        [
            (None, None, "C1", "Active"),
            ("", "b", "C1", "Active"),
            ("a", "", "C1", "Active"),  # reports to "", never to the null id
            ("b", None, "C2", "Terminated"),
            ("c", "a", None, "Active"),
            ("d", "ghost", "C1", "Active"),
        ]
    )
    report = check_org(data)
    counts, examples = join_reference(data, DEFAULT_SAMPLE)
    assert {k: report.counts[k] for k in counts} == counts
    assert report.dangling.rows() == examples["dangling"] == [("d", "ghost")]
    assert report.reporting_to_terminated.rows() == examples["reporting_to_terminated"]
    assert report.cross_company.rows() == examples["cross_company"]
    assert report.depth_histogram == {1: 3, 2: 1, 3: 1, 4: 1}  # c -> a -> "" -> b
    without_empty = data.filter(pl.col("employee_id").ne_missing(""))
    assert org_summary(without_empty)["dangling_supervisor"] == 2  # "" and "ghost"


def test_first_hash_collisions_fall_back_to_the_join(monkeypatch: pytest.MonkeyPatch) -> None:
    hash_text = _read.hash_text

    def colliding(values: Any) -> tuple[Any, Any]:
        first, second = hash_text(values)
        return first % 64, second  # employee ids share first hashes all the time

    data = messy(2000, 7)
    expected = check_org(data, sample=5)
    monkeypatch.setattr(_orgcheck, "hash_text", colliding)
    report = check_org(data, sample=5)
    assert report.counts == expected.counts
    assert report.depth_histogram == expected.depth_histogram
    assert report.cycles == expected.cycles
    assert report.dangling.equals(expected.dangling)
    with pytest.raises(SnapshotError, match="not unique"):
        org_summary(pl.concat([data, data.head(1)]))


def test_second_hash_rejects_a_false_match(monkeypatch: pytest.MonkeyPatch) -> None:
    hash_text = _read.hash_text

    def ghost_collides(values: Any) -> tuple[Any, Any]:
        # "GHOST-x" gets the first hash of "x": only the second hash tells them apart
        stripped = pa.array(values.to_pylist()).cast(pa.string())
        stripped = pc.replace_substring_regex(stripped, "^GHOST-", "")
        return hash_text(stripped)[0], hash_text(values)[1]

    data = frame(
        [
            ("a", None, "C1", "Active"),
            ("b", "a", "C1", "Active"),
            ("c", "GHOST-a", "C1", "Active"),
            ("d", "GHOST-b", "C1", "Active"),
        ]
    )
    monkeypatch.setattr(_orgcheck, "hash_text", ghost_collides)
    counts = org_summary(data)
    assert counts["dangling_supervisor"] == 2
    assert counts["max_depth"] == 2


def test_text_hashes_depend_on_the_text_only() -> None:
    texts = ["", "a", "ab", "abcdefgh", "abcdefgh\x00", "abcdefghi", "é", "E000123", None]
    h1, h2 = _read.hash_text(pa.array(texts, pa.string()))
    assert len(set(h1.tolist())) == len(texts)
    assert len(set(h2.tolist())) == len(texts)
    for variant in (
        pa.array(texts, pa.large_string()),
        pa.array(texts, pa.string_view()),
        pa.array(["x", *texts], pa.string()).slice(1),
    ):
        v1, v2 = _read.hash_text(variant)
        assert v1.tolist() == h1.tolist()
        assert v2.tolist() == h2.tolist()


def test_terminated_text_agrees_with_the_diff() -> None:
    values = [
        "Terminated",
        "terminated",
        "T",
        "t",
        " T\t",
        "\u00a0Terminated\u3000",
        "\u001cT",  # not white space to polars (Python's str.strip would remove it)
        "\u2028t\u2029",
        "TERM\u0130NATED",
        "Term",
        "Active",
        "",
        None,
    ]
    expected = pl.select(is_terminated(pl.lit(pl.Series(values, dtype=pl.String)))).to_series()
    assert [_orgcheck._is_terminated_text(v) for v in values] == expected.to_list()


# -- snapshots on disk ------------------------------------------------------------------------


def test_summary_of_a_committed_snapshot_folder(tmp_path: Path) -> None:
    rows = [
        employee("E1", company_code="CORP01"),
        employee("E2", supervisor_id="E1", company_code="CORP02"),
        employee("E3", supervisor_id="E9", company_code="CORP01"),
    ]
    write_snapshot(tmp_path, snapshot_id(1), rows)
    write_snapshot(tmp_path, snapshot_id(2), [])
    folder = tmp_path / "employees" / f"snapshot_id={snapshot_id(1)}"
    counts = org_summary(folder)  # several company partitions
    assert counts["employees"] == 3
    assert counts["cross_company"] == 1
    assert counts["dangling_supervisor"] == 1
    one_file = next(folder.rglob("*.parquet"))
    assert org_summary(one_file)["employees"] == 2  # company_code=CORP01: E1 and E3
    empty = org_summary(tmp_path / "employees" / f"snapshot_id={snapshot_id(2)}")
    assert empty["employees"] == 0
    with pytest.raises(SnapshotError, match="neither"):
        org_summary(tmp_path / "nowhere")


def test_org_summary_leaves_polars_unloaded(tmp_path: Path) -> None:
    # An export runs it at commit and has no other use for polars (about 30 MB of RSS).
    write_snapshot(tmp_path, snapshot_id(1), [employee("A"), employee("B", supervisor_id="A")])
    folder = tmp_path / "employees" / f"snapshot_id={snapshot_id(1)}"
    code = (
        "import sys\n"
        "from extractor._orgcheck import org_summary\n"
        "counts = org_summary(sys.argv[1])\n"
        "assert 'polars' not in sys.modules, 'polars was imported'\n"
        "print(counts['max_depth'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_reporting_lines_table(tmp_path: Path) -> None:
    rows = [
        employee("A"),
        employee("B", supervisor_id="A"),
        employee("C", supervisor_id="B"),
        employee("D", supervisor_id="ghost"),  # dangling: no manager row
        employee("G", supervisor_id="D"),
        employee("E", supervisor_id="F"),  # a cycle: no rows
        employee("F", supervisor_id="E"),
    ]
    sid = snapshot_id(1)
    write_snapshot(tmp_path, sid, rows)
    folder = write_reporting_lines(tmp_path, sid)
    assert folder == tmp_path / "reporting_lines" / f"snapshot_id={sid}"
    lines = pl.read_parquet(folder / "part-00000.parquet")
    assert lines.columns == ["employee_id", "manager_id", "level", "snapshot_id"]
    assert sorted(lines.select("employee_id", "manager_id", "level").rows()) == [
        ("B", "A", 1),
        ("C", "A", 2),
        ("C", "B", 1),
        ("G", "D", 1),
    ]
    assert set(lines["snapshot_id"]) == {sid}
    # written again: replaced whole, nothing left behind
    write_reporting_lines(tmp_path, sid)
    assert [p.name for p in folder.iterdir()] == ["part-00000.parquet"]
    assert not list((tmp_path / "_reporting_lines").iterdir())
