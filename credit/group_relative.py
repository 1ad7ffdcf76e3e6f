"""Group-relative advantages (GRPO): each sibling's reward against its group's mean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.episode import Episode, EpisodeGroup
from credit.registry import register_credit
from credit.types import TokenAdvantages

if TYPE_CHECKING:
    from credit.teacher import Teacher


@dataclass
class GroupRelativeConfig:
    scale_by_std: bool = False
    """Divide ``r - mean(r)`` by the group's reward std, as GRPO does (Shao et al. 2024).
    Off by default: LOOP (Chen et al. 2025, arXiv 2502.01600) found that dividing by the
    std hurt long-horizon agents (issue 4)."""
    std_eps: float = 1e-6
    """Added to the std before dividing (verl's ``compute_grpo_outcome_advantage``)."""


def episodes_of(groups: list[EpisodeGroup]) -> list[Episode]:
    """Episodes in ``TokenAdvantages`` order: group by group, sibling by sibling."""
    return [e for g in groups for e in g.episodes]


def group_advantages(groups: list[EpisodeGroup], config: GroupRelativeConfig) -> torch.Tensor:
    """One scalar advantage per episode, ``(N,)`` over ``episodes_of(groups)``."""
    rewards = torch.tensor([r for g in groups for r in g.rewards], dtype=torch.float64)  # (N,)
    sizes = torch.tensor([len(g.episodes) for g in groups], dtype=torch.long)  # (G,)
    index = torch.repeat_interleave(torch.arange(len(groups)), sizes)  # (N,)
    counts = sizes.to(torch.float64)  # (G,)
    means = torch.zeros(len(groups), dtype=torch.float64).index_add_(0, index, rewards) / counts
    centred = rewards - means[index]  # (N,)
    if config.scale_by_std:
        # Unbiased std, as torch.std; a single-sibling group has nothing to scale.
        squares = torch.zeros(len(groups), dtype=torch.float64).index_add_(0, index, centred**2)
        std = (squares / (counts - 1).clamp_min(1)).sqrt()  # (G,)
        centred = centred / (std[index] + config.std_eps)
    return centred.to(torch.float32)


def broadcast(advantage: float, episode: Episode) -> torch.Tensor:
    """``advantage`` on the episode's response tokens, 0 elsewhere: ``(T,)``."""
    return advantage * torch.tensor(episode.response_mask, dtype=torch.float32)


@register_credit("grpo", GroupRelativeConfig)
def assign_group_relative(
    groups: list[EpisodeGroup], teacher: Teacher | None, config: GroupRelativeConfig
) -> TokenAdvantages:
    """GRPO's broadcast advantage; ``teacher`` is unused."""
    episodes = episodes_of(groups)
    values = group_advantages(groups, config)  # (N,)
    advantages = [broadcast(float(a), e) for a, e in zip(values, episodes, strict=True)]
    weights = [torch.ones(len(e.ids)) for e in episodes]
    mixed = sum(g.is_mixed for g in groups)
    return TokenAdvantages(
        advantages=advantages,
        weights=weights,
        diagnostics={
            "credit/advantage_abs_mean": float(values.abs().mean()) if len(values) else 0.0,
            "credit/mixed_group_share": mixed / len(groups) if groups else 0.0,
        },
    )
