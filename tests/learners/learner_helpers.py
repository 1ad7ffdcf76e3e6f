import torch


def whole_logits(model, group, j):
    """``(T, V)`` logits predicting episode j's ids, its whole sequence encoded at once:
    the per-episode path the shared-prefix forward must equal."""
    p = len(group.prompt_ids)
    ids = group.prompt_ids + group.episodes[j].ids
    return model(input_ids=torch.tensor([ids])).logits[0, p - 1 : -1]
