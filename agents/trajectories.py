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
    on_task: Callable[[], None] | None = None,
) -> tuple[list[EpisodeGroup], HarvestReport]:
    """One gold replay per task (``gold(task_id)`` gives its ``AgentAction`` list),
    ``pool.size`` at a time; ``on_task()`` as each ends."""
    scripts = {j: [format_action(a) for a in gold(t)] for j, t in enumerate(task_ids)}
    policy = Policy(chat, ScriptedGenerator(chat.render_sft_target, scripts))
    groups = rollout_groups(
        pool,
        policy,
        task_ids,
        0,
        RolloutConfig(n=1, max_context_tokens=None),
        on_group=(lambda _: on_task()) if on_task else None,
    )
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
    """``attempts`` teacher episodes per task, ``pool.size`` at a time; successes kept."""
    policy = Policy(chat, ChatBackendGenerator(chat, backend, temperature))
    config = RolloutConfig(n=attempts, max_context_tokens=None)
    return _keep_successes(rollout_groups(pool, policy, task_ids, seed, config))
