"""GRPO+KL: GRPO plus a k3 KL penalty to the frozen initial policy (the paper's PG control)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.episode import EpisodeGroup
from learners.forward import episode_logprobs, shared_prefix_logits
from learners.grpo import GRPO, GRPOConfig
from learners.registry import LearnerContext, LossInput, register_learner


@dataclass
class GRPOKLConfig(GRPOConfig):
    kl_coef: float = 0.01
    """β of the KL penalty (k3 estimator, Schulman 2020), per response token."""
    kl_clamp: float | None = 10.0
    """Upper bound of each token's k3 (verl's ``low_var_kl`` clamps it to 10): a token far
    off the reference adds at most this and no gradient; None: unclamped."""


def k3(new: torch.Tensor, reference: torch.Tensor, clamp: float | None = None) -> torch.Tensor:
    """Per-token ``exp(ref - new) - (ref - new) - 1`` >= 0 (at most ``clamp``).

    Its value, on tokens sampled from π, is an unbiased estimate of KL(π‖π_ref); used as a
    loss, its gradient ``(1 - π_ref/π) ∇log π`` has the expectation ``∇ KL(π_ref‖π)``:
    the penalty pulls toward covering the reference's mass (Tang & Munos 2025)."""
    log_ratio = reference - new
    value = torch.exp(log_ratio) - log_ratio - 1
    return value if clamp is None else value.clamp(max=clamp)


@register_learner("grpo_kl", GRPOKLConfig)
class GRPOKL(GRPO):
    needs_reference = True

    def __init__(self, config: GRPOKLConfig, context: LearnerContext):
        super().__init__(config, context)
        self._group: EpisodeGroup | None = None  # the group _reference belongs to
        self._reference: list[torch.Tensor] = []

    def reference_logprobs(self, x: LossInput) -> torch.Tensor:
        """``(T,)`` log-probs of the episode under the frozen reference; the whole group is
        scored in one shared-prefix pass, the first time one of its episodes asks."""
        if x.group is not self._group:
            items = [(x.group.prompt_ids, e.ids, e.response_positions()) for e in x.group.episodes]
            logits = shared_prefix_logits(
                self.context.reference,
                items,
                self.context.autocast,
                self.context.max_tokens_per_forward,
            )
            self._reference = [
                episode_logprobs(lg, e, self.context.temperature)
                for lg, e in zip(logits, x.group.episodes, strict=True)
            ]
            self._group = x.group
        return self._reference[x.index]

    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        new, old, mask = self.logprobs(x)
        loss, metrics = self.pg_loss(x, new, old, mask)
        kl = (k3(new, self.reference_logprobs(x), self.config.kl_clamp) * mask).sum() * x.scale
        metrics["loss/kl"] = float(kl.detach())
        return loss + self.config.kl_coef * kl, metrics
