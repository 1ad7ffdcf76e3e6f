"""Teacher context to token weights: scoring -> divergence -> saliency -> bounded W.

The part of SGCD that does not care where the teacher context came from: SGCD passes its
sibling credit reference, GEAR will pass ground truth. Everything here is detached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from agents.episode import EpisodeGroup
from credit.divergence import DIVERGENCES
from credit.group_relative import broadcast
from credit.saliency import SaliencyConfig, saliency
from credit.sanitizer import literal_token_mask
from credit.teacher import (
    SupportScores,
    TaskPrompts,
    TeacherScorer,
    TeacherSide,
    student_scores,
)
from credit.types import TokenAdvantages
from credit.weights import WeightConfig, bounded_weights, raw_weights


@dataclass
class RolloutCredit:
    """One rollout's credit features and weights on its ``R`` response tokens."""

    positions: torch.Tensor  # (R,) indices into episode.ids
    divergence: torch.Tensor  # (R,) nats
    saliency: torch.Tensor  # (R,) in [0, 1]
    weights: torch.Tensor  # (R,) in [1, c]
    segment_lengths: list[int]
    clipped: int  # tokens whose 1 + γ s exceeded c
    excluded: int  # masked-literal tokens kept out of credit


def turn_starts(positions: torch.Tensor) -> torch.Tensor:
    """True where a response token does not follow another one: ``(R,) -> (R,)`` bool."""
    starts = torch.ones_like(positions, dtype=torch.bool)
    starts[1:] = positions[1:] != positions[:-1] + 1
    return starts


def rollout_credit(
    scores: SupportScores,
    excluded: torch.Tensor,
    divergence: str,
    saliency_config: SaliencyConfig,
    weight_config: WeightConfig,
) -> RolloutCredit:
    """Weights for one scored rollout; ``excluded`` ``(R,)`` marks tokens given s = 0.

    Excluded tokens are taken out of the sequence before segmentation, so they neither
    anchor nor break a span; a turn start on one moves to the next kept token.
    """
    d = DIVERGENCES[divergence](scores.student_logp, scores.teacher_logp)  # (R,)
    support = scores.teacher_logp.shape[-1]
    h = scores.teacher_entropy / math.log(support)  # (R,) in [0, 1]
    keep = ~excluded  # (R,)
    turn = turn_starts(scores.positions).cumsum(0)[keep]  # (R',) turn number per kept token
    starts = torch.ones_like(turn, dtype=torch.bool)
    starts[1:] = turn[1:] != turn[:-1]
    segments = saliency(d[keep], h[keep], starts, saliency_config)
    s = torch.zeros_like(d)
    s[keep] = segments.values
    clipped = 0
    if weight_config.cap is not None:
        clipped = int((raw_weights(s, weight_config) > weight_config.cap).sum())
    return RolloutCredit(
        positions=scores.positions,
        divergence=d,
        saliency=s,
        weights=bounded_weights(s, weight_config),
        segment_lengths=segments.segment_lengths,
        clipped=clipped,
        excluded=int(excluded.sum()),
    )


@dataclass
class ScoredGroup:
    """A group whose teacher side is scored: per sibling, the support and the teacher's
    log-probs on it, and the ``(R,)`` tokens kept out of credit (masked literals)."""

    teacher_prompt_ids: list[int]
    sides: list[TeacherSide]
    excluded: list[torch.Tensor]


def score_teacher_side(
    group: EpisodeGroup,
    teacher_prompt_ids: list[int],
    scorer: TeacherScorer,
    prompts: TaskPrompts,
    excluded_values: Iterable[str] = (),
) -> ScoredGroup:
    """Score every sibling of ``group`` under its teacher prompt. ``excluded_values``
    (masked literals) get zero credit wherever a sibling's tokens spell them (SGCD App. B)."""
    values = list(excluded_values)
    sides = scorer.score_teacher(teacher_prompt_ids, group.episodes)
    excluded = []
    for episode, side in zip(group.episodes, sides, strict=True):
        mask = torch.zeros(len(side.positions), dtype=torch.bool)  # (R,)
        if values:
            hit = literal_token_mask(prompts.token_texts(episode.ids), values)
            mask = torch.tensor(hit, dtype=torch.bool)[side.positions]
        excluded.append(mask)
    return ScoredGroup(teacher_prompt_ids, sides, excluded)


