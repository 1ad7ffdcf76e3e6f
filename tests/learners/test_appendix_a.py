"""The SGCD paper's Appendix A, checked through the real SGCD learner and credit path on
SmolLM2 (fp32), where the credit-reference context moves the model's predictions far more
than float noise, and with off-policy behaviour log-probs so that the clip is active on
some tokens but not all.

Per response token z of an episode, with ``W`` from SGCD's credit: the SGCD token loss is
``W_z`` times the GRPO one (Â = A·W inside the same clipped surrogate), so the gradient of
the loss with respect to the logits predicting token z satisfies Prop. 2,
``∇ℓ_z^SGCD = W_z ∇ℓ_z^GRPO``, hence Cor. 2 (non-negative alignment) and Cor. 3
(``‖∇ℓ_z^SGCD‖ ≤ c ‖∇ℓ_z^GRPO‖``); Cor. 1: sign(Â) = sign(A), |Â| ≤ c|A|.
"""

import copy

import pytest
import torch
from conftest import FixedAnalyst
from learner_helpers import response_logits, whole_logits

from agents.model import ModelConfig, load_model
from credit import get_credit
from credit.teacher import Teacher
from learners.forward import token_logprobs
from learners.registry import LearnerContext, LossInput, get_learner

BEHAVIOUR = {"old_logprobs": "behaviour"}  # ratios move: the clip acts on some tokens


@pytest.fixture(scope="module")
def smollm2_setup(setup):
    """The mixed group, its behaviour log-probs SmolLM2's own lowered by up to 0.3 nats, so
    that ratios lie in [1, 1.35]: the 1.2 clip acts on some tokens, not on all."""
    _, tiny_group, tiny_teacher = setup
    group = copy.deepcopy(tiny_group)
    model, _ = load_model(ModelConfig(name="smollm2", dtype="float32"))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for j, e in enumerate(group.episodes):
            own = token_logprobs(whole_logits(model, group, j), e.ids)
            lowered = own - 0.3 * torch.rand(len(e.ids), generator=g, dtype=own.dtype)
            e.logprobs = [
                float(v) if m else 0.0 for v, m in zip(lowered, e.response_mask, strict=True)
            ]
    teacher = Teacher(model=model, prompts=tiny_teacher.prompts, analyst=FixedAnalyst())
    return model, group, teacher


def _learner(name, teacher):
    entry = get_learner(name)
    context = LearnerContext(temperature=1.0, autocast=None, teacher=teacher)
    return entry.learner_class(entry.make_config(BEHAVIOUR), context)


def _logit_grads(learner, model, group, teacher, logits):
    """Per episode, the gradient of the learner's loss w.r.t. its ``(R, V)`` logits, the
    advantages coming from the learner's own credit method, and the loss metrics."""
    credit = get_credit(learner.credit_method)
    assigned = credit.assign([group], teacher, credit.make_config(learner.credit_config()))
    grads, metrics = [], []
    for j, a in enumerate(assigned.advantages):
        leaf = logits[j].clone().requires_grad_()
        loss, m = learner.loss(LossInput(model, group, j, a, 1.0, leaf))
        (grad,) = torch.autograd.grad(loss, leaf)
        grads.append(grad)
        metrics.append(m)
    return grads, metrics


def test_sgcd_learner_scales_each_tokens_grpo_gradient_by_its_weight(smollm2_setup):
    model, group, teacher = smollm2_setup
    with torch.no_grad():
        logits = [response_logits(model, group, j) for j in range(len(group.episodes))]
    sgcd, grpo = _learner("sgcd", teacher), _learner("grpo", teacher)
    method = get_credit("sgcd")
    config = method.make_config(sgcd.credit_config())
    credit = method.assign([group], teacher, config)
    c = config.weights.cap
    # the context matters: divergences far above float noise, and W > 1 on some tokens
    assert credit.diagnostics["credit/divergence_max"] > 1e-2
    assert any(torch.any(w > 1.05) for w in credit.weights)

    g_sgcd, _ = _logit_grads(sgcd, model, group, teacher, logits)
    g_grpo, m_grpo = _logit_grads(grpo, model, group, teacher, logits)
    clip_shares = [m["loss/clip_share"] for m in m_grpo]
    assert 0 < max(clip_shares) and min(clip_shares) < 1  # the clip acts, not everywhere

    base = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    changed = 0.0
    for j, e in enumerate(group.episodes):
        w, a, a_hat = credit.weights[j], base.advantages[j], credit.advantages[j]
        assert not w.requires_grad and torch.all((w >= 1) & (w <= c))
        assert torch.equal(torch.sign(a_hat), torch.sign(a))  # Cor. 1
        assert torch.all(a_hat.abs() <= c * a.abs() + 1e-12)
        norm = g_grpo[j].norm()
        assert norm > 0
        # Prop. 2, row by row: the logits predicting token z carry token z's gradient
        expected = w[e.response_positions()][:, None] * g_grpo[j]
        assert (g_sgcd[j] - expected).norm() <= 1e-5 * expected.norm()
        dots = (g_sgcd[j] * g_grpo[j]).sum(-1)
        assert torch.all(dots >= -1e-12 * norm**2)  # Cor. 2
        assert torch.all(g_sgcd[j].norm(dim=-1) <= c * g_grpo[j].norm(dim=-1) * (1 + 1e-6))
        changed = max(changed, float((g_sgcd[j] - g_grpo[j]).norm() / norm))
        assert sum(e.response_mask) > 0
    assert changed > 0.05  # SGCD's update is not GRPO's
