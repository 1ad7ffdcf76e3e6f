"""GRPO+KL: GRPO plus a k3 KL penalty to the frozen initial policy (the paper's PG control)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learners.forward import token_logprobs
from learners.grpo import GRPO, GRPOConfig
from learners.registry import LossInput, register_learner


@dataclass
class GRPOKLConfig(GRPOConfig):
    kl_coef: float = 0.01
    """β of the KL penalty (k3 estimator, Schulman 2020), per response token."""


def k3(new: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-token ``exp(ref - new) - (ref - new) - 1`` >= 0, an unbiased KL(π||π_ref) estimate."""
    log_ratio = reference - new
    return torch.exp(log_ratio) - log_ratio - 1


@register_learner("grpo_kl", GRPOKLConfig)
class GRPOKL(GRPO):
    needs_reference = True

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        new, old, mask = self.logprobs(x)
        loss, metrics = self.pg_loss(x, new, old, mask)
        with torch.no_grad():
            reference = token_logprobs(
                self.context.reference,
                x.group.prompt_ids,
                x.episode.ids,
                self.context.temperature,
                self.context.autocast,
            )
        kl = (k3(new, reference) * mask).sum() * x.scale
        metrics["loss/kl"] = float(kl.detach())
        return loss + self.config.kl_coef * kl, metrics
