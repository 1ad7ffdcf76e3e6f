"""Losses on real tensors from a tiny model: GRPO against a from-scratch recomputation,
the SGCD properties of the paper's Appendix A, k3, SDPO's masking."""

import copy

import pytest
import torch
from learner_helpers import loss_and_grads, perturbed_copy, response_logits, whole_logits

from credit import get_credit
from learners.grpo import GRPO, GRPOConfig, clipped_surrogate
from learners.grpo_kl import GRPOKL, GRPOKLConfig, k3
from learners.registry import LearnerContext, LossInput
from learners.sdpo import SDPO, SDPOConfig
from learners.training.train import frozen_copy


def _context(teacher):
    return LearnerContext(temperature=1.0, autocast=None, teacher=teacher)


def test_grpo_loss_and_gradient_equal_a_from_scratch_recomputation(setup):
    model, group, teacher = setup
    adv = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    learner = GRPO(GRPOConfig(old_logprobs="behaviour"), _context(teacher))
    total = sum(sum(e.response_mask) for e in group.episodes)
    loss, grads = loss_and_grads(learner, model, group, adv.advantages)

    model.zero_grad()
    reference = torch.zeros(())
    rewards = group.rewards
    for e, r in zip(group.episodes, rewards, strict=True):
        a = r - sum(rewards) / len(rewards)
        logits = model(input_ids=torch.tensor([group.prompt_ids + e.ids])).logits[0]
        p = len(group.prompt_ids)
        for t, (tok, m, old) in enumerate(zip(e.ids, e.response_mask, e.logprobs, strict=True)):
            if not m:
                continue
            new = torch.log_softmax(logits[p + t - 1], dim=-1)[tok]
            ratio = torch.exp(new - old)
            reference = reference - torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a) / total
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), abs=1e-6)
    for g_learner, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g_learner, p.grad, atol=1e-6, rtol=1e-5)


def test_sgcd_appendix_a_properties(setup):
    model, group, teacher = setup
    grpo = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    sgcd_method = get_credit("sgcd")
    # a random model moves little between contexts: let any relative spike count
    config = sgcd_method.make_config({"saliency": {"min_spike_divergence": 0.0}})
    sgcd = sgcd_method.assign([group], teacher, config)
    c = config.weights.cap
    for a, w, a_hat in zip(grpo.advantages, sgcd.weights, sgcd.advantages, strict=True):
        assert not w.requires_grad and not a_hat.requires_grad  # Prop. 1: W is detached
        assert torch.all((w >= 1) & (w <= c))
        torch.testing.assert_close(a_hat, a * w)
        assert torch.equal(torch.sign(a_hat), torch.sign(a))  # Cor. 1
        assert torch.all(a_hat.abs() <= c * a.abs() + 1e-12)
    assert any(torch.any(w > 1) for w in sgcd.weights), "credit was inert on a mixed group"

    # Prop. 2 and Cor. 2-3 per token, on real ratios from the model.
    j = 0
    e = group.episodes[j]
    learner = GRPO(GRPOConfig(old_logprobs="behaviour"), _context(teacher))
    x = LossInput(model, group, j, grpo.advantages[j], 1.0, response_logits(model, group, j))
    new, old, mask = learner.logprobs(x)
    w = sgcd.weights[j]
    l_grpo, _ = clipped_surrogate(new, old, grpo.advantages[j], 0.2, 0.2)
    l_sgcd, _ = clipped_surrogate(new, old, sgcd.advantages[j], 0.2, 0.2)
    torch.testing.assert_close(l_sgcd * mask, w * l_grpo * mask)
    tokens = [t for t in range(len(e.ids)) if e.response_mask[t] and w[t] > 1][:2]
    assert tokens
    for t in tokens:
        g_grpo = torch.autograd.grad(
            l_grpo[t], model.parameters(), retain_graph=True, allow_unused=True
        )
        g_sgcd = torch.autograd.grad(
            l_sgcd[t], model.parameters(), retain_graph=True, allow_unused=True
        )
        flat_grpo = torch.cat([g.flatten() for g in g_grpo if g is not None])
        flat_sgcd = torch.cat([g.flatten() for g in g_sgcd if g is not None])
        torch.testing.assert_close(flat_sgcd, w[t] * flat_grpo)  # Prop. 2
        assert torch.dot(flat_sgcd, flat_grpo) >= 0  # Cor. 2
        assert flat_sgcd.norm() <= c * flat_grpo.norm() + 1e-9  # Cor. 3
        assert l_sgcd[t].abs() <= c * l_grpo[t].abs() + 1e-9


