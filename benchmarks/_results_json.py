"""Every run's raw numbers as JSON, and back (``--render`` writes a report from them again).

Files written before a field existed load with that field's default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._chart import CHART_SCENARIOS
from ._report import Target
from ._suite import RunResult, ScenarioResult

__all__ = ["from_json", "to_json"]


def _run_json(run: RunResult) -> dict[str, Any]:
    data = run.to_json()
    # Keep the 0.25 s timeline only where the chart is drawn from it: the file stays small.
    if not (run.contender == "ukg-extract" and run.scenario in CHART_SCENARIOS):
        data["server"].pop("timeline", None)
    return data


def to_json(
    results: Sequence[ScenarioResult],
    targets: Sequence[Target],
    machine: dict[str, str],
    *,
    mode: str,
    elapsed: float,
) -> str:
    data: dict[str, Any] = {
        "mode": mode,
        "machine": machine,
        "elapsed_seconds": elapsed,
        "targets": [t.__dict__ for t in targets],
        "scenarios": [
            {
                "name": r.scenario.name,
                "description": r.scenario.description,
                "employees": r.employees,
                "issue_employees": r.scenario.employees,
                "knobs": list(r.scenario.knobs),
                "churn_rate": r.scenario.churn_rate,
                "limit_rps": r.scenario.limit.requests_per_second if r.scenario.limit else None,
                "ceiling_sweep": {str(c): v for c, v in r.sweep.items()},
                "best_concurrency": r.best_concurrency,
                "borrowed_from": r.borrowed_from,
                "runs": [_run_json(run) for run in r.runs],
            }
            for r in results
        ],
    }
    return json.dumps(data, indent=1, default=str) + "\n"


def from_json(text: str) -> tuple[list[ScenarioResult], dict[str, str], str, float]:
    """Results, machine, mode and duration back from :func:`to_json` (to render them again)."""
    from dataclasses import fields

    from ._compare import Exactness
    from ._metrics import ServerView
    from ._scenarios import SCENARIOS

    data = json.loads(text)
    server_fields = {f.name for f in fields(ServerView)}
    run_fields = {f.name for f in fields(RunResult)}
    results = []
    for item in data["scenarios"]:
        result = ScenarioResult(SCENARIOS[item["name"]], item["employees"])
        result.sweep = {int(c): rate for c, rate in item["ceiling_sweep"].items()}
        result.best_concurrency = item["best_concurrency"]
        result.borrowed_from = item.get("borrowed_from")
        for raw in item["runs"]:
            run = {k: v for k, v in raw.items() if k in run_fields}
            server = {k: v for k, v in raw["server"].items() if k in server_fields}
            server.setdefault("timeline", [])
            run["server"] = ServerView(**server)
            run["exactness"] = Exactness(**raw["exactness"]) if raw["exactness"] else None
            result.runs.append(RunResult(**run))
        results.append(result)
    return results, data["machine"], data["mode"], float(data["elapsed_seconds"])
