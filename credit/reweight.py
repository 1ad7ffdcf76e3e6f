"""Teacher context to token weights: scoring -> divergence -> saliency -> bounded W.

The part of SGCD that does not care where the teacher context came from: SGCD passes its
sibling credit reference, GEAR will pass ground truth. Everything here is detached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from agents.episode import EpisodeGroup
from credit.divergence import DIVERGENCES
from credit.saliency import SaliencyConfig, saliency
from credit.sanitizer import literal_token_mask
from credit.teacher import SupportScores, TaskPrompts, TeacherScorer
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


def teacher_credit(
    group: EpisodeGroup,
    teacher_prompt_ids: list[int],
    scorer: TeacherScorer,
    prompts: TaskPrompts,
    divergence: str,
    saliency_config: SaliencyConfig,
    weight_config: WeightConfig,
    excluded_values: Iterable[str] = (),
) -> list[RolloutCredit]:
    """Score every sibling of ``group`` under its clean and teacher prompts, then weight.

    ``excluded_values`` (masked literals) get zero credit wherever a sibling's tokens
    spell them (SGCD App. B).
    """
    values = list(excluded_values)
    credits = []
    all_scores = scorer.score(group.prompt_ids, teacher_prompt_ids, group.episodes)
    for episode, scores in zip(group.episodes, all_scores, strict=True):
        excluded = torch.zeros(len(scores.positions), dtype=torch.bool)  # (R,)
        if values:
            hit = literal_token_mask(prompts.token_texts(episode.ids), values)
            excluded = torch.tensor(hit, dtype=torch.bool)[scores.positions]
        credits.append(rollout_credit(scores, excluded, divergence, saliency_config, weight_config))
    return credits
