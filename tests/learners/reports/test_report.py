"""Comparison statistics and the report, on run directories written by hand to the
run-directory contract (learners/reports/runs.py), with hand-computed expected numbers."""

import json
from math import isclose
from pathlib import Path

import numpy as np
import pytest

from envs.config import ConfigError
from learners.reports.report import ReportConfig, write_report
from learners.reports.runs import ComparisonError
from learners.reports.stats import paired_difference, pass_at_k, pass_hat_k, pass_k_table, spread

# 20 held-out tasks in the tau3-airline test split's category mix (13 / 4 / 1 / 2).
TASKS = [f"t{i}" for i in range(20)]
CATEGORY = {
    t: "state_changing"
    if i < 13
    else "information_only"
    if i < 17
    else "transfer_only"
    if i == 17
    else "no_action"
    for i, t in enumerate(TASKS)
}
FLOOR = 0.35
STEPS = range(1, 11)
EVAL_STEPS = (0, 5, 10)


def write_run(
    root: Path,
    learner: str,
    seed: int,
    passed_by_step: dict[int, int],
    metrics: list[dict] | None = None,
    weights: dict[int, np.ndarray] | None = None,
    env: str = "tau3_airline",
    samples: dict[str, list[float]] | None = None,
    episodes: list[dict] | None = None,
) -> Path:
    """A run whose evaluation at step k passes the first ``passed_by_step[k]`` tasks; or,
    with ``samples``, several episodes per task with the given rewards; or, with
    ``episodes``, exactly those episode records at every evaluation."""
    run = root / f"{learner}_s{seed}"
    (run / "eval_episodes").mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps({"env": env, "learner": learner, "seed": seed, "model": "tiny", "config": {}})
    )
    lines = [json.dumps(m) for m in metrics or []]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n" if lines else "")
    evals = []
    for step, passed in passed_by_step.items():
        rewards = samples or {t: [float(i < passed)] for i, t in enumerate(TASKS)}
        records = episodes or [
            {
                "task_id": t,
                "category": CATEGORY[t],
                "reward": r,
                "tool_calls": ["get_user"],
                "reward_components": {"db": r},
            }
            for t, rs in rewards.items()
            for r in rs
        ]
        (run / "eval_episodes" / f"step_{step}.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in records)
        )
        record = {
            "step": step,
            "eval/success": np.mean([e["reward"] for e in records]),
            "eval/do_nothing_floor": FLOOR,
            "eval/tool_call_rate": 0.5,
        }
        for c in sorted({e["category"] for e in records}):
            wins = [e["reward"] for e in records if e["category"] == c]
            record[f"eval/{c}/success"] = float(np.mean(wins))
            record[f"eval/{c}/episodes"] = len(wins)
        evals.append(record)
    (run / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    if weights:
        (run / "weights").mkdir()
        for step, w in weights.items():
            np.save(run / "weights" / f"step_{step}.npy", w)
    return run


def training_metrics(zero_tool: tuple[float, float], tools: tuple[float, float], extra=None):
    """Per-step scalars; the zero-tool audit goes linearly from its first to last value."""
    rows = []
    for step in STEPS:
        f = (step - 1) / (len(STEPS) - 1)
        rows.append(
            {
                "step": step,
                "loss/pg": 0.1,
                "rollout/success": 0.5,
                "rollout/state_changing/success": 0.4,
                "rollout/information_only/success": 0.9,
                "rollout/zero_tool_share": zero_tool[0] + f * (zero_tool[1] - zero_tool[0]),
                "rollout/tools_per_success": tools[0] + f * (tools[1] - tools[0]),
                "rollout/groups_mixed": 0.5,
                "rollout/groups_all_fail": 0.25,
                "rollout/groups_all_pass": 0.25,
                "rollout/groups_drawn": 4 if step % 2 else 2,  # a second draw on odd steps
                "rollout/kept_groups": 2,
                "time/step_s": 10.0,
                **(extra or {}),
            }
        )
    return rows


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """grpo (baseline) and sgcd over seeds 0 and 1; sdpo evaluates exactly like grpo but
    collapses to zero tools in training."""
    root = tmp_path_factory.mktemp("compare")
    keep = training_metrics((0.0, 0.0), (2.5, 2.5))
    write_run(root, "grpo", 0, {0: 6, 5: 11, 10: 10}, keep)  # final 0.50, best 0.55 @5
    write_run(root, "grpo", 1, {0: 6, 5: 10, 10: 12}, keep)  # final 0.60, best 0.60 @10
    collapse = training_metrics((0.0, 1.0), (2.5, 0.0))
    write_run(root, "sdpo", 0, {0: 6, 5: 11, 10: 10}, collapse)
    write_run(root, "sdpo", 1, {0: 6, 5: 10, 10: 12}, collapse)
    rng = np.random.default_rng(0)
    for seed, final, weight_mean in ((0, 14, 1.0), (1, 16, 1.2)):
        write_run(
            root / "nested",  # run directories may sit at any depth
            "sgcd",
            seed,
            {0: 6, 5: 10, 10: final},  # final 0.70 and 0.80
            training_metrics((0.0, 0.0), (2.5, 3.0), {"credit/weight_mean": weight_mean}),
            weights={s: rng.uniform(0.5, 2.0, 200) for s in (2, 4, 6, 8, 10)},
        )
    path = write_report(root, ReportConfig(bootstrap_resamples=2000))
    return path, json.loads((path.parent / "results.json").read_text())


def learner(results, name):
    (result,) = [r for r in results["learners"] if r["learner"] == name]
    return result


# -- pass@k / pass^k ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, c, k, at_k, hat_k",
    [
        (4, 2, 1, 0.5, 0.5),
        (4, 2, 2, 5 / 6, 1 / 6),  # 1 - C(2,2)/C(4,2); C(2,2)/C(4,2)
        (5, 3, 2, 9 / 10, 3 / 10),  # 1 - C(2,2)/C(5,2); C(3,2)/C(5,2)
        (3, 1, 3, 1.0, 0.0),
        (4, 0, 2, 0.0, 0.0),
        (4, 4, 3, 1.0, 1.0),
    ],
)
def test_pass_at_k_and_pass_hat_k(n, c, k, at_k, hat_k):
    assert isclose(pass_at_k(n, c, k), at_k) and isclose(pass_hat_k(n, c, k), hat_k)


