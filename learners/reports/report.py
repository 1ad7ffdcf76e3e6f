"""A comparison report: ``write_report(comparison_dir)`` reads every run directory under it
(:mod:`learners.reports.runs`), computes the comparison
(:mod:`learners.reports.comparison`) and writes, in
``<comparison_dir>/report/``, a self-contained ``report.md`` with its PNG figures and
``results.json`` holding the tables' numbers.

Example::

    from learners.reports.report import write_report
    path = write_report("outputs/compare_tau3")   # .../report/report.md
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learners.reports.comparison import (
    GROUP_HEALTH_KEYS,
    Comparison,
    ComparisonConfig,
    LearnerResult,
    categories_of,
    compare,
    updated_steps,
)
from learners.reports.plots import Panel, PlotStyle, category_bars, curves_figure, weights_figure
from learners.reports.runs import START, Run, load_comparison
from learners.reports.stats import PairedDifference, Spread

MISSING = "—"


@dataclass(frozen=True)
class ReportConfig(ComparisonConfig):
    output_subdir: str = "report"
    """Folder under the comparison directory for report.md, results.json and the PNGs."""
    dpi: int = 120
    """Resolution of the figures."""
    panel_inches: tuple[float, float] = (4.8, 3.4)
    """Width and height of one plot panel."""
    panels_per_row: int = 3
    """Panels side by side before a figure wraps to a new row."""
    histogram_steps: int = 4
    """Steps per learner whose credit weights are histogrammed: evenly spaced over the
    steps that wrote weights, first and last included."""
    histogram_bins: int = 50
    """Bins of each credit-weight histogram."""
    task_rows: int = 20
    """Tasks listed per learner in the per-task differences (largest gains and losses);
    results.json holds them all."""


def write_report(comparison_dir: str | Path, config: ReportConfig | None = None) -> Path:
    """Write the report of the runs under ``comparison_dir``; returns the report.md path.

    Raises :class:`learners.reports.runs.ComparisonError` (a ``ConfigError``) with a one-line
    message when the directory or a run in it is missing something."""
    config = config or ReportConfig()
    comparison_dir = Path(comparison_dir)
    runs = load_comparison(comparison_dir)
    comparison = compare(runs, config)
    out = comparison_dir / config.output_subdir
    out.mkdir(exist_ok=True)
    figures = _draw_figures(runs, comparison, out, config)
    (out / "results.json").write_text(json.dumps(results_dict(comparison), indent=1) + "\n")
    path = out / "report.md"
    path.write_text(render_markdown(comparison, runs, figures, comparison_dir, config))
    return path


def results_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON-ready data (the numbers behind every table)."""
    data = asdict(comparison)
    for learner, result in zip(data["learners"], comparison.learners, strict=True):
        for key in ("vs_baseline", "vs_start"):
            if (d := getattr(result, key)) is not None:
                learner[key]["within_noise"] = d.within_noise
        for c, d in result.category_vs_baseline.items():
            learner["category_vs_baseline"][c]["within_noise"] = d.within_noise
    return data


# -- figures -----------------------------------------------------------------------------
def _draw_figures(
    runs: list[Run], comparison: Comparison, out: Path, config: ReportConfig
) -> dict[str, str]:
    """Draw every figure there is data for; returns figure name -> file name."""
    style = PlotStyle(config.dpi, config.panel_inches, config.panels_per_row)
    by_learner: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_learner[run.learner].append(run)
    categories = categories_of((m for r in runs for m in r.metrics), "rollout")
    floors = [r.floor.mean for r in comparison.learners if r.floor]
    components = sorted(
        {
            k.split("/")[2]
            for r in runs
            for m in r.metrics
            for k in m
            if k.startswith("rollout/reward/")
        }
    )
    figures = {
        "training_success": [Panel("rollout success: all", "rollout/success")]
        + [Panel(f"rollout success: {c}", f"rollout/{c}/success") for c in categories],
        "heldout_pass1": [
            Panel(
                "held-out pass@1",
                "eval/success",
                source="evals",
                floor=float(np.mean(floors)) if floors else None,
            ),
            # drawn only where evaluations logged it: AppWorld, whose pass@1 is TGC / 100
            Panel("held-out SGC (AppWorld, percent)", "eval/sgc", source="evals", share=False),
        ],
        "reward_components": [
            Panel(f"rollout component: {name}", f"rollout/reward/{name}") for name in components
        ],
        "zero_tool_audit": [
            Panel("info-only successes with no tool call", "rollout/zero_tool_share"),
            Panel("tool calls per success", "rollout/tools_per_success", share=False),
        ],
        "group_health": [Panel(key.split("/")[1], key) for key in GROUP_HEALTH_KEYS],
    }
    drawn = {
        name: f"{name}.png"
        for name, panels in figures.items()
        if curves_figure(out / f"{name}.png", panels, by_learner, style)
    }
    intervals = {r.learner: r.category_pass1 for r in comparison.learners}
    if category_bars(out / "category_pass1.png", intervals, style, config.confidence):
        drawn["category_pass1"] = "category_pass1.png"
    weights = _weights_to_plot(by_learner, config.histogram_steps)
    if weights_figure(out / "credit_weights.png", weights, config.histogram_bins, style):
        drawn["credit_weights"] = "credit_weights.png"
    return drawn


