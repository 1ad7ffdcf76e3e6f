"""SDPO (Hübotter et al. 2026; reference code lasgroup/SDPO): self-distillation from the
same policy re-prompted with a successful sibling.

Per response token the student's distribution on its own top-K tokens plus a tail bucket
is pulled toward the teacher's on that support by an alpha-JSD (alpha 0: forward KL
KL(teacher||student), 1: reverse KL KL(student||teacher), between: the generalised JSD
with mixture (1-alpha)*student + alpha*teacher, as lasgroup/SDPO's
``compute_self_distillation_loss``), weighted by the importance ratio clipped
at ``is_clip``. An episode with no other successful sibling has no teacher and no loss.
The verifier reward enters only through which siblings may teach (the paper's §3 shows
why that is not enough).

Aggregation (toolgym choice): the term is scaled like every learner's loss, by the batch's
response tokens (``LossInput.scale``), so learners' losses are on one scale. lasgroup/SDPO
divides by the tokens that have a teacher only; with a share f of taught tokens, this
gradient is f times theirs (as a learning rate scaled by f).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.episode import Episode, EpisodeGroup
from learners.forward import shared_prefix_logits
from learners.registry import Learner, LearnerContext, LossInput, register_learner

TEACHER_TITLE = "A successful attempt at this task (training only):"


@dataclass
class SDPOTerms:
    top_k: int = 100
    """K of the student top-K support (lasgroup/SDPO)."""
    alpha: float = 0.5
    """0: forward KL, 1: reverse KL, between: generalised JSD (lasgroup/SDPO)."""
    is_clip: float | None = 2.0
    """Upper clip of the per-token importance ratio (lasgroup/SDPO); None: no importance
    weighting."""


@dataclass
class SDPOConfig:
    distill: SDPOTerms = field(default_factory=SDPOTerms)
    """The distillation term."""
    teacher_ema: float | None = None
    """None: the teacher is the current policy; else the decay of an EMA copy of it."""
    credit: dict[str, Any] = field(default_factory=dict)
    """Options of the group-relative credit, computed for diagnostics only."""


def alpha_divergence(student: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(R,)`` divergence between ``(R, S)`` log-prob rows (see module docstring)."""
    p_s, p_t = student.exp(), teacher.exp()
    if alpha == 0.0:
        return (p_t * (teacher - student)).sum(-1)
    if alpha == 1.0:
        return (p_s * (student - teacher)).sum(-1)
    # lasgroup/SDPO's generalised JSD: M = (1-α)·S + α·T, loss = (1-α)·KL(S‖M) + α·KL(T‖M)
    # (their ``lerp(kl_student, kl_teacher, alpha)``); the ends are the plain KLs, as there.
    mixture = torch.logsumexp(
        torch.stack(
            [student + torch.log(torch.tensor(1 - alpha)), teacher + torch.log(torch.tensor(alpha))]
        ),
        dim=0,
    )  # (R, S)
    return (1 - alpha) * (p_s * (student - mixture)).sum(-1) + alpha * (
        p_t * (teacher - mixture)
    ).sum(-1)


def top_k_with_tail(logp: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``(R, K+1)``: log-probs on ``support`` (R, K) and the tail bucket's log-mass."""
    on_support = logp.gather(-1, support)  # (R, K)
    tail = torch.logsumexp(logp.scatter(-1, support, float("-inf")), dim=-1, keepdim=True)  # (R, 1)
    return torch.cat([on_support, tail], dim=-1)


def teacher_sibling(group: EpisodeGroup, index: int) -> Episode | None:
    """The shortest successful sibling other than ``index`` (None if there is none)."""
    winners = [e for j, e in enumerate(group.episodes) if e.success and j != index]
    return min(winners, key=lambda e: len(e.ids)) if winners else None


def render_sibling(episode: Episode) -> str:
    return "\n".join(f"[{t.role}] {t.text}" for t in episode.turns)


class SDPODistill:
    """The distillation term for one episode, shared by SDPO and SGCD's SD ablation."""

    def __init__(self, terms: SDPOTerms, context: LearnerContext, teacher_model=None):
        self.terms = terms
        self.context = context
        self.teacher_model = teacher_model

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        """SDPO's teacher: the policy prompted with the shortest other successful sibling."""
        sibling = teacher_sibling(x.group, x.index)
        if sibling is None:
            return no_teacher_loss()
        prompts = self.context.teacher.prompts
        return self.loss_under(x, prompts.teacher_prompt_ids(x.group, render_sibling(sibling)))

    def loss_under(
        self, x: LossInput, teacher_ids: list[int]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The term with the policy under ``teacher_ids`` as the (detached) teacher."""
        e = x.episode
        wanted = e.response_positions()
        if not wanted:
            return no_teacher_loss()
        positions = torch.tensor(wanted, dtype=torch.long)  # (R,)
        student = x.logits  # (R, V)
        (teacher,) = shared_prefix_logits(
            self.teacher_model or x.model,
            [(teacher_ids, e.ids, wanted)],
            self.context.autocast,
            self.context.max_tokens_per_forward,
        )  # (R, V)
        t = self.context.temperature
        student_logp = torch.log_softmax(student / t, dim=-1)  # (R, V)
        teacher_logp = torch.log_softmax(teacher / t, dim=-1)  # (R, V)
        support = student_logp.detach().topk(self.terms.top_k, dim=-1).indices  # (R, K)
        divergence = alpha_divergence(
            top_k_with_tail(student_logp, support),
            top_k_with_tail(teacher_logp, support),
            self.terms.alpha,
        )  # (R,)
        if self.terms.is_clip is not None:
            observed = torch.tensor(e.ids)[positions]
            new = student_logp.gather(-1, observed[:, None]).squeeze(-1).detach()  # (R,)
            old = torch.tensor(e.logprobs)[positions]  # the sampler's behaviour log-probs
            divergence = torch.exp(new - old).clamp(max=self.terms.is_clip) * divergence
        loss = divergence.sum() * x.scale
        return loss, {
            "loss/sd": float(loss.detach()),
            "loss/sd_masked": 0.0,
            "loss/sd_divergence": float(divergence.detach().mean()),
        }


def no_teacher_loss() -> tuple[torch.Tensor, dict[str, float]]:
    """The term of an episode without a teacher: zero, counted as masked."""
    return torch.zeros((), requires_grad=True), {"loss/sd_masked": 1.0}


@register_learner("sdpo", SDPOConfig)
class SDPO(Learner):
    credit_method = "grpo"

    def __init__(self, config: SDPOConfig, context: LearnerContext):
        super().__init__(config, context)
        self._ema: torch.nn.Module | None = None
        self.distill = SDPODistill(config.distill, context)

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        if self.config.teacher_ema is not None and self._ema is None:
            self._ema = copy.deepcopy(x.model).requires_grad_(False)
            self.distill.teacher_model = self._ema
        return self.distill.loss(x)

    @torch.no_grad()
    def after_step(self, model: torch.nn.Module) -> None:
        if self._ema is None:
            return
        decay = self.config.teacher_ema
        for ema, p in zip(self._ema.parameters(), model.parameters(), strict=True):
            ema.mul_(decay).add_(p.detach(), alpha=1 - decay)
