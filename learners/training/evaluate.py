"""Held-out evaluation: one greedy episode per task (pass@1), in batches."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.env_pool import EnvPool, EnvSpec
from agents.episode import EpisodeGroup
from agents.rollout import Policy, RolloutConfig, rollout_groups
from envs.config import ConfigError
from envs.core import ToolUseEnv
from envs.replay import replay
from learners.training.metrics import episode_metrics, goal_completion_metrics


def evaluate_policy(
    pool: EnvPool,
    policy: Policy,
    task_ids: list[str],
    config: RolloutConfig,
    seed: int,
    on_batch: Callable[[list[EpisodeGroup]], None] | None = None,
    done: Sequence[EpisodeGroup] = (),
) -> list[EpisodeGroup]:
    """``config.n`` episodes per task (n=1 and temperature 0 for pass@1), ``pool.size``
    episodes at a time, in task order. ``on_batch`` gets each batch's groups as it ends
    (to write them at once); a batch whose tasks are all in ``done`` (an interrupted
    evaluation's) is kept, not run again: batches and seeds are those of a whole run."""
    per_batch = max(pool.size // config.n, 1)
    finished = {g.task_id: g for g in done}
    groups: list[EpisodeGroup] = []
    for start in range(0, len(task_ids), per_batch):
        batch = task_ids[start : start + per_batch]
        if all(t in finished for t in batch):
            groups += [finished[t] for t in batch]
            continue
        new = rollout_groups(pool, policy, batch, seed + start, config)
        groups += new
        if on_batch:
            on_batch(new)
    return groups


@dataclass(frozen=True)
class Bounds:
    """The scripted bounds pass@1 is read between, on the evaluated tasks."""

    floor: float
    """pass@1 of an agent that says "Sorry." and stops."""
    ceiling: float
    """pass@1 of replaying each task's gold actions (1.0 where the benchmark's own
    solutions always pass)."""


def scripted_bounds(
    env: ToolUseEnv, task_ids: list[str], on_task: Callable[[], None] | None = None
) -> Bounds:
    """``on_task()`` after each of the 2 x len(task_ids) scripted episodes."""

    def mean_reward(policy: str) -> float:
        rewards = []
        for result in replay(env, task_ids, policy):
            rewards.append(result.reward)
            if on_task:
                on_task()
        return sum(rewards) / len(rewards)

    return Bounds(floor=mean_reward("do_nothing"), ceiling=mean_reward("gold"))


# per process: the runs of a compare share their held-out tasks (~20 s of scripted
# episodes for airline_mini's 60)
_BOUNDS: dict[str, Bounds] = {}


def shared_scripted_bounds(spec: EnvSpec, env: ToolUseEnv, task_ids: list[str]) -> Bounds:
    """:func:`scripted_bounds` of ``env`` (built from ``spec``), computed once per process
    for each env config and task list: scripted episodes do not depend on the run."""
    key = json.dumps([spec.env, spec.user, task_ids], sort_keys=True, default=str)
    if key not in _BOUNDS:
        _BOUNDS[key] = scripted_bounds(env, task_ids)
    return _BOUNDS[key]


def write_eval(
    run_dir: Path, step: int, groups: list[EpisodeGroup], bounds: Bounds
) -> dict[str, float]:
    """Append the step's metrics to ``eval.jsonl`` and write ``eval_episodes/step_<k>.jsonl``
    (the layout learners/reports/report.py reads)."""
    metrics = {
        "step": step,
        **episode_metrics(groups, "eval"),
        **goal_completion_metrics(groups, "eval"),
        "eval/do_nothing_floor": bounds.floor,
        "eval/gold_ceiling": bounds.ceiling,
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


def reuse_start_evaluation(source: Path, run_dir: Path, task_ids: list[str]) -> dict[str, float]:
    """Copy the step-0 evaluation in ``source`` (an ``evaluate`` output directory, or a run
    that evaluated its start) into ``run_dir``; it must cover exactly ``task_ids``."""
    records = source / "eval.jsonl"
    episodes = source / "eval_episodes" / "step_0.jsonl"
    if not (records.is_file() and episodes.is_file()):
        raise ConfigError(
            f"train.start_eval={source}: not an evaluation directory (needs eval.jsonl and "
            "eval_episodes/step_0.jsonl, as `toolgym evaluate` writes them)"
        )
    lines = episodes.read_text().splitlines()
    evaluated = sorted(json.loads(line)["task_id"] for line in lines if line)
    if evaluated != sorted(task_ids):
        raise ConfigError(
            f"train.start_eval={source} evaluated {len(evaluated)} tasks, this run evaluates "
            f"{len(task_ids)} others: evaluate the same split and num_tasks as train.eval_tasks"
        )
    starts = [json.loads(line) for line in records.read_text().splitlines() if line]
    starts = [m for m in starts if m["step"] == 0]
    if len(starts) != 1:
        raise ConfigError(f"train.start_eval={source}: eval.jsonl needs one step-0 record")
    (metrics,) = starts
    with (run_dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps(metrics) + "\n")
    (run_dir / "eval_episodes").mkdir(exist_ok=True)
    shutil.copyfile(episodes, run_dir / "eval_episodes" / "step_0.jsonl")
    return metrics
