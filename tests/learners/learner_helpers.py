import copy

import torch

from learners.registry import LossInput


def whole_logits(model, group, j):
    """``(T, V)`` logits predicting episode j's ids, its whole sequence encoded at once:
    the per-episode path the shared-prefix forward must equal."""
    p = len(group.prompt_ids)
    ids = group.prompt_ids + group.episodes[j].ids
    return model(input_ids=torch.tensor([ids])).logits[0, p - 1 : -1]


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
        learner.loss(LossInput(model, group, j, a, 1 / total, whole_logits(model, group, j)))[0]
        for j, a in enumerate(advantages)
    )
    loss.backward()
    return loss, [p.grad.clone() for p in model.parameters()]
