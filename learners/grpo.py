"""GRPO (Shao et al. 2024): the clipped surrogate over response tokens, group-relative A.

Also the base of GRPO+KL and SGCD, which differ only in a penalty or in their credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from learners.registry import Learner, LossInput, register_learner

OLD_LOGPROBS = ("recompute", "behaviour")


@dataclass
class GRPOConfig:
    clip_low: float = 0.2
    """ε of the surrogate's lower clip, 1 - ε (PPO default)."""
    clip_high: float = 0.2
    """ε of the upper clip, 1 + ε (DAPO's clip-higher raises it)."""
    old_logprobs: str = "recompute"
    """``recompute``: the ratio's denominator is the learner's own detached log-prob
    (verl's default; with one PPO epoch the ratio is 1 and the update is on-policy), or
    ``behaviour``: the sampler's recorded log-probs (exposes sampler/learner mismatch)."""
    credit: dict[str, Any] = field(default_factory=dict)
    """Options of the credit method (``credit.group_relative.GroupRelativeConfig``)."""

    def __post_init__(self) -> None:
        if self.old_logprobs not in OLD_LOGPROBS:
            raise ValueError(f"old_logprobs must be one of {OLD_LOGPROBS}")


def clipped_surrogate(
    new: torch.Tensor,
    old: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``-min(r A, clip(r) A)`` and whether the clip was active, all ``(T,)``."""
    ratio = torch.exp(new - old)  # (T,)
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)  # (T,)
    unclipped_term, clipped_term = ratio * advantages, clipped * advantages
    return -torch.minimum(unclipped_term, clipped_term), clipped_term < unclipped_term


@register_learner("grpo", GRPOConfig)
class GRPO(Learner):
    credit_method = "grpo"

    def logprobs(self, x: LossInput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New (with grad) and old log-probs, and the response mask, all ``(T,)``."""
        e = x.episode
        new = x.token_logprobs(self.context.temperature)
        if self.config.old_logprobs == "recompute":
            old = new.detach()
        else:
            old = torch.tensor(e.logprobs, dtype=new.dtype)
        return new, old, torch.tensor(e.response_mask, dtype=new.dtype)

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        new, old, mask = self.logprobs(x)
        return self.pg_loss(x, new, old, mask)

    def pg_loss(self, x: LossInput, new, old, mask) -> tuple[torch.Tensor, dict[str, float]]:
        per_token, clipped = clipped_surrogate(
            new, old, x.advantages, self.config.clip_low, self.config.clip_high
        )
        loss = (per_token * mask).sum() * x.scale
        tokens = float(mask.sum().clamp(min=1))
        return loss, {
            "loss/pg": float(loss.detach()),
            "loss/clip_share": float((clipped.float() * mask).sum()) / tokens,
            "loss/ratio_mean": float((torch.exp(new - old).detach() * mask).sum()) / tokens,
        }