class AwaitingStudent:
    """A teacher-scored credit (SGCD, GEAR) whose teacher side is done.

    Each scored episode's weights wait for the student's side: the policy's logits at its
    response tokens under the clean prompt, which the learner's forward computes anyway
    (:class:`credit.types.StepCredit`). :meth:`advantage` finishes one episode from them;
    :meth:`complete` scores the student itself for the episodes nobody finished (callers
    without a learner forward) and returns everything with the diagnostics.
    """

    def __init__(
        self,
        groups: list[EpisodeGroup],
        values: torch.Tensor,
        scored: dict[int, ScoredGroup],
        scorer: TeacherScorer,
        to_credit: Callable[[SupportScores, torch.Tensor], RolloutCredit],
        summarize: Callable[[list[RolloutCredit]], dict[str, float]],
        diagnostics: dict[str, float],
    ) -> None:
        """``values`` ``(N,)``: each episode's group-relative advantage, in group order;
        ``scored``: by group index; ``to_credit(scores, excluded)``: the method's weights;
        ``summarize``: its diagnostics of the scored rollouts, added to ``diagnostics``."""
        self._groups, self._values, self._scored = groups, values.tolist(), scored
        self._scorer, self._to_credit, self._summarize = scorer, to_credit, summarize
        self._diagnostics = diagnostics
        self._keys = [(i, j) for i, g in enumerate(groups) for j in range(len(g.episodes))]
        self._credits: dict[int, RolloutCredit] = {}
        self.teacher_prompts = [
            scored[i].teacher_prompt_ids if i in scored else None for i, _ in self._keys
        ]

    def advantage(self, index: int, student_logits: torch.Tensor) -> torch.Tensor:
        i, j = self._keys[index]
        if i in self._scored:
            scored = self._scored[i]
            chunk = self._scorer.config.positions_per_chunk
            scores = student_scores(scored.sides[j], student_logits, chunk)
            self._credits[index] = self._to_credit(scores, scored.excluded[j])
        return self._advantage(index)

    def complete(self) -> TokenAdvantages:
        missing: dict[int, list[int]] = {}  # group -> indices of its unfinished episodes
        for index, (i, _) in enumerate(self._keys):
            if i in self._scored and index not in self._credits:
                missing.setdefault(i, []).append(index)
        for i, indices in missing.items():
            group, scored = self._groups[i], self._scored[i]
            siblings = [self._keys[k][1] for k in indices]
            all_scores = self._scorer.score_student(
                group.prompt_ids,
                [scored.sides[j] for j in siblings],
                [group.episodes[j] for j in siblings],
            )
            for k, j, scores in zip(indices, siblings, all_scores, strict=True):
                self._credits[k] = self._to_credit(scores, scored.excluded[j])
        indices = range(len(self._keys))
        return TokenAdvantages(
            advantages=[self._advantage(k) for k in indices],
            weights=[self._weights(k) for k in indices],
            diagnostics={
                **self._diagnostics,
                **self._summarize([self._credits[k] for k in sorted(self._credits)]),
            },
            teacher_prompts=self.teacher_prompts,
        )

    def _weights(self, index: int) -> torch.Tensor:
        i, j = self._keys[index]
        w = torch.ones(len(self._groups[i].episodes[j].ids))  # (T,)
        if index in self._credits:
            credit = self._credits[index]
            w[credit.positions] = credit.weights
        return w

    def _advantage(self, index: int) -> torch.Tensor:
        i, j = self._keys[index]
        return broadcast(self._values[index], self._groups[i].episodes[j]) * self._weights(index)
