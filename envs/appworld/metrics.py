"""AppWorld's headline metrics over a split: Task and Scenario Goal Completion.

* TGC -- percentage of tasks whose every test passes (AppWorld's evaluator ``success``).
* SGC -- percentage of scenarios all of whose tasks succeed.

Both are rounded as AppWorld's ``Metric`` rounds them (mean to 4 places, then percent to
1), so numbers match ``appworld evaluate``. The env's final ``info["success"]`` is the
per-task input; training-time evaluation and reports call :func:`goal_completion` alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from envs.appworld.tasks import scenario_of

SCENARIO_FACET = "scenario"  # the episode facet (env info) naming a task's scenario
MEAN_DIGITS = 4
PERCENT_DIGITS = 1


@dataclass(frozen=True)
class GoalCompletion:
    tgc: float
    """Task goal completion, percent."""
    sgc: float
    """Scenario goal completion, percent."""
    num_tasks: int
    num_scenarios: int


def goal_completion(
    successes: Mapping[str, bool],
    split_ids: Iterable[str],
    scenario: Callable[[str], str] = scenario_of,
) -> GoalCompletion:
    """TGC and SGC of one split (or any slice of it) from per-task outcomes.

    ``split_ids`` are the split's task ids; every one needs an outcome (a task that was not
    run is a harness bug, not a failure to hide), and no other task may have one.
    ``scenario`` maps a task id to its scenario (reports pass the episodes' ``scenario``
    facet). On a slice (AppWorld reports by difficulty), SGC counts a scenario's tasks in
    the slice only, as AppWorld's own report does.
    """
    split_ids = list(split_ids)
    missing = sorted(set(split_ids) - set(successes))
    extra = sorted(set(successes) - set(split_ids))
    if missing or extra:
        raise ValueError(
            f"outcomes do not match the split: missing {missing[:10]}, "
            f"not in the split {extra[:10]}"
        )
    by_scenario: dict[str, list[bool]] = defaultdict(list)
    for task_id in split_ids:
        by_scenario[scenario(task_id)].append(bool(successes[task_id]))
    return GoalCompletion(
        tgc=_percent([successes[t] for t in split_ids]),
        sgc=_percent([all(outcomes) for outcomes in by_scenario.values()]),
        num_tasks=len(split_ids),
        num_scenarios=len(by_scenario),
    )


def _percent(outcomes: list[bool]) -> float:
    mean = round(sum(outcomes) / len(outcomes), MEAN_DIGITS) if outcomes else 0.0
    return round(100 * mean, PERCENT_DIGITS)
