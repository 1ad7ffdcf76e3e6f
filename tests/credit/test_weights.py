"""SGCD Appendix A: bounded, detached weights that scale GRPO and never flip its sign."""

import pytest
import torch

from credit.weights import WeightConfig, bounded_weights

CONFIGS = [WeightConfig(), WeightConfig(gamma=0.5, cap=1.2), WeightConfig(gamma=3.0, cap=2.0)]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_bounded_in_one_to_c(config):
    s = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    w = bounded_weights(s, config)
    assert (w >= 1).all() and (w <= config.cap).all()
    torch.testing.assert_close(bounded_weights(torch.zeros(3), config), torch.ones(3))


def test_eq4_values():
    s = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(bounded_weights(s, WeightConfig()), torch.tensor([1.0, 1.25, 2.0]))
    uncapped = WeightConfig(gamma=4.0, cap=None)
    torch.testing.assert_close(bounded_weights(s, uncapped), torch.tensor([1.0, 2.0, 5.0]))


@pytest.mark.parametrize("bad", [{"cap": 1.0}, {"cap": 0.5}, {"gamma": -0.1}])
def test_rejects_configs_outside_eq4(bad):
    with pytest.raises(ValueError):
        WeightConfig(**bad)


def test_detached_even_from_a_differentiable_saliency():
    # Prop. 1: dW/dθ = 0 even if the features were built from the actor's outputs.
    theta = torch.randn(5, requires_grad=True)
    w = bounded_weights(torch.sigmoid(theta), WeightConfig())
    assert not w.requires_grad and w.grad_fn is None


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_sign_kept_and_magnitude_within_c(config):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, generator=g)
    a[:10] = 0.0
    w = bounded_weights(torch.rand(500, generator=g), config)
    reshaped = a * w
    assert torch.equal(torch.sign(reshaped), torch.sign(a))  # Cor. 1
    assert (reshaped.abs() <= config.cap * a.abs() + 1e-7).all()


def test_sgcd_token_loss_is_a_positive_scaling_of_grpo():
    # Prop. 2 / Cor. 2-3: ℓ_SGCD = W ℓ_GRPO and ∇ℓ_SGCD = W ∇ℓ_GRPO, tokenwise.
    g = torch.Generator().manual_seed(2)
    eps = 0.2
    logp_old = torch.randn(64, generator=g)
    logp = (logp_old + 0.3 * torch.randn(64, generator=g)).requires_grad_()
    a = torch.randn(64, generator=g)
    w = bounded_weights(torch.rand(64, generator=g), WeightConfig())

    def token_loss(advantage):
        ratio = torch.exp(logp - logp_old)
        return -torch.min(ratio * advantage, ratio.clamp(1 - eps, 1 + eps) * advantage)

    grpo, sgcd = token_loss(a), token_loss(a * w)
    torch.testing.assert_close(sgcd, w * grpo)
    (grad_grpo,) = torch.autograd.grad(grpo.sum(), logp)
    (grad_sgcd,) = torch.autograd.grad(sgcd.sum(), logp)
    torch.testing.assert_close(grad_sgcd, w * grad_grpo)
    assert (grad_sgcd * grad_grpo >= 0).all()
