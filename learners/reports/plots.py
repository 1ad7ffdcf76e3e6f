"""The figures of a comparison report, drawn with matplotlib's Agg canvas (no display,
no pyplot state): per-step curves (mean over seeds, Student-t confidence band), per-category
bars with bootstrap CIs, and credit-weight histograms. Each function writes one PNG and
returns False when there is nothing to draw.

Every learner keeps one color, marker and line style across figures, and learners are
dodged sideways a little, so that equal values stay visible instead of hiding each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from learners.reports.runs import Run
from learners.reports.stats import Interval, step_curve

SHARE_LIMITS = (-0.03, 1.03)  # [0, 1] with a margin, so lines at 0 and 1 stay visible


@dataclass(frozen=True)
class PlotStyle:
    dpi: int
    panel_inches: tuple[float, float]
    panels_per_row: int


@dataclass(frozen=True)
class Panel:
    title: str
    key: str
    """The per-step scalar drawn, e.g. ``rollout/success``."""
    source: str = "metrics"
    """``metrics`` (training steps) or ``evals`` (held-out evaluations)."""
    floor: float | None = None
    """A horizontal reference line (the do-nothing floor)."""
    share: bool = True
    """The scalar is a share in [0, 1]: every learner drawn on that whole range."""


def curves_figure(
    path: Path,
    panels: Sequence[Panel],
    runs_by_learner: Mapping[str, Sequence[Run]],
    style: PlotStyle,
) -> bool:
    """One panel per scalar, one line per learner (mean over seeds, 95% band)."""
    drawn = [p for p in panels if _curves(p, runs_by_learner)]
    if not drawn:
        return False
    fig, axes = _figure(len(drawn), style)
    learners = sorted(runs_by_learner)
    for ax, panel in zip(axes, drawn, strict=False):
        curves = _curves(panel, runs_by_learner)
        for learner, curve in curves.items():
            look = _look(learner, learners)
            steps = np.asarray(curve.steps, dtype=float) + _dodge(learner, learners)
            ax.plot(steps, curve.mean, label=learner, markerfacecolor="none", **look)
            if any(lo != hi for lo, hi in zip(curve.low, curve.high, strict=True)):
                ax.fill_between(steps, curve.low, curve.high, color=look["color"], alpha=0.12)
        if panel.floor is not None:
            ax.axhline(panel.floor, color="grey", ls="--", lw=1, label="do-nothing floor")
        _y_range(ax, panel, curves.values())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.title.split(":")[0])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.savefig(path)
    return True


def category_bars(
    path: Path,
    intervals: Mapping[str, Mapping[str, Interval]],
    style: PlotStyle,
    confidence: float,
) -> bool:
    """Grouped bars: per category, each learner's held-out pass@1 with its CI."""
    categories = list(dict.fromkeys(c for by_c in intervals.values() for c in by_c))
    if not categories:
        return False
    fig, (ax, *_) = _figure(1, PlotStyle(style.dpi, _wide(style, len(categories)), 1))
    learners = list(intervals)
    width = 0.8 / len(learners)
    for k, learner in enumerate(learners):
        look = _look(learner, sorted(learners))
        xs, means, errors = [], [], [[], []]
        for i, c in enumerate(categories):
            if c in intervals[learner]:
                iv = intervals[learner][c]
                xs.append(i - 0.4 + width * (k + 0.5))
                means.append(iv.mean)
                errors[0].append(iv.mean - iv.low)
                errors[1].append(iv.high - iv.mean)
        ax.bar(xs, means, width, color=look["color"], alpha=0.7, label=learner)
        ax.errorbar(xs, means, yerr=errors, fmt="none", ecolor="black", capsize=3, lw=1)
    tasks = {c: max(iv[c].tasks for iv in intervals.values() if c in iv) for c in categories}
    ax.set_xticks(range(len(categories)), [f"{c}\n(n={tasks[c]})" for c in categories])
    ax.set_ylim(*SHARE_LIMITS)
    ax.set_ylabel("held-out pass@1")
    ax.set_title(f"held-out pass@1 by category ({confidence:.0%} bootstrap CI over tasks)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="x-small")
    fig.savefig(path)
    return True


def weights_figure(
    path: Path,
    weights: Mapping[str, Mapping[int, np.ndarray]],
    bins: int,
    style: PlotStyle,
) -> bool:
    """One panel per learner: histograms of its credit weights at a few steps (all seeds)."""
    if not weights:
        return False
    fig, axes = _figure(len(weights), style)
    for ax, (learner, by_step) in zip(axes, weights.items(), strict=False):
        for step, values in by_step.items():
            ax.hist(values, bins=bins, histtype="step", density=True, label=f"step {step}")
        ax.set_title(f"{learner}: credit weights W")
        ax.set_xlabel("W")
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    fig.savefig(path)
    return True


def _curves(panel: Panel, runs_by_learner: Mapping[str, Sequence[Run]]) -> dict:
    curves = {}
    for learner, runs in runs_by_learner.items():
        records = [r.metrics if panel.source == "metrics" else r.evals for r in runs]
        if curve := step_curve(records, panel.key):
            curves[learner] = curve
    return curves


def _figure(n_panels: int, style: PlotStyle):
    cols = min(n_panels, style.panels_per_row)
    rows = -(-n_panels // cols)
    width, height = style.panel_inches
    fig = Figure(figsize=(width * cols, height * rows), dpi=style.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":", "-.")


def _look(learner: str, learners: Sequence[str]) -> dict:
    """The same color, marker and line style for a learner in every figure."""
    i = list(learners).index(learner)
    return {
        "color": f"C{i % 10}",
        "marker": MARKERS[i % len(MARKERS)],
        "ls": LINESTYLES[i % len(LINESTYLES)],
    }


def _dodge(learner: str, learners: Sequence[str]) -> float:
    """A small sideways offset per learner (in steps), centred on the true step."""
    i, n = list(learners).index(learner), len(learners)
    return 0.08 * (i - (n - 1) / 2)


def _y_range(ax, panel: Panel, curves) -> None:
    """Shares on [0, 1]; other scalars on their own range, widened when it is flat."""
    if panel.share:
        ax.set_ylim(*SHARE_LIMITS)
        return
    values = [v for c in curves for v in (*c.low, *c.high)]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        pad = max(abs(high) * 0.1, 0.5)
        ax.set_ylim(low - pad, high + pad)


def _wide(style: PlotStyle, groups: int) -> tuple[float, float]:
    width, height = style.panel_inches
    return max(width, 1.2 * groups + 1.5), height