def _weights_to_plot(
    by_learner: dict[str, list[Run]], steps_wanted: int
) -> dict[str, dict[int, np.ndarray]]:
    """learner -> step -> the credit weights of all its seeds at that step."""
    weights = {}
    for learner, runs in sorted(by_learner.items()):
        steps = sorted({s for r in runs for s in r.weight_files})
        if not steps:
            continue
        spaced = np.linspace(0, len(steps) - 1, steps_wanted).round().astype(int)
        picks = sorted({steps[i] for i in spaced})
        weights[learner] = {
            s: np.concatenate([np.load(r.weight_files[s]) for r in runs if s in r.weight_files])
            for s in picks
        }
    return weights


# -- markdown ----------------------------------------------------------------------------
def render_markdown(
    comparison: Comparison,
    runs: list[Run],
    figures: dict[str, str],
    comparison_dir: Path,
    config: ReportConfig,
) -> str:
    c, results = comparison, comparison.learners
    floor_note = (
        "Every pass@1 stands beside the do-nothing floor: the pass@1 of an agent that says "
        '"Sorry." and stops. A learner at or below it has stopped acting.'
    )
    lines = [
        f"# {c.env}: {', '.join(r.learner for r in results)}",
        "",
        f"{len(runs)} runs; held-out evaluation on {c.tasks} tasks. Baseline for paired "
        f"differences: **{c.baseline}**. {floor_note}",
        "",
        *_runs_table(runs, comparison_dir),
        "",
        "## Held-out pass@1",
        "",
        *_pass1_table(results),
        "",
        "Mean ± sample standard deviation over seeds, [min, max]. *best* picks each seed's "
        "best evaluation on the held-out split itself: optimistic, for reading curves only.",
        "",
        *_figure(
            figures,
            "heldout_pass1",
            "Held-out pass@1 from step 0 (the start model), mean over seeds with a 95% "
            "Student-t confidence band over seeds; dashed: the do-nothing floor",
        ),
        *_goal_completion_section(results),
        "## Paired differences",
        "",
        *_paired_table(c),
        "",
        *_category_table(c),
        *_figure(
            figures,
            "category_pass1",
            f"Held-out pass@1 per task category at the last evaluation, with the "
            f"{c.config.confidence:.0%} bootstrap CI over tasks (n = tasks in the category)",
        ),
        *_task_differences_section(c, config.task_rows),
        "## pass@k and pass^k",
        "",
        *_pass_k_table(c),
        "",
        "## Why held-out episodes failed",
        "",
        "Each part of the benchmark's own check, averaged over a learner's failed held-out "
        "episodes (all seeds): 1 means that part passed in every failure, 0 that it failed "
        "in all. On τ, `db` is the final database state and `communicate` the information "
        "the user had to be told; on AppWorld, `test_pass_fraction` is the share of the "
        "task's tests a failed episode still passed.",
        "",
        *_failure_table(results),
        "",
        "## Training curves: rollout success by category",
        "",
        *_figure(
            figures,
            "training_success",
            "Training rollout success per step, overall and by category (sampled siblings, "
            "mean over seeds with a 95% band)",
        ),
        *_figure(
            figures,
            "reward_components",
            "Each evaluator component of the training rollouts per step (mean over seeds)",
        ),
        "## Zero-tool audit",
        "",
        "Share of information-only successes that call no tool, and tool calls per success "
        "(SGCD paper §3: under SDPO the share rose 0% → 100% and tools per success fell "
        "2.5 → 0.0). A rising share with falling tools per success is the collapse.",
        "",
        *_zero_tool_table(results),
        "",
        *_figure(
            figures,
            "zero_tool_audit",
            "Zero-tool audit per training step: share of info-only successes without a tool "
            "call, and tool calls per success",
        ),
        "## Group health",
        "",
        "Share of sibling groups per step that are mixed (some pass, some fail: the only "
        "groups with a learning signal), all-fail and all-pass, mean over training steps; "
        "and what dynamic sampling paid: groups rolled out per group trained on.",
        "",
        *_group_health_table(results),
        "",
        *_figure(
            figures,
            "group_health",
            "Share of sibling groups per step that were mixed, all-fail or all-pass",
        ),
        "## Credit weights",
        "",
        *(
            _figure(
                figures,
                "credit_weights",
                "Histograms of the credit weights W on response tokens at a few steps",
            )
            or ["No run wrote credit weights (`weights/`).", ""]
        ),
        "## Training diagnostics",
        "",
        *_diagnostics_table(results),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _runs_table(runs: list[Run], comparison_dir: Path) -> list[str]:
    head = ["learner", "seed", "model", "updates / steps", "env failures (train / eval)"]
    head += ["evaluations", "last evaluated", "run"]
    rows = [_row(head), _row(["---"] * len(head))]
    for r in runs:
        # episodes a dead env ended: not trained on; in an evaluation they count as failures
        train = sum(int(m.get("rollout/env_failures", 0)) for m in r.metrics)
        held_out = sum(int(m.get("eval/env_failures", 0)) for m in r.evals)
        cells = [r.learner, str(r.seed), r.model or MISSING]
        cells += [f"{updated_steps(r.metrics)} / {len(r.metrics)}", f"{train} / {held_out}"]
        cells += [str(len(r.evals))]
        cells += [f"step {int(r.final_eval['step'])}", f"`{r.path.relative_to(comparison_dir)}`"]
        rows.append(_row(cells))
    return rows


def _pass1_table(results: list[LearnerResult]) -> list[str]:
    categories = list(dict.fromkeys(c for r in results for c in r.categories))
    episodes = {c: max(r.category_episodes.get(c, 0) for r in results) for c in categories}
    head = [
        "learner",
        "seeds",
        "pass@1 (last)",
        "do-nothing floor",
        "gold-replay ceiling",
        "pass@1 (best)",
        "best at step",
    ]
    head += [f"{c} (n={episodes[c]})" for c in categories]
    rows = [_row(head), _row(["---"] * len(head))]
    for r in results:
        cells = [
            r.learner,
            str(len(r.seeds)),
            _spread(r.final),
            _spread(r.floor),
            _spread(r.ceiling),
            _spread(r.best),
            ", ".join(map(str, r.best_steps)),
        ]
        cells += [_spread(r.categories.get(c)) for c in categories]
        rows.append(_row(cells))
    return rows


def _paired_table(c: Comparison) -> list[str]:
    level = f"{c.config.confidence:.0%} CI"
    head = ["learner", "vs", "Δ pass@1", level, "detectable Δ (80% power)", "tasks × seeds"]
    rows = [_row([*head, "verdict"]), _row(["---"] * (len(head) + 1))]
    unpaired = 0
    for r in c.learners:
        pairs = [(c.baseline, r.vs_baseline)]
        if c.baseline != START:
            pairs.append((START, r.vs_start))
        for other, d in pairs:
            if d is None:
                continue
            unpaired += d.unpaired
            rows.append(_row([r.learner, other, *_difference_cells(d)]))
    rows += [
        "",
        f"Paired by (seed, task) on each run's last evaluation (`start`: the step-0 "
        f"evaluation of the model every learner started from). CI: percentile bootstrap over "
        f"tasks (scipy.stats.bootstrap, {c.config.bootstrap_resamples} resamples, seed "
        f"{c.config.bootstrap_seed}). Detectable Δ: the true difference these tasks would "
        f"find with 80% power at this level, from the observed per-task spread; a "
        f"difference within noise and smaller than it is one this experiment cannot see. "
        f"One task of {c.tasks} moves pass@1 by {1 / c.tasks:.3f}.",
    ]
    if unpaired:
        rows += [
            "",
            f"{unpaired} (seed, task) evaluations had no partner on the other side and were "
            "left out: the runs did not evaluate identical tasks and seeds.",
        ]
    return rows


def _difference_cells(d: PairedDifference) -> list[str]:
    verdict = "within noise" if d.within_noise else ("better" if d.mean > 0 else "worse")
    detectable = MISSING if d.detectable is None else f"{d.detectable:.3f}"
    return [
        f"{d.mean:+.3f}",
        f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]",
        detectable,
        f"{d.tasks} × {d.seeds}",
        verdict,
    ]