def test_pass_k_table_averages_over_tasks_and_needs_k_episodes():
    rows = pass_k_table({"a": [True, True, False, False], "b": [True] * 4}, [1, 2, 4])
    assert [r.k for r in rows] == [1, 2, 4]
    assert [r.pass_at_k for r in rows] == pytest.approx([0.75, 11 / 12, 1.0])
    assert [r.pass_hat_k for r in rows] == pytest.approx([0.75, 7 / 12, 0.5])
    with pytest.raises(ValueError, match="needs 8 episodes per task"):
        pass_k_table({"a": [True] * 4}, [8])
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 2, 0)


# -- spreads and paired differences ------------------------------------------------------
def test_spread_over_seeds():
    s = spread([0.5, 0.6, 0.7])
    assert (s.mean, s.std, s.min, s.max, s.n) == pytest.approx((0.6, 0.1, 0.5, 0.7, 3))
    assert spread([0.4]).std == 0.0


def test_identical_runs_give_a_zero_ci_within_noise():
    rates = {(seed, t): float(i % 3 == 0) for seed in (0, 1) for i, t in enumerate(TASKS)}
    d = paired_difference(rates, dict(rates), resamples=1000, confidence=0.95, seed=0)
    assert (d.mean, d.ci_low, d.ci_high) == (0.0, 0.0, 0.0) and d.within_noise
    assert (d.tasks, d.seeds, d.unpaired) == (20, 2, 0)


def test_a_clear_difference_excludes_zero():
    better = {(0, t): 1.0 for t in TASKS}
    worse = {(0, t): float(i < 2) for i, t in enumerate(TASKS)}
    d = paired_difference(better, worse, resamples=1000, confidence=0.95, seed=0)
    assert d.mean == pytest.approx(0.9) and d.ci_low > 0 and not d.within_noise


def test_one_task_of_twenty_is_within_noise_and_the_bootstrap_is_seeded():
    a = {(0, t): float(i < 11) for i, t in enumerate(TASKS)}
    b = {(0, t): float(i < 10) for i, t in enumerate(TASKS)}
    d = paired_difference(a, b, resamples=1000, confidence=0.95, seed=3)
    assert d.mean == pytest.approx(0.05) and d.ci_low == 0.0 and d.within_noise
    assert d == paired_difference(a, b, resamples=1000, confidence=0.95, seed=3)


