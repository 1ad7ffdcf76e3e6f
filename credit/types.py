"""What credit assignment hands to a learner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

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

    def advantage(self, index: int, student_logits: torch.Tensor) -> torch.Tensor:
        """:class:`StepCredit`: complete already, the student's logits are not needed."""
        return self.advantages[index]

    def complete(self) -> TokenAdvantages:
        return self

    def subset(self, indices: Sequence[int]) -> TokenAdvantages:
        """The episodes at ``indices`` (a learner rank's share), diagnostics kept."""
        return TokenAdvantages(
            advantages=[self.advantages[k] for k in indices],
            weights=[self.weights[k] for k in indices],
            diagnostics=self.diagnostics,
            teacher_prompts=[self.teacher_prompts[k] for k in indices]
            if self.teacher_prompts
            else [],
        )


class StepCredit(Protocol):
    """A step's credit as the learner's update reads it: a :class:`TokenAdvantages`, or a
    teacher-scored credit whose advantages wait for the student's logits
    (:class:`credit.reweight.AwaitingStudent`)."""

    @property
    def teacher_prompts(self) -> Sequence[list[int] | None]: ...

    def advantage(self, index: int, student_logits: torch.Tensor) -> torch.Tensor:
        """Episode ``index``'s advantages ``(T,)``, given the policy's detached ``(R, V)``
        logits at its response tokens under its clean prompt (the learner's forward)."""
        ...

    def complete(self) -> TokenAdvantages:
        """Every episode's advantages, weights and the diagnostics (episodes whose student
        logits never came are scored here)."""
        ...
