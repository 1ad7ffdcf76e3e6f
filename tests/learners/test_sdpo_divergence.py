"""SDPO's alpha-divergence equals lasgroup/SDPO's formulation, written here from its
definition with ``torch.nn.functional.kl_div``: mixture (1-α)·S + α·T and
``lerp(KL(S‖M), KL(T‖M), α)``; α = 0 forward KL(T‖S), α = 1 reverse KL(S‖T)."""

import math

import pytest
import torch
import torch.nn.functional as F

from learners.sdpo import alpha_divergence


def lasgroup(student: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    def kl(p_log, q_log):  # KL(p‖q) per row, both log-probs
        return F.kl_div(q_log, p_log, reduction="none", log_target=True).sum(-1)

    if alpha == 0.0:
        return kl(teacher, student)
    if alpha == 1.0:
        return kl(student, teacher)
    mixture = torch.logsumexp(
        torch.stack([student + math.log(1 - alpha), teacher + math.log(alpha)]), dim=0
    )
    return torch.lerp(kl(student, mixture), kl(teacher, mixture), alpha)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_alpha_divergence_equals_lasgroup(alpha):
    g = torch.Generator().manual_seed(0)
    student = torch.log_softmax(3 * torch.randn(6, 11, generator=g, dtype=torch.float64), -1)
    teacher = torch.log_softmax(3 * torch.randn(6, 11, generator=g, dtype=torch.float64), -1)
    ours = alpha_divergence(student, teacher, alpha)
    torch.testing.assert_close(ours, lasgroup(student, teacher, alpha), atol=1e-6, rtol=0)
    if 0 < alpha < 1:  # not symmetric in α: a mirrored mixture is caught
        assert (ours - lasgroup(student, teacher, 1 - alpha)).abs().max() > 1e-3 or alpha == 0.5