def test_seeds_are_averaged_within_a_task_and_unpaired_keys_counted():
    a = {(0, "x"): 1.0, (1, "x"): 0.0, (0, "y"): 0.0, (1, "y"): 0.0, (2, "y"): 1.0}
    b = {(0, "x"): 0.0, (1, "x"): 0.0, (0, "y"): 0.0, (1, "y"): 0.0}
    d = paired_difference(a, b, resamples=100, confidence=0.9, seed=0)
    assert d.mean == pytest.approx(0.25)  # x: (1 + 0) / 2, y: 0
    assert (d.tasks, d.seeds, d.unpaired) == (2, 2, 1)


# -- the report --------------------------------------------------------------------------
def test_report_files(comparison):
    path, _ = comparison
    assert path.name == "report.md" and path.parent.name == "report"
    for name in (
        "training_success",
        "heldout_pass1",
        "category_pass1",
        "zero_tool_audit",
        "group_health",
        "credit_weights",
    ):
        png = path.parent / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name
        assert f"]({name}.png)" in path.read_text()
    # every figure has a caption line under it
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!["):
            assert lines[i + 2].startswith("*") and lines[i + 2].endswith(".*"), line


def test_pass1_over_seeds_last_and_best(comparison):
    _, results = comparison
    assert results["baseline"] == "grpo" and results["tasks"] == 20
    grpo = learner(results, "grpo")
    assert grpo["final"]["mean"] == pytest.approx(0.55)
    assert grpo["final"]["std"] == pytest.approx(np.sqrt(2 * 0.05**2))
    assert grpo["best"]["mean"] == pytest.approx(0.575) and grpo["best_steps"] == [5, 10]
    assert grpo["floor"]["mean"] == FLOOR
    sgcd = learner(results, "sgcd")
    assert sgcd["final"]["mean"] == pytest.approx(0.75)
    assert sgcd["categories"]["state_changing"]["mean"] == 1.0  # 13/13 on both seeds
    assert sgcd["categories"]["information_only"]["mean"] == 0.5  # 1/4 and 3/4
    assert sgcd["category_episodes"] == {
        "state_changing": 13,
        "information_only": 4,
        "transfer_only": 1,
        "no_action": 2,
    }


def test_paired_differences_in_results(comparison):
    _, results = comparison
    assert learner(results, "grpo")["vs_baseline"] is None
    sdpo = learner(results, "sdpo")["vs_baseline"]
    assert (sdpo["mean"], sdpo["ci_low"], sdpo["ci_high"]) == (0.0, 0.0, 0.0)
    assert sdpo["within_noise"]
    # per task, averaged over seeds: t10, t11, t14, t15 gain 0.5; t12, t13 gain 1 -> 4/20
    sgcd = learner(results, "sgcd")["vs_baseline"]
    assert sgcd["mean"] == pytest.approx(0.2) and sgcd["ci_low"] > 0
    assert not sgcd["within_noise"] and (sgcd["tasks"], sgcd["seeds"]) == (20, 2)


def test_the_shared_step_0_evaluation_is_the_start_learner(comparison):
    """Every run of a seed evaluated the same 6 tasks at step 0: that is ``start``, and
    each learner is paired against it (sgcd: 0.75 - 0.30)."""
    path, results = comparison
    start = learner(results, "start")
    assert start["final"]["mean"] == pytest.approx(0.3) and start["seeds"] == [0, 1]
    assert start["vs_start"] is None and start["updates"] == [0, 0]
    sgcd = learner(results, "sgcd")["vs_start"]
    assert sgcd["mean"] == pytest.approx(0.45) and not sgcd["within_noise"]
    assert learner(results, "grpo")["updates"] == [20, 20]
    assert "| sgcd | start | +0.450 |" in path.read_text()
    assert "| grpo | 0 | tiny | 10 / 10 | 0 / 0 | 3 |" in path.read_text()


def test_runs_whose_step_0_evaluations_differ_have_no_start(tmp_path):
    write_run(tmp_path, "grpo", 0, {0: 6, 2: 8}, training_metrics((0, 0), (1, 1)))
    write_run(tmp_path, "sgcd", 0, {0: 7, 2: 9}, training_metrics((0, 0), (1, 1)))
    results = json.loads((write_report(tmp_path).parent / "results.json").read_text())
    assert [r["learner"] for r in results["learners"]] == ["grpo", "sgcd"]


def test_categories_with_few_tasks_get_no_verdict(comparison):
    path, results = comparison
    sgcd = learner(results, "sgcd")
    # state_changing: 13 tasks, t10-t12 gained (t10, t11 on one seed of two): +2/13
    state = sgcd["category_vs_baseline"]["state_changing"]
    assert state["mean"] == pytest.approx(2 / 13) and state["tasks"] == 13
    assert sgcd["category_pass1"]["state_changing"]["mean"] == 1.0
    text = path.read_text()
    assert "| sgcd | transfer_only | +0.000 | — | — | 1 × 2 | too few tasks to tell |" in text
    assert "| sgcd | state_changing | +0.154 |" in text


def test_the_detectable_difference_follows_the_per_task_spread():
    """Half of 40 tasks gained one success: sd of the differences 0.5064, so the 80%-power
    difference at 95% is (1.960 + 0.842) x 0.5064 / sqrt(40) = 0.224."""
    tasks = [f"t{i}" for i in range(40)]
    a = {(0, t): float(i % 2 == 0) for i, t in enumerate(tasks)}
    b = {(0, t): 0.0 for t in tasks}
    d = paired_difference(a, b, resamples=1000, confidence=0.95, seed=0)
    assert d.detectable == pytest.approx(
        2.8016 * np.std([1, 0] * 20, ddof=1) / np.sqrt(40), rel=1e-4
    )
    assert d.detectable == pytest.approx(0.224, abs=1e-3)
    assert paired_difference(b, b, resamples=10, confidence=0.95, seed=0).detectable is None


def test_tasks_gained_and_lost_against_the_baseline(comparison):
    path, results = comparison
    assert learner(results, "sdpo")["task_differences"] == []  # evaluates exactly as grpo
    # grpo passes t0-t9 / t0-t11, sgcd t0-t13 / t0-t15 (seed 0 / seed 1)
    diffs = [
        (d["task_id"], d["baseline"], d["learner"])
        for d in learner(results, "sgcd")["task_differences"]
    ]
    assert diffs == [
        ("t12", 0.0, 1.0),
        ("t13", 0.0, 1.0),
        ("t10", 0.5, 1.0),
        ("t11", 0.5, 1.0),
        ("t14", 0.0, 0.5),
        ("t15", 0.0, 0.5),
    ]
    text = path.read_text()
    assert "| sgcd | state_changing | 3 | 0 |" in text  # t10-t12
    assert "| sgcd | information_only | 3 | 0 |" in text  # t13-t15
    assert "| sgcd | `t12` | state_changing | 0.000 | 1.000 |" in text


def test_the_task_list_is_capped_gains_then_losses(tmp_path):
    def episodes(passed):
        return [
            {"task_id": t, "category": "state_changing", "reward": float(t in passed)}
            for t in ("t0", "t1", "t2")
        ]

    write_run(tmp_path, "grpo", 0, {2: 0}, episodes=episodes({"t0", "t1"}))
    write_run(tmp_path, "sgcd", 0, {2: 0}, episodes=episodes({"t2"}))
    text = write_report(tmp_path, ReportConfig(task_rows=2)).read_text()
    assert "| sgcd | state_changing | 1 | 2 |" in text
    listed = [line for line in text.splitlines() if line.startswith("| sgcd | `t")]
    assert listed == [
        "| sgcd | `t2` | state_changing | 0.000 | 1.000 |",
        "| sgcd | `t1` | state_changing | 1.000 | 0.000 |",
    ]


def test_report_tables_print_the_numbers_and_the_floor(comparison):
    path, _ = comparison
    text = path.read_text()
    assert "| sgcd | 2 | 0.750 ± 0.071 [0.700, 0.800] | 0.350 |" in text
    assert "| grpo | 2 | 0.550 ± 0.071 [0.500, 0.600] | 0.350 | — | 0.575 ± 0.035" in text
    assert "| sdpo | grpo | +0.000 | [+0.000, +0.000] | — | 20 × 2 | within noise |" in text
    assert "| sgcd | grpo | +0.200 |" in text and "| better |" in text
    assert "One task of 20 moves pass@1 by 0.050" in text
    # pass@1 from the episodes, with the floor beside it
    assert (
        "| sgcd | 1 | 1 | 0.750 ± 0.071 [0.700, 0.800] | 0.750 ± 0.071 [0.700, 0.800] | 0.350 |"
        in text
    )


def test_zero_tool_audit_group_health_and_diagnostics(comparison):
    path, results = comparison
    z = learner(results, "sdpo")["zero_tool"]
    assert (z["rollout/zero_tool_share/first"], z["rollout/zero_tool_share/last"]) == (0.0, 1.0)
    assert z["rollout/tools_per_success/last"] == pytest.approx(0.0)
    assert z["eval/zero_tool_share"] is None  # never logged at evaluation
    assert "| sdpo | 0.000 → 1.000 | 2.500 → 0.000 | — | — |" in path.read_text()
    assert learner(results, "grpo")["group_health"] == {
        "rollout/groups_mixed": 0.5,
        "rollout/groups_all_fail": 0.25,
        "rollout/groups_all_pass": 0.25,
    }
    # 5 steps x 4 + 5 steps x 2 groups drawn for 10 x 2 kept, on each seed
    assert learner(results, "grpo")["drawn_per_kept_group"] == 1.5
    assert "| grpo | 0.500 | 0.250 | 0.250 | 1.500 |" in path.read_text()
    assert learner(results, "sgcd")["diagnostics"]["credit/weight_mean"] == pytest.approx(1.1)
    assert "credit/weight_mean" not in learner(results, "grpo")["diagnostics"]


def test_pass_k_from_several_episodes_per_task(tmp_path):
    samples = {"t0": [1.0, 1.0, 0.0, 0.0], "t1": [1.0] * 4}
    write_run(tmp_path, "grpo", 0, {3: 0}, samples=samples)
    results = json.loads((write_report(tmp_path).parent / "results.json").read_text())
    (grpo,) = results["learners"]
    assert grpo["episodes_per_task"] == 4
    assert [p["k"] for p in grpo["pass_k"]] == [1, 2, 4]  # k=8 needs 8 episodes per task
    assert [p["pass_at_k"]["mean"] for p in grpo["pass_k"]] == pytest.approx([0.75, 11 / 12, 1])
    assert [p["pass_hat_k"]["mean"] for p in grpo["pass_k"]] == pytest.approx([0.75, 7 / 12, 0.5])


def test_an_eval_only_run_without_training_steps_renders(tmp_path):
    write_run(tmp_path, "sft_base", 0, {0: 8})
    path = write_report(tmp_path)
    assert "| sft_base | 1 | 0.400 | 0.350 |" in path.read_text()
    assert not (path.parent / "training_success.png").exists()
    assert "No run wrote credit weights" in path.read_text()


def test_failures_are_attributed_to_evaluator_components(tmp_path):
    def episode(task, db, communicate):
        components = {"db": db, "communicate": communicate}
        reward = db * communicate
        return {"task_id": task, "category": "state_changing", "reward": reward} | {
            "reward_components": components
        }

    # seed 0 fails t1 on the DB and t2 on both; seed 1 fails t2 on communicate only
    write_run(
        tmp_path,
        "grpo",
        0,
        {2: 0},
        episodes=[episode("t0", 1, 1), episode("t1", 0, 1), episode("t2", 0, 0)],
    )
    write_run(
        tmp_path,
        "grpo",
        1,
        {2: 0},
        episodes=[episode("t0", 1, 1), episode("t1", 1, 1), episode("t2", 1, 0)],
    )
    path = write_report(tmp_path)
    (grpo,) = json.loads((path.parent / "results.json").read_text())["learners"]
    assert grpo["failed_episodes"] == 3
    assert grpo["failure_components"] == pytest.approx({"db": 1 / 3, "communicate": 1 / 3})
    assert "| grpo | 3 | 0.333 | 0.333 |" in path.read_text()
    assert grpo["goal_completion"] == []  # tau episodes have no scenario facet
    assert "goal completion (AppWorld)" not in path.read_text()


# AppWorld-like episodes: scenario a (difficulty 1, spotify), b (difficulty 2, spotify and
# venmo), c (difficulty 2, venmo).
APPWORLD_TASKS = {
    "a_1": ("difficulty_1", ["spotify"]),
    "a_2": ("difficulty_1", ["spotify"]),
    "a_3": ("difficulty_1", ["spotify"]),
    "b_1": ("difficulty_2", ["spotify", "venmo"]),
    "b_2": ("difficulty_2", ["spotify", "venmo"]),
    "c_1": ("difficulty_2", ["venmo"]),
}


def appworld_episodes(failed: set[str]) -> list[dict]:
    return [
        {
            "task_id": task,
            "category": category,
            "reward": float(task not in failed),
            "facets": {"app": apps, "scenario": [task.split("_")[0]]},
        }
        for task, (category, apps) in APPWORLD_TASKS.items()
    ]


def test_appworld_goal_completion_by_difficulty_and_app(tmp_path):
    write_run(
        tmp_path, "sgcd", 0, {4: 0}, env="appworld", episodes=appworld_episodes({"b_2", "c_1"})
    )
    write_run(tmp_path, "sgcd", 1, {4: 0}, env="appworld", episodes=appworld_episodes({"a_3"}))
    path = write_report(tmp_path)
    (sgcd,) = json.loads((path.parent / "results.json").read_text())["learners"]
    table = {
        g["slice"]: (
            g["tasks"],
            g["scenarios"],
            g["tgc"]["min"],
            g["tgc"]["max"],
            g["sgc"]["min"],
            g["sgc"]["max"],
        )
        for g in sgcd["goal_completion"]
    }
    # per seed (seed 0, seed 1): TGC = tasks passed, SGC = scenarios fully passed, percent
    assert table == {
        "all": (6, 3, 66.7, 83.3, 33.3, 66.7),  # 4/6, 5/6; {a}, {b, c}
        "difficulty_1": (3, 1, 66.7, 100.0, 0.0, 100.0),
        "difficulty_2": (3, 2, 33.3, 100.0, 0.0, 100.0),
        "app=spotify": (5, 2, 80.0, 80.0, 50.0, 50.0),  # 4/5 both seeds; {a} then {b}
        "app=venmo": (3, 2, 33.3, 100.0, 0.0, 100.0),
    }
    text = path.read_text()
    assert "## Task and scenario goal completion (AppWorld)" in text
    assert "| `all` | 6 | 3 | 75.0 ± 11.7 [66.7, 83.3] | 50.0 ± 23.6 [33.3, 66.7] |" in text
    assert "| `app=spotify` | 5 | 2 | 80.0 | 50.0 |" in text


# -- bad input: one line that names what is missing --------------------------------------
def test_missing_or_empty_comparison_directory(tmp_path):
    with pytest.raises(ComparisonError, match="does not exist"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(ComparisonError, match="holds no run directory"):
        write_report(tmp_path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "eval.jsonl").unlink(), r"eval\.jsonl is missing"),
        (lambda run: (run / "eval.jsonl").write_text(""), "holds no evaluation"),
        (
            lambda run: (run / "metrics.jsonl").write_text('{"step": 1}\n{oops\n'),
            r"metrics\.jsonl:2 is not valid JSON",
        ),
        (
            lambda run: (run / "eval_episodes" / "step_10.jsonl").unlink(),
            r"step_10\.jsonl is missing",
        ),
        (
            lambda run: (run / "run.json").write_text('{"env": "x", "learner": "grpo"}'),
            r"run\.json lacks \['seed'\]",
        ),
        (
            lambda run: (run / "eval.jsonl").write_text('{"step": 10}\n'),
            r"eval\.jsonl:1 lacks \['eval/success'\]",
        ),
    ],
)
def test_a_malformed_run_is_named(tmp_path, damage, message):
    damage(write_run(tmp_path, "grpo", 0, {10: 5}))
    with pytest.raises(ComparisonError, match=message) as error:
        write_report(tmp_path)
    assert "\n" not in str(error.value)


