"""Sibling-group rollouts: n episodes of a task, generated in lockstep batches.

Each env step, every live episode of the batch is extended by one assistant message, all
in one ``generate`` call; the pool then steps every env. Ids are appended exactly as
sampled (token-in/token-out): ``response_mask`` is 1 on sampled ids only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agents.chat_format import ChatFormat
from agents.env_pool import EnvPool
from agents.episode import Episode, EpisodeGroup, Turn, common_prefix
from agents.generation import Generator, SamplingConfig
from agents.tool_format import parse_action


@dataclass
class Policy:
    """The acting side: a chat format (tokenizer inside) and a generation backend."""

    chat: ChatFormat
    generator: Generator

    def decode(self, ids: list[int]) -> str:
        return self.chat.tokenizer.decode(ids, skip_special_tokens=True)


@dataclass(frozen=True)
class RolloutConfig:
    n: int = 8
    """Siblings per task (paper: 8, Tables 3-4)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_context_tokens: int | None = 4096
    """An episode whose context grows past this ends with reward 0 (``context_limit``);
    None: no limit (scripted and teacher episodes, whose length the policy does not set)."""


@dataclass
class _Live:
    task_id: str
    seed: int
    ids: list[int]
    mask: list[int]
    logprobs: list[float]
    turns: list[Turn] = field(default_factory=list)


def _finish(state: _Live, reward: float, info: dict, reason: str | None = None) -> Episode:
    return Episode(
        task_id=state.task_id,
        category=info["category"],
        ids=state.ids,
        response_mask=state.mask,
        logprobs=state.logprobs,
        turns=state.turns,
        reward=reward,
        reward_components=info.get("reward_components", {}),
        tool_calls=info.get("tools_used", []),
        termination_reason=reason or info.get("termination_reason", ""),
        user=info.get("user", {}),
        seed=state.seed,
        facets=info.get("facets", {}),
    )


def rollout_episodes(
    pool: EnvPool,
    policy: Policy,
    jobs: list[tuple[str, int]],
    config: RolloutConfig,
    seed: int,
    on_step: Callable[[int], None] | None = None,
    on_episode: Callable[[int, Episode], None] | None = None,
) -> list[Episode]:
    """Play one episode per ``(task_id, env seed)`` job, all in lockstep; ids are absolute
    (prompt included). Sampling at env step s uses seed ``seed + s``.
    ``on_step(n_finished)`` is called after each env step, ``on_episode(job index,
    episode)`` as each episode ends."""
    if len(jobs) > pool.size:
        raise ValueError(
            f"{len(jobs)} episodes need {len(jobs)} env slots; the pool has {pool.size}"
        )
    live: dict[int, _Live] = {}
    for slot, (obs, _) in pool.reset(dict(enumerate(jobs))).items():
        ids = policy.chat.render_reset(obs)
        task_id, env_seed = jobs[slot]
        live[slot] = _Live(task_id, env_seed, ids, [0] * len(ids), [0.0] * len(ids))
    done: dict[int, Episode] = {}

    def end(slot: int, episode: Episode) -> None:
        done[slot] = episode
        del live[slot]
        policy.generator.release([slot])
        if on_episode:
            on_episode(slot, episode)

    step = 0
    while live:
        order = sorted(live)
        outputs = policy.generator.generate(
            [live[s].ids for s in order], order, config.sampling, seed=seed + step
        )
        actions = {}
        for slot, out in zip(order, outputs, strict=True):
            state = live[slot]
            text = policy.decode(out.ids)
            action = parse_action(text)
            start = len(state.ids)
            state.ids += out.ids
            state.mask += [1] * len(out.ids)
            state.logprobs += out.logprobs
            if not out.finished:  # cut at max_new_tokens: close the turn outside the mask
                state.ids.append(policy.chat.end_id)
                state.mask.append(0)
                state.logprobs.append(0.0)
            state.turns.append(
                Turn(
                    "assistant",
                    start,
                    start + len(out.ids),
                    text,
                    [c.name for c in action.tool_calls],
                )
            )
            actions[slot] = action
        for slot, (obs, reward, terminated, truncated, info) in pool.step(actions).items():
            state = live[slot]
            if terminated or truncated:
                end(slot, _finish(state, reward, info))
                continue
            extra = policy.chat.render_observation(obs)
            start = len(state.ids)
            state.ids += extra
            state.mask += [0] * len(extra)
            state.logprobs += [0.0] * len(extra)
            role = obs["messages"][0]["role"] if obs["messages"] else "user"
            state.turns.append(
                Turn(role, start, len(state.ids), "\n".join(m["content"] for m in obs["messages"]))
            )
            if config.max_context_tokens is not None and len(state.ids) > config.max_context_tokens:
                end(slot, _finish(state, 0.0, info, reason="context_limit"))
        step += 1
        if on_step:
            on_step(len(done))
    return [done[s] for s in range(len(jobs))]


def group_episodes(episodes: list[Episode]) -> EpisodeGroup:
    """Make siblings (absolute ids) a group: the shared prompt -- their common prefix,
    never past a generated token -- is stored once; each episode keeps what follows it,
    with its turn spans shifted accordingly."""
    first_generated = min(
        e.response_mask.index(1) if 1 in e.response_mask else len(e.ids) for e in episodes
    )
    cut = min(common_prefix([e.ids for e in episodes]), first_generated)
    prompt = episodes[0].ids[:cut]
    for e in episodes:
        e.ids, e.response_mask, e.logprobs = e.ids[cut:], e.response_mask[cut:], e.logprobs[cut:]
        for t in e.turns:
            t.start -= cut
            t.end -= cut
    return EpisodeGroup(episodes[0].task_id, episodes[0].category, prompt, episodes)


def rollout_groups(
    pool: EnvPool,
    policy: Policy,
    task_ids: list[str],
    seed: int,
    config: RolloutConfig,
    on_step: Callable[[int], None] | None = None,
    on_group: Callable[[int, EpisodeGroup], None] | None = None,
) -> list[EpisodeGroup]:
    """``config.n`` siblings of each task, all generated in one lockstep batch; sibling k
    of the j-th task resets its env with seed ``seed + j * n + k``. ``on_group(j, group)``
    is called as soon as the j-th task's siblings have all ended, while the other tasks'
    episodes may still run (work on a group can start then: SGCD's analyst request)."""
    n = config.n
    jobs = [(t, seed + j * n + k) for j, t in enumerate(task_ids) for k in range(n)]
    ended: dict[int, dict[int, Episode]] = {j: {} for j in range(len(task_ids))}
    groups: dict[int, EpisodeGroup] = {}

    def episode_ended(index: int, episode: Episode) -> None:
        j, k = divmod(index, n)
        ended[j][k] = episode
        if len(ended[j]) == n:
            groups[j] = group_episodes([ended[j][i] for i in range(n)])
            if on_group:
                on_group(j, groups[j])

    rollout_episodes(pool, policy, jobs, config, seed, on_step, episode_ended)
    return [groups[j] for j in range(len(task_ids))]
