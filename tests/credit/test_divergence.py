import math

import pytest
import torch

from credit.divergence import DIVERGENCES, entropy, forward_kl, jsd, reverse_kl


def _random_logp(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(3 * torch.randn(*shape, generator=g), dim=-1)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_nonnegative_and_zero_on_equal(name):
    p, q = _random_logp((50, 12), 0), _random_logp((50, 12), 1)
    assert (DIVERGENCES[name](p, q) >= 0).all()
    assert DIVERGENCES[name](p, p).abs().max() < 1e-6


def test_matches_the_textbook_formulas():
    p, q = _random_logp((20, 7), 2), _random_logp((20, 7), 3)
    reference = (p.exp() * (p - q)).sum(-1)
    torch.testing.assert_close(reverse_kl(p, q), reference)
    torch.testing.assert_close(forward_kl(q, p), reference)  # KL(teacher || student)
    m = torch.log(0.5 * (p.exp() + q.exp()))
    jsd_ref = 0.5 * (p.exp() * (p - m)).sum(-1) + 0.5 * (q.exp() * (q - m)).sum(-1)
    torch.testing.assert_close(jsd(p, q), jsd_ref)
    assert (jsd(p, q) <= math.log(2) + 1e-6).all()


def test_empty_slots_contribute_nothing():
    # The observed token's slot is -inf in both when it is already in the top-K.
    p = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    q = torch.log(torch.tensor([[0.25, 0.75, 0.0, 0.0]]))
    for fn in DIVERGENCES.values():
        assert torch.isfinite(fn(p, q)).all()
    assert entropy(p).item() == pytest.approx(math.log(2))
