"""The figures of a comparison report, drawn with matplotlib's Agg canvas (no display,
no pyplot state): per-step curves (mean over seeds, min-max band) and credit-weight
histograms. Each function writes one PNG and returns False when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from learners.compare_stats import step_curve
from learners.runs import Run

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
    """One panel per scalar, one line per learner."""
    drawn = [p for p in panels if _curves(p, runs_by_learner)]
    if not drawn:
        return False
    fig, axes = _figure(len(drawn), style)
    for ax, panel in zip(axes, drawn, strict=False):
        for learner, curve in _curves(panel, runs_by_learner).items():
            color = _color(learner, runs_by_learner)
            ax.plot(curve.steps, curve.mean, color=color, label=learner, marker=".")
            ax.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2, lw=0)
        if panel.floor is not None:
            ax.axhline(panel.floor, color="grey", ls="--", lw=1, label="do-nothing floor")
        if panel.share:
            ax.set_ylim(*SHARE_LIMITS)
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
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


def _color(learner: str, runs_by_learner: Mapping[str, Sequence[Run]]) -> str:
    """The same color for a learner in every figure (matplotlib's 10-color cycle)."""
    return f"C{sorted(runs_by_learner).index(learner) % 10}"
