"""What credit assignment hands to a learner."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TokenAdvantages:
    """Per-token advantages for the episodes of a batch of groups, in group order.

    ``advantages[i]`` is a float tensor ``(T_i,)`` aligned with ``episodes[i].ids`` and zero
    wherever ``response_mask`` is 0. ``weights[i]`` (same shape) is the detached credit
    weight that multiplied the broadcast group-relative advantage (all ones for GRPO).
    ``diagnostics`` are scalar metrics with namespaced keys (``credit/...``).
    ``teacher_prompts[i]`` is the teacher prompt episode ``i`` was scored under (SGCD: its
    group's credit-reference context), None where it was not scored; empty for methods
    without a teacher.
    """

    advantages: list[torch.Tensor]
    weights: list[torch.Tensor]
    diagnostics: dict[str, float] = field(default_factory=dict)
    teacher_prompts: list[list[int] | None] = field(default_factory=list)
