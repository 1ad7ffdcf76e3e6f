"""SGCD (arXiv 2606.12634): the GRPO surrogate on Â = A · W from the sibling credit
reference (credit/sgcd.py). The policy gradient stays the only actor update (§4.5); the
"direct/uncapped SD auxiliary" ablation of Table 6 adds λ times a distillation term toward
the teacher SGCD scores with."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from learners.grpo import GRPO, GRPOConfig
from learners.registry import LearnerContext, LossInput, register_learner
from learners.sdpo import SDPODistill, SDPOTerms, no_teacher_loss

SD_TEACHERS = ("credit_reference", "successful_sibling")


def _reverse_kl() -> SDPOTerms:
    return SDPOTerms(alpha=1.0, is_clip=None)


@dataclass
class SGCDLearnerConfig(GRPOConfig):
    sd_coef: float = 0.0
    """λ of a direct self-distillation auxiliary, "PG + λSD" (§4.6), for Table 6's
    "direct/uncapped SD auxiliary" ablation; 0 = SGCD. The paper gives no value of λ."""
    sd_teacher: str = "credit_reference"
    """The auxiliary's teacher: ``credit_reference``, the policy under the credit-reference
    context SGCD scores with (eq. 2; episodes of groups without one get no term), or
    ``successful_sibling``, SDPO's teacher (the shortest other successful sibling)."""
    sd: SDPOTerms = field(default_factory=_reverse_kl)
    """The auxiliary's divergence. Default: eq. 2's reverse KL D_KL(p^K ‖ sg[q^K]) on the
    student's top-K support plus a tail bucket, without importance weighting."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sd_teacher not in SD_TEACHERS:
            raise ValueError(f"sd_teacher must be one of {SD_TEACHERS}")


@register_learner("sgcd", SGCDLearnerConfig)
class SGCD(GRPO):
    credit_method = "sgcd"

    @classmethod
    def needs_analyst(cls, config: SGCDLearnerConfig) -> bool:
        # the credit reference is the analyst's; the successful-sibling ablation has none
        return config.credit.get("teacher_context", "credit_reference") == "credit_reference"

    def __init__(self, config: SGCDLearnerConfig, context: LearnerContext):
        super().__init__(config, context)
        self.distill = SDPODistill(config.sd, context)

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super().loss(x)
        if self.config.sd_coef > 0:
            sd, sd_metrics = self._sd(x)
            metrics.update(sd_metrics)
            loss = loss + self.config.sd_coef * sd
        return loss, metrics

    def _sd(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        if self.config.sd_teacher == "successful_sibling":
            return self.distill.loss(x)
        if x.teacher_prompt_ids is None:  # a group that was not mixed: no reference
            return no_teacher_loss()
        return self.distill.loss_under(x, x.teacher_prompt_ids)
