"""The numbers of a learner comparison: held-out pass@1 over seeds (last and best
evaluation), per-category success, paired differences against a baseline learner, pass@k
and pass^k, which evaluator component failed, AppWorld's TGC/SGC by difficulty and app
(for episodes with a ``scenario`` facet), the zero-tool audit, group health and credit
diagnostics.

:func:`compare` turns loaded runs (:mod:`learners.reports.runs`) into a :class:`Comparison`;
:mod:`learners.reports.report` renders it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from envs.appworld.metrics import SCENARIO_FACET, goal_completion
from envs.categories import CATEGORIES
from envs.config import ConfigError
from learners.reports.runs import START, ComparisonError, EvalEpisode, Run, start_runs
from learners.reports.stats import (
    Interval,
    PairedDifference,
    Spread,
    paired_difference,
    pass_k_table,
    spread,
    step_curve,
    task_interval,
)

GROUP_HEALTH_KEYS = ("rollout/groups_mixed", "rollout/groups_all_fail", "rollout/groups_all_pass")
DRAWN_KEY, KEPT_KEY = "rollout/groups_drawn", "rollout/kept_groups"
ZERO_TOOL_KEYS = ("zero_tool_share", "tools_per_success")
DIAGNOSTIC_PREFIXES = ("credit/", "time/")
FLOOR_KEY = "eval/do_nothing_floor"
CEILING_KEY = "eval/gold_ceiling"
UPDATED_KEY = "train/updated"
ALL_TASKS = "all"


@dataclass(frozen=True)
class ComparisonConfig:
    baseline: str | None = None
    """Learner the others are paired against; None: the first learner in sorted order."""
    bootstrap_resamples: int = 10_000
    """Task sets drawn with replacement for a paired difference's CI."""
    confidence: float = 0.95
    """Coverage of the percentile bootstrap CI."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap draws, so a report is reproducible."""
    success_threshold: float = 1.0
    """An episode succeeds when its reward reaches this (as ``agents.episode.Episode``)."""
    pass_ks: tuple[int, ...] = (1, 2, 4, 8)
    """k of the pass@k / pass^k table; values above the episodes per task are left out."""
    min_category_tasks: int = 10
    """Categories with fewer held-out tasks get no verdict ("too few tasks to tell"): a
    bootstrap over so few tasks cannot cover its nominal level."""

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 1 or not 0.0 < self.confidence < 1.0:
            raise ConfigError(
                "report: need bootstrap_resamples >= 1 and 0 < confidence < 1; got "
                f"{self.bootstrap_resamples} and {self.confidence}"
            )
        if not self.pass_ks or min(self.pass_ks) < 1:
            raise ConfigError(f"report: pass_ks must be integers >= 1; got {self.pass_ks}")


@dataclass(frozen=True)
class PassKSpread:
    """pass@k and pass^k of one learner at one k: each seed's mean over tasks, over seeds."""

    k: int
    pass_at_k: Spread
    pass_hat_k: Spread


@dataclass(frozen=True)
class TaskDifference:
    """A held-out task on which a learner and the baseline differ: success rates over the
    seeds (and episodes) both evaluated it on."""

    task_id: str
    category: str
    baseline: float
    learner: float


@dataclass(frozen=True)
class GoalCompletionSpread:
    """AppWorld's TGC and SGC (percent) on one slice of the held-out tasks, over seeds."""

    slice: str
    """``all``, a category (``difficulty_<d>``) or ``<facet>=<value>`` (``app=spotify``)."""
    tasks: int
    scenarios: int
    tgc: Spread
    sgc: Spread


