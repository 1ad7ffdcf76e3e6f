"""Log-probabilities of recorded tokens under a model (with or without grad)."""

from __future__ import annotations

import torch


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast on the model's own device (CPU or CUDA); off when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def token_logprobs(
    model: torch.nn.Module,
    prompt_ids: list[int],
    ids: list[int],
    temperature: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``(T,)`` log p(ids[t] | prompt, ids[:t]) for the T = len(ids) recorded tokens.

    ``temperature`` must be the sampling temperature (1 for greedy) so that ratios with
    the behaviour log-probs compare the same distribution.
    """
    device = next(model.parameters()).device
    full = torch.tensor([prompt_ids + ids], device=device)  # (1, P+T)
    with _autocast(device, autocast_dtype):
        logits = model(input_ids=full[:, :-1]).logits[0, -len(ids) :].float()  # (T, V)
    if temperature != 1.0:
        logits = logits / temperature
    targets = full[0, -len(ids) :]  # (T,)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def response_logits(
    model: torch.nn.Module,
    prompt_ids: list[int],
    ids: list[int],
    positions: torch.Tensor,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``(R, V)`` fp32 next-token logits that predicted ``ids[positions]``."""
    device = next(model.parameters()).device
    full = torch.tensor([prompt_ids + ids], device=device)  # (1, P+T)
    with _autocast(device, autocast_dtype):
        logits = model(input_ids=full[:, :-1]).logits[0, -len(ids) :]  # (T, V)
    return logits[positions].float()
