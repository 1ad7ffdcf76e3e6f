"""Bounded, detached credit weights (SGCD eq. 4, App. A)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class WeightConfig:
    gamma: float = 1.0
    """γ in W = clip(1 + γ s, 1, c); γ >= 0. The reported runs use 1 (§4.5)."""
    cap: float | None = 2.0
    """c in eq. 4, c > 1; the reported runs use 2 (§4.5). ``None`` removes the upper clip
    (the "uncapped" arm of Table 6, whose direct-SD loss is a learner's)."""

    def __post_init__(self) -> None:
        if self.gamma < 0 or (self.cap is not None and self.cap <= 1):
            raise ValueError(f"need gamma >= 0 and cap > 1 (eq. 4); got {self}")


def raw_weights(saliency: torch.Tensor, config: WeightConfig) -> torch.Tensor:
    """``1 + γ s`` before clipping, detached. ``(R,) -> (R,)``."""
    return 1.0 + config.gamma * saliency.detach()


def bounded_weights(saliency: torch.Tensor, config: WeightConfig) -> torch.Tensor:
    """W = clip(1 + γ s, 1, c): in [1, c], a constant for the actor (Prop. 1). ``(R,)``."""
    return raw_weights(saliency, config).clamp(min=1.0, max=config.cap)
