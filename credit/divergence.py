"""Divergences and entropy on a shared local support (SGCD §4.3).

Inputs are log-probabilities ``(..., S)`` over the same support (teacher top-K, the
observed token, a tail bucket); a slot may be ``-inf`` (probability 0), e.g. the observed
token's slot when it is already in the top-K. Terms with zero mass contribute 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dim; ``(..., S) -> (...)``."""
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    return terms.sum(-1).clamp_min(0.0)  # rounding can dip just below 0


def reverse_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher), SGCD's default (eq. 2)."""
    return _kl(student, teacher)


def forward_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student)."""
    return _kl(teacher, student)


def jsd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (Lin 1991), in nats: at most log 2."""
    mixture = torch.logaddexp(student, teacher) - math.log(2.0)
    return 0.5 * (_kl(student, mixture) + _kl(teacher, mixture))


DIVERGENCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "reverse_kl": reverse_kl,
    "forward_kl": forward_kl,
    "jsd": jsd,
}


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the last dim; ``(..., S) -> (...)``."""
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
