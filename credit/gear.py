"""GEAR: Granularity-Adaptive Advantage Reweighting (arXiv 2605.11853): Â = A · W.

The teacher is the policy itself conditioned on the task's ground truth: the adapter's
``reference_solution`` (the env's ``task_labels``: gold calls in the policy's tool-call
format, the answers to give) is inserted by ``teacher_prompt_ids`` as training-only
teacher text; the student's prompt, its rollouts and evaluation never see it. Each
sibling is scored under both contexts on the teacher top-K ∪ observed ∪ tail support,
and the detached divergence drives the weights (credit/reweight.py, shared with SGCD):

* where the student departs (a divergence spike), the continuation up to the segment's
  end -- teacher entropy rising, the end of the assistant turn, or (off by default) a
  divergence reset -- is one segment, every token of it weighted by the normalised
  divergence at the departure point (the existing segmenter, credit/saliency.py);
* where the student stays aligned, each token keeps its own normalised divergence as its
  signal (``token_scale``), so the token resolution is kept;
* W = clip(1 + γ s, 1, c), detached, so sign(Â) = sign(A) and |Â| <= c |A|.

Only the abstract is public. Interpretation, each a named option: the divergence
(reverse KL, as SGCD), the spike rule and the rollout normalisation (SGCD's segmenter),
no divergence reset (the abstract: later tokens of a deviating continuation "may return
to low divergence" yet belong to its segment), the aligned tokens' per-token signal, and
the map from departure divergence to weight (SGCD's eq. 4).

GEAR needs no sibling contrast: every group with a non-zero advantage is scored, a
partial-credit group included. All-pass and all-fail groups have A = 0, so they are not
scored and keep W = 1 (nothing would move either way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from agents.episode import EpisodeGroup
from credit.group_relative import GroupRelativeConfig, group_advantages
from credit.registry import register_credit
from credit.reweight import AwaitingStudent, RolloutCredit, rollout_credit, score_teacher_side
from credit.saliency import SaliencyConfig, normalise
from credit.teacher import ScoringConfig, SupportScores, Teacher, TeacherScorer
from credit.weights import WeightConfig, bounded_weights, raw_weights


def _continuation_segments() -> SaliencyConfig:
    return SaliencyConfig(reset_level=-1.0)


@dataclass
class GEARConfig:
    advantage: GroupRelativeConfig = field(default_factory=GroupRelativeConfig)
    """The trajectory-level GRPO advantage that W reshapes (abstract)."""
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    """Teacher scoring and the divergence: reverse KL on top-100 ∪ observed ∪ tail, SGCD's
    defaults (interpretation: the abstract names neither)."""
    saliency: SaliencyConfig = field(default_factory=_continuation_segments)
    """The segmenter: a spike anchors a segment that ends where the teacher entropy rises
    (the public summary) or the assistant turn ends. ``reset_level`` = -1 turns divergence
    resets off (interpretation of "later tokens ... may return to low divergence");
    spike level and entropy rise are SGCD's toolgym choices (interpretation)."""
    weights: WeightConfig = field(default_factory=WeightConfig)
    """γ and c of W = clip(1 + γ s, 1, c); γ = 1, c = 2 as SGCD eq. 4 (interpretation: the
    abstract says only that the departure divergence "modulates" the advantage)."""
    token_scale: float = 1.0
    """s of a token outside every segment = this × its normalised divergence ("token-level
    resolution is preserved"); 0 gives aligned tokens W = 1, as SGCD. Interpretation."""

    def __post_init__(self) -> None:
        if self.token_scale < 0:
            raise ValueError("token_scale must be >= 0")
        if self.saliency.spike_level <= 0:
            raise ValueError("gear needs saliency.spike_level > 0 (segments are where s > 0)")


def granular_credit(credit: RolloutCredit, config: GEARConfig) -> RolloutCredit:
    """Segment tokens keep the departure point's s; the other tokens get their own."""
    in_segment = credit.saliency > 0  # (R,) anchors have s >= spike_level > 0
    own = config.token_scale * normalise(credit.divergence)  # (R,)
    s = torch.where(in_segment, credit.saliency, own)  # (R,)
    clipped = 0
    if config.weights.cap is not None:
        clipped = int((raw_weights(s, config.weights) > config.weights.cap).sum())
    return replace(credit, saliency=s, weights=bounded_weights(s, config.weights), clipped=clipped)


@register_credit("gear", GEARConfig)
def assign_gear(
    groups: list[EpisodeGroup], teacher: Teacher | None, config: GEARConfig
) -> AwaitingStudent:
    if teacher is None:
        raise ValueError("gear needs a Teacher: the policy model and the prompt adapter")
    values = group_advantages(groups, config.advantage)  # (N,)
    keys = [(i, j) for i, g in enumerate(groups) for j in range(len(g.episodes))]
    moving = sorted({i for v, (i, _) in zip(values.tolist(), keys, strict=True) if v != 0})

    started = time.perf_counter()
    scorer = TeacherScorer(teacher.model, config.scoring, teacher.prompt_cache)
    references = {i: teacher.prompts.reference_solution(groups[i]) for i in moving}
    scored = {
        i: score_teacher_side(
            groups[i],
            teacher.prompts.teacher_prompt_ids(groups[i], references[i]),
            scorer,
            teacher.prompts,
        )
        for i in moving
    }
    diagnostics = {
        "credit/teacher_scoring_s": time.perf_counter() - started,
        "credit/advantage_abs_mean": float(values.abs().mean()) if len(values) else 0.0,
        "credit/mixed_group_share": _mean([g.is_mixed for g in groups]),
        "credit/scored_group_share": len(moving) / len(groups) if groups else 0.0,
        "credit/reference_chars_mean": _mean([len(r) for r in references.values()]),
    }

    def to_credit(scores: SupportScores, excluded: torch.Tensor) -> RolloutCredit:
        divergence = config.scoring.divergence
        credit = rollout_credit(scores, excluded, divergence, config.saliency, config.weights)
        return granular_credit(credit, config)

    return AwaitingStudent(
        groups, values, scored, scorer, to_credit, _weight_diagnostics, diagnostics
    )


def _weight_diagnostics(scored: list[RolloutCredit]) -> dict[str, float]:
    """Segments, divergence, weight distribution and clipping over the scored tokens."""
    tokens = sum(len(c.weights) for c in scored)
    out = {"credit/scored_tokens": float(tokens)}
    if not tokens:
        return out
    divergence = torch.cat([c.divergence for c in scored])  # (Σ R,)
    w = torch.cat([c.weights for c in scored])  # (Σ R,)
    lengths = [n for c in scored for n in c.segment_lengths]
    out.update(
        {
            "credit/segments_per_rollout": len(lengths) / len(scored),
            "credit/segment_length_mean": _mean(lengths),
            "credit/segment_token_share": sum(lengths) / tokens,
            "credit/divergence_mean": float(divergence.mean()),
            "credit/divergence_max": float(divergence.max()),
            "credit/weight_mean": float(w.mean()),
            "credit/weight_max": float(w.max()),
            "credit/weight_p90": float(w.quantile(0.9)),
            "credit/weighted_token_share": float((w > 1).float().mean()),
            "credit/clip_share": sum(c.clipped for c in scored) / tokens,
        }
    )
    return out


def _mean(xs: list[float] | list[int] | list[bool]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