@dataclass(frozen=True)
class LearnerResult:
    learner: str
    seeds: list[int]
    final: Spread
    """Held-out pass@1 at each seed's last evaluation."""
    final_steps: list[int]
    best: Spread
    """Each seed's best held-out pass@1 over its evaluations (an optimistic pick)."""
    best_steps: list[int]
    floor: Spread | None
    """The do-nothing floor logged with the last evaluations."""
    ceiling: Spread | None
    """The gold-replay ceiling logged with the last evaluations (None in older runs)."""
    categories: dict[str, Spread]
    """Success per task category at the last evaluation."""
    category_episodes: dict[str, int]
    """Episodes per category in one seed's last evaluation."""
    pass_k: list[PassKSpread]
    episodes_per_task: int
    vs_baseline: PairedDifference | None
    """None for the baseline itself."""
    vs_start: PairedDifference | None
    """Against the step-0 evaluation of the same seeds (:data:`learners.reports.runs.START`): what
    training changed. None without step-0 evaluations, and for ``start`` itself."""
    category_pass1: dict[str, Interval]
    """Per category: success over tasks (averaged over seeds) and its bootstrap CI."""
    category_vs_baseline: dict[str, PairedDifference]
    """Per category: the paired difference against the baseline (empty for it)."""
    updates: tuple[int, int]
    """Training steps that took a gradient step, and steps, summed over seeds."""
    task_differences: list[TaskDifference]
    """Tasks gained and lost against the baseline, largest gain first (empty for it)."""
    failed_episodes: int
    """Failed episodes in the last evaluations, all seeds together."""
    failure_components: dict[str, float]
    """Evaluator component -> its mean over those failed episodes: which part of the
    benchmark's check a failure is due to (τ: ``db`` 0.25 -- the database was wrong in 3 of
    4 failures; AppWorld: ``test_pass_fraction``, the tests a failure still passed)."""
    goal_completion: list[GoalCompletionSpread]
    """TGC/SGC overall, by category and by facet value; empty unless every episode
    carries a ``scenario`` facet (AppWorld)."""
    zero_tool: dict[str, float | None]
    """Zero-tool audit: ``rollout/<key>`` at the first and last logged step, ``eval/<key>``
    at the last evaluation (means over seeds); None where never logged."""
    group_health: dict[str, float]
    """Mean over training steps of each group-health share."""
    drawn_per_kept_group: float | None
    """Dynamic sampling's cost: sibling groups rolled out per group trained on, over all
    steps and seeds (1.0: every group drawn was mixed); None where never logged."""
    diagnostics: dict[str, float]
    """Mean per training step of every ``credit/*`` and ``time/*`` scalar."""


@dataclass(frozen=True)
class Comparison:
    env: str
    baseline: str
    tasks: int
    """Held-out tasks in the baseline's last evaluation."""
    learners: list[LearnerResult]
    config: ComparisonConfig


def compare(runs: Sequence[Run], config: ComparisonConfig) -> Comparison:
    if all(r.learner != START for r in runs):
        runs = [*runs, *start_runs(list(runs))]
    by_learner: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_learner[run.learner].append(run)
    baseline = config.baseline or min(by_learner)
    if baseline not in by_learner:
        raise ComparisonError(
            f"baseline learner {baseline!r} has no run; learners: {sorted(by_learner)}"
        )
    rates = {
        learner: _success_rates(learner_runs, config.success_threshold)
        for learner, learner_runs in by_learner.items()
    }
    category_of = {e.task_id: e.category for r in runs for e in r.final_episodes}

    def versus(learner: str, other: str) -> PairedDifference | None:
        if learner == other or other not in rates:
            return None
        return _paired(rates[learner], rates[other], config)

    results = []
    for learner, learner_runs in sorted(by_learner.items(), key=lambda kv: _order(kv[0])):
        differences = []
        by_category: dict[str, PairedDifference] = {}
        if learner != baseline:
            differences = _task_differences(rates[learner], rates[baseline], category_of)
            for c in _in_paper_order(set(category_of.values())):
                mine = _of_category(rates[learner], c, category_of)
                theirs = _of_category(rates[baseline], c, category_of)
                if set(mine) & set(theirs):
                    by_category[c] = _paired(mine, theirs, config)
        results.append(
            _learner_result(
                learner,
                learner_runs,
                versus(learner, baseline),
                versus(learner, START),
                differences,
                by_category,
                rates[learner],
                category_of,
                config,
            )
        )
    return Comparison(
        env=runs[0].env,
        baseline=baseline,
        tasks=len({t for _, t in rates[baseline]}),
        learners=results,
        config=config,
    )


def updated_steps(metrics: Sequence[Mapping[str, float]]) -> int:
    """Steps that took a gradient step (older runs without ``train/updated``: those that
    kept a group)."""
    return sum(int(m.get(UPDATED_KEY, m.get(KEPT_KEY, 1) > 0)) for m in metrics)


def _order(learner: str) -> tuple[bool, str]:
    """``start`` first, then the learners by name."""
    return learner != START, learner


