import copy

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from learners.cli import CONFIG_DIR
from learners.registry import LossInput


def whole_logits(model, group, j):
    """``(T, V)`` logits predicting episode j's ids, its whole sequence encoded at once:
    the per-episode path the shared-prefix forward must equal."""
    p = len(group.prompt_ids)
    ids = group.prompt_ids + group.episodes[j].ids
    return model(input_ids=torch.tensor([ids])).logits[0, p - 1 : -1]


def response_logits(model, group, j):
    """``(R, V)``: :func:`whole_logits` at episode j's response tokens (a LossInput's)."""
    return whole_logits(model, group, j)[group.episodes[j].response_positions()]


def perturbed_copy(model):
    """A frozen copy of ``model`` moved away from it, so that a KL term toward it pulls."""
    reference = copy.deepcopy(model).requires_grad_(False)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return reference


def loss_and_grads(learner, model, group, advantages):
    """The learner's token-mean loss over the group's episodes, backpropagated from the
    per-episode path; returns the loss and a copy of every parameter's gradient."""
    total = sum(sum(e.response_mask) for e in group.episodes)
    model.zero_grad()
    loss = sum(
        learner.loss(LossInput(model, group, j, a, 1 / total, response_logits(model, group, j)))[0]
        for j, a in enumerate(advantages)
    )
    loss.backward()
    return loss, [p.grad.clone() for p in model.parameters()]


# a train config that runs in seconds: tiny model, airline_mini, one group of 3
FAST = [
    "env=airline_mini",
    "model=tiny_random",
    "rollout.n=3",
    "rollout.sampling.max_new_tokens=12",
    "train.groups_per_step=1",
    "train.dynamic_sampling=false",
    "train.eval_tasks=2",
    "eval_batch=2",
    "credit_llm.model=tiny-random",
    "credit_llm.max_tokens=16",
    "+learner.credit.saliency.min_spike_divergence=0.0",
]


def config(learner, *extra):
    overrides = [*FAST, f"learner={learner}", *extra]
    if not learner.startswith("sgcd"):
        overrides.remove("+learner.credit.saliency.min_spike_divergence=0.0")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)
