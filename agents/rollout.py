"""Sibling-group rollouts: n episodes of a task, generated in batches.

Each env step, every live episode is extended by one assistant message, all in one
``generate`` call; the pool then steps every env, and a slot whose episode ended takes the
next waiting one. Ids are appended exactly as
sampled (token-in/token-out): ``response_mask`` is 1 on sampled ids only.
"""

from __future__ import annotations

from collections import deque
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
    """Play one episode per ``(task_id, env seed)`` job, ``pool.size`` at a time; ids are
    absolute (prompt included). An env slot freed by an ending episode takes the next job
    at once, so the batch stays full until the jobs run out instead of shrinking to its
    longest episode (continuous batching). Every env step, each live episode is extended by
    one assistant message, all in one ``generate`` call. The generator knows an episode by
    its job index (its cache and sampling stream) and samples env step s with seed
    ``seed + s``. ``on_step(n_finished)`` after each env step; ``on_episode(job, episode)``
    as each episode ends."""
    waiting = deque(enumerate(jobs))
    free = list(range(pool.size))  # env slots, lowest first
    live: dict[int, _Live] = {}  # job index -> its episode so far
    slot_of: dict[int, int] = {}
    done: dict[int, Episode] = {}

    def end(job: int, episode: Episode) -> None:
        done[job] = episode
        del live[job]
        free.append(slot_of.pop(job))
        free.sort()
        policy.generator.release([job])
        if on_episode:
            on_episode(job, episode)

    step = 0
    while waiting or live:
        starting = {}
        while free and waiting:
            job, _ = waiting.popleft()
            slot_of[job] = free.pop(0)
            starting[slot_of[job]] = job
        resets = pool.reset({slot: jobs[job] for slot, job in starting.items()}) if starting else {}
        for slot, (obs, _) in resets.items():
            ids = policy.chat.render_reset(obs)
            task_id, env_seed = jobs[starting[slot]]
            live[starting[slot]] = _Live(task_id, env_seed, ids, [0] * len(ids), [0.0] * len(ids))
        order = sorted(live)
        outputs = policy.generator.generate(
            [live[j].ids for j in order], order, config.sampling, seed=seed + step
        )
        actions = {}
        for job, out in zip(order, outputs, strict=True):
            state = live[job]
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
            actions[slot_of[job]] = action
        job_in = {slot: job for job, slot in slot_of.items()}
        for slot, (obs, reward, terminated, truncated, info) in pool.step(actions).items():
            job = job_in[slot]
            state = live[job]
            if terminated or truncated:
                end(job, _finish(state, reward, info))
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
                end(job, _finish(state, 0.0, info, reason="context_limit"))
        step += 1
        if on_step:
            on_step(len(done))
    return [done[j] for j in range(len(jobs))]


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
    on_group: Callable[[EpisodeGroup], None] | None = None,
    first_seeds: list[int] | None = None,
) -> list[EpisodeGroup]:
    """``config.n`` siblings of each task (task order, siblings adjacent, ``pool.size``
    episodes at a time); sibling k of the j-th task resets its env with seed
    ``first_seeds[j] + k`` (default ``seed + j * n + k``). ``on_group(group)`` as each
    task's last sibling ends."""
    n = config.n
    firsts = [seed + j * n for j in range(len(task_ids))] if first_seeds is None else first_seeds
    jobs = [(t, first + k) for t, first in zip(task_ids, firsts, strict=True) for k in range(n)]
    ended: dict[int, dict[int, Episode]] = {j: {} for j in range(len(task_ids))}
    groups: dict[int, EpisodeGroup] = {}

    def collect(job: int, episode: Episode) -> None:
        siblings = ended[job // n]
        siblings[job % n] = episode
        if len(siblings) == n:
            groups[job // n] = group_episodes([siblings[k] for k in range(n)])
            if on_group:
                on_group(groups[job // n])

    rollout_episodes(pool, policy, jobs, config, seed, on_step, collect)
    return [groups[j] for j in range(len(task_ids))]
