"""Does ukg-extract lead each contender in a scenario, and where it does not, why.

The order of merit is the previous report's, fixed before the numbers: fewer discrepancies
against the ground truth first, then 429s within issue 3's budget (5 % of requests), then
profiles/s. The ceiling is the yardstick (``x ceiling``), not a contender to beat.

A contender stopped at its cap has measured 429s, an estimated speed and no exactness:
ukg-extract leads it when ukg-extract is exact and ahead on the measured criteria (429s, then
speed against the estimate, an upper bound on the stopped contender's profiles/s: it leaves
out retries still waiting and its final write). Otherwise the order hangs on the exactness
nobody measured, and the verdict is "open", with what is known, instead of a guess.

Every "why" is made of numbers measured in the same run: CPU per profile and how busy the
contender's process was, the spread of the repeated runs, x limit, 429s, discrepancies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._scenarios import CONTENDER_ORDER
from ._suite import RunResult, ScenarioResult
from .contenders import CONTENDERS

__all__ = ["THROTTLE_BUDGET", "Verdict", "problems", "verdicts"]

THROTTLE_BUDGET = 0.05  # issue 3: 429s at most 5 % of requests
CPU_BOUND = 0.85  # a process busy this share of one core over its run is CPU-bound
SHARED = 0.25  # cores other processes took during a run beyond which the run was disturbed

Standing = Literal["leads", "behind", "open"]


@dataclass(frozen=True)
class Verdict:
    contender: str  # the other contender's name
    standing: Standing  # ukg-extract's standing against it ("open": cannot be told)
    text: str  # one short line: what decided it
    why: str = ""  # where ukg-extract is behind or it is open: the measured reasons


def problems(run: RunResult) -> int:
    e = run.exactness
    return e.missing + e.extra + e.duplicated + e.wrong if e is not None else 0


def _label(name: str) -> str:
    return CONTENDERS[name].label


def _exactness(run: RunResult) -> str:
    return run.exactness.summary() if run.exactness is not None else "not checked"


def _rate(result: ScenarioResult, run: RunResult) -> float:
    if run.status == "ok":
        return result.median_rate(run.contender) or run.profiles_per_s
    return run.profiles_per_s


def _busy(run: RunResult) -> float:
    return run.cpu_seconds / run.wall_seconds if run.wall_seconds else 0.0


def _simulator_busy(run: RunResult) -> float | None:
    if run.simulator_cpu_seconds is None or not run.wall_seconds:
        return None
    return run.simulator_cpu_seconds / run.wall_seconds


def _spread(result: ScenarioResult, name: str) -> tuple[float, float] | None:
    rates = [r.profiles_per_s for r in result.runs_of(name) if r.status == "ok"]
    return (min(rates), max(rates)) if len(rates) > 1 else None


def _why_slower(result: ScenarioResult, ukg: RunResult, other: RunResult) -> str:
    """Why an equally exact contender was faster, in numbers measured in this run."""
    name = _label(other.contender)
    parts = []
    limit = result.scenario.limit
    if limit is not None:
        # The tenant sets the pace: CPU and the machine's load do not explain a gap here.
        mine = ukg.server.steady_ok_per_s / limit.requests_per_second
        theirs = other.server.steady_ok_per_s / limit.requests_per_second
        parts.append(
            f"x limit {mine:.2f} against {theirs:.2f} for {name}, 429s "
            f"{ukg.server.throttled_share:.1%} against {other.server.throttled_share:.1%}"
        )
        if min(mine, theirs) >= 0.9:
            parts.append(
                "both held the limit over the steady part of their runs, so the gap is in "
                f"start-up, ramp-up and tail, which weigh more the smaller the tenant "
                f"({result.employees:,} here)"
            )
        if min(ukg.server.throttled_share, other.server.throttled_share) > THROTTLE_BUDGET:
            parts.append(
                f"both are over issue 3's {THROTTLE_BUDGET:.0%} of 429s, so 429s do not "
                "separate them and speed decides"
            )
        return "; ".join(parts)
    mine_ms, theirs_ms = ukg.cpu_ms_per_profile, other.cpu_ms_per_profile
    if mine_ms is not None and theirs_ms is not None:
        cpu = (
            f"ukg-extract used {mine_ms:.2f} ms of CPU per profile (its process busy "
            f"{_busy(ukg):.0%} of one core over the run) against {theirs_ms:.2f} ms "
            f"({_busy(other):.0%}) for {name}"
        )
        if _busy(ukg) >= CPU_BOUND:
            cpu += (
                "; with the simulator on the other core, ukg-extract is CPU-bound, so its CPU "
                "per profile sets its pace (where it goes: the README's Performance section)"
            )
        parts.append(cpu)
    server = _simulator_busy(ukg)
    if server is not None and server >= CPU_BOUND:
        parts.append(
            f"the simulator was busy {server:.0%} of its core during ukg-extract's run: the "
            "server side set the pace there"
        )
    if max(ukg.other_cores or 0.0, other.other_cores or 0.0) >= SHARED:
        parts.append(
            f"the machine was shared: other processes kept {ukg.other_cores or 0:.2f} cores "
            f"busy during ukg-extract's run and {other.other_cores or 0:.2f} during {name}'s "
            "(of 2), so the order may be the machine's rather than the tools'"
        )
    a, b = _spread(result, "ukg-extract"), _spread(result, other.contender)
    if a and b and a[1] >= b[0] and b[1] >= a[0]:
        parts.append(
            f"their repeated runs overlap (ukg-extract {a[0]:,.0f}-{a[1]:,.0f}, {name} "
            f"{b[0]:,.0f}-{b[1]:,.0f} profiles/s): the order is within the machine's noise"
        )
    return "; ".join(parts)


def _against(result: ScenarioResult, ukg: RunResult, other: RunResult) -> Verdict:
    name, label = other.contender, _label(other.contender)
    mine, theirs = _rate(result, ukg), _rate(result, other)
    ratio = mine / theirs if theirs else float("inf")
    if other.status == "failed":
        # The exception's class is enough here; the scenario's table has its message.
        cause = other.error.partition(":")[0].rsplit(".", 1)[-1] or "an error"
        return Verdict(
            name, "leads", f"leads: it failed after {other.wall_seconds:.0f} s ({cause})"
        )
    mine_over = ukg.server.throttled_share > THROTTLE_BUDGET
    theirs_over = other.server.throttled_share > THROTTLE_BUDGET
    shares = f"429s {ukg.server.throttled_share:.1%} against {other.server.throttled_share:.1%}"
    if other.status == "timeout":
        # Its exactness is unknown: ukg-extract leads only if exact and ahead on every
        # criterion measured; otherwise the order hangs on what was not measured.
        stopped = f"stopped at {other.wall_seconds:.0f} s"
        unknown = f"{label} was {stopped}, before its output could be checked"
        if problems(ukg):
            return Verdict(
                name,
                "open",
                f"open: ukg-extract not exact, {label} {stopped}",
                f"ukg-extract is not exact here ({_exactness(ukg)}), and {unknown}",
            )
        if mine_over != theirs_over:
            if not mine_over:
                return Verdict(name, "leads", f"leads: exact, {shares} ({stopped})")
            return Verdict(
                name,
                "open",
                f"open: {shares}",
                f"ukg-extract's 429s exceed issue 3's {THROTTLE_BUDGET:.0%} budget and "
                f"{label}'s do not; {unknown}: if it is exact, it leads",
            )
        if not other.estimated:
            if ukg.wall_seconds < other.wall_seconds:
                return Verdict(name, "leads", f"leads: exact and done before it was {stopped}")
            return Verdict(name, "open", f"open: {label} {stopped}", f"no estimate for {label}")
        speed = f"at least {ratio:,.1f}x its profiles/s (estimated; {stopped})"
        if ratio >= 1:
            return Verdict(name, "leads", f"leads: exact, {speed}")
        return Verdict(
            name,
            "open",
            f"open: {speed}",
            f"{unknown}; if it is exact, ukg-extract is behind on speed: "
            + _why_slower(result, ukg, other),
        )
    mine_p, theirs_p = problems(ukg), problems(other)
    faster = f"; {label} {1 / ratio:.2f}x as fast" if ratio < 1 else ""
    if mine_p != theirs_p:
        text = f"{_exactness(ukg)} against {_exactness(other)}"
        if mine_p < theirs_p:
            return Verdict(name, "leads", f"leads: {text}{faster}")
        return Verdict(
            name,
            "behind",
            f"behind: {text}",
            f"{label} delivered the more exact export: ukg-extract {_exactness(ukg)}, {label} "
            f"{_exactness(other)}",
        )
    if mine_over != theirs_over:
        shares = f"429s {ukg.server.throttled_share:.1%} against {other.server.throttled_share:.1%}"
        if not mine_over:
            return Verdict(name, "leads", f"leads: equally exact, {shares}{faster}")
        return Verdict(
            name,
            "behind",
            f"behind: {shares}",
            f"ukg-extract's 429s exceed issue 3's {THROTTLE_BUDGET:.0%} budget, {label}'s do not",
        )
    both = "both exact" if mine_p == 0 else f"both {mine_p:,} off"
    if ratio >= 1:
        return Verdict(name, "leads", f"leads: {ratio:.2f}x its profiles/s, {both}")
    return Verdict(
        name,
        "behind",
        f"behind: {ratio:.2f}x its profiles/s, {both}",
        _why_slower(result, ukg, other),
    )


def verdicts(result: ScenarioResult) -> tuple[str, list[Verdict]]:
    """A one-word answer (yes, no, open, or why there is none) and one verdict a contender."""
    others = [
        n for n in CONTENDER_ORDER if n not in ("ceiling", "ukg-extract") and result.runs_of(n)
    ]
    ukg = result.median_run("ukg-extract")
    if ukg is None:
        return "ukg-extract not run", []
    if not others:
        return "no other contender ran", []
    if ukg.status != "ok":
        state = "did not finish" if ukg.status == "timeout" else "failed"
        why = ukg.error[:200] or f"stopped at {ukg.timeout:.0f} s"
        return "no", [Verdict(n, "behind", f"ukg-extract {state}", why) for n in others]
    found = []
    for name in others:
        run = result.median_run(name)
        assert run is not None
        found.append(_against(result, ukg, run))
    standings = {v.standing for v in found}
    answer = "no" if "behind" in standings else "open" if "open" in standings else "yes"
    return answer, found
