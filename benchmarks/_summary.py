"""The goals' summary table ``make bench`` prints last: each goal, its figure, met or missed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GoalResult:
    """One goal's outcome in this run."""

    goal: str
    figure: str
    met: bool | None  # None: not measurable in this run (say why in figure)


_results: list[GoalResult] = []


def record(goal: str, figure: str, met: bool | None) -> None:
    """Note a goal's figure for the summary table."""
    _results.append(GoalResult(goal, figure, met))


def print_table() -> None:
    """Print every recorded goal as one table (nothing when no benchmark recorded a goal)."""
    if not _results:
        return
    width = max(len(r.goal) for r in _results)
    print("\n=== summary: goals of this run ===")
    for result in _results:
        verdict = "n/a" if result.met is None else ("met" if result.met else "MISSED")
        print(f"  {result.goal:<{width}}  {verdict:<6}  {result.figure}")
    met = sum(1 for r in _results if r.met)
    missed = sum(1 for r in _results if r.met is False)
    print(f"  {met} met, {missed} missed (ratios are medians of paired rounds; the machine is shared, so"
          " read the rounds' spreads above before trusting a borderline verdict)")
