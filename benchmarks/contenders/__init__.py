"""The contenders: every way of exporting the tenant that ukg-extract is measured against.

Each runs as its own process (``python -m ...``) against the same simulator, with the
credentials in the environment, writing Parquet under the folder it is given (the ceiling
writes nothing). The harness knows each one by a :class:`Contender`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONTENDERS", "Contender"]


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    module: str
    requires: tuple[str, ...]  # importable modules it needs beyond the project's own
    output_glob: str | None  # Parquet files under its output folder; None: writes nothing
    hive: bool = False
    export_args: tuple[str, ...] = ()
    # A file that appears once the export is committed (the tenant may stop changing then).
    commit_marker: str | None = None
    # A cap in seconds for a contender far slower than ukg-extract: its rate is plain long
    # before it could finish, so it is stopped then and its finish is estimated (and labelled).
    patience: float | None = None
    quick_patience: float | None = None
    # Whether its runs are repeated for a median (where repeats are made at all): only for the
    # contenders whose speed is a close call against ukg-extract's.
    repeated: bool = True

    def argv(self, base_url: str, out: Path, *, concurrency: int | None = None) -> list[str]:
        argv = [sys.executable, "-m", self.module, *self.export_args]
        argv += ["--out", str(out), "--base-url", base_url]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        return argv

    def outputs(self, out: Path) -> Sequence[Path]:
        return sorted(out.glob(self.output_glob)) if self.output_glob else []


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "ukg-extract",
            "ukg-extract",
            "extractor",
            requires=(),
            output_glob="employees/**/*.parquet",
            hive=True,
            export_args=("export", "--quiet"),
            commit_marker="_snapshots/*.json",
        ),
        Contender(
            "naive",
            "naive requests script",
            "benchmarks.contenders.naive",
            requires=("requests",),
            output_glob="*.parquet",
            patience=10.0,
            quick_patience=10.0,
            repeated=False,
        ),
        Contender(
            "fixed-async",
            "aiohttp, 64 fixed",
            "benchmarks.contenders.fixed_async",
            requires=(),
            output_glob="*.parquet",
        ),
        Contender(
            "dlt",
            "dlt rest_api",
            "benchmarks.contenders.dlt_rest",
            requires=("dlt",),
            output_glob="data/**/employees/*.parquet",
            patience=30.0,
            repeated=False,
        ),
        Contender(
            "ceiling",
            "ceiling (bare aiohttp)",
            "benchmarks.contenders.ceiling",
            requires=(),
            output_glob=None,
        ),
    )
}
