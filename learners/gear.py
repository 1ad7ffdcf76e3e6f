"""GEAR (arXiv 2605.11853): the GRPO surrogate on Â = A · W, W from the policy's divergence
to itself conditioned on the ground truth (credit/gear.py). Only the credit differs, so
the config is GRPO's; its ``credit`` holds ``credit.gear.GEARConfig``'s options."""

from __future__ import annotations

from learners.grpo import GRPO, GRPOConfig
from learners.registry import register_learner


@register_learner("gear", GRPOConfig)
class GEAR(GRPO):
    credit_method = "gear"