def test_inconsistent_comparisons_are_refused(tmp_path):
    write_run(tmp_path / "dup" / "a", "grpo", 0, {10: 5})
    write_run(tmp_path / "dup" / "b", "grpo", 0, {10: 6})
    with pytest.raises(ComparisonError, match="two runs of learner grpo with seed 0"):
        write_report(tmp_path / "dup")
    write_run(tmp_path / "mixed", "grpo", 0, {10: 5})
    write_run(tmp_path / "mixed", "sgcd", 0, {10: 6}, env="appworld")
    with pytest.raises(ComparisonError, match=r"several envs: \['appworld', 'tau3_airline'\]"):
        write_report(tmp_path / "mixed")


def test_unknown_baseline_lists_the_learners(tmp_path):
    write_run(tmp_path, "grpo", 0, {10: 5})
    with pytest.raises(ComparisonError, match=r"baseline learner 'gpro' has no run.*\['grpo'\]"):
        write_report(tmp_path, ReportConfig(baseline="gpro"))


@pytest.mark.parametrize(
    "options", [{"confidence": 1.0}, {"bootstrap_resamples": 0}, {"pass_ks": (0, 1)}]
)
def test_bad_report_options_are_config_errors(options):
    with pytest.raises(ConfigError, match="report: "):
        ReportConfig(**options)
