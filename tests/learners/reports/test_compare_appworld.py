"""`toolgym compare` end to end on AppWorld: a tiny model trains one step in the real
AppWorld engine (synthetic world), and the report gives TGC/SGC by difficulty and by app
from the episodes' facets."""

import json
import subprocess
import sys

from envs.appworld.world import synthetic_world

SPLIT = "test_normal"  # the synthetic world's 6 tasks in 3 scenarios


def test_compare_on_appworld_reports_goal_completion_by_difficulty_and_app(tmp_path):
    out = tmp_path / "compare"
    command = [
        sys.executable,
        "-m",
        "learners.cli",
        "compare",
        "env=appworld",
        f"env.data_root={synthetic_world()}",
        "env.max_steps=2",
        f"eval_split={SPLIT}",
        "model=tiny_random",
        "learners=[grpo]",
        "seeds=[0]",
        "train.steps=1",
        "train.groups_per_step=1",
        "train.dynamic_sampling=false",
        "rollout.n=2",
        "rollout.sampling.max_new_tokens=12",
        "eval_batch=6",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    run = out / "grpo-seed0"
    episodes = [json.loads(x) for x in (run / "eval_episodes" / "step_1.jsonl").open()]
    assert len(episodes) == 6
    by_task = {e["task_id"]: e for e in episodes}
    assert by_task["5a3ce0c_1"]["facets"] == {
        "app": ["phone", "simple_note"],
        "scenario": ["5a3ce0c"],
    }
    assert set(by_task["5a3ce0c_1"]["reward_components"]) == {"test_pass_fraction"}

    (evaluation,) = [json.loads(x) for x in (run / "eval.jsonl").open()]
    assert evaluation["eval/tgc"] == round(100 * evaluation["eval/success"], 1)
    assert 0.0 <= evaluation["eval/sgc"] <= evaluation["eval/tgc"]  # scenarios of 2 tasks each
    (grpo,) = json.loads((out / "report" / "results.json").read_text())["learners"]
    rows = {g["slice"]: g for g in grpo["goal_completion"]}
    assert (rows["all"]["tasks"], rows["all"]["scenarios"]) == (6, 3)
    difficulties = sorted(k for k in rows if k.startswith("difficulty_"))
    assert sum(rows[d]["tasks"] for d in difficulties) == 6
    assert {"app=phone", "app=simple_note"} <= set(rows)
    # TGC is pass@1 in percent: the report's two numbers come from the same episodes
    successes = sum(e["reward"] >= 1.0 for e in episodes)
    assert rows["all"]["tgc"]["mean"] == round(100 * successes / 6, 1)
    report = (out / "report" / "report.md").read_text()
    assert "## Task and scenario goal completion (AppWorld)" in report
    assert "| `all` | 6 | 3 |" in report
