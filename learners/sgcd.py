"""SGCD (arXiv 2606.12634): the GRPO surrogate on Â = A · W from the sibling credit
reference (credit/sgcd.py). The policy gradient stays the only actor update (§4.5); the
"direct SD auxiliary" ablation of Table 6 adds λ times SDPO's distillation term."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from learners.grpo import GRPO, GRPOConfig
from learners.registry import LossInput, register_learner
from learners.sdpo import SDPODistill, SDPOTerms


@dataclass
class SGCDLearnerConfig(GRPOConfig):
    sd_coef: float = 0.0
    """λ of a direct self-distillation auxiliary (PG + λ·SD, Table 6's ablation); 0 = SGCD.
    The SD term is SDPO's (successful-sibling teacher): the paper does not give its form."""
    sd: SDPOTerms = field(default_factory=SDPOTerms)
    """The SD term's options when ``sd_coef`` > 0."""


@register_learner("sgcd", SGCDLearnerConfig)
class SGCD(GRPO):
    credit_method = "sgcd"

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super().loss(x)
        if self.config.sd_coef > 0:
            sd, sd_metrics = SDPODistill(self.config.sd, self.context).loss(x)
            metrics.update(sd_metrics)
            loss = loss + self.config.sd_coef * sd
        return loss, metrics
