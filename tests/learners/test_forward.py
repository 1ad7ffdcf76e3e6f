"""The shared-prefix forward equals encoding each sequence whole: log-probs, and every
learner's loss, metrics and gradient, whether a group fits one micro-batch or many."""

import copy

import pytest
import torch
from learner_helpers import perturbed_copy, response_logits, whole_logits

from agents.model import ModelConfig, load_model
from credit import get_credit
from learners.forward import shared_prefix_logits, token_logprobs
from learners.registry import LearnerContext, LossInput, get_learner
from learners.sft import SFTConfig, _backward_batch, _nll, _window
from learners.training.train import backward_groups

# a random model moves little between contexts: let any relative spike count (SGCD, GEAR)
SPIKES = {"credit": {"saliency": {"min_spike_divergence": 0.0}}}
LEARNERS = {
    "grpo": ("grpo", {}),
    "grpo_kl": ("grpo_kl", {"kl_coef": 0.5}),
    "sdpo": ("sdpo", {}),
    "sgcd": ("sgcd", SPIKES),
    # the direct-SD ablation's auxiliary toward the credit-reference teacher
    "sgcd_direct_sd": ("sgcd", {**SPIKES, "sd_coef": 0.5}),
    "gear": ("gear", SPIKES),
}
ONE_ROW = 1  # a token budget so small that every micro-batch holds one sibling


def _flat_grad(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _assert_close_relative(actual, expected, rtol=1e-5):
    assert expected.norm() > 0
    assert (actual - expected).norm() <= rtol * expected.norm()


def _logprobs_match(model, group, budget):
    every = [(group.prompt_ids, e.ids, range(len(e.ids))) for e in group.episodes]
    responses = [(group.prompt_ids, e.ids, e.response_positions()) for e in group.episodes]
    with torch.no_grad():
        for items, of in ((every, whole_logits), (responses, response_logits)):
            shared = shared_prefix_logits(model, items, None, budget)
            for j, (logits, (_, ids, wanted)) in enumerate(zip(shared, items, strict=True)):
                targets = [ids[t] for t in wanted]
                expected = token_logprobs(of(model, group, j), targets)
                torch.testing.assert_close(
                    token_logprobs(logits, targets), expected, atol=1e-5, rtol=1e-5
                )


@pytest.mark.parametrize("budget", [16_384, ONE_ROW])
def test_shared_prefix_logprobs_equal_whole_sequences(setup, budget):
    model, group, _ = setup
    _logprobs_match(model, group, budget)


def test_smollm2_shared_prefix_logprobs_equal_whole_sequences(setup):
    _, group, _ = setup
    model, _ = load_model(ModelConfig(name="smollm2", dtype="float32"))
    _logprobs_match(model, group, 16_384)


@pytest.mark.parametrize("budget", [16_384, ONE_ROW])
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_loss_and_gradient_equal_the_per_episode_path(setup, name, budget):
    model, group, teacher = setup
    learner_name, options = LEARNERS[name]
    entry = get_learner(learner_name)
    reference = perturbed_copy(model)
    context = LearnerContext(
        temperature=1.0,
        autocast=None,
        reference=reference,
        teacher=teacher,
        max_tokens_per_forward=budget,
    )
    learner = entry.learner_class(entry.make_config(options), context)
    credit = get_credit(learner.credit_method)
    config = credit.make_config(learner.credit_config())
    # per episode: the credit complete, its student side scored by the teacher model;
    # shared: the student side taken from the shared forward's own logits
    assigned = credit.assign([group], teacher, config)
    advantages, prompts = assigned.advantages, assigned.teacher_prompts
    total = sum(sum(e.response_mask) for e in group.episodes)
    scales = [1.0 / total] * len(group.episodes)

    model.zero_grad()
    started = credit.start([group], teacher, config)
    shared_metrics = backward_groups(learner, model, [group], started, scales)
    shared_grad = _flat_grad(model)

    model.zero_grad()
    episode_metrics = {}
    for j, a in enumerate(advantages):
        prompt = prompts[j] if prompts else None
        x = LossInput(model, group, j, a, scales[j], response_logits(model, group, j), prompt)
        loss, metrics = learner.loss(x)
        loss.backward()
        for k, v in metrics.items():
            episode_metrics[k] = episode_metrics.get(k, 0.0) + v
    _assert_close_relative(shared_grad, _flat_grad(model))
    assert shared_metrics.keys() == episode_metrics.keys()
    for k, v in episode_metrics.items():
        # abs: fp32 logits of the two paths differ by ~1e-7, and a divergence between the
        # random model's nearly equal teacher and student is itself that small
        assert shared_metrics[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    if name == "sgcd_direct_sd":  # every episode of the mixed group had the teacher
        # (the term's value is noise-sized: the random model barely reacts to context)
        assert shared_metrics["loss/sd_masked"] == 0.0 and "loss/sd_divergence" in shared_metrics


@pytest.mark.parametrize("budget", [16_384, ONE_ROW])
def test_groups_with_different_prompts_share_one_pass(setup, budget):
    """A step's groups share only the start of their prompts: one pass over all of them
    gives the gradient and metrics of one pass per group (GRPO+KL: its reference is cached
    per group)."""
    model, group, _ = setup
    other = copy.deepcopy(group)
    other.prompt_ids = other.prompt_ids[:-2] + [7, 11]  # the task part of the prompt differs
    entry = get_learner("grpo_kl")
    reference = perturbed_copy(model)
    context = LearnerContext(
        temperature=1.0, autocast=None, reference=reference, max_tokens_per_forward=budget
    )
    learner = entry.learner_class(entry.make_config({"kl_coef": 0.5}), context)
    credit = get_credit("grpo")
    advantages = credit.assign([group, other], None, credit.make_config())
    scales = [0.01] * len(advantages.advantages)
    n = len(group.episodes)

    model.zero_grad()
    together = backward_groups(learner, model, [group, other], advantages, scales)
    together_grad = _flat_grad(model)
    model.zero_grad()
    first = backward_groups(learner, model, [group], advantages.subset(range(n)), scales[:n])
    second_half = advantages.subset(range(n, 2 * n))
    second = backward_groups(learner, model, [other], second_half, scales[n:])
    _assert_close_relative(together_grad, _flat_grad(model))
    for k, v in together.items():
        assert v == pytest.approx(first[k] + second[k], rel=1e-4, abs=1e-7), k


@pytest.mark.parametrize("budget", [16_384, ONE_ROW])
def test_sft_gradient_equals_the_per_episode_path(setup, budget):
    model, group, _ = setup
    config = SFTConfig(max_tokens=300, max_tokens_per_forward=budget)
    batch = [(group.prompt_ids, e) for e in group.episodes]
    model.zero_grad()
    losses, _ = _backward_batch(model, batch, config, None)
    shared_grad = _flat_grad(model)
    model.zero_grad()
    expected = []
    for prompt_ids, episode in batch:
        ids, mask = _window(episode, config)
        p = len(prompt_ids)
        logits = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0, p - 1 : -1]
        loss = _nll(logits[[t for t, m in enumerate(mask) if m]], ids, mask)
        (loss / len(batch)).backward()
        expected.append(loss.item())
    assert losses == pytest.approx(expected, rel=1e-5)
    _assert_close_relative(shared_grad, _flat_grad(model))