def _category_table(c: Comparison) -> list[str]:
    """Per category and learner: the paired difference against the baseline, or "too few
    tasks to tell" under ``min_category_tasks``."""
    level = f"{c.config.confidence:.0%} CI"
    head = ["learner", "category", "Δ pass@1", level, "detectable Δ (80% power)", "tasks × seeds"]
    rows = [_row([*head, "verdict"]), _row(["---"] * (len(head) + 1))]
    for r in c.learners:
        for category, d in r.category_vs_baseline.items():
            if d.tasks < c.config.min_category_tasks:
                cells = [f"{d.mean:+.3f}", MISSING, MISSING, f"{d.tasks} × {d.seeds}"]
                rows.append(_row([r.learner, category, *cells, "too few tasks to tell"]))
            else:
                rows.append(_row([r.learner, category, *_difference_cells(d)]))
    if len(rows) == 2:
        return []
    return [
        f"## Paired differences vs {c.baseline} by category",
        "",
        *rows,
        "",
        f"A category with fewer than {c.config.min_category_tasks} held-out tasks gets no "
        "verdict: a bootstrap over so few tasks does not reach its nominal coverage.",
        "",
    ]


def _task_differences_section(c: Comparison, task_rows: int) -> list[str]:
    others = [r for r in c.learners if r.vs_baseline is not None]
    if not others:
        return []
    categories = list(dict.fromkeys(d.category for r in others for d in r.task_differences))
    counts = [_row(["learner", "category", "tasks gained", "tasks lost"]), _row(["---"] * 4)]
    head = ["learner", "task", "category", f"{c.baseline} success", "learner's success"]
    listed = [_row(head), _row(["---"] * 5)]
    for r in others:
        for category in categories:
            diffs = [d for d in r.task_differences if d.category == category]
            gained = sum(d.learner > d.baseline for d in diffs)
            counts.append(_row([r.learner, category, str(gained), str(len(diffs) - gained)]))
        gains = [d for d in r.task_differences if d.learner > d.baseline]
        losses = [d for d in r.task_differences if d.learner < d.baseline][::-1]
        half = task_rows // 2
        shown = gains[: task_rows - min(half, len(losses))]
        shown += losses[: task_rows - len(shown)]
        for d in shown:
            cells = [r.learner, f"`{d.task_id}`", d.category, _num(d.baseline), _num(d.learner)]
            listed.append(_row(cells))
    if not categories:
        return [f"Every learner succeeds on the same held-out tasks as {c.baseline}.", ""]
    return [
        f"### Tasks that differ from {c.baseline}",
        "",
        "Which held-out tasks a learner solves and the baseline does not (gained), and the "
        "reverse (lost), by category; success rates are over seeds. A few tasks moving "
        "each way is what noise looks like.",
        "",
        *counts,
        "",
        f"Largest gains, then largest losses (at most {task_rows} per learner; "
        "`results.json` lists all):",
        "",
        *listed,
        "",
    ]