def _paired(
    candidate: Mapping[tuple[int, str], float],
    baseline: Mapping[tuple[int, str], float],
    config: ComparisonConfig,
) -> PairedDifference:
    return paired_difference(
        candidate,
        baseline,
        resamples=config.bootstrap_resamples,
        confidence=config.confidence,
        seed=config.bootstrap_seed,
    )


def _of_category(
    rates: Mapping[tuple[int, str], float], category: str, category_of: Mapping[str, str]
) -> dict[tuple[int, str], float]:
    return {k: v for k, v in rates.items() if category_of.get(k[1]) == category}


def categories_of(records: Iterable[Mapping[str, float]], prefix: str) -> list[str]:
    """Categories with a ``<prefix>/<category>/success`` key, the paper's order first."""
    found = {
        key.split("/")[1]
        for record in records
        for key in record
        if key.startswith(f"{prefix}/") and key.endswith("/success") and key.count("/") == 2
    }
    return _in_paper_order(found)


def _in_paper_order(categories: Iterable[str]) -> list[str]:
    found = set(categories)
    return [c for c in CATEGORIES if c in found] + sorted(found - set(CATEGORIES))


def _success_rates(runs: Sequence[Run], threshold: float) -> dict[tuple[int, str], float]:
    """(seed, task) -> share of that task's last-evaluation episodes that succeeded."""
    return {
        (run.seed, task): sum(wins) / len(wins)
        for run in runs
        for task, wins in _task_successes(run, threshold).items()
    }


def _task_differences(
    rates: Mapping[tuple[int, str], float],
    base_rates: Mapping[tuple[int, str], float],
    category_of: Mapping[str, str],
) -> list[TaskDifference]:
    by_task: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key in set(rates) & set(base_rates):
        by_task[key[1]].append((base_rates[key], rates[key]))
    differences = [
        TaskDifference(task, category_of[task], *np.mean(pairs, axis=0).tolist())
        for task, pairs in sorted(by_task.items())
    ]
    return sorted(
        (d for d in differences if d.learner != d.baseline),
        key=lambda d: (d.baseline - d.learner, d.task_id),
    )


def _learner_result(
    learner: str,
    runs: list[Run],
    vs: PairedDifference | None,
    vs_start: PairedDifference | None,
    differences: list[TaskDifference],
    category_differences: dict[str, PairedDifference],
    rates: Mapping[tuple[int, str], float],
    category_of: Mapping[str, str],
    config: ComparisonConfig,
) -> LearnerResult:
    best = [max(run.evals, key=lambda e: e["eval/success"]) for run in runs]
    final_evals = [r.final_eval for r in runs]
    floors = [e[FLOOR_KEY] for e in final_evals if FLOOR_KEY in e]
    ceilings = [e[CEILING_KEY] for e in final_evals if CEILING_KEY in e]
    steps = [m for r in runs for m in r.metrics]
    categories = categories_of(final_evals, "eval")
    successes = [_task_successes(run, config.success_threshold) for run in runs]
    per_task = min(len(s) for by_task in successes for s in by_task.values())
    ks = [k for k in config.pass_ks if k <= per_task]
    tables = [pass_k_table(by_task, ks) for by_task in successes] if ks else []
    failed = [e for run in runs for e in run.final_episodes if e.reward < config.success_threshold]
    return LearnerResult(
        learner=learner,
        seeds=[r.seed for r in runs],
        final=spread([r.final_eval["eval/success"] for r in runs]),
        final_steps=[int(r.final_eval["step"]) for r in runs],
        best=spread([e["eval/success"] for e in best]),
        best_steps=[int(e["step"]) for e in best],
        floor=spread(floors) if floors else None,
        ceiling=spread(ceilings) if ceilings else None,
        categories={
            c: spread([e[f"eval/{c}/success"] for e in final_evals if f"eval/{c}/success" in e])
            for c in categories
        },
        category_episodes={
            c: max(int(e.get(f"eval/{c}/episodes", 0)) for e in final_evals) for c in categories
        },
        pass_k=[
            PassKSpread(
                k,
                spread([t[i].pass_at_k for t in tables]),
                spread([t[i].pass_hat_k for t in tables]),
            )
            for i, k in enumerate(ks)
        ],
        episodes_per_task=per_task,
        vs_baseline=vs,
        vs_start=vs_start,
        category_pass1={
            c: task_interval(
                _of_category(rates, c, category_of),
                config.bootstrap_resamples,
                config.confidence,
                config.bootstrap_seed,
            )
            for c in categories
        },
        category_vs_baseline=category_differences,
        updates=(updated_steps(steps), len(steps)),
        task_differences=differences,
        failed_episodes=len(failed),
        failure_components=_failure_components(failed),
        goal_completion=_goal_completion(runs, config.success_threshold),
        zero_tool=_zero_tool(runs),
        group_health={
            key: float(np.mean(curve.mean))
            for key in GROUP_HEALTH_KEYS
            if (curve := step_curve([r.metrics for r in runs], key))
        },
        drawn_per_kept_group=_drawn_per_kept_group(runs),
        diagnostics=_diagnostics(runs),
    )


