"""Scripted policies replayed over a split: the gold solution and the do-nothing floor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from envs.config import ConfigError
from envs.core import AgentAction, ToolUseEnv

DO_NOTHING = [AgentAction(content="Sorry.")]
POLICIES = ("gold", "do_nothing")


@dataclass(frozen=True)
class ReplayResult:
    task_id: str
    category: str
    reward: float
    steps: int
    tool_calls: int
    termination_reason: str
    reward_components: dict[str, float] = field(default_factory=dict)


def replay(env: ToolUseEnv, task_ids: list[str], policy: str) -> Iterator[ReplayResult]:
    """Play ``policy`` (one of :data:`POLICIES`) on each task, lazily, one result per task;
    an episode the script does not end is cut off there."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown scripted policy {policy!r}; known: {list(POLICIES)}")
    return _replay(env, task_ids, policy)


def _replay(env: ToolUseEnv, task_ids: list[str], policy: str) -> Iterator[ReplayResult]:
    for task_id in task_ids:
        env.reset(seed=0, options={"task_id": task_id})
        reward, info = 0.0, {}
        for action in env.gold_actions(task_id) if policy == "gold" else DO_NOTHING:
            _, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        yield ReplayResult(
            task_id=task_id,
            category=info["category"],
            reward=reward,
            steps=info["steps"],
            tool_calls=info["tool_calls"],
            termination_reason=info.get("termination_reason", "unfinished"),
            reward_components=info.get("reward_components", {}),
        )