def _pass_k_table(c: Comparison) -> list[str]:
    rows = [
        _row(["learner", "episodes per task", "k", "pass@k", "pass^k", "do-nothing floor"]),
        _row(["---"] * 6),
    ]
    for r in c.learners:
        for p in r.pass_k:
            cells = [r.learner, str(r.episodes_per_task), str(p.k), _spread(p.pass_at_k)]
            rows.append(_row([*cells, _spread(p.pass_hat_k), _spread(r.floor)]))
    ks = ", ".join(map(str, c.config.pass_ks))
    rows += [
        "",
        "pass@k: at least one of k episodes succeeds; pass^k: all k do (SGCD paper, "
        "Appendix B; unbiased estimators from n ≥ k episodes per task). At k = 1 both are "
        f"pass@1. k asked for: {ks}; a k above the episodes per task is left out.",
    ]
    return rows


def _goal_completion_section(results: list[LearnerResult]) -> list[str]:
    with_scenarios = [r for r in results if r.goal_completion]
    if not with_scenarios:
        return []
    slices = list(dict.fromkeys(g.slice for r in with_scenarios for g in r.goal_completion))
    head = ["slice", "tasks", "scenarios"]
    head += [f"{r.learner} {metric}" for r in with_scenarios for metric in ("TGC", "SGC")]
    rows = [_row(head), _row(["---"] * len(head))]
    for name in slices:
        found = {
            r.learner: {g.slice: g for g in r.goal_completion}.get(name) for r in with_scenarios
        }
        sized = next(g for g in found.values() if g)
        cells = [f"`{name}`", str(sized.tasks), str(sized.scenarios)]
        for r in with_scenarios:
            g = found[r.learner]
            cells += [_spread(g.tgc if g else None, 1), _spread(g.sgc if g else None, 1)]
        rows.append(_row(cells))
    return [
        "## Task and scenario goal completion (AppWorld)",
        "",
        "TGC: percent of tasks whose every test passes; SGC: percent of scenarios all of whose "
        "tasks do (a slice counts a scenario's tasks in that slice, as AppWorld's own report "
        "does). Overall, by difficulty and by the apps a task needs; mean ± sd over seeds.",
        "",
        *rows,
        "",
    ]


