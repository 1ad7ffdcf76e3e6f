"""Sibling-Guided Credit Distillation (arXiv 2606.12634, §4): Â = A · W.

For each mixed group (eq. 1) an external analyst writes a stepwise credit reference from
the sanitized siblings (§4.2, Table 5); the policy scores every sibling under its clean
prompt and under the reference as teacher context (§4.3); the detached divergence and
teacher entropy drive the saliency segmenter (§4.4) and the bounded weights of eq. 4
multiply the group-relative advantage (§4.5). Groups that are not mixed keep the plain
group-relative advantage (W = 1). The reference enters only the teacher-side prefix
(Table 5, "Use"): the adapter's ``teacher_prompt_ids`` inserts it; the student's prompt
and ids are never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from agents.episode import EpisodeGroup
from credit.group_relative import GroupRelativeConfig, group_advantages
from credit.reference import (
    ReferenceConfig,
    SiblingTrace,
    reference_request,
    render_trace,
    write_references,
)
from credit.registry import register_credit
from credit.reweight import AwaitingStudent, RolloutCredit, rollout_credit, score_teacher_side
from credit.saliency import SaliencyConfig
from credit.sanitizer import Sanitizer, SanitizerConfig
from credit.teacher import ScoringConfig, SupportScores, Teacher, TeacherScorer
from credit.weights import WeightConfig

TEACHER_CONTEXTS = ("credit_reference", "successful_sibling")
WEIGHTINGS = ("saliency", "uniform")


@dataclass
class SGCDConfig:
    advantage: GroupRelativeConfig = field(default_factory=GroupRelativeConfig)
    """The group-relative A that W multiplies (§4.5)."""
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    """Teacher scoring and the divergence (§4.3)."""
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    """The segmenter g (§4.4)."""
    weights: WeightConfig = field(default_factory=WeightConfig)
    """γ and c of eq. 4 (§4.5)."""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """The analyst prompt budget and sampling (App. B, Table 5)."""
    sanitizer: SanitizerConfig = field(default_factory=SanitizerConfig)
    """What is masked before the analyst sees a trace (App. B, leakage)."""
    teacher_context: str = "credit_reference"
    """``credit_reference``: the analyst's reference (full SGCD). ``successful_sibling``:
    the group's shortest successful sibling, sanitized, as teacher context, with no
    analyst call: the "- sibling credit reference" ablation of Table 6 (§5.3)."""
    weighting: str = "saliency"
    """``saliency``: W per token (full SGCD). ``uniform``: each rollout's mean W on all of
    its response tokens, so the credit mass stays and its placement goes: the
    "- divergence credit weighting" ablation of Table 6 (§5.3)."""
    zero_weight_on_masked_literals: bool = True
    """Tokens that spell a masked value or answer literal get s = 0 (App. B, "Response and
    credit masks")."""

    def __post_init__(self) -> None:
        if self.teacher_context not in TEACHER_CONTEXTS:
            raise ValueError(f"teacher_context must be one of {TEACHER_CONTEXTS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}")


def _sanitizer(group: EpisodeGroup, teacher: Teacher, config: SGCDConfig) -> Sanitizer:
    return Sanitizer(config.sanitizer, teacher.prompts.private_values(group))


def start_reference(group: EpisodeGroup, teacher: Teacher, config: SGCDConfig) -> None:
    """Send a mixed group's analyst request as soon as its rollouts end; ``assign_sgcd``
    then takes the reply (``teacher.analyst``: an :class:`agents.chat.EarlyStartChat`)."""
    if config.teacher_context != "credit_reference" or not group.is_mixed:
        return
    instruction = teacher.prompts.instruction(group)
    messages, _ = reference_request(
        group, instruction, _sanitizer(group, teacher, config), config.reference
    )
    teacher.analyst.start(
        messages, temperature=config.reference.temperature, seed=config.reference.seed
    )


@register_credit("sgcd", SGCDConfig, early=start_reference)
def assign_sgcd(
    groups: list[EpisodeGroup], teacher: Teacher | None, config: SGCDConfig
) -> AwaitingStudent:
    if teacher is None:
        raise ValueError("sgcd needs a Teacher: the policy model and the prompt adapter")
    if config.teacher_context == "credit_reference":
        if teacher.analyst is None:
            raise ValueError("sgcd with teacher_context=credit_reference needs teacher.analyst")
        if config.reference.temperature is not None and not teacher.analyst.supports_temperature:
            raise ValueError(
                f"analyst {teacher.analyst.model} cannot set a temperature: "
                "set reference.temperature to null"
            )
    values = group_advantages(groups, config.advantage)  # (N,)
    mixed = [i for i, g in enumerate(groups) if g.is_mixed]
    sanitizers = {i: _sanitizer(groups[i], teacher, config) for i in mixed}
    diagnostics: dict[str, float] = {
        "credit/mixed_group_share": len(mixed) / len(groups) if groups else 0.0,
        "credit/advantage_abs_mean": float(values.abs().mean()) if len(values) else 0.0,
    }
    contexts = _teacher_contexts(groups, sanitizers, teacher, config, diagnostics)

    started = time.perf_counter()
    scorer = TeacherScorer(teacher.model, config.scoring, teacher.prompt_cache)
    scored = {
        i: score_teacher_side(
            groups[i],
            teacher.prompts.teacher_prompt_ids(groups[i], contexts[i]),
            scorer,
            teacher.prompts,
            sanitizers[i].hidden_values if config.zero_weight_on_masked_literals else (),
        )
        for i in mixed
    }
    diagnostics["credit/teacher_scoring_s"] = time.perf_counter() - started

    def to_credit(scores: SupportScores, excluded: torch.Tensor) -> RolloutCredit:
        credit = rollout_credit(
            scores, excluded, config.scoring.divergence, config.saliency, config.weights
        )
        if config.weighting == "uniform" and len(credit.weights):
            return replace(credit, weights=credit.weights.mean().expand(len(credit.weights)))
        return credit

    return AwaitingStudent(
        groups, values, scored, scorer, to_credit, _credit_diagnostics, diagnostics
    )


def _teacher_contexts(
    groups: list[EpisodeGroup],
    sanitizers: dict[int, Sanitizer],
    teacher: Teacher,
    config: SGCDConfig,
    diagnostics: dict[str, float],
) -> dict[int, str]:
    """Teacher context text per mixed group; reference diagnostics go into ``diagnostics``."""
    if config.teacher_context == "successful_sibling":
        return {i: _sibling_context(groups[i], s) for i, s in sanitizers.items()}

    analyst = teacher.analyst
    usage_before = _usage(analyst)
    started = time.perf_counter()

    indices = list(sanitizers)
    requests = [(groups[i], teacher.prompts.instruction(groups[i]), sanitizers[i]) for i in indices]
    written = dict(zip(indices, write_references(requests, analyst, config.reference), strict=True))
    diagnostics["credit/analyst_s"] = time.perf_counter() - started
    # A group whose reference could not be written falls back to the "- sibling credit
    # reference" ablation's context (Table 6): its shortest successful sibling.
    failed = [i for i, r in written.items() if r is None]
    diagnostics["credit/analyst_failures"] = float(len(failed))
    references = {i: r for i, r in written.items() if r is not None}
    usage_after = _usage(analyst)
    for name, before in usage_before.items():
        diagnostics[f"credit/analyst_{name}"] = float(usage_after[name] - before)
    if references:
        refs = list(references.values())
        diagnostics.update(
            {
                "credit/reference_chars_mean": _mean([len(r.text) for r in refs]),
                "credit/reference_prompt_chars_mean": _mean([r.prompt_chars for r in refs]),
                "credit/reference_fallback_share": _mean([r.selection.fallback for r in refs]),
                "credit/reference_truncated_share": _mean(
                    [r.selection.chars_per_trace is not None for r in refs]
                ),
                "credit/masked_values_mean": _mean([len(s.masked) for s in sanitizers.values()]),
            }
        )
    fallbacks = {i: _sibling_context(groups[i], sanitizers[i]) for i in failed}
    return {**{i: r.text for i, r in references.items()}, **fallbacks}


def _sibling_context(group: EpisodeGroup, sanitize: Sanitizer) -> str:
    """The shortest successful sibling's sanitized trace (the no-reference ablation)."""
    winner = min(
        (j for j, e in enumerate(group.episodes) if e.success),
        key=lambda j: len(group.episodes[j].ids),
    )
    trace = SiblingTrace(winner, True, render_trace(group.episodes[winner], sanitize))
    return trace.block()


def _usage(analyst: object) -> dict[str, float]:
    """What the backend accounts in ``usage`` (agents/chat.py's ChatUsage), if anything."""
    usage = getattr(analyst, "usage", None)
    names = ("cost_usd", "input_tokens", "output_tokens")
    return {n: getattr(usage, n) for n in names if isinstance(getattr(usage, n, None), int | float)}


def _credit_diagnostics(scored: list[RolloutCredit]) -> dict[str, float]:
    """§5.4's credit diagnostics: segments, divergence magnitude, the weights applied
    (uniform ablation included) and clipping, on the scored response tokens."""
    tokens = sum(len(c.weights) for c in scored)
    out = {"credit/scored_tokens": float(tokens)}
    if not tokens:
        return out
    divergence = torch.cat([c.divergence for c in scored])  # (Σ R,)
    applied = torch.cat([c.weights for c in scored])  # (Σ R,)
    lengths = [n for c in scored for n in c.segment_lengths]
    out.update(
        {
            "credit/segments_per_rollout": len(lengths) / len(scored),
            "credit/segment_length_mean": _mean(lengths),
            "credit/divergence_mean": float(divergence.mean()),
            "credit/divergence_max": float(divergence.max()),
            "credit/weight_mean": float(applied.mean()),
            "credit/weight_max": float(applied.max()),
            "credit/weight_p90": float(applied.quantile(0.9)),
            "credit/weighted_token_share": float((applied > 1).float().mean()),
            "credit/clip_share": sum(c.clipped for c in scored) / tokens,
            "credit/excluded_token_share": sum(c.excluded for c in scored) / tokens,
        }
    )
    return out


def _mean(xs: list[float] | list[int] | list[bool]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
