"""The request rate over time of ukg-extract against a hidden limit: does it find it and hold it?"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._metrics import BUCKET
from ._suite import ScenarioResult

__all__ = ["CHART_SCENARIOS", "draw_rate_chart"]

CHART_SCENARIOS = ("throttled", "concurrency-capped")


def draw_rate_chart(results: Sequence[ScenarioResult], path: Path) -> Path | None:
    """One panel per limited scenario that ukg-extract ran in; None when there is none."""
    panels = []
    for result in results:
        limit = result.scenario.limit
        run = result.median_run("ukg-extract")
        if result.scenario.name in CHART_SCENARIOS and limit and run and run.server.timeline:
            panels.append((result, limit, run))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for ax, (result, limit, run) in zip(axes[:, 0], panels, strict=True):
        timeline = run.server.timeline
        t = [row[0] for row in timeline]
        ok = [row[2] / BUCKET for row in timeline]
        throttled = [row[3] / BUCKET for row in timeline]
        ax.step(t, ok, where="post", color="tab:blue", label="successful (2xx) req/s")
        ax.step(t, throttled, where="post", color="tab:red", label="429 req/s")
        ax.axhline(
            limit.requests_per_second,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"hidden limit ({limit.description})",
        )
        ax.set_title(
            f"ukg-extract, {result.scenario.name}: {result.employees:,} employees, "
            f"{result.scenario.description}",
            fontsize=10,
        )
        ax.set_xlabel("seconds since the run started (0.25 s buckets)")
        ax.set_ylabel("requests / s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