def _task_successes(run: Run, threshold: float) -> dict[str, list[bool]]:
    by_task: dict[str, list[bool]] = defaultdict(list)
    for e in run.final_episodes:
        by_task[e.task_id].append(e.reward >= threshold)
    return by_task


def _failure_components(failed: list[EvalEpisode]) -> dict[str, float]:
    names = sorted({name for e in failed for name in e.reward_components})
    means = {}
    for name in names:
        values = [e.reward_components[name] for e in failed if name in e.reward_components]
        means[name] = sum(values) / len(values)
    return means


def _goal_completion(runs: list[Run], threshold: float) -> list[GoalCompletionSpread]:
    """TGC/SGC per slice and seed, then spread over seeds. A task's outcome is its first
    episode's (greedy pass@1 evaluates one per task)."""
    episodes = [e for run in runs for e in run.final_episodes]
    if not episodes or not all(e.facets.get(SCENARIO_FACET) for e in episodes):
        return []
    scenario_of = {e.task_id: e.facets[SCENARIO_FACET][0] for e in episodes}
    categories: dict[str, set[str]] = defaultdict(set)
    facet_values: dict[str, set[str]] = defaultdict(set)
    for e in episodes:
        categories[e.category].add(e.task_id)
        for facet, values in e.facets.items():
            for value in values if facet != SCENARIO_FACET else ():
                facet_values[f"{facet}={value}"].add(e.task_id)
    slices = {
        ALL_TASKS: set(scenario_of),
        **{c: categories[c] for c in _in_paper_order(categories)},
        **dict(sorted(facet_values.items())),
    }
    outcomes = []
    for run in runs:
        first: dict[str, bool] = {}
        for e in run.final_episodes:
            first.setdefault(e.task_id, e.reward >= threshold)
        outcomes.append(first)
    rows = []
    for name, tasks in slices.items():
        per_seed = [
            goal_completion(
                {t: o[t] for t in tasks if t in o}, sorted(tasks & set(o)), scenario_of.__getitem__
            )
            for o in outcomes
        ]
        rows.append(
            GoalCompletionSpread(
                slice=name,
                tasks=max(g.num_tasks for g in per_seed),
                scenarios=max(g.num_scenarios for g in per_seed),
                tgc=spread([g.tgc for g in per_seed]),
                sgc=spread([g.sgc for g in per_seed]),
            )
        )
    return rows


def _drawn_per_kept_group(runs: list[Run]) -> float | None:
    steps = [m for r in runs for m in r.metrics if DRAWN_KEY in m and KEPT_KEY in m]
    kept = sum(m[KEPT_KEY] for m in steps)
    return sum(m[DRAWN_KEY] for m in steps) / kept if kept else None


def _zero_tool(runs: list[Run]) -> dict[str, float | None]:
    audit: dict[str, float | None] = {}
    for key in ZERO_TOOL_KEYS:
        curve = step_curve([r.metrics for r in runs], f"rollout/{key}")
        audit[f"rollout/{key}/first"] = curve.mean[0] if curve else None
        audit[f"rollout/{key}/last"] = curve.mean[-1] if curve else None
        final = [r.final_eval[f"eval/{key}"] for r in runs if f"eval/{key}" in r.final_eval]
        audit[f"eval/{key}"] = float(np.mean(final)) if final else None
    return audit


def _diagnostics(runs: list[Run]) -> dict[str, float]:
    keys = sorted(
        {
            k
            for r in runs
            for record in r.metrics
            for k in record
            if k.startswith(DIAGNOSTIC_PREFIXES)
        }
    )
    return {
        key: float(np.mean(curve.mean))
        for key in keys
        if (curve := step_curve([r.metrics for r in runs], key))
    }
