"""What a rollout hands to credit assignment and learners: token-level episode records.

Token-in/token-out: ``ids`` are exactly the token ids the policy sampled, interleaved with
the tokens of what the env said back (tool results, user turns) as the chat template
renders them. The training sequence is never rebuilt from text.

A group's siblings share one prompt (system policy, tool schemas, user's opening message
when it is the same for all): it is kept once, in ``EpisodeGroup.prompt_ids``, and each
episode's full sequence is ``group.prompt_ids + episode.ids``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envs.core import ENV_FAILURE


@dataclass
class Turn:
    """A span of ``Episode.ids``: one assistant message or one env/user message.

    ``role`` is "assistant" (policy-generated, in the response mask), "tool" or "user".
    ``start``/``end`` index ``Episode.ids`` (end exclusive). For assistant turns, ``text``
    is the decoded model output; ``tool_calls`` names the calls it made (parsed ones).
    """

    role: str
    start: int
    end: int
    text: str
    tool_calls: list[str] = field(default_factory=list)


@dataclass
class Episode:
    """One sibling: a full multi-turn episode of one task.

    ``response_mask[t]`` is 1 exactly where ``ids[t]`` was sampled by the policy and 0 on
    template, tool-observation and user tokens; ``logprobs[t]`` is the behaviour
    log-probability of ``ids[t]`` under the sampling policy (0.0 where the mask is 0).
    ``reward`` is the benchmark evaluator's score of the whole episode.
    """

    task_id: str
    category: str
    ids: list[int]
    response_mask: list[int]
    logprobs: list[float]
    turns: list[Turn]
    reward: float
    reward_components: dict[str, float] = field(default_factory=dict)
    tool_calls: list[str] = field(default_factory=list)
    termination_reason: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    facets: dict[str, list[str]] = field(default_factory=dict)
    """The task's facets from the env's ``info`` (AppWorld: app, scenario)."""

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.response_mask) == len(self.logprobs):
            raise ValueError(
                f"episode {self.task_id}: ids ({len(self.ids)}), response_mask "
                f"({len(self.response_mask)}) and logprobs ({len(self.logprobs)}) differ in length"
            )

    @property
    def success(self) -> bool:
        return self.reward >= 1.0

    @property
    def env_failed(self) -> bool:
        """The env's machinery failed (a dead server), not the agent."""
        return self.termination_reason == ENV_FAILURE

    def assistant_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "assistant"]

    def response_positions(self) -> list[int]:
        """Indices into ``ids`` of the tokens the policy sampled, in order."""
        return [t for t, m in enumerate(self.response_mask) if m]


@dataclass
class EpisodeGroup:
    """``n`` siblings of one task under one shared prompt."""

    task_id: str
    category: str
    prompt_ids: list[int]
    episodes: list[Episode]

    @property
    def rewards(self) -> list[float]:
        return [e.reward for e in self.episodes]

    @property
    def env_failed(self) -> bool:
        return any(e.env_failed for e in self.episodes)

    @property
    def is_mixed(self) -> bool:
        """Some siblings succeed and some fail (on the verifier outcome, not a shaped reward)."""
        wins = sum(e.success for e in self.episodes)
        return 0 < wins < len(self.episodes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeGroup:
        episodes = [
            Episode(**{**e, "turns": [Turn(**t) for t in e["turns"]]}) for e in data["episodes"]
        ]
        return cls(**{**data, "episodes": episodes})


def common_prefix(seqs: list[list[int]]) -> int:
    """How many leading tokens all ``seqs`` share (siblings share their prompt)."""
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return n


# Padding a batch of sequences may add, as a share of its real tokens, before the next
# (longer) sequence starts a batch of its own: every padded token costs a real one's
# feed-forward and attention, and one more batch costs one more forward call. Unbounded,
# a learner step on 8 airline_mini siblings (72-793 tokens) computed 2.3x its tokens.
PAD_SLACK = 0.25


def forward_batches(
    lengths: list[int], max_tokens: int | None = None, packed: bool = False
) -> list[list[int]]:
    """Sequence indices in batches for one forward each (sorted by length, shortest first),
    each within ``max_tokens`` tokens (one sequence at least; None: no bound). Padded
    (``packed=False``): a batch costs rows x longest and is padded by at most
    ``PAD_SLACK`` of its real tokens. Packed (rows one after another, no padding): a batch
    costs its real tokens, and fewer, larger forwards are faster."""
    batches: list[list[int]] = []
    real = 0  # the last batch's real tokens
    for i in sorted(range(len(lengths)), key=lambda j: lengths[j]):
        # sorted: the newest sequence is the longest of its batch
        if packed:
            cost, little_padding = real + lengths[i], True
        else:
            cost = (len(batches[-1]) + 1) * lengths[i] if batches else 0
            little_padding = cost <= (1 + PAD_SLACK) * (real + lengths[i])
        if batches and little_padding and (max_tokens is None or cost <= max_tokens):
            batches[-1].append(i)
            real += lengths[i]
        else:
            batches.append([i])
            real = lengths[i]
    return batches


def save_groups(groups: list[EpisodeGroup], path: Path) -> None:
    """One JSON line per group (token ids inline: exact and replayable)."""
    with Path(path).open("w") as f:
        for g in groups:
            f.write(json.dumps(g.to_json()) + "\n")


def load_groups(path: Path) -> list[EpisodeGroup]:
    with Path(path).open() as f:
        return [EpisodeGroup.from_json(json.loads(line)) for line in f if line.strip()]
