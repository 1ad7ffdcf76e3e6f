"""Statistics for comparing learners: pass@k and pass^k, spreads over seeds, paired
bootstrap differences, per-step curves. Pure functions over plain numbers.

pass@k and pass^k follow the SGCD paper's Appendix B (after tau-bench, Yao et al. 2024):
with ``k`` independent episodes of a task, pass@k asks that at least one succeeds, pass^k
that all do. From ``n >= k`` episodes with ``c`` successes the unbiased estimators are
``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021) and ``C(c, k) / C(n, k)`` (Yao et al. 2024);
at ``k = 1`` both are ``c / n``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import comb

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` episodes drawn from ``n`` (``c`` successes)
    succeeds."""
    _check_counts(n, c, k)
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Probability that all ``k`` episodes drawn from ``n`` (``c`` successes) succeed."""
    _check_counts(n, c, k)
    return comb(c, k) / comb(n, k)


def _check_counts(n: int, c: int, k: int) -> None:
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"need 1 <= k <= n and 0 <= c <= n; got n={n}, c={c}, k={k}")


@dataclass(frozen=True)
class PassK:
    """Mean over tasks of the per-task estimators at one ``k``."""

    k: int
    pass_at_k: float
    pass_hat_k: float
    tasks: int


def pass_k_table(successes: Mapping[str, Sequence[bool]], ks: Sequence[int]) -> list[PassK]:
    """pass@k and pass^k for each ``k`` in ``ks``; ``successes`` maps a task id to the
    success of each of its episodes. Every task needs at least ``max(ks)`` episodes."""
    if not successes:
        raise ValueError("pass_k_table needs at least one task")
    short = {t: len(s) for t, s in successes.items() if len(s) < max(ks)}
    if short:
        raise ValueError(f"pass^k at k={max(ks)} needs {max(ks)} episodes per task; {short}")
    rows = []
    for k in ks:
        at = [pass_at_k(len(s), sum(s), k) for s in successes.values()]
        hat = [pass_hat_k(len(s), sum(s), k) for s in successes.values()]
        rows.append(PassK(k, float(np.mean(at)), float(np.mean(hat)), len(successes)))
    return rows


@dataclass(frozen=True)
class Spread:
    """A number over seeds: mean, sample standard deviation (0 for one seed), range."""

    mean: float
    std: float
    min: float
    max: float
    n: int


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    a = np.asarray(values, dtype=float)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return Spread(float(a.mean()), std, float(a.min()), float(a.max()), len(a))


@dataclass(frozen=True)
class PairedDifference:
    """``candidate - baseline`` success, paired by (seed, task), with a bootstrap CI over
    tasks. ``unpaired`` counts (seed, task) keys present on one side only (left out)."""

    mean: float
    ci_low: float
    ci_high: float
    confidence: float
    tasks: int
    seeds: int
    unpaired: int

    @property
    def within_noise(self) -> bool:
        return self.ci_low <= 0.0 <= self.ci_high


def paired_difference(
    candidate: Mapping[tuple[int, str], float],
    baseline: Mapping[tuple[int, str], float],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedDifference:
    """Mean paired difference of per-(seed, task) success rates and its percentile
    bootstrap CI.

    Tasks are the resampled unit (seeds of one task share its difficulty): each task's
    difference is first averaged over seeds, then ``resamples`` task sets of the same size
    are drawn with replacement. Identical inputs give ``[0, 0]``.
    """
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(
            f"need resamples >= 1 and 0 < confidence < 1; got {resamples}, {confidence}"
        )
    keys = sorted(set(candidate) & set(baseline))
    if not keys:
        raise ValueError("no (seed, task_id) pair is shared by the two sides")
    by_task: dict[str, list[float]] = defaultdict(list)
    for key in keys:
        by_task[key[1]].append(candidate[key] - baseline[key])
    diffs = np.array([np.mean(d) for d in by_task.values()])  # (tasks,)
    rng = np.random.default_rng(seed)
    draws = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return PairedDifference(
        mean=float(diffs.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        tasks=len(diffs),
        seeds=len({key[0] for key in keys}),
        unpaired=len(set(candidate) ^ set(baseline)),
    )


@dataclass(frozen=True)
class Curve:
    """One scalar over steps, across seeds: mean and range at each step."""

    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]


def step_curve(runs: Sequence[Sequence[Mapping[str, float]]], key: str) -> Curve | None:
    """``key`` per step across runs (each a list of per-step records with ``"step"``); a
    run that lacks the key at a step is left out there. None when no run has the key."""
    values: dict[int, list[float]] = defaultdict(list)
    for records in runs:
        for record in records:
            if key in record:
                values[int(record["step"])].append(float(record[key]))
    if not values:
        return None
    steps = sorted(values)
    return Curve(
        steps=steps,
        mean=[float(np.mean(values[s])) for s in steps],
        low=[min(values[s]) for s in steps],
        high=[max(values[s]) for s in steps],
    )
