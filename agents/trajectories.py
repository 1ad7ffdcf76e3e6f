"""Successful trajectories for supervised warm starts, in the rollout's own record format.

Two sources, both played through the real env and scored by its evaluator; only episodes
that score 1.0 are kept:

* gold replay -- each task's gold solution (``env.gold_actions``) written as the policy's
  tool-call text, one message per step, with the scripted user;
* a teacher -- any chat backend (Anthropic, a local model, an OpenAI-compatible server)
  acting as the agent on the same env and user: the paper's recipe (Appendix B).

Records come from the train split only: asking for the test split is an error, so held-out
tasks never leak into SFT data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.chat_format import ChatFormat
from agents.chat_generation import ChatBackendGenerator
from agents.env_pool import EnvPool
from agents.episode import EpisodeGroup
from agents.generation import ScriptedGenerator
from agents.rollout import Policy, RolloutConfig, rollout_groups
from agents.tool_format import format_action
from envs.users import ChatBackend


@dataclass(frozen=True)
class HarvestReport:
    kept: int
    discarded: int
    discarded_tasks: list[str]


def _keep_successes(groups: list[EpisodeGroup]) -> tuple[list[EpisodeGroup], HarvestReport]:
    kept, lost = [], []
    for g in groups:
        wins = [e for e in g.episodes if e.success]
        lost += [g.task_id] * (len(g.episodes) - len(wins))
        if wins:
            kept.append(EpisodeGroup(g.task_id, g.category, g.prompt_ids, wins))
    n_kept = sum(len(g.episodes) for g in kept)
    return kept, HarvestReport(n_kept, len(lost), sorted(set(lost)))


def gold_replay_records(
    pool: EnvPool,
    chat: ChatFormat,
    task_ids: list[str],
    gold: Callable[[str], list],
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[EpisodeGroup], HarvestReport]:
    """One gold replay per task (``gold(task_id)`` gives its ``AgentAction`` list);
    ``on_batch(k)`` after each batch of k tasks."""
    groups = []
    for start in range(0, len(task_ids), pool.size):
        batch = task_ids[start : start + pool.size]
        scripts = {k: [format_action(a) for a in gold(t)] for k, t in enumerate(batch)}
        policy = Policy(chat, ScriptedGenerator(chat.render_sft_target, scripts))
        groups += rollout_groups(
            pool, policy, batch, 0, RolloutConfig(n=1, max_context_tokens=None)
        )
        if on_batch:
            on_batch(len(batch))
    return _keep_successes(groups)


def teacher_records(
    pool: EnvPool,
    chat: ChatFormat,
    backend: ChatBackend,
    task_ids: list[str],
    attempts: int,
    seed: int,
    temperature: float | None,
) -> tuple[list[EpisodeGroup], HarvestReport]:
    """``attempts`` teacher episodes per task; successes kept."""
    policy = Policy(chat, ChatBackendGenerator(chat, backend, temperature))
    config = RolloutConfig(n=attempts, max_context_tokens=None)
    per_batch = max(pool.size // attempts, 1)
    groups = []
    for start in range(0, len(task_ids), per_batch):
        groups += rollout_groups(pool, policy, task_ids[start : start + per_batch], seed, config)
    return _keep_successes(groups)