def _failure_table(results: list[LearnerResult]) -> list[str]:
    names = sorted({n for r in results for n in r.failure_components})
    head = ["learner", "failed episodes", *(f"`{n}`" for n in names)]
    rows = [_row(head), _row(["---"] * len(head))]
    for r in results:
        shares = [_num(r.failure_components.get(n)) for n in names]
        rows.append(_row([r.learner, str(r.failed_episodes), *shares]))
    return rows


def _zero_tool_table(results: list[LearnerResult]) -> list[str]:
    head = [
        "learner",
        "zero-tool share (first → last step)",
        "tools per success (first → last step)",
        "held-out zero-tool share",
        "held-out tools per success",
    ]
    rows = [_row(head), _row(["---"] * len(head))]
    for r in results:
        z = r.zero_tool
        rows.append(
            _row(
                [
                    r.learner,
                    f"{_num(z['rollout/zero_tool_share/first'])} → "
                    f"{_num(z['rollout/zero_tool_share/last'])}",
                    f"{_num(z['rollout/tools_per_success/first'])} → "
                    f"{_num(z['rollout/tools_per_success/last'])}",
                    _num(z["eval/zero_tool_share"]),
                    _num(z["eval/tools_per_success"]),
                ]
            )
        )
    return rows


def _group_health_table(results: list[LearnerResult]) -> list[str]:
    names = [key.split("/")[1] for key in GROUP_HEALTH_KEYS]
    head = ["learner", *names, "groups drawn per kept group"]
    rows = [_row(head), _row(["---"] * len(head))]
    for r in results:
        shares = [_num(r.group_health.get(k)) for k in GROUP_HEALTH_KEYS]
        rows.append(_row([r.learner, *shares, _num(r.drawn_per_kept_group)]))
    return rows


def _diagnostics_table(results: list[LearnerResult]) -> list[str]:
    keys = sorted({k for r in results for k in r.diagnostics})
    if not keys:
        return ["No `credit/*` or `time/*` scalars were logged."]
    rows = [
        "Mean per training step, averaged over seeds.",
        "",
        _row(["scalar", *(r.learner for r in results)]),
        _row(["---"] * (len(results) + 1)),
    ]
    for key in keys:
        rows.append(_row([f"`{key}`", *(_num(r.diagnostics.get(key)) for r in results)]))
    return rows


def _figure(figures: dict[str, str], name: str, caption: str) -> list[str]:
    """The figure and, under it, its one-line caption."""
    return [f"![{caption}]({figures[name]})", "", f"*{caption}.*", ""] if name in figures else []


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _num(x: float | None) -> str:
    return MISSING if x is None else f"{x:.3f}"


def _spread(s: Spread | None, digits: int = 3) -> str:
    if s is None:
        return MISSING
    if s.min == s.max:  # one seed, or all seeds agree
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} [{s.min:.{digits}f}, {s.max:.{digits}f}]"
