"""Held-out evaluation: one greedy episode per task (pass@1), in batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from agents.env_pool import EnvPool
from agents.episode import EpisodeGroup
from agents.rollout import Policy, RolloutConfig, rollout_groups
from envs.core import ToolUseEnv
from envs.replay import replay
from learners.metrics import episode_metrics, goal_completion_metrics


def evaluate_policy(
    pool: EnvPool,
    policy: Policy,
    task_ids: list[str],
    config: RolloutConfig,
    seed: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[EpisodeGroup]:
    """``config.n`` episodes per task (n=1 and temperature 0 for pass@1), ``pool.size``
    episodes at a time."""
    per_batch = max(pool.size // config.n, 1)
    groups: list[EpisodeGroup] = []
    for start in range(0, len(task_ids), per_batch):
        batch = task_ids[start : start + per_batch]
        groups += rollout_groups(pool, policy, batch, seed + start, config)
        if on_batch:
            on_batch(len(batch))
    return groups


def do_nothing_floor(env: ToolUseEnv, task_ids: list[str]) -> float:
    """pass@1 of an agent that says "Sorry." and stops: the floor to read pass@1 against."""
    results = list(replay(env, task_ids, "do_nothing"))
    return sum(r.reward for r in results) / len(results)


def write_eval(
    run_dir: Path, step: int, groups: list[EpisodeGroup], floor: float
) -> dict[str, float]:
    """Append the step's metrics to ``eval.jsonl`` and write ``eval_episodes/step_<k>.jsonl``
    (the layout learners/report.py reads)."""
    metrics = {
        "step": step,
        **episode_metrics(groups, "eval"),
        **goal_completion_metrics(groups, "eval"),
        "eval/do_nothing_floor": floor,
    }
    with (run_dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps(metrics) + "\n")
    episodes_dir = run_dir / "eval_episodes"
    episodes_dir.mkdir(exist_ok=True)
    with (episodes_dir / f"step_{step}.jsonl").open("w") as f:
        for g in groups:
            for e in g.episodes:
                record = {
                    "task_id": e.task_id,
                    "category": e.category,
                    "reward": e.reward,
                    "tool_calls": e.tool_calls,
                    "reward_components": e.reward_components,
                    "facets": e.facets,
                }
                f.write(json.dumps(record) + "\n")
    return metrics