def test_grpo_kl_loss_and_gradient_equal_a_from_scratch_recomputation(setup):
    """GRPO+KL = the GRPO surrogate + β · k3(new, reference) per response token, against a
    reference model away from the policy (so that the penalty pulls)."""
    model, group, teacher = setup
    reference = perturbed_copy(model)
    beta = 0.5
    context = LearnerContext(temperature=1.0, autocast=None, teacher=teacher, reference=reference)
    learner = GRPOKL(GRPOKLConfig(kl_coef=beta, old_logprobs="behaviour"), context)
    adv = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    total = sum(sum(e.response_mask) for e in group.episodes)
    loss, grads = loss_and_grads(learner, model, group, adv.advantages)

    model.zero_grad()
    expected = torch.zeros(())
    p = len(group.prompt_ids)
    for j, (e, a) in enumerate(zip(group.episodes, adv.advantages, strict=True)):
        new = torch.log_softmax(whole_logits(model, group, j), -1)
        with torch.no_grad():
            ids = torch.tensor([group.prompt_ids + e.ids])
            ref = torch.log_softmax(reference(input_ids=ids).logits[0, p - 1 : -1], -1)
        for t, (tok, m, old) in enumerate(zip(e.ids, e.response_mask, e.logprobs, strict=True)):
            if not m:
                continue
            ratio = torch.exp(new[t, tok] - old)
            pg = -torch.min(ratio * a[t], ratio.clamp(0.8, 1.2) * a[t])
            log_ratio = ref[t, tok] - new[t, tok]
            kl = torch.exp(log_ratio) - log_ratio - 1
            expected = expected + (pg + beta * kl) / total
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    for g_learner, p_ in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g_learner, p_.grad, atol=1e-6, rtol=1e-5)


def test_the_reference_policy_is_a_frozen_copy(setup):
    model, _, _ = setup
    reference = frozen_copy(model)
    assert not any(p.requires_grad for p in reference.parameters())
    mine = {id(p) for p in model.parameters()}
    assert not any(id(p) in mine for p in reference.parameters())
    assert not reference.training


def test_k3_is_nonnegative_and_zero_at_the_reference():
    new = torch.randn(50)
    assert torch.all(k3(new, new + torch.randn(50)) >= 0)
    assert torch.all(k3(new, new) == 0)


def test_sdpo_masks_episodes_without_another_successful_sibling(setup):
    model, group, teacher = setup
    learner = SDPO(SDPOConfig(), _context(teacher))
    adv = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    losses = [
        learner.loss(LossInput(model, group, j, a, 1e-3, response_logits(model, group, j)))
        for j, a in enumerate(adv.advantages)
    ]
    assert all(m["loss/sd_masked"] == 0.0 for _, m in losses)  # two winners teach each other
    assert all(loss.item() > 0 and loss.requires_grad for loss, _ in losses)
    lonely = type(group)(group.task_id, group.category, group.prompt_ids, group.episodes[:2])
    _, m = learner.loss(
        LossInput(model, lonely, 0, adv.advantages[0], 1e-3, response_logits(model, lonely, 0))
    )
    assert m["loss/sd_masked"] == 1.0  # its only successful sibling is itself


def test_a_grpo_step_makes_winners_likelier_and_losers_less_likely(setup):
    """The sign of the whole update: one small gradient step on the GRPO loss raises the
    log-likelihood of the episodes with A > 0 and lowers that of those with A < 0."""
    model, group, teacher = setup
    model = copy.deepcopy(model)
    adv = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    learner = GRPO(GRPOConfig(), _context(teacher))
    total = sum(sum(e.response_mask) for e in group.episodes)

    def likelihoods():
        out = []
        with torch.no_grad():
            for j, a in enumerate(adv.advantages):
                x = LossInput(model, group, j, a, 1.0, response_logits(model, group, j))
                new, _, mask = learner.logprobs(x)
                out.append(float((new * mask).sum()))
        return out

    before = likelihoods()
    model.zero_grad()
    loss = sum(
        learner.loss(LossInput(model, group, j, a, 1 / total, response_logits(model, group, j)))[0]
        for j, a in enumerate(adv.advantages)
    )
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.sub_(1e-2 * p.grad)
    after = likelihoods()
    for e, b, a in zip(group.episodes, before, after, strict=True):
        if e.reward > sum(group.rewards) / len(group.rewards):
            assert a > b
        else:
            assert a < b
