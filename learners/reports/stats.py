"""Statistics for comparing learners: pass@k and pass^k, spreads over seeds, paired
bootstrap differences with their minimum detectable difference, per-step curves with a
confidence band over seeds. Pure functions over plain numbers.

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
from scipy.stats import bootstrap, norm
from scipy.stats import t as student_t


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
    tasks and the smallest difference the sample could detect. ``unpaired`` counts (seed,
    task) keys present on one side only (left out)."""

    mean: float
    ci_low: float
    ci_high: float
    confidence: float
    tasks: int
    seeds: int
    unpaired: int
    detectable: float | None
    """Minimum detectable difference at :data:`POWER` power and this confidence, from the
    spread of the per-task differences; None when no task differed (no spread to use)."""

    @property
    def within_noise(self) -> bool:
        return self.ci_low <= 0.0 <= self.ci_high


POWER = 0.8


def minimum_detectable_difference(diffs: np.ndarray, confidence: float) -> float | None:
    """``(z_{1-α/2} + z_{power}) · sd / √n`` for ``n`` per-task paired differences (the
    normal approximation of a two-sided paired test): the true mean difference this many
    tasks would detect with probability :data:`POWER`, given the observed discordance."""
    if len(diffs) < 2 or not np.any(diffs != diffs[0]):
        return None
    z = norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(POWER)
    return float(z * diffs.std(ddof=1) / np.sqrt(len(diffs)))


def paired_difference(
    candidate: Mapping[tuple[int, str], float],
    baseline: Mapping[tuple[int, str], float],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedDifference:
    """Mean paired difference of per-(seed, task) success rates, its percentile bootstrap
    CI (``scipy.stats.bootstrap``) and minimum detectable difference.

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
    low, high = bootstrap_mean(diffs, resamples, confidence, seed)
    return PairedDifference(
        mean=float(diffs.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        tasks=len(diffs),
        seeds=len({key[0] for key in keys}),
        unpaired=len(set(candidate) ^ set(baseline)),
        detectable=minimum_detectable_difference(diffs, confidence),
    )


def bootstrap_mean(
    values: np.ndarray, resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (one per task), seeded."""
    if np.all(values == values[0]):  # no spread: every resample has the same mean
        return float(values[0]), float(values[0])
    ci = bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Interval:
    """A mean over tasks (each task's success averaged over seeds) and its bootstrap CI."""

    mean: float
    low: float
    high: float
    tasks: int


def task_interval(
    rates: Mapping[tuple[int, str], float], resamples: int, confidence: float, seed: int
) -> Interval:
    """``rates``: (seed, task) -> success rate; the CI resamples tasks."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for (_, task), rate in rates.items():
        by_task[task].append(rate)
    values = np.array([np.mean(v) for v in by_task.values()])
    low, high = bootstrap_mean(values, resamples, confidence, seed)
    return Interval(float(values.mean()), low, high, len(values))


@dataclass(frozen=True)
class Curve:
    """One scalar over steps, across seeds: the mean at each step and a two-sided
    Student-t confidence band over the seeds there (the mean itself with one seed)."""

    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    seeds: list[int]
    """Seeds that logged the scalar at each step."""


def step_curve(
    runs: Sequence[Sequence[Mapping[str, float]]], key: str, confidence: float = 0.95
) -> Curve | None:
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
    means = [float(np.mean(values[s])) for s in steps]
    half = []
    for s in steps:
        v = np.asarray(values[s])
        if len(v) < 2:
            half.append(0.0)
            continue
        t = student_t.ppf(1 - (1 - confidence) / 2, len(v) - 1)
        half.append(float(t * v.std(ddof=1) / np.sqrt(len(v))))
    return Curve(
        steps=steps,
        mean=means,
        low=[m - h for m, h in zip(means, half, strict=True)],
        high=[m + h for m, h in zip(means, half, strict=True)],
        seeds=[len(values[s]) for s in steps],
    )
